"""report.html: one self-contained page per target, to look at a result in a browser.

The page holds the ranked structures in a 3D viewer coloured by pLDDT (AlphaFold
writes pLDDT into the B-factor column; the colours are AlphaFold DB's four bands,
plots.PLDDT_BANDS), ranked_0 shown first with a selector for the others, the pLDDT and
PAE plots, the ranking table and the job that made the result (af_jax.run.job).

Everything is inside the one file: the viewer library (3Dmol.js, BSD-3-Clause, vendored
minified in vendor/ with its LICENSE), the PDB texts and the PNGs (base64), so the page
opens offline, from a copy, or as an e-mail attachment. It is written through
outputs.write_atomic like every output, after the ranked structures and plots and before
ranking_debug.json (outputs.write_ranking's `before_ranking_file`), so a complete target
has its report.
"""

from __future__ import annotations

import base64
import html
import json
import pathlib
from collections.abc import Mapping, Sequence

from af_jax.errors import ConfigError
from af_jax.run import outputs, plots

REPORT_FILE = 'report.html'
VIEWER_JS = pathlib.Path(__file__).parent / 'vendor' / '3Dmol-min.js'
PLOTS = (('plddt.png', 'pLDDT per residue'), ('pae.png', 'Predicted aligned error'))

# Sequences that would end or re-open the inline <script> element the library sits in
# (HTML's script data states); a library holding them cannot be inlined as it is.
_SCRIPT_BREAKERS = ('</script', '<!--', '<script')

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }
h1 { font-size: 1.3em; } h2 { font-size: 1.1em; margin-top: 1.5em; }
/* The border is the frame's: the viewer's canvas covers its own element's border. */
.frame { display: inline-block; border: 1px solid #ccc; }
#viewer { position: relative; width: 800px; height: 600px; }
/* Red, a hue apart from the pLDDT colours, so only the viewer shows those. */
.warning { border-left: 0.4em solid #b00020; padding: 0.3em 0.6em; font-weight: bold; }
.legend span { display: inline-block; width: 1em; height: 1em; vertical-align: middle;
  margin: 0 0.3em 0 1em; }
table { border-collapse: collapse; font-size: 0.9em; }
td, th { border: 1px solid #ccc; padding: 0.2em 0.6em; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
img { max-width: 100%; }
"""

# Draws the chosen structure; any failure lands on the console (where a test looks) and
# in the viewer's box (where a reader looks).
_SCRIPT = """
(function () {
  const structures = JSON.parse(document.getElementById('structures').textContent);
  const bands = JSON.parse(document.getElementById('bands').textContent);
  const box = document.getElementById('viewer');
  function bandColour(atom) {
    for (const [low, colour] of bands) { if (atom.b >= low) return colour; }
    return bands[bands.length - 1][1];
  }
  let viewer = null;
  function show(i) {
    try {
      if (viewer === null) viewer = $3Dmol.createViewer(box, {backgroundColor: 'white'});
      viewer.removeAllModels();
      viewer.addModel(structures[i].pdb, 'pdb');
      viewer.setStyle({}, {cartoon: {colorfunc: bandColour}});
      viewer.zoomTo();
      viewer.render();
      document.body.dataset.shown = structures[i].file;
    } catch (e) {
      console.error('report: cannot draw ' + structures[i].file + ': ' + e);
      box.textContent = 'The 3D viewer could not draw ' + structures[i].file + ': ' + e;
    }
  }
  const select = document.getElementById('structure');
  select.addEventListener('change', () => show(Number(select.value)));
  show(0);
})();
"""


def viewer_library() -> str:
  """The vendored viewer's minified JavaScript, checked to be safe to inline."""
  try:
    text = VIEWER_JS.read_text(encoding='utf-8')
  except OSError as e:
    raise ConfigError(f'the report\'s viewer library {VIEWER_JS} cannot be read ({e}); '
                      'reinstall af_jax (pip install .) so its package data is there') from e
  lowered = text.lower()
  breakers = [s for s in _SCRIPT_BREAKERS if s in lowered]
  assert not breakers, f'{VIEWER_JS} holds {breakers}: it cannot be inlined in <script>'
  return text


def mean_plddt(pdb_text: str) -> float | None:
  """Mean B-factor of the CA atoms of a PDB text: a prediction's mean pLDDT (None without
  CA atoms)."""
  values = [float(line[60:66]) for line in pdb_text.splitlines()
            if line.startswith('ATOM') and line[12:16].strip() == 'CA']
  return sum(values) / len(values) if values else None


def _json_script(element_id: str, value) -> str:
  # `</` is escaped so no string in the data (a PDB REMARK, a file name) can end the
  # element; JSON reads `<\\/` back as `</`.
  text = json.dumps(value, allow_nan=False).replace('</', '<\\/')
  return f'<script type="application/json" id="{element_id}">{text}</script>'


def _settings_rows(settings: Mapping, prefix: str = '') -> list[tuple[str, str]]:
  """Nested settings flattened to (dotted key, value) rows."""
  rows = []
  for key, value in settings.items():
    name = f'{prefix}{key}'
    if isinstance(value, Mapping) and value:
      rows += _settings_rows(value, name + '.')
    elif isinstance(value, (list, tuple)):
      rows.append((name, ', '.join(str(v) for v in value)))
    else:
      rows.append((name, str(value)))
  return rows


def build_report(title: str, structures: Sequence[Mapping], score_label: str, *,
                 images: Mapping[str, bytes] | None = None, settings: Mapping | None = None,
                 warning: str | None = None) -> str:
  """The page's HTML text.

  Args:
    title: the page's heading (the target's name).
    structures: best first, each {'file': 'ranked_<i>.pdb', 'name': prediction name,
      'score': ranking score, 'pdb': the PDB text}.
    score_label: what the score is (ranking_debug.json's key: 'plddts', 'iptm+ptm').
    images: PNG file name (PLOTS) -> its bytes; missing plots are left out.
    settings: the job record (af_jax.run.job.make_job) and any other settings to list.
    warning: a line shown above everything (random weights).

  Returns:
    One self-contained HTML document.
  """
  if not structures:
    raise ValueError('a report needs at least one structure')
  esc = html.escape
  images = images or {}
  bands = [[low, colour] for low, _, colour, _ in plots.PLDDT_BANDS]
  legend = ''.join(f'<span style="background:{colour}"></span>{esc(label)}'
                   for _, _, colour, label in plots.PLDDT_BANDS)
  options = ''.join(
      f'<option value="{i}">{esc(s["file"])}: {esc(s["name"])}</option>'
      for i, s in enumerate(structures))
  rows = []
  for i, s in enumerate(structures):
    plddt = mean_plddt(s['pdb'])
    rows.append(f'<tr><td class="num">{i}</td><td>{esc(s["file"])}</td><td>{esc(s["name"])}'
                f'</td><td class="num">{float(s["score"]):.4f}</td><td class="num">'
                f'{"" if plddt is None else f"{plddt:.2f}"}</td></tr>')
  figures = ''.join(
      f'<h2>{esc(caption)}</h2><img alt="{esc(caption)}" '
      f'src="data:image/png;base64,{base64.b64encode(images[name]).decode("ascii")}">'
      for name, caption in PLOTS if name in images)
  setting_rows = ''.join(f'<tr><td>{esc(k)}</td><td>{esc(v)}</td></tr>'
                         for k, v in _settings_rows(settings or {}))
  data = [{'file': s['file'], 'name': s['name'], 'pdb': s['pdb']} for s in structures]
  return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{esc(title)}: af_jax report</title>
<style>{_STYLE}</style>
</head>
<body>
<h1>{esc(title)}</h1>
{f'<p class="warning">{esc(warning)}</p>' if warning else ''}
<h2>Structure</h2>
<p><label for="structure">Model</label> <select id="structure">{options}</select></p>
<div class="frame"><div id="viewer"></div></div>
<p class="legend">pLDDT:{legend}</p>
<h2>Ranking</h2>
<table><tr><th>rank</th><th>file</th><th>prediction</th><th>score ({esc(score_label)})</th>
<th>mean pLDDT</th></tr>{''.join(rows)}</table>
{figures}
<h2>Settings</h2>
<table>{setting_rows}</table>
{_json_script('structures', data)}
{_json_script('bands', bands)}
<script>{viewer_library()}</script>
<script>{_SCRIPT}</script>
</body>
</html>
"""


def write_report(target_dir: pathlib.Path, ranking: Mapping, score_label: str, *,
                 title: str | None = None, settings: Mapping | None = None) -> None:
  """report.html from a target's ranked structures and plots and its ranking.

  Args:
    target_dir: the target's directory, holding ranked_<i>.pdb and the plots.
    ranking: what ranking_debug.json holds (outputs.write_ranking): the scores under
      `score_label`, 'order', 'params' for random weights, the job under outputs.JOB_KEY.
    score_label: the scores' key in `ranking`.
    title: the page's heading (default: the directory's name).
    settings: more settings to list after the job's (e.g. relaxation).
  """
  order = ranking['order']
  structures = [{'file': f'ranked_{i}.pdb', 'name': name,
                 'score': ranking[score_label][name],
                 'pdb': (target_dir / f'ranked_{i}.pdb').read_text()}
                for i, name in enumerate(order)]
  images = {name: (target_dir / name).read_bytes() for name, _ in PLOTS
            if (target_dir / name).is_file()}
  shown = {**(ranking.get(outputs.JOB_KEY) or {}), **(settings or {})}
  page = build_report(title or target_dir.name, structures, score_label, images=images,
                      settings=shown, warning=ranking.get('params'))
  outputs.write_atomic(target_dir / REPORT_FILE, page.encode('utf-8'))
