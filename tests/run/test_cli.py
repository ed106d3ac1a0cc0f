"""The multi-host flags belong to the command lines (af_jax/run/cli.py), not the library."""

import subprocess
import sys

import pytest

from tests.cli_runner import ROOT, child_env


def test_only_the_run_layer_defines_flags():
  # A library module that defines absl flags makes every program that imports it take them.
  defining = sorted(str(p.relative_to(ROOT)) for p in (ROOT / 'af_jax').rglob('*.py')
                    if 'DEFINE_' in p.read_text() and p.parent.name != 'run')
  assert defining == []


@pytest.mark.parametrize('script', ['run_inference.py', 'run_train.py'])
def test_an_incomplete_multi_host_run_is_one_error_line(script, tmp_path):
  args = [f'--output_dir={tmp_path / "out"}', '--num_processes=2', '--nocompilation_cache']
  if script == 'run_train.py':
    args += [f'--mmcif_dir={tmp_path}', f'--alignment_dir={tmp_path}', '--num_steps=1']
  env = {k: v for k, v in child_env(None).items() if not k.startswith('JAX_COORDINATOR')
         and k not in ('JAX_NUM_PROCESSES', 'JAX_PROCESS_ID')}
  proc = subprocess.run([sys.executable, str(ROOT / script), *args], cwd=ROOT, env=env,
                        capture_output=True, text=True, timeout=300, check=False)
  assert proc.returncode == 2, proc.stderr[-2000:]
  assert proc.stderr.strip().splitlines()[-1] == (
      'error: a multi-host run needs --coordinator_address, --process_id as well (or '
      "--distributed to read them from the cluster's environment)"), proc.stderr[-2000:]
  assert 'Traceback' not in proc.stderr
