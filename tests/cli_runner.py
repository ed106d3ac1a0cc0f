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


# One directory per test session, shared by every pytest-xdist worker (conftest.py sets
# the variable before the workers start and removes the directory when the session ends).
SESSION_DIR_VARIABLE = 'AF_JAX_TEST_SESSION_DIR'


def scratch_dir(prefix: str) -> str:
  """A temporary directory for a whole test module (e.g. a compilation cache its command
  lines share): test runs leave nothing in /tmp.

  Under this repository's conftest it lives in the session's directory, which the
  session's first process removes (pytest-xdist workers can exit without running atexit);
  otherwise it is removed when this process exits.
  """
  root = os.environ.get(SESSION_DIR_VARIABLE)
  if root and os.path.isdir(root):
    return tempfile.mkdtemp(prefix=prefix, dir=root)
  path = tempfile.mkdtemp(prefix=prefix)
  atexit.register(shutil.rmtree, path, ignore_errors=True)
  return path


def session_dir(name: str) -> str:
  """A directory that every test process of this session shares, e.g. one compilation
  cache for test files that run the same program: the first to compile it stores it, the
  others load it. Removed when the session ends."""
  root = os.environ.get(SESSION_DIR_VARIABLE)
  if not root:  # not under this repository's conftest (a test module run as a script)
    return scratch_dir(f'af_jax_{name}_')
  path = pathlib.Path(root) / name
  path.mkdir(parents=True, exist_ok=True)
  return str(path)


def child_env(cache_dir: str | None, *, devices: int = 1, **extra: str) -> dict[str, str]:
  """The environment of a command line run by a test: CPU, `devices` devices, its
  compilation cache in `cache_dir` (None: the test process's default, conftest.py's scratch
  directory, unless the command line is given --compilation_cache_dir)."""
  env = {**os.environ, 'JAX_PLATFORMS': 'cpu', **extra}
  if cache_dir is not None:
    env['COMPILE_CACHE_DIR'] = cache_dir
  # PERF: LLVM at -O0, as in the test process (conftest.py): the command lines' small
  # programs spend most of their time compiling. Every child gets the same flags, so
  # children that share a compilation cache share its entries.
  flags = ['--xla_backend_optimization_level=0']
  if devices > 1:
    flags.append(f'--xla_force_host_platform_device_count={devices}')
  env['XLA_FLAGS'] = ' '.join(flags)
  return env


def run_script(script: str, args, *, cache_dir: str, check: bool = True, devices: int = 1,
               umask: int = -1):
  """`python <script> args` on `devices` CPU devices with its compilation cache in `cache_dir`.

  `umask` (when not -1) is the child's file-creation mask.

  Raises AssertionError with the end of stderr when `check` and the exit status is not 0.
  """
  env = child_env(cache_dir, devices=devices)
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
    elif module and (module.endswith(script) or module == 'af_jax.run.cli'):
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
