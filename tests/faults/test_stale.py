"""Re-runs never keep another job's result (issue 25, item 1).

A target counts as complete only when the job recorded in its ranking_debug.json equals
the one asked: each field changed alone folds it again, replacing the old outputs whole,
with one WARNING naming the field; nothing changed skips it. Every run is the real
command line on a tiny model (tests/faults/digest_runs.py).
"""

import json
import shutil
import signal
import subprocess
import sys

import pytest

import af_jax
from af_jax.run import job as af_job
from af_jax.run import outputs
from tests.faults import digest_runs
from tests.cli_runner import ROOT, child_env
from tests.faults.digest_runs import MODEL, recorded_job, run, snapshot

SEQUENCES = {
    'same': 'MKVLAAGIVGLLLAAGCS',
    'seqchg': 'MKTAYIAKQRQISFVKSH',
    'verchg': 'MSDNELKQRLEALLKAQG',
    'norec': 'MAHHHHHHVDDDDKMLEA',
    'partial': 'MGSSHHHHHHSSGLVPRG',
    'missing': 'MQIFVKTLTGKTITLEVE',
}
FEATURES_TARGET = 'featchg'


def _fasta(path, sequences):
  path.write_text(''.join(f'>{name}\n{seq}\n' for name, seq in sequences.items()))
  return path


def _warnings(stderr):
  """The WARNING lines about outputs made by another job."""
  return [line for line in stderr.splitlines()
          if line.startswith('W') and 'folding again and replacing them' in line]


def _changed(stderr, target):
  lines = [line for line in _warnings(stderr) if f'] {target}: ' in line]
  assert len(lines) == 1, stderr[-3000:]
  return lines[0].split('(changed: ', 1)[1].split(')', 1)[0].split(', ')


@pytest.fixture(scope='module')
def base(tmp_path_factory):
  """Six FASTA targets and one features.pkl target folded with a params file."""
  tmp = tmp_path_factory.mktemp('stale')
  flat = digest_runs.tiny_flat_params(MODEL, seed=0)
  digest_runs.save_params(tmp / 'params', flat)
  digest_runs.save_params(tmp / 'params', flat, model_name='model_4_ptm')  # same architecture
  digest_runs.save_params(tmp / 'params_b', digest_runs.tiny_flat_params(MODEL, seed=1))
  features_pkl = tmp / 'features' / FEATURES_TARGET / 'features.pkl'
  digest_runs.write_features(features_pkl, 'MKVIFLKDVKGKGKKGEI', ('MKVIFLKDVKGQGKKGEI',))
  fasta = _fasta(tmp / 'targets.fasta', SEQUENCES)
  out = tmp / 'out'
  args = [f'--fasta_paths={fasta}', f'--features_paths={features_pkl}', f'--output_dir={out}',
          f'--params_dir={tmp / "params"}']
  proc = run(args)
  assert not _warnings(proc.stderr)
  return tmp, out, args


def _one_target(base, tmp_path, name='same'):
  """A copy of the base run's output for one FASTA target, and that target's arguments."""
  src, out, _ = base
  shutil.copytree(out / name, tmp_path / 'out' / name)
  fasta = _fasta(tmp_path / 'one.fasta', {name: SEQUENCES[name]})
  return tmp_path / 'out' / name, [f'--fasta_paths={fasta}', f'--output_dir={tmp_path / "out"}',
                                   f'--params_dir={src / "params"}']


def test_per_target_fields_refold_only_the_changed_targets(base, tmp_path):
  _, out, args = base
  shutil.copytree(out, tmp_path / 'out')
  out = tmp_path / 'out'
  changed = dict(SEQUENCES, seqchg='MKTAYIAKQRQISFVKAH')  # one residue, same length
  fasta = _fasta(tmp_path / 'targets.fasta', changed)
  features_pkl = tmp_path / 'features' / FEATURES_TARGET / 'features.pkl'
  digest_runs.write_features(features_pkl, 'MKVIFLKDVKGKGKKGEI', ('MKVIFLKDVKGQGKKGAI',))
  for name, edit in {'verchg': lambda job: job.update(af_jax_version='0.0.1'),
                     'norec': lambda job: job.clear()}.items():
    ranking = json.loads((out / name / 'ranking_debug.json').read_text())
    edit(ranking['job'])  # as an older af_jax would have written it
    if not ranking['job']:
      del ranking['job']
    (out / name / 'ranking_debug.json').write_text(json.dumps(ranking))
  (out / 'partial' / 'ranking_debug.json').unlink()  # what a crash before the end leaves
  (out / 'missing' / 'ranked_0.pdb').unlink()
  before = snapshot(out / 'same')
  old_structure = (out / 'seqchg' / 'ranked_0.pdb').read_text()

  proc = run([f'--fasta_paths={fasta}', f'--features_paths={features_pkl}',
              f'--output_dir={out}', *args[3:]])

  assert _changed(proc.stderr, 'seqchg') == ['sequence']
  assert _changed(proc.stderr, FEATURES_TARGET) == ['features']
  assert _changed(proc.stderr, 'verchg') == ['af_jax_version']
  assert 'norec: the outputs in' in proc.stderr and 'record no job' in proc.stderr
  # Incomplete outputs are folded again without a warning about another job.
  assert len(_warnings(proc.stderr)) == 4
  assert proc.stderr.count('outputs complete') == 1
  assert snapshot(out / 'same') == before
  for name in ('seqchg', 'verchg', 'norec', 'partial', 'missing', FEATURES_TARGET):
    assert (out / name / 'ranked_0.pdb').is_file()
    assert recorded_job(out / name)['af_jax_version'] == af_jax.__version__
  assert (out / 'seqchg' / 'ranked_0.pdb').read_text() != old_structure
  # The same arguments again: everything is complete now.
  again = run([f'--fasta_paths={fasta}', f'--features_paths={features_pkl}',
               f'--output_dir={out}', *args[3:]])
  assert again.stderr.count('outputs complete') == len(SEQUENCES) + 1
  assert not _warnings(again.stderr)


