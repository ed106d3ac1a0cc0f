"""run_inference.py end to end on real chains, and its one-line errors on bad input.

A tiny model (tests/model/tiny.py) with random weights keeps each run to seconds;
everything else is the real command line: real FASTA records and alignments from
../shared/data, templates from the template fixture, a jackhmmer search of a small
real database, and the written structures read back by biopython and gemmi.
"""

import json
import pathlib
import pickle
import re
import shutil
import subprocess
import sys

import gemmi
import numpy as np
import pytest
from Bio.PDB import PDBParser

from af_jax.data import parsers
from tests.data.shared_data import CHAIN_2Q2K, MINI_DATABASES, SHARED_DATA, TEMPLATE_FIXTURE
from tests.cli_runner import help_of, recycle_lines, run_script, scratch_dir
from tests.model.tiny import TINY

ROOT = pathlib.Path(__file__).resolve().parents[1]
SCRIPT = ROOT / 'run_inference.py'
MSA_5ZYH = SHARED_DATA / 'chains_with_msa' / 'protenix_msa_demo' / 'msa' / '0' / 'non_pairing.a3m'

# The runs share one compilation cache, kept out of the user's ~/.cache.
CACHE_DIR = scratch_dir('af_jax_test_xla_')

SMALL = [f'--config.{k}={v}' for k, v in TINY.items()] + [
    '--num_recycle=1', '--config.data.eval.max_msa_clusters=16',
    '--config.data.common.max_extra_msa=32', '--buckets=80,256', '--random_params']


def run(args, check=True, devices=1, umask=-1):
  return run_script(SCRIPT.name, args, cache_dir=CACHE_DIR, check=check, devices=devices,
                    umask=umask)


def first_row(a3m_path):
  return parsers.parse_a3m(pathlib.Path(a3m_path).read_text()).sequences[0]


@pytest.fixture(scope='module')
def three_chains(tmp_path_factory):
  """One run over three real chains with precomputed MSAs (one with templates), 2 seeds."""
  tmp = tmp_path_factory.mktemp('fold')
  out = tmp / 'out'
  short = parsers.read_fasta(TEMPLATE_FIXTURE / 'short.fasta')[0].sequence
  seqs = {'2q2k_A': first_row(CHAIN_2Q2K / 'alignments' / '2q2k_A' / 'bfd_uniclust_hits.a3m'),
          'short': short, '5zyh_A': first_row(MSA_5ZYH)}
  # Longest first in the file: the run must sort them.
  fasta = tmp / 'targets.fasta'
  fasta.write_text(''.join(f'>{n} test chain\n{s}\n' for n, s in reversed(seqs.items())))
  # AlphaFold's use_precomputed_msas layout: <output_dir>/<target>/msas/.
  for name, files in {'2q2k_A': sorted((CHAIN_2Q2K / 'alignments' / '2q2k_A').iterdir()),
                      'short': sorted((TEMPLATE_FIXTURE / 'alignments').iterdir()),
                      '5zyh_A': [MSA_5ZYH]}.items():
    msa_dir = out / name / 'msas'
    msa_dir.mkdir(parents=True)
    for f in files:
      shutil.copy(f, msa_dir / f.name)
  args = [f'--fasta_paths={fasta}', f'--output_dir={out}', '--msa_mode=precomputed',
          '--model_names=model_1_ptm', '--num_seeds=2', '--use_templates',
          f'--template_mmcif_dir={TEMPLATE_FIXTURE / "template_mmcifs"}',
          '--max_template_date=2100-01-01', *SMALL]
  proc = run(args)
  return out, seqs, args, proc


