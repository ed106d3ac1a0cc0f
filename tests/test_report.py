"""report.html: one self-contained file, written before ranking_debug.json, and a viewer
that draws the structure in pLDDT colours in a real browser (headless Chromium).
"""

import dataclasses
import json
import os
import pathlib
import re
import shutil
import signal
import subprocess

import numpy as np
import pytest
from matplotlib.colors import rgb_to_hsv, to_rgb
from PIL import Image

from af_jax.common import protein
from af_jax.run import outputs, plots, report
from tests.data.shared_data import SHARED_DATA

GLUCAGON = SHARED_DATA / 'structures_only' / 'alphafold2_testdata' / 'glucagon.pdb'
CHROMIUM = shutil.which('chromium')


def _glucagon(plddt_from: float, plddt_to: float) -> protein.Protein:
  """Glucagon (29 residues, a real helix) with pLDDT rising along the chain in B-factors."""
  prot = protein.from_pdb_string(GLUCAGON.read_text())
  plddt = np.linspace(plddt_from, plddt_to, len(prot.aatype), dtype=np.float32)
  return dataclasses.replace(prot, b_factors=np.repeat(plddt[:, None], 37, 1) * prot.atom_mask)


def _write_target(target_dir: pathlib.Path, seen: dict) -> dict:
  """A two-prediction target through outputs.write_ranking with the report hooked in, as
  fold.py writes it; `seen` records what the hook found on disk."""
  # ranked_0 spans all four bands; ranked_1 is all very high.
  prots = {'model_1_ptm_pred_0': _glucagon(20.0, 98.0),
           'model_2_ptm_pred_0': _glucagon(92.0, 96.0)}
  scores = {'model_1_ptm_pred_0': 90.0, 'model_2_ptm_pred_0': 60.0}
  plots.plot_plddt(target_dir / 'plddt.png', {'model_1_ptm_pred_0': np.linspace(20, 98, 29)},
                   't')

  def hook(ranking):
    seen['ranking_file'] = (target_dir / outputs.RANKING_FILE).exists()
    seen['ranked'] = sorted(p.name for p in target_dir.glob('ranked_*.pdb'))
    report.write_report(target_dir, ranking, 'plddts', title='glucagon <test>',
                        settings={'models_to_relax': 'none'})
  job = {'models': ['model_1_ptm', 'model_2_ptm'], 'seeds': {'base': 7, 'per_model': 1}}
  outputs.write_ranking(target_dir, scores, prots, random_params=True, job=job,
                        before_ranking_file=hook)
  return prots


def test_report_is_one_file_written_before_the_ranking(tmp_path):
  seen = {}
  prots = _write_target(tmp_path, seen)
  # Written after the ranked structures, before the file that marks the target complete.
  assert seen == {'ranking_file': False, 'ranked': ['ranked_0.pdb', 'ranked_1.pdb']}
  assert (tmp_path / outputs.RANKING_FILE).is_file()
  page = (tmp_path / report.REPORT_FILE).read_text(encoding='utf-8')
  # Self-contained: no file or network reference; the library, structures and plot inline.
  assert not re.search(r'\b(src|href)="(?!data:)', page)
  assert report.viewer_library() in page
  structures = json.loads(re.search(
      r'<script type="application/json" id="structures">(.*?)</script>', page, re.S)[1])
  assert [s['file'] for s in structures] == ['ranked_0.pdb', 'ranked_1.pdb']
  assert structures[0]['pdb'] == protein.to_pdb(prots['model_1_ptm_pred_0'])
  assert 'src="data:image/png;base64,' in page and page.count('<img') == 1  # no pae.png here
  # The ranking table, the job's settings, the random-weights note, an escaped title.
  assert '<td>ranked_1.pdb</td><td>model_2_ptm_pred_0</td><td class="num">60.0000</td>' in page
  assert '<td>seeds.base</td><td>7</td>' in page and '<td>models_to_relax</td>' in page
  assert 'RANDOM' in page and '<h1>glucagon &lt;test&gt;</h1>' in page
  assert not list(tmp_path.glob('.*tmp*'))
  # It is one of the target's outputs: a new job's run removes it.
  assert report.REPORT_FILE in outputs.remove_outputs(tmp_path)