# Run-wide fields: (extra flags, the one field they change).
RUN_WIDE = {
    'weights file': (['--params_dir={tmp}/params_b'], 'weights'),
    'random weights': (['--random_params'], 'weights'),
    'random seed': (['--random_seed=1'], 'seeds'),
    'num seeds': (['--num_seeds=2'], 'seeds'),
    'recycles': (['--num_recycle=1'], 'recycles'),
    'precision': (['--precision=bfloat16'], 'precision'),
    'config override': (['--config.model.heads.structure_module.position_scale=5.0'], 'config'),
    'models': (['--model_names=model_4_ptm'], 'models'),
}


@pytest.mark.parametrize('case', list(RUN_WIDE))
def test_each_run_wide_field_refolds_with_a_warning_naming_it(base, tmp_path, case):
  flags, field = RUN_WIDE[case]
  target_dir, args = _one_target(base, tmp_path)
  old_job = recorded_job(target_dir)
  old_files = set(snapshot(target_dir))
  proc = run([*args, *(f.format(tmp=base[0]) for f in flags)])
  assert _changed(proc.stderr, 'same') == [field]
  new_job = recorded_job(target_dir)
  assert af_job.changed_fields(old_job, new_job) == [field]
  files = set(snapshot(target_dir))
  if field == 'models':
    # Replaced whole: none of the old model's files are left beside the new one's.
    assert not [f for f in files if MODEL in f]
    assert {f.replace('model_4_ptm', MODEL) for f in files} == old_files
  elif case == 'num seeds':
    assert f'unrelaxed_{MODEL}_pred_1.pdb' in files
  else:
    assert files == old_files
  assert not [f for f in files if '.tmp' in f]


def test_overrides_that_do_not_change_the_function_skip(base, tmp_path):
  target_dir, args = _one_target(base, tmp_path)
  before = snapshot(target_dir)
  proc = run([*args, '--config.model.global_config.subbatch_size=64', '--chunk=8',
              '--buckets=32,64'])
  assert 'outputs complete' in proc.stderr and not _warnings(proc.stderr)
  assert snapshot(target_dir) == before


def _a3m(path, query, rows):
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text(''.join(f'>{name}\n{seq}\n' for name, seq in [('query', query), *rows]))
  return path


@pytest.fixture(scope='module')
def precomputed(base, tmp_path_factory):
  """The 'same' target folded again from a precomputed MSA (--msa_paths)."""
  tmp = tmp_path_factory.mktemp('precomputed')
  target_dir, args = _one_target(base, tmp)
  query = SEQUENCES['same']
  a3m = _a3m(tmp / 'msa_a' / 'hits.a3m', query, [('hit1', 'MKVLAAGIVGLLLAAGAS')])
  flags = [*args, '--msa_mode=precomputed']
  proc = run([*flags, f'--msa_paths={a3m}'])
  assert _changed(proc.stderr, 'same') == ['msas']
  return tmp, target_dir, flags, a3m


def _copy(precomputed, tmp_path):
  _, target_dir, flags, a3m = precomputed
  shutil.copytree(target_dir, tmp_path / 'out' / 'same')
  flags = [f'--output_dir={tmp_path / "out"}' if f.startswith('--output_dir=') else f
           for f in flags]
  return tmp_path / 'out' / 'same', flags, a3m


def test_msa_contents_are_part_of_the_job(precomputed, tmp_path):
  target_dir, flags, a3m = _copy(precomputed, tmp_path)
  # The same name, another row: a different alignment.
  other = _a3m(tmp_path / 'msa_b' / 'hits.a3m', SEQUENCES['same'],
               [('hit1', 'MKVLAAGIVGLLLAAGAS'), ('hit2', 'MKVLAPGIVGLLLAAGCS')])
  proc = run([*flags, f'--msa_paths={other}'])
  assert _changed(proc.stderr, 'same') == ['msas']
  assert (target_dir / 'msas' / 'hits.a3m').read_text() == other.read_text()
  # The alignment now in msas/ is what a run without --msa_paths reads: nothing changed.
  proc = run(flags)
  assert 'outputs complete' in proc.stderr and not _warnings(proc.stderr)
  # An edit of that file in place is a change again.
  (target_dir / 'msas' / 'hits.a3m').write_text(a3m.read_text())
  proc = run(flags)
  assert _changed(proc.stderr, 'same') == ['msas']


