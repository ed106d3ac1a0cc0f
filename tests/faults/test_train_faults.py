"""run_train.py under faults (issue 25, items 7 and 8): signals, damaged checkpoints, going back.

Every run is the real command line in a child process on the tiny `small` preset
(tests/train/train_case.py) with 2Q2K chain A; one uninterrupted run of 5 steps is
the reference the others must reproduce exactly.
"""

import json
import pathlib
import shutil
import signal
import subprocess
import sys
import threading

import numpy as np
import pytest

import af_jax
from tests.cli_runner import ROOT, child_env, run_script, session_dir
from tests.train.train_case import ALIGNMENT_DIR, MMCIF_DIR, SMALL_OVERRIDES

# The runs share one compilation cache with tests/train/test_run_train.py (the same train
# step): it compiles once for the session.
CACHE_DIR = session_dir('train_xla')
NUM_STEPS = 5
ARGS = ['--config=small', *[f'--config.{k}={v}' for k, v in SMALL_OVERRIDES.items()],
        '--config.checkpoint.every_steps=2', '--config.checkpoint.keep=3',
        f'--mmcif_dir={MMCIF_DIR}', f'--alignment_dir={ALIGNMENT_DIR}']
PARAMS = pathlib.Path('params') / 'params_model_3_ptm.npz'


def run(output_dir, num_steps=NUM_STEPS, extra=(), check=True):
  return run_script('run_train.py', [*ARGS, *extra, f'--output_dir={output_dir}',
                                     f'--num_steps={num_steps}'],
                    cache_dir=CACHE_DIR, check=check)


def metrics(output_dir):
  lines = (output_dir / 'metrics.jsonl').read_text().splitlines()
  return [json.loads(line) for line in lines]


def checkpoint_names(output_dir):
  return sorted(p.name for p in (output_dir / 'checkpoints').iterdir())


def error_lines(stderr):
  return [line for line in stderr.splitlines() if line.startswith('error:')]


def assert_same_training(got_dir, want_dir):
  """Same losses and gradient norms at every step, same exported weights, bit for bit."""
  got, want = metrics(got_dir), metrics(want_dir)
  assert [m['step'] for m in got] == [m['step'] for m in want] == list(range(1, NUM_STEPS + 1))
  for g, w in zip(got, want):
    assert (g['loss'], g['grad_norm']) == (w['loss'], w['grad_norm']), g['step']
  pg, pw = af_jax.load_params(got_dir / PARAMS), af_jax.load_params(want_dir / PARAMS)
  assert pg.keys() == pw.keys()
  for k in pw:
    np.testing.assert_array_equal(pg[k], pw[k], err_msg=k)


@pytest.fixture(scope='module')
def straight(tmp_path_factory):
  """5 steps in one run: checkpoints 2, 4 and 5."""
  out = tmp_path_factory.mktemp('straight') / 'run'
  run(out)
  assert checkpoint_names(out) == ['2', '4', '5']
  return out


def copy_run(source, tmp_path):
  target = tmp_path / 'run'
  shutil.copytree(source, target)
  return target


