"""run_train.py end to end on 2Q2K: metrics, checkpoints, resume after a stop, export, bad input."""

import json

import numpy as np
import pytest

import af_jax
from tests.cli_runner import ROOT, help_of, run_script, session_dir
from tests.train.train_case import ALIGNMENT_DIR, MMCIF_DIR, SMALL_OVERRIDES

# The runs share one compilation cache with tests/faults/test_train_faults.py (the same
# train step): it compiles once for the session.
CACHE_DIR = session_dir('train_xla')

SMALL = [f'--config.{k}={v}' for k, v in SMALL_OVERRIDES.items()] + [
    '--config.checkpoint.every_steps=2', '--config.checkpoint.keep=2']
DATA = [f'--mmcif_dir={MMCIF_DIR}', f'--alignment_dir={ALIGNMENT_DIR}']


def run(args, check=True):
  return run_script('run_train.py', args, cache_dir=CACHE_DIR, check=check)


def _metrics(out):
  return [json.loads(line) for line in (out / 'metrics.jsonl').read_text().splitlines()]


@pytest.fixture(scope='module')
def runs(tmp_path_factory):
  """(straight, resumed): 5 steps in one run; 3 steps, then the same command to 5."""
  tmp = tmp_path_factory.mktemp('train')
  straight, resumed = tmp / 'straight', tmp / 'resumed'
  first = run(['--config=small', *SMALL, *DATA, f'--output_dir={straight}', '--num_steps=5'])
  run(['--config=configs/train.py:small', *SMALL, *DATA, f'--output_dir={resumed}',
       '--num_steps=3'])
  again = run(['--config=small', *SMALL, *DATA, f'--output_dir={resumed}', '--num_steps=5'])
  return straight, resumed, first, again


def test_metrics_log_and_outputs(runs):
  straight, _, first, _ = runs
  metrics = _metrics(straight)
  assert [m['step'] for m in metrics] == [1, 2, 3, 4, 5]
  for m in metrics:
    for key in ('loss', 'fape', 'distogram', 'masked_msa', 'predicted_lddt', 'aligned_error',
                'learning_rate', 'grad_norm', 'step_time_s', 'skipped'):
      assert np.isfinite(m[key]), key
    assert m['chains'] == ['2q2k_A']
  # A progress line per step with the ETA.
  assert 'step 5/5 loss' in first.stderr and 'ETA' in first.stderr
  # Orbax's own INFO chatter stays out of the log.
  assert not [line for line in first.stderr.splitlines()
              if line.startswith('I') and ('checkpoint_manager.py' in line
                                           or 'atomicity.py' in line)]
  # Checkpoints every 2 steps and after the last; the newest 2 kept.
  assert sorted(int(p.name) for p in (straight / 'checkpoints').iterdir()) == [4, 5]
  config = json.loads((straight / 'config.json').read_text())
  assert config['model_preset'] == 'model_3_ptm' and config['data']['train']['crop_size'] == 32
  params = af_jax.load_params(straight / 'params' / 'params_model_3_ptm.npz')
  assert any(k.startswith('alphafold/alphafold_iteration/evoformer/') for k in params)


def test_stopped_and_resumed_run_equals_one_run(runs):
  straight, resumed, _, again = runs
  assert 'resuming from' in again.stderr and 'checkpoints/3' in again.stderr
  # The second process loads the compiled step from the persistent cache.
  assert 'train step train_step/model_3_ptm/L32/msa8x16/r2/b1: loaded' in again.stderr
  a, b = _metrics(straight), _metrics(resumed)
  assert [m['step'] for m in b] == [1, 2, 3, 4, 5]
  for x, y in zip(a, b):
    assert x['loss'] == y['loss'] and x['grad_norm'] == y['grad_norm'], (x['step'], x, y)
  pa = af_jax.load_params(straight / 'params' / 'params_model_3_ptm.npz')
  pb = af_jax.load_params(resumed / 'params' / 'params_model_3_ptm.npz')
  assert pa.keys() == pb.keys()
  for k in pa:
    np.testing.assert_array_equal(pa[k], pb[k], err_msg=k)


