"""Files written whole or not at all, and the temporary files that make that so.

Every file af_jax writes into an output directory is first written under a temporary
name, `.<name>.tmp-<pid>` beside it, and renamed when complete. A failure (a full disk,
an error, SIGINT or SIGTERM) removes the temporary file; one a killed process left
behind is recognised by that pattern and removed by the next successful run
(`remove_stale`). Directories of scratch files are named `.<label>.tmp-<pid>-<random>`
(`temp_dir_prefix`) for the same reason.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import re
import shutil
import threading
from collections.abc import Iterator

_STALE = re.compile(r'\..+\.tmp-(?P<pid>\d+)(?:-[A-Za-z0-9_]+)?')

# Temporary files being written now, for a signal handler that must exit without
# unwinding the main thread (cli.exit_on_signals).
_ACTIVE: set[pathlib.Path] = set()
_ACTIVE_LOCK = threading.Lock()


def short_path(path: str | os.PathLike, parts: int = 3) -> str:
  """The last `parts` components of `path` (`<target>/msas/uniref90_hits.sto`), for a log
  line that names a file without the whole output directory's path."""
  return os.path.join(*pathlib.Path(path).parts[-parts:])


def temp_path(path: str | os.PathLike) -> pathlib.Path:
  """Where `path` is written before it is renamed: `.<name>.tmp-<pid>` beside it."""
  path = pathlib.Path(path)
  return path.with_name(f'.{path.name}.tmp-{os.getpid()}')


def temp_dir_prefix(label: str) -> str:
  """A tempfile.mkdtemp/TemporaryDirectory prefix that remove_stale recognises."""
  return f'.{label}.tmp-{os.getpid()}-'


@contextlib.contextmanager
def writing(path: str | os.PathLike) -> Iterator[pathlib.Path]:
  """Yields the temporary path to write `path` through; renames it to `path` on success.

  On any exception (KeyboardInterrupt and other BaseExceptions included) the temporary
  file is removed and the exception propagates; `path` itself is never touched then. An
  OSError with an errno (a full disk) is raised again naming `path`, not the temporary
  file, which no longer exists.
  """
  path = pathlib.Path(path)
  tmp = temp_path(path)
  with _ACTIVE_LOCK:
    _ACTIVE.add(tmp)
  try:
    yield tmp
    os.replace(tmp, path)
  except OSError as e:
    tmp.unlink(missing_ok=True)
    if e.errno is None:
      raise
    raise OSError(e.errno, e.strerror, os.fspath(path)) from e
  except BaseException:
    tmp.unlink(missing_ok=True)
    raise
  finally:
    with _ACTIVE_LOCK:
      _ACTIVE.discard(tmp)


def write_atomic(path: str | os.PathLike, data: str | bytes) -> None:
  """Write `data` to `path` through a temporary file in the same directory."""
  with writing(path) as tmp, open(tmp, 'wb' if isinstance(data, bytes) else 'w') as f:
    f.write(data)


def remove_active() -> None:
  """Remove the temporary files being written now (before an exit that skips cleanup)."""
  with _ACTIVE_LOCK:
    active = list(_ACTIVE)
  for tmp in active:
    with contextlib.suppress(OSError):
      tmp.unlink()


def _alive(pid: int) -> bool:
  """Whether a process with this id runs on this machine (ours or not)."""
  if pid == os.getpid():
    return True
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:
    return True  # someone else's process
  return True


def remove_stale(directory: str | os.PathLike) -> list[pathlib.Path]:
  """Remove temporary files and scratch directories that dead processes left in `directory`.

  Only names of the `.<name>.tmp-<pid>[-<random>]` pattern whose process no longer runs
  on this machine are removed, in `directory` and its subdirectories; nothing else is
  touched.

  Returns:
    What was removed.
  """
  removed = []
  for root, dirs, files in os.walk(directory):
    for name in [*files, *dirs]:
      match = _STALE.fullmatch(name)
      if not match or _alive(int(match['pid'])):
        continue
      path = pathlib.Path(root) / name
      with contextlib.suppress(FileNotFoundError):
        if path.is_dir() and not path.is_symlink():
          shutil.rmtree(path)
          dirs.remove(name)
        else:
          path.unlink()
        removed.append(path)
  return removed