@pytest.mark.parametrize('sig', [signal.SIGTERM, signal.SIGINT], ids=['SIGTERM', 'SIGINT'])
def test_signal_after_a_step_saves_it_and_the_same_command_resumes(sig, straight, tmp_path):
  out = tmp_path / 'run'
  env = child_env(CACHE_DIR)
  # Periodic checkpoints off: the one found afterwards is the signal's.
  args = [*ARGS, '--config.checkpoint.every_steps=1000', f'--output_dir={out}',
          f'--num_steps={NUM_STEPS}']
  # A shell starts background jobs with SIGINT ignored, and the child would inherit that
  # (run_train.py leaves an ignored signal ignored); a terminal's Ctrl-C finds it default.
  proc = subprocess.Popen([sys.executable, str(ROOT / 'run_train.py'), *args], cwd=ROOT, env=env,
                          stderr=subprocess.PIPE, text=True,
                          preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
  watchdog = threading.Timer(600, proc.kill)
  watchdog.start()
  try:
    lines = []
    for line in proc.stderr:
      lines.append(line)
      if f'step 1/{NUM_STEPS} ' in line:
        proc.send_signal(sig)
        break
    lines.append(proc.stderr.read())
    status = proc.wait()
  finally:
    watchdog.cancel()
    proc.kill()
  stderr = ''.join(lines)
  assert status == 128 + sig, stderr[-3000:]
  assert 'Traceback' not in stderr, stderr[-3000:]
  [error] = error_lines(stderr)
  # The step in flight when the signal came is finished and saved, nothing after it.
  stopped_at = int(error.split(' after step ')[1].split()[0])
  assert 1 <= stopped_at < NUM_STEPS, error
  assert f'stopped by {sig.name} after step {stopped_at} of {NUM_STEPS}' in error
  assert f'checkpoints/{stopped_at} saved' in error
  assert checkpoint_names(out) == [str(stopped_at)]  # and no orbax temporary directory
  assert [m['step'] for m in metrics(out)] == list(range(1, stopped_at + 1))
  assert not (out / PARAMS).exists()

  if sig == signal.SIGINT:
    return  # resuming is the same whatever the signal was: checked once, after SIGTERM
  again = run(out, extra=['--config.checkpoint.every_steps=1000'])
  assert f'resuming from {out / "checkpoints"}/{stopped_at}' in again.stderr
  assert_same_training(out, straight)


def truncate(path):
  size = path.stat().st_size
  with open(path, 'r+b') as f:
    f.truncate(size // 2)


def largest_file(directory):
  return max((p for p in directory.rglob('*') if p.is_file()), key=lambda p: p.stat().st_size)


# A file of each kind: array data (tensorstore's OCDBT), the arrays' metadata, a JSON item.
DAMAGED = {'array data': lambda step: largest_file(step / 'state' / 'ocdbt.process_0' / 'd'),
           'array metadata': lambda step: step / 'state' / '_METADATA',
           'json item': lambda step: step / 'meta' / 'metadata'}


@pytest.mark.parametrize('damaged', DAMAGED)
def test_truncated_newest_checkpoint_falls_back_to_the_previous(damaged, straight, tmp_path):
  """A file of checkpoint 5 cut in half: resume from 4 with one WARNING, 5 kept aside."""
  out = copy_run(straight, tmp_path)
  checkpoints = out / 'checkpoints'
  broken_file = DAMAGED[damaged](checkpoints / '5')
  truncate(broken_file)
  truncated_size = broken_file.stat().st_size
  proc = run(out)
  warnings = [line for line in proc.stderr.splitlines() if line.startswith('W')
              and 'does not restore' in line]
  assert len(warnings) == 1, proc.stderr[-3000:]
  assert f'checkpoint {checkpoints}/5 does not restore' in warnings[0]
  assert f'resuming from {checkpoints}/4 instead' in warnings[0]
  assert f'kept as {checkpoints}/5.broken' in warnings[0]
  assert 'Traceback' not in proc.stderr and 'never retrieved' not in proc.stderr
  assert f'resuming from {checkpoints}/4' in proc.stderr
  # Step 5 trained again from 4 and saved anew; the broken one kept as it was, aside.
  assert checkpoint_names(out) == ['2', '4', '5', '5.broken']
  aside = checkpoints / '5.broken' / broken_file.relative_to(checkpoints / '5')
  assert aside.stat().st_size == truncated_size
  assert_same_training(out, straight)


def test_no_checkpoint_that_restores_is_one_error_line_and_renames_nothing(straight, tmp_path):
  out = copy_run(straight, tmp_path)
  for step in ('2', '4', '5'):
    truncate(largest_file(out / 'checkpoints' / step / 'state'))
  before = (out / 'metrics.jsonl').read_text()
  proc = run(out, check=False)
  assert proc.returncode == 2, proc.stderr[-3000:]
  [error] = error_lines(proc.stderr)
  assert f'no checkpoint in {out / "checkpoints"} restores' in error
  assert all(f'checkpoints/{step}:' in error for step in ('2', '4', '5'))
  assert 'Traceback' not in proc.stderr
  assert checkpoint_names(out) == ['2', '4', '5']
  assert (out / 'metrics.jsonl').read_text() == before


def test_num_steps_below_the_newest_checkpoint_is_an_error(straight, tmp_path):
  out = copy_run(straight, tmp_path)
  before = {p: p.stat().st_mtime_ns for p in out.rglob('*')}
  proc = run(out, num_steps=3, check=False)
  assert proc.returncode == 2, proc.stderr[-3000:]
  [error] = error_lines(proc.stderr)
  assert '--num_steps=3 is below step 5 of the newest checkpoint' in error
  assert '--num_steps=5' in error
  assert 'Traceback' not in proc.stderr
  # Nothing touched: the weights exported at step 5 are still step 5's.
  assert {p: p.stat().st_mtime_ns for p in out.rglob('*')} == before


def test_a_run_killed_mid_save_leaves_no_temporary_directory_behind(straight, tmp_path):
  """orbax's temporary directory of a save cut short by SIGKILL goes at the next start."""
  out = copy_run(straight, tmp_path)
  leftover = out / 'checkpoints' / '6.orbax-checkpoint-tmp-1700000000000000'
  shutil.copytree(out / 'checkpoints' / '5', leftover)
  proc = run(out)
  assert 'Traceback' not in proc.stderr
  assert checkpoint_names(out) == ['2', '4', '5']