def test_outputs_of_three_real_chains(three_chains):
  out, seqs, _, proc = three_chains
  # One progress line per target, shortest first (the FASTA lists them longest first).
  progress = [line.split('] ', 1)[1] for line in proc.stderr.splitlines()
              if 'residues)' in line and '] [' in line]
  assert progress == ['[1/3] 2q2k_A (70 residues)', '[2/3] short (73 residues)',
                      '[3/3] 5zyh_A (237 residues)'], progress
  for name, seq in seqs.items():
    d = out / name
    ranking = json.loads((d / 'ranking_debug.json').read_text())
    preds = ['model_1_ptm_pred_0', 'model_1_ptm_pred_1']
    assert sorted(ranking['order']) == preds
    assert ranking['order'] == sorted(preds, key=lambda p: -ranking['plddts'][p])
    assert 'RANDOM' in ranking['params']
    for pred in preds:
      conf = json.loads((d / f'confidence_{pred}.json').read_text())
      assert len(conf['confidenceScore']) == len(seq)
      pae = json.loads((d / f'pae_{pred}.json').read_text())[0]
      assert np.shape(pae['predicted_aligned_error']) == (len(seq), len(seq))
      result = pickle.loads((d / f'result_{pred}.pkl').read_bytes())
      assert result['structure_module']['final_atom_positions'].shape == (len(seq), 37, 3)
      np.testing.assert_allclose(np.mean(result['plddt']), ranking['plddts'][pred], rtol=1e-5)
    # The written structures parse back, in both formats, with the target's sequence.
    structure = PDBParser(QUIET=True).get_structure(name, str(d / 'ranked_0.pdb'))
    assert len(list(structure.get_residues())) == len(seq)
    for fmt in ('pdb', 'cif'):
      st = gemmi.read_structure(str(d / f'ranked_0.{fmt}'))
      residues = [r for r in st[0][0]]
      assert gemmi.one_letter_code([r.name for r in residues]).upper() == seq
      best = ranking['order'][0]
      plddt = json.loads((d / f'confidence_{best}.json').read_text())['confidenceScore']
      np.testing.assert_allclose([r[0].b_iso for r in residues], plddt, atol=0.01)
    for png in ('plddt.png', 'pae.png'):
      assert (d / png).read_bytes()[:4] == b'\x89PNG'
    # The page to look at: both ranked structures, both plots, the job's settings.
    page = (d / 'report.html').read_text(encoding='utf-8')
    assert page.count('<option ') == 2 and page.count('src="data:image/png;base64,') == 2
    assert json.dumps((d / 'ranked_1.pdb').read_text())[1:-1] in page
    assert f'<h1>{name} ({len(seq)} residues)</h1>' in page and 'RANDOM' in page
    assert '<td>seeds.per_model</td><td>2</td>' in page
    # AlphaFold's flat name -> seconds; the stages do not overlap, so they add up to the
    # target's wall time (its "done in" line).
    timings = json.loads((d / 'timings.json').read_text())
    assert {'features', 'outputs'} | {f'{stage}_{pred}' for pred in preds for stage in (
        'process_features', 'chunk_plan', 'compile', 'predict')} == set(timings)
    assert all(isinstance(v, float) and v >= 0 for v in timings.values()), timings
    wall = float(re.search(rf'\] {name} done in ([\d.]+) s', proc.stderr)[1])
    assert sum(timings.values()) == pytest.approx(wall, rel=0.05, abs=0.05), (timings, wall)
    # --chunk=auto (the default) records the plan AutoChunk chose and the figures behind it.
    plan = ranking['chunk_plans']['model_1_ptm_pred_0']
    assert plan['plan'] and plan['predicted_peak_bytes'] <= plan['budget_bytes']
    feats = pickle.loads((d / 'features.pkl').read_bytes())
    assert feats['msa'].shape[0] > 1 and feats['aatype'].shape[0] == len(seq)
    assert not [p for p in d.rglob('*') if 'tmp' in p.name]
  # Templates came from the fixture for the one target that has an hhr.
  assert len(pickle.loads((out / 'short' / 'features.pkl').read_bytes())[
      'template_domain_names']) > 0


def test_log_is_one_short_line_per_stage(three_chains):
  out, seqs, _, proc = three_chains
  info = [line for line in proc.stderr.splitlines() if line.startswith('I')]
  lengths = {name: len(pickle.loads((out / name / 'features.pkl').read_bytes())['msa'])
             for name in seqs}
  assert info and not [line for line in info if len(line) > 160]
  assert not [line for line in info if re.search('[0-9a-f]{32}', line)]  # cache keys: DEBUG
  for chatter in ('Resetting cache', 'Unable to initialize backend', 'compilation_cache.py',
                  'xla_bridge.py', 'Copied ', 'sequences from', 'AutoChunk: rung'):
    assert not [line for line in info if chatter in line], chatter
  preds = ['model_1_ptm_pred_0', 'model_1_ptm_pred_1']
  for name in seqs:
    # One line each: the target, its MSA files, its features, every prediction, the end.
    stages = [f'] {name} (', f' in {name}/msas (delete', f'] {name}: {lengths[name]} MSA rows; ',
              f'] {name} done in ',
              *(f'] {name} {p}: executable ' for p in preds),
              *(f'] {name} {p}: mean pLDDT ' for p in preds)]
    for stage in stages:
      assert sum(stage in line for line in info) == 1, (stage, info)
  assert sum('AutoChunk L=' in line for line in info) == len(seqs) * len(preds)


