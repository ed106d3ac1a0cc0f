"""Run one of the repository's command lines in a subprocess, as a user would."""

import os
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]


def run_script(script: str, args, *, cache_dir: str, check: bool = True, devices: int = 1,
               umask: int = -1):
  """`python <script> args` on `devices` CPU devices with its compilation cache in `cache_dir`.

  `umask` (when not -1) is the child's file-creation mask.

  Raises AssertionError with the end of stderr when `check` and the exit status is not 0.
  """
  env = {**os.environ, 'JAX_PLATFORMS': 'cpu', 'COMPILE_CACHE_DIR': cache_dir}
  env.pop('XLA_FLAGS', None)
  if devices > 1:
    env['XLA_FLAGS'] = f'--xla_force_host_platform_device_count={devices}'
  proc = subprocess.run([sys.executable, str(ROOT / script), *map(str, args)], cwd=ROOT, env=env,
                        capture_output=True, text=True, timeout=900, umask=umask)
  if check and proc.returncode != 0:
    raise AssertionError(f'exit {proc.returncode}\n{proc.stderr[-3000:]}')
  return proc
