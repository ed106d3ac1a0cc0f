"""Run one of the repository's command lines in a subprocess, as a user would."""

import atexit
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parents[1]


def scratch_dir(prefix: str) -> str:
  """A temporary directory for a whole test module (e.g. a compilation cache its command
  lines share), removed when the test process exits: test runs leave nothing in /tmp."""
  path = tempfile.mkdtemp(prefix=prefix)
  atexit.register(shutil.rmtree, path, ignore_errors=True)
  return path


def run_script(script: str, args, *, cache_dir: str, check: bool = True, devices: int = 1):
  """`python <script> args` on `devices` CPU devices with its compilation cache in `cache_dir`.

  Raises AssertionError with the end of stderr when `check` and the exit status is not 0.
  """
  env = {**os.environ, 'JAX_PLATFORMS': 'cpu', 'COMPILE_CACHE_DIR': cache_dir}
  env.pop('XLA_FLAGS', None)
  if devices > 1:
    env['XLA_FLAGS'] = f'--xla_force_host_platform_device_count={devices}'
  proc = subprocess.run([sys.executable, str(ROOT / script), *map(str, args)], cwd=ROOT, env=env,
                        capture_output=True, text=True, timeout=900)
  if check and proc.returncode != 0:
    raise AssertionError(f'exit {proc.returncode}\n{proc.stderr[-3000:]}')
  return proc
