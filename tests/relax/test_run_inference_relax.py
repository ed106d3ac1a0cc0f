"""run_inference.py --models_to_relax: relaxed files, ranked_0 from them, metrics, timings;
and one error line when OpenMM is missing.

The runs reuse tests/test_run_inference.py's tiny model, flags and compilation cache; the
relaxed target is 2Q2K chain A with its real MSAs, the shapes test_run_inference.py's
features.pkl test compiles, so a full test session compiles them once.
"""

import json
import subprocess
import sys

import gemmi
import numpy as np
import pytest

from tests.cli_runner import child_env
from tests.test_run_inference import CACHE_DIR, CHAIN_2Q2K, ROOT, SCRIPT, SMALL, first_row

PRED = 'model_3_ptm_pred_0'


def run_patched(args, prelude: str):
  """run_inference.py in a fresh interpreter that first runs `prelude`."""
  code = (f'{prelude}\nimport runpy, sys\nsys.argv = {[str(SCRIPT), *map(str, args)]!r}\n'
          f'runpy.run_path({str(SCRIPT)!r}, run_name="__main__")')
  env = child_env(CACHE_DIR)
  return subprocess.run([sys.executable, '-c', code], cwd=ROOT, env=env, capture_output=True,
                        text=True, timeout=900)


# Random weights give a tangle of overlapping atoms that Amber needs minutes to untangle:
# cap the minimisation here. test_relax.py relaxes real structures with the defaults.
CAPPED = ('import functools, af_jax.relax as r\n'
          'r.relax_protein = functools.partial(r.relax_protein, max_iterations=10, '
          'max_outer_iterations=1)')


@pytest.fixture(scope='module')
def relaxed_run(tmp_path_factory):
  tmp = tmp_path_factory.mktemp('relax')
  seq = first_row(CHAIN_2Q2K / 'alignments' / '2q2k_A' / 'bfd_uniclust_hits.a3m')
  fasta = tmp / 't.fasta'
  fasta.write_text(f'>2q2k_A\n{seq}\n')
  args = [f'--fasta_paths={fasta}', f'--output_dir={tmp / "out"}', '--model_names=model_3_ptm',
          '--msa_mode=precomputed', f'--msa_paths={CHAIN_2Q2K / "alignments" / "2q2k_A"}',
          '--models_to_relax=best', *SMALL]
  proc = run_patched(args, CAPPED)
  assert proc.returncode == 0, proc.stderr[-3000:]
  return tmp / 'out' / '2q2k_A', seq, args


def test_best_model_is_relaxed_and_ranked(relaxed_run):
  d, seq, _ = relaxed_run
  relaxed = (d / f'relaxed_{PRED}.pdb').read_text()
  assert (d / 'ranked_0.pdb').read_text() == relaxed
  assert any(line[76:78].strip() == 'H' for line in relaxed.splitlines()
             if line.startswith('ATOM'))
  # The unrelaxed model is still there, as written (heavy atoms only).
  unrelaxed = (d / f'unrelaxed_{PRED}.pdb').read_text()
  assert unrelaxed != relaxed and ' H  ' not in unrelaxed
  plddt = json.loads((d / f'confidence_{PRED}.json').read_text())['confidenceScore']
  for name in (f'relaxed_{PRED}.cif', 'ranked_0.cif', 'ranked_0.pdb'):
    residues = list(gemmi.read_structure(str(d / name))[0][0])
    assert gemmi.one_letter_code([r.name for r in residues]).upper() == seq
    np.testing.assert_allclose([max(a.b_iso for a in r) for r in residues], plddt, atol=0.01)
  metrics = json.loads((d / 'relax_metrics.json').read_text())
  assert list(metrics) == [PRED]
  assert len(metrics[PRED]['remaining_violations']) == len(seq)
  assert metrics[PRED]['remaining_violations_count'] == sum(metrics[PRED]['remaining_violations'])
  assert f'relax_{PRED}' in json.loads((d / 'timings.json').read_text())


def test_rerun_with_relaxation_skips_the_complete_target(relaxed_run):
  d, _, args = relaxed_run
  proc = run_patched(args, CAPPED)
  assert proc.returncode == 0 and 'outputs complete' in proc.stderr, proc.stderr[-2000:]


def test_missing_openmm_fails_up_front_in_one_line(tmp_path):
  fasta = tmp_path / 't.fasta'
  fasta.write_text('>t1\nMKVLAAGIVG\n')
  out = tmp_path / 'out'
  proc = run_patched([f'--fasta_paths={fasta}', f'--output_dir={out}', '--models_to_relax=best',
                      '--model_names=model_3_ptm', *SMALL],
                     "import sys; sys.modules['openmm'] = None  # import openmm fails")
  assert proc.returncode == 2, proc.stderr[-2000:]
  assert 'Traceback' not in proc.stderr
  last = proc.stderr.strip().splitlines()[-1]
  assert last.startswith('error: ') and "pip install 'af_jax[relax]'" in last, last
  assert not out.exists() or not list(out.rglob('*'))  # before any target was started