def test_progress_lines_per_recycle_and_per_target(three_chains):
  _, seqs, _, proc = three_chains
  info = [line for line in proc.stderr.splitlines() if line.startswith('I')]
  # The weights, once per model, with the time taken.
  assert sum('model_1_ptm: random weights built (--random_params) and placed on 1 device(s) in '
             in line for line in info) == 1
  # Every prediction: one line per recycle (--num_recycle=1: the first pass and one recycle),
  # in order, with a pLDDT, a pTM and (after the first pass) the CA change.
  lines = recycle_lines(proc.stderr)
  preds = [(name, f'model_1_ptm_pred_{s}') for name in seqs for s in range(2)]
  assert sorted({(d['target'], d['pred']) for d in lines}) == sorted(preds)
  for name, pred in preds:
    mine = [d for d in lines if (d['target'], d['pred']) == (name, pred)]
    assert [(d['recycle'], d['of']) for d in mine] == [(0, 1), (1, 1)], mine
    assert all(0 < d['plddt'] < 100 and 0 < d['ptm'] <= 1 and d['iptm'] is None for d in mine)
    assert mine[0]['ca'] is None and mine[1]['ca'] >= 0
  # After each target: how many are done, the throughput and the time left.
  run_lines = [line.split('] ', 1)[1] for line in info if '] run: ' in line]
  assert len(run_lines) == len(seqs), run_lines
  for k, line in enumerate(run_lines, 1):
    m = re.fullmatch(rf'run: {k}/3 targets done, ([\d.]+) residues/s, (\d+) targets/h, '
                     r'ETA (\d+):(\d\d):(\d\d)', line)
    assert m and float(m[1]) > 0, line
  assert run_lines[-1].endswith('ETA 0:00:00')


def test_rerun_skips_complete_targets(three_chains):
  out, seqs, args, _ = three_chains
  before = {p: p.stat().st_mtime_ns for p in out.rglob('*') if p.is_file()}
  proc = run(args)
  assert proc.stderr.count('outputs complete') == len(seqs)
  assert 'run: ' not in proc.stderr and not recycle_lines(proc.stderr)
  assert {p: p.stat().st_mtime_ns for p in out.rglob('*') if p.is_file()} == before


def _database_query():
  """A record of the small UniRef90 sample, so the search must find at least itself."""
  text = (MINI_DATABASES / 'uniref90__subsampled_1000.fasta').read_text()
  for block in text.split('>')[1:]:
    header, _, body = block.partition('\n')
    seq = body.replace('\n', '')
    if 40 <= len(seq) <= 80 and set(seq) <= set('ACDEFGHIKLMNPQRSTVWY'):
      return header.split()[0], seq
  raise AssertionError('no short standard sequence in the database')


def test_jackhmmer_search_of_a_small_database(tmp_path):
  _, db_seq = _database_query()
  # A close homologue of a database record (every 10th residue changed), so the hit is a
  # distinct MSA row rather than a duplicate of the query.
  seq = ''.join(('G' if c == 'A' else 'A') if i % 10 == 5 else c for i, c in enumerate(db_seq))
  fasta = tmp_path / 'q.fasta'
  fasta.write_text(f'>query1\n{seq}\n')
  # A group-shared umask, as on a cluster: every output follows it like any new file.
  # --verbosity=1 (DEBUG) shows what INFO leaves out: cache keys, JAX's own lines.
  proc = run([f'--fasta_paths={fasta}', f'--output_dir={tmp_path / "out"}',
              '--msa_mode=jackhmmer',
              f'--uniref90_database_path={MINI_DATABASES / "uniref90__subsampled_1000.fasta"}',
              '--model_names=model_3_ptm', '--verbosity=1', *SMALL], umask=0o002)
  assert re.search('compile cache key of .*[0-9a-f]{32}', proc.stderr)
  assert 'Resetting cache' in proc.stderr
  d = tmp_path / 'out' / 'query1'
  modes = {str(p.relative_to(d)): p.stat().st_mode & 0o777 for p in d.rglob('*')}
  assert modes['msas/uniref90_hits.sto'] == 0o664 and modes['ranking_debug.json'] == 0o664
  assert {m for p, m in modes.items() if (d / p).is_file()} == {0o664}, modes
  assert {m for p, m in modes.items() if (d / p).is_dir()} == {0o775}, modes
  sto = parsers.read_msa(d / 'msas' / 'uniref90_hits.sto')
  assert sto.sequences[0] == seq and len(sto) >= 2
  assert pickle.loads((d / 'features.pkl').read_bytes())['msa'].shape[0] >= 2
  assert (d / 'ranked_0.pdb').is_file()