def test_fine_tuned_weights_fold_with_run_inference(runs, tmp_path):
  """The exported params/ is a --params_dir: run_inference.py folds 2Q2K A with it."""
  straight, *_ = runs
  from tests.model.tiny import TINY
  out = tmp_path / 'fold'
  args = [f'--fasta_paths={ROOT / "examples" / "2q2k_A.fasta"}', '--msa_mode=precomputed',
          f'--msa_paths={ROOT / "examples" / "2q2k_A_msas"}', '--model_names=model_3_ptm',
          f'--params_dir={straight}', f'--output_dir={out}', '--num_recycle=1',
          '--config.data.eval.max_msa_clusters=16', '--config.data.common.max_extra_msa=32',
          *[f'--config.{k}={v}' for k, v in TINY.items()]]
  run_script('run_inference.py', args, cache_dir=CACHE_DIR)
  ranking = json.loads((out / '2q2k_A' / 'ranking_debug.json').read_text())
  assert ranking['order'] == ['model_3_ptm_pred_0']
  assert 'random' not in json.dumps(ranking).lower()
  assert (out / '2q2k_A' / 'ranked_0.pdb').read_text().startswith(('ATOM', 'MODEL', 'HEADER',
                                                                     'REMARK', 'PARENT'))


def test_a_finished_run_is_not_trained_again(runs):
  straight, *_ = runs
  before = (straight / 'metrics.jsonl').read_text()
  proc = run(['--config=small', *SMALL, *DATA, f'--output_dir={straight}', '--num_steps=5'])
  assert 'step 1/5' not in proc.stderr and 'step 5/5' not in proc.stderr
  assert (straight / 'metrics.jsonl').read_text() == before


@pytest.mark.parametrize('args, message', [
    ([*DATA, '--num_steps=2'], '--output_dir is required'),
    (['--mmcif_dir=/nonexistent', f'--alignment_dir={ALIGNMENT_DIR}', '--num_steps=2'],
     '/nonexistent'),
    ([*DATA, '--num_steps=2', '--config=nosuchpreset'], 'nosuchpreset'),
    ([*DATA, '--num_steps=2', '--config.optimizer.no_such_key=1'], 'no_such_key'),
    ([*DATA, '--num_steps=2', '--config.optimizer.learning_rate=-1'], 'learning_rate'),
    ([*DATA, '--num_steps=2', '--dap=3'], '--dap=3'),
    ([*DATA, '--num_steps=-1'], '--num_steps=-1'),
    ([*DATA, '--num_steps=2', '--init_params=/nonexistent/params'], '/nonexistent/params'),
])
def test_bad_input_is_one_error_line(args, message, tmp_path):
  if not any(a.startswith('--output_dir') for a in args) and message != '--output_dir is required':
    args = [*args, f'--output_dir={tmp_path / "out"}']
  proc = run(['--config=small', *SMALL, *args] if '--config=' not in ' '.join(args)
             else [*SMALL, *args], check=False)
  assert proc.returncode == 2, proc.stderr[-2000:]
  errors = [line for line in proc.stderr.splitlines() if line.startswith('error:')]
  assert len(errors) == 1 and message in errors[0], proc.stderr[-2000:]
  assert 'Traceback' not in proc.stderr


def test_help_lists_every_flag_once_under_headings():
  usage, headings, listed, defined = help_of('run_train.py', cache_dir=CACHE_DIR)
  assert headings == ['Inputs and outputs', 'Model and training', 'Memory and devices',
                      'Compilation cache and XLA', 'Many hosts']
  assert len(listed) == len(set(listed)) and set(listed) == defined
  assert 'alignments \\\n      --output_dir=' in usage
  assert not [line for line in usage.splitlines() if '  ' in line.strip()]