def test_mean_plddt_reads_the_ca_b_factors():
  prot = _glucagon(40.0, 80.0)
  assert report.mean_plddt(protein.to_pdb(prot)) == pytest.approx(60.0, abs=0.01)
  assert report.mean_plddt('HEADER\nEND\n') is None


def test_vendored_viewer_is_there_with_its_license():
  vendor = report.VIEWER_JS.parent
  assert 'BSD-3-Clause' in (vendor / '3Dmol-LICENSE').read_text()
  assert report.VIEWER_JS.stat().st_size > 100_000 and '$3Dmol' in report.viewer_library()
  setup = (pathlib.Path(__file__).resolve().parents[1] / 'setup.py').read_text()
  assert "'vendor/3Dmol-min.js', 'vendor/3Dmol-LICENSE'" in setup  # installed with af_jax


# Console lines Chromium logs (--enable-logging=stderr): `...:CONSOLE:12] "text", source: ...`
# (`CONSOLE(12)` in older versions).
_CONSOLE = re.compile(r':CONSOLE[:(]\d*\)?\] "(.*)", source: ')


def _open_in_chromium(page: pathlib.Path, profile: pathlib.Path) -> tuple[np.ndarray, list[str]]:
  """Screenshot (RGB array) of `page` after its scripts ran, and its console messages."""
  shot = page.with_suffix('.png')
  # Software WebGL (SwiftShader) stands in for a GPU; --virtual-time-budget lets the page's
  # scripts finish before the screenshot.
  cmd = [CHROMIUM, '--headless', '--no-sandbox', '--use-gl=angle', '--use-angle=swiftshader',
         '--enable-unsafe-swiftshader', f'--user-data-dir={profile}', '--window-size=1000,900',
         '--virtual-time-budget=5000', '--enable-logging=stderr', '--v=0',
         f'--screenshot={shot}', page.as_uri()]
  proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          start_new_session=True)
  try:
    _, stderr = proc.communicate(timeout=90)
  except subprocess.TimeoutExpired:
    os.killpg(proc.pid, signal.SIGKILL)  # the browser and its GPU and renderer processes
    proc.communicate()
    raise
  assert proc.returncode == 0, stderr[-2000:]
  # SwiftShader's performance notes ("GL Driver Message ... GPU stall") are not the page's.
  console = [m for m in _CONSOLE.findall(stderr) if 'GL Driver Message' not in m]
  return np.asarray(Image.open(shot).convert('RGB')), console


def _band_pixels(image: np.ndarray) -> list[int]:
  """Pixels of each pLDDT band's hue (shading changes brightness, not hue), best band first."""
  hsv = rgb_to_hsv(image / 255.0)
  coloured = (hsv[..., 1] > 0.4) & (hsv[..., 2] > 0.15)
  counts = []
  for _, _, colour, _ in plots.PLDDT_BANDS:
    hue = rgb_to_hsv(to_rgb(colour))[0]
    distance = np.abs(hsv[..., 0] - hue)
    distance = np.minimum(distance, 1 - distance) * 360
    counts.append(int((coloured & (distance < 6)).sum()))
  return counts


# The legend's swatches (about 16 x 16 pixels each) are all a page without a drawing shows.
MIN_BAND_PIXELS = 600


@pytest.mark.skipif(CHROMIUM is None, reason='chromium is not installed (apt-get install '
                    'chromium; .ci/run installs it)')
def test_viewer_draws_the_structure_in_plddt_colours(tmp_path, monkeypatch):
  _write_target(tmp_path, {})
  image, console = _open_in_chromium(tmp_path / report.REPORT_FILE, tmp_path / 'profile')
  assert console == []
  counts = _band_pixels(image)
  assert min(counts) >= MIN_BAND_PIXELS, counts

  # The same checks fail when the viewer library is broken (here: empty).
  empty = tmp_path / 'empty.js'
  empty.write_text('')
  monkeypatch.setattr(report, 'VIEWER_JS', empty)
  broken = tmp_path / 'broken'
  broken.mkdir()
  _write_target(broken, {})
  image, console = _open_in_chromium(broken / report.REPORT_FILE, tmp_path / 'profile')
  assert any('$3Dmol is not defined' in m for m in console), console
  assert max(_band_pixels(image)) < MIN_BAND_PIXELS
