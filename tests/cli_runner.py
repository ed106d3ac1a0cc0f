"""Run one of the repository's command lines in a subprocess, as a user would."""

import atexit
import os
import pathlib
import re
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


def help_of(script: str, *, cache_dir: str) -> tuple[str, list[str], list[str], set[str]]:
  """What `<script> --help` shows, and what it should.

  Returns:
    (the usage text before the first heading, the headings in order, the flags listed
    under them in order, the flags the script and af_jax's shared modules define, as
    absl's --helpfull lists them by module).
  """
  text = run_script(script, ['--help'], cache_dir=cache_dir).stdout
  usage, _, groups = text.partition('\n\n' + next(
      line for line in text.splitlines() if re.fullmatch(r'[A-Z][a-z ,A-Z]+:', line)))
  headings = re.findall(r'^([A-Z][a-z ,A-Z]+):$', text, re.M)
  listed = re.findall(r'^  --(?:\[no\])?(\w+):', groups, re.M)
  full = run_script(script, ['--helpfull'], cache_dir=cache_dir, check=False).stdout
  defined, module = set(), None
  for line in full.splitlines():
    if re.fullmatch(r'\S+:', line):
      module = line[:-1]
    elif module and (module.endswith(script) or module in ('af_jax.run.cli',
                                                           'af_jax.parallel.distributed')):
      defined.update(re.findall(r'^  --(?:\[no\])?(\w+):', line))
  return usage, headings, listed, defined


_RECYCLE = re.compile(r'\] (?P<target>\S+) (?P<pred>\S+): recycle (?P<recycle>\d+)/(?P<of>\d+): '
                      r'pLDDT (?P<plddt>[\d.]+)(?:, pTM (?P<ptm>[\d.]+))?'
                      r'(?:, ipTM (?P<iptm>[\d.]+))?, CA change (?:-|(?P<ca>[\d.]+) A)$')


def recycle_lines(log: str) -> list[dict]:
  """The per-recycle progress lines of a fold's log (`--progress`), parsed: target, pred,
  recycle and of (ints), plddt, and ptm, iptm, ca (floats or None)."""
  lines = []
  for line in log.splitlines():
    m = _RECYCLE.search(line)
    if m:
      d = m.groupdict()
      lines.append({**d, 'recycle': int(d['recycle']), 'of': int(d['of']),
                    **{k: None if d[k] is None else float(d[k])
                       for k in ('plddt', 'ptm', 'iptm', 'ca')}})
  return lines