def test_help_lists_every_flag_once_under_headings():
  usage, headings, listed, defined = help_of(SCRIPT.name, cache_dir=CACHE_DIR)
  assert headings == ['Inputs and outputs', 'MSA and templates', 'Model and recycling',
                      'Memory and devices', 'Compilation cache and XLA', 'Relaxation',
                      'Many hosts']
  assert len(listed) == len(set(listed)) and set(listed) == defined
  assert {'compilation_cache_dir', 'xla_flags', 'fasta_paths', 'dap'} <= set(listed)
  # The example is a shell command as written: continued lines, no runs of spaces inside.
  assert 'out \\\n      --params_dir=' in usage
  assert not [line for line in usage.splitlines() if '  ' in line.strip()]


# ---------------------------------------------------------------------------- bad input


@pytest.fixture(scope='module')
def bad_inputs(tmp_path_factory):
  tmp = tmp_path_factory.mktemp('bad')
  good = tmp / 'good.fasta'
  good.write_text('>t1\nMKVLAAGIVG\n')
  (tmp / 'letters.fasta').write_text('>t1\nMKV1LAAG\n')
  (tmp / 'empty.fasta').write_text('')
  (tmp / 'malformed.fasta').write_text('MKVLAAGIVG\n')
  (tmp / 'dupes.fasta').write_text('>t1\nMKVLA\n>t1\nMKVLG\n')
  (tmp / 'a_file').write_text('')
  params = tmp / 'params'
  params.mkdir()
  (params / 'params_model_1_ptm.npz').write_bytes(b'not a zip file')
  other = tmp / 'other'
  other.mkdir()
  # Weights of model_3_ptm (no template stack) saved under model_1_ptm's name.
  code = ('import sys; sys.path.insert(0, "."); import af_jax; from af_jax.model.build import '
          'build_model; from tests.model.tiny import tiny_config; '
          f'af_jax.save_params("{other}/params_model_1_ptm.npz", '
          'build_model(tiny_config("model_3_ptm").model))')
  subprocess.run([sys.executable, '-c', code], cwd=ROOT, check=True, timeout=300)
  return tmp


TINY_FLAGS = [f'--config.{k}={v}' for k, v in TINY.items()]
BAD = {
    'letters': (['--fasta_paths={tmp}/letters.fasta'], '1'),
    'empty': (['--fasta_paths={tmp}/empty.fasta'], 'empty'),
    'malformed': (['--fasta_paths={tmp}/malformed.fasta'], '>'),
    'duplicate names': (['--fasta_paths={tmp}/dupes.fasta'], 't1'),
    'msa query mismatch': (['--fasta_paths={tmp}/good.fasta', '--msa_mode=precomputed',
                            f'--msa_paths={CHAIN_2Q2K}/alignments/2q2k_A/mgnify_hits.sto'],
                           'does not match'),
    'missing params': (['--fasta_paths={tmp}/good.fasta', '--params_dir={tmp}/nowhere',
                        '--norandom_params'], 'params_model_1_ptm.npz'),
    'corrupt params': (['--fasta_paths={tmp}/good.fasta', '--params_dir={tmp}/params',
                        '--norandom_params'], 'params_model_1_ptm.npz'),
    'params of another preset': (['--fasta_paths={tmp}/good.fasta', '--params_dir={tmp}/other',
                                  '--norandom_params'], 'model_1_ptm'),
    'missing database': (['--fasta_paths={tmp}/good.fasta', '--msa_mode=jackhmmer',
                          '--uniref90_database_path={tmp}/no_such_db.fasta'], 'no_such_db'),
    'missing binary': (['--fasta_paths={tmp}/good.fasta', '--msa_mode=jackhmmer',
                        f'--uniref90_database_path={MINI_DATABASES}/'
                        'uniref90__subsampled_1000.fasta',
                        '--jackhmmer_binary_path={tmp}/bin/jackhmmer'], 'jackhmmer'),
    'unwritable output dir': (['--fasta_paths={tmp}/good.fasta'], 'output_dir'),
    'bad chunk flag': (['--fasta_paths={tmp}/good.fasta', '--chunk=some'], '--chunk'),
    'memory budget too small': (['--fasta_paths={tmp}/good.fasta', '--memory_budget=64KB'],
                                'budget'),
    'unknown config key': (['--fasta_paths={tmp}/good.fasta', '--config.model.no_such=1'],
                           'no_such'),
    'more dap devices than there are': (['--fasta_paths={tmp}/good.fasta', '--dap=4'],
                                        '--dap=4 needs 4 devices'),
}