def test_a_refused_msa_is_not_copied_into_the_target(precomputed, tmp_path):
  target_dir, flags, _ = _copy(precomputed, tmp_path)
  before = snapshot(target_dir)
  bad = _a3m(tmp_path / 'bad' / 'other.a3m', SEQUENCES['seqchg'], [])
  proc = run([*flags, f'--msa_paths={bad}'], check=False)
  assert proc.returncode == 2, proc.stderr[-2000:]
  assert proc.stderr.strip().splitlines()[-1].startswith('error: ')
  assert 'does not match' in proc.stderr
  assert not (target_dir / 'msas' / 'other.a3m').exists()
  assert snapshot(target_dir) == before
  # A precomputed run reads msas/ as it was: the earlier result is still this job's.
  proc = run(flags)
  assert 'outputs complete' in proc.stderr


def test_template_settings_are_part_of_the_job(precomputed, tmp_path):
  target_dir, flags, _ = _copy(precomputed, tmp_path)
  mmcif_dir = tmp_path / 'mmcif'
  mmcif_dir.mkdir()
  # No pdb_hits.hhr in msas/: the fold has no templates, but the job asked for them.
  proc = run([*flags, '--use_templates', f'--template_mmcif_dir={mmcif_dir}'])
  assert _changed(proc.stderr, 'same') == ['templates']
  proc = run([*flags, '--use_templates', f'--template_mmcif_dir={mmcif_dir}',
              '--max_template_date=2020-01-01'])
  assert _changed(proc.stderr, 'same') == ['templates']


def test_a_killed_refold_leaves_no_old_result_and_no_mix(base, tmp_path):
  target_dir, args = _one_target(base, tmp_path)
  # Another job (3 seeds; 2 recycles, an executable not in the cache yet) killed while it
  # folds, once its features are written: the old outputs are gone, the new ones unfinished.
  cmd = [sys.executable, 'run_inference.py', f'--model_names={MODEL}', *digest_runs.FLAGS,
         *args, '--num_seeds=3', '--num_recycle=2']
  env = child_env(digest_runs.CACHE_DIR)
  child = subprocess.Popen(cmd, cwd=ROOT, env=env, stderr=subprocess.PIPE,
                           stdout=subprocess.DEVNULL, text=True)
  try:
    for line in child.stderr:
      if '] same: ' in line and 'features in' in line:
        child.send_signal(signal.SIGKILL)
        break
  finally:
    child.kill()
    child.wait(timeout=60)
  assert child.returncode == -signal.SIGKILL
  assert not (target_dir / 'ranking_debug.json').exists()
  assert not list(target_dir.glob('ranked_*'))
  # The first job again: folded anew (not taken as complete), one seed, nothing of the other.
  proc = run(args)
  assert 'outputs complete' not in proc.stderr
  files = snapshot(target_dir)
  assert 'ranking_debug.json' in files
  assert not [f for f in files if '_pred_1' in f or '_pred_2' in f or '.tmp' in f]
  assert recorded_job(target_dir)['seeds'] == {'base': 0, 'per_model': 1}


def test_only_our_output_files_are_removed(tmp_path):
  ours = ['ranking_debug.json', 'ranked_0.pdb', 'ranked_1.cif', 'unrelaxed_m_pred_0.pdb',
          'relaxed_m_pred_0.cif', 'result_m_pred_0.pkl', 'confidence_m_pred_0.json',
          'pae_m_pred_0.json', 'relax_metrics.json', 'timings.json', 'plddt.png', 'pae.png',
          'report.html', 'features.pkl', '.ranked_0.pdb.tmp-123', '.tmp-99-plddt.png',
          '.features-x1_y.tmp', '.report.html.tmp-5']
  theirs = ['notes.txt', 'ranked_0.pdb.bak', 'my_result.pkl', '.hidden', 'features.pkl.gz',
            '.notes.txt.tmp-1']
  for name in ours + theirs:
    (tmp_path / name).write_text('x')
  (tmp_path / 'msas').mkdir()
  (tmp_path / 'msas' / 'uniref90_hits.sto').write_text('x')
  removed = outputs.remove_outputs(tmp_path)
  assert removed[0] == 'ranking_debug.json' and sorted(removed) == sorted(ours)
  assert sorted(p.name for p in tmp_path.iterdir()) == sorted(theirs + ['msas'])
  assert (tmp_path / 'msas' / 'uniref90_hits.sto').is_file()
  # An input where an output would be (--features_paths=<target>/features.pkl) stays.
  (tmp_path / 'features.pkl').write_text('input')
  assert outputs.remove_outputs(tmp_path, keep=[tmp_path / 'features.pkl']) == []
