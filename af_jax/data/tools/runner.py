"""Finding and running the search binaries as subprocesses.

Every tool goes through `run_tool`, so all of them share one timeout policy (the
whole process group is killed, since mmseqs2 and hhsuite's wrapper scripts start
children of their own), one error format and one log line with the wall time.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence

from absl import logging

from af_jax.common import files
from af_jax.errors import ToolError

# Debian package that provides each binary, for the install hint.
_PACKAGES = {
    'jackhmmer': 'hmmer',
    'hmmsearch': 'hmmer',
    'hmmbuild': 'hmmer',
    'hhblits': 'hhsuite',
    'hhsearch': 'hhsuite',
    'hhmake': 'hhsuite',
    'mmseqs': 'mmseqs2',
    'kalign': 'kalign',
}

_STDERR_LINES = 5


def binary_flag(name: str) -> str:
  """The command-line flag that overrides where `name` is found, AlphaFold's spelling."""
  return f'--{name}_binary_path'


def find_binary(name: str, override: str | None = None) -> str:
  """Absolute path of an executable: `override` if given, else `name` on PATH.

  Args:
    name: the tool's executable name (`jackhmmer`, `hhblits`, `mmseqs`, ...).
    override: a path (or a name on PATH) given by the user, e.g. by --jackhmmer_binary_path.

  Returns:
    The resolved path.

  Raises:
    ToolError: if it does not exist or is not executable, with the install hint.
  """
  package = _PACKAGES.get(name, name)
  if override:
    found = shutil.which(override)
    if found is None:
      raise ToolError(f'{name} binary {override!r} given by {binary_flag(name)} is not an '
                      f'executable file: fix the path, or drop the flag to use {name} on PATH')
    return os.path.abspath(found)
  found = shutil.which(name)
  if found is None:
    raise ToolError(f'{name} not found on PATH: install {package} (apt-get install {package}) '
                    f'or pass {binary_flag(name)}')
  return found


def check_paths(paths: Sequence[str | os.PathLike], flag: str, what: str) -> None:
  """Raises ToolError unless every path exists; `flag` is how the user gave them.

  Args:
    paths: files (or directories) a tool will read.
    flag: the command-line flag that set them, e.g. --uniref90_database_path.
    what: a short description for the message, e.g. 'jackhmmer database'.
  """
  for path in paths:
    if not os.path.exists(path):
      raise ToolError(f'{what} {str(path)!r} given by {flag} does not exist: fix {flag} '
                      'or download the database')


def _tail(text: str) -> str:
  lines = [line.strip() for line in text.splitlines() if line.strip()]
  return ' | '.join(lines[-_STDERR_LINES:]) or 'no message'


def _kill_group(proc: subprocess.Popen) -> None:
  """Kill a tool started in its own session, with every process it started, and reap it."""
  try:
    os.killpg(proc.pid, signal.SIGKILL)
  except ProcessLookupError:  # The whole group exited just now.
    pass
  proc.communicate()


def run_tool(cmd: Sequence[str | os.PathLike], *, timeout: float,
             cwd: str | os.PathLike | None = None) -> subprocess.CompletedProcess:
  """Runs one tool to completion, logging its wall time.

  Args:
    cmd: the command, binary first.
    timeout: seconds before the tool (and every process it started) is killed.
    cwd: working directory for the tool.

  Returns:
    The finished process, with text stdout/stderr.

  Raises:
    ToolError: if it cannot start, runs past `timeout` or exits non-zero (with the last
      lines of its stderr).
  """
  cmd = [str(c) for c in cmd]
  tool = pathlib.Path(cmd[0]).name
  logging.info('Running %s', tool)
  logging.debug('%s command: %s', tool, ' '.join(cmd))
  start = time.perf_counter()
  try:
    # A new session makes the tool a process-group leader, so a timeout can kill its
    # children too; otherwise they would keep the pipes open and communicate() would hang.
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            errors='replace', cwd=cwd, start_new_session=True)
  except OSError as e:
    raise ToolError(f'{tool} could not be started ({e.strerror}): check that {cmd[0]!r} is an '
                    'executable for this machine') from None
  try:
    stdout, stderr = proc.communicate(timeout=timeout)
  except subprocess.TimeoutExpired:
    _kill_group(proc)
    raise ToolError(f'{tool} ran past its time limit of {timeout:g} s and was killed: '
                    'raise the timeout or search a smaller database') from None
  except BaseException:
    # SIGINT/SIGTERM (or any error) while waiting: the tool's own session does not get the
    # terminal's Ctrl-C, so it would run on, orphaned, for as long as its search takes.
    _kill_group(proc)
    raise
  wall = time.perf_counter() - start
  logging.info('%s finished in %.1f s (exit code %d)', tool, wall, proc.returncode)
  if proc.returncode != 0:
    raise ToolError(f'{tool} failed with exit code {proc.returncode}: '
                    f'{_tail(stderr or stdout)} (command: {" ".join(cmd)})')
  return subprocess.CompletedProcess(cmd, proc.returncode, stdout, stderr)


def run_to_file(tool: str, command: Callable[[pathlib.Path], list[str]],
                out_path: str | os.PathLike, *, timeout: float, what: str, query: str | os.PathLike,
                hint: str, finish: Callable[[pathlib.Path, pathlib.Path], None] = os.replace
                ) -> pathlib.Path:
  """Run `command(raw)` in a scratch directory beside `out_path`; `finish(raw, out_path)`.

  The tool writes to a scratch file, so `out_path` appears only once complete (a
  killed or failed run leaves nothing half-written).

  Args:
    tool: the binary's name, for messages and the scratch directory.
    command: builds the command line that writes its result to the given path.
    out_path: where the result goes.
    timeout: seconds before the run is killed.
    what: what the tool writes ('alignment', 'a3m', 'hhr'), for the error message.
    query: the input searched, for the error message.
    hint: the fix to suggest when the tool exits 0 without writing anything.
    finish: moves (or transforms) the scratch file into `out_path`.

  Raises:
    ToolError: the tool failed, timed out, or wrote nothing.
  """
  out_path = pathlib.Path(out_path)
  with tempfile.TemporaryDirectory(prefix=files.temp_dir_prefix(tool), dir=out_path.parent) as tmp:
    raw = pathlib.Path(tmp) / f'hits{out_path.suffix}'
    run_tool(command(raw), timeout=timeout, cwd=tmp)
    if not raw.exists():
      raise ToolError(f'{tool} exited 0 but wrote no {what} for {query}: {hint}')
    finish(raw, out_path)
  return out_path