@pytest.mark.parametrize('case', list(BAD))
def test_bad_input_is_one_line_and_nonzero(bad_inputs, case):
  args, needle = BAD[case]
  tmp = bad_inputs
  out = tmp / 'a_file' / 'out' if case == 'unwritable output dir' else tmp / f'out_{case[:8]}'
  args = [a.format(tmp=tmp) for a in args]
  # The case's own flags come last, so they win (e.g. --no-random_params).
  proc = run([f'--output_dir={out}', '--model_names=model_1_ptm', '--random_params',
              *TINY_FLAGS, *args], check=False)
  assert proc.returncode == 2, proc.stderr[-2000:]
  assert 'Traceback' not in proc.stderr
  last = proc.stderr.strip().splitlines()[-1]
  assert last.startswith('error: ') and needle in last, last
  # Nothing was predicted: no structure or ranking files anywhere.
  if out.exists():
    assert not list(out.rglob('*.pdb')) and not list(out.rglob('ranking_debug.json'))


@pytest.fixture(scope='module')
def features_run(three_chains, tmp_path_factory):
  """model_3_ptm on the 2q2k_A features.pkl the three-chain run wrote."""
  out, _, _, _ = three_chains
  src = out / '2q2k_A' / 'features.pkl'
  tmp = tmp_path_factory.mktemp('features_run')
  args = [f'--features_paths={src}', '--model_names=model_3_ptm', *SMALL]
  run([f'--output_dir={tmp}', *args])
  return tmp, src, args


def _positions(target_dir):
  with open(target_dir / 'result_model_3_ptm_pred_0.pkl', 'rb') as f:
    return pickle.load(f)['structure_module']['final_atom_positions']


def test_features_pkl_is_accepted_as_input(three_chains, features_run):
  _, seqs, _, _ = three_chains
  tmp_path, src, _ = features_run
  # The target is named after the directory holding features.pkl (AlphaFold's layout).
  d = tmp_path / '2q2k_A'
  assert pickle.loads((d / 'features.pkl').read_bytes())['msa'].shape == \
      pickle.loads(src.read_bytes())['msa'].shape
  structure = PDBParser(QUIET=True).get_structure('x', str(d / 'ranked_0.pdb'))
  assert len(list(structure.get_residues())) == len(seqs['2q2k_A'])


def test_dap_run_matches_one_device(features_run, tmp_path):
  """--dap=2 over two (fake CPU) devices folds the same structure as one device."""
  one_device, _, args = features_run
  proc = run([f'--output_dir={tmp_path}', '--dap=2', *args], devices=2)
  assert 'dap2' in proc.stderr  # the executable is the sharded one
  want, got = _positions(one_device / '2q2k_A'), _positions(tmp_path / '2q2k_A')
  assert np.abs(want).max() > 1.0
  np.testing.assert_allclose(got, want, atol=1e-3)


def test_run_clock_counts_skipped_targets_out_of_the_rate():
  from af_jax.run.fold import RunClock
  clock = RunClock([50, 100, 150, 200])
  assert clock.describe() == 'run: 0/4 targets done'
  clock.skipped(50)
  assert clock.describe() == 'run: 1/4 targets done (1 skipped)'
  clock.folded(100, 10.0)  # 10 residues/s; 350 residues left: 35 s
  assert clock.describe() == ('run: 2/4 targets done (1 skipped), 10.0 residues/s, '
                              '360 targets/h, ETA 0:00:35')
  clock.folded(150, 3590.0)  # 250 residues in 3600 s; 200 left: 2880 s
  assert clock.describe().endswith(', 0.1 residues/s, 2 targets/h, ETA 0:48:00')
