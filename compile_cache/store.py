"""The cache directory on disk: entries, their metadata, least-recently-used eviction.

Layout (no JAX needed to read it)::

  <root>/
    compile_cache_root.json       the mark: this directory is a cache root (see below)
    <profile>/                    one per autotuning profile (+ hash of free XLA flags)
      profile.json                the profile's name and XLA flags
      <key>-cache                 JAX's entry: compressed [compile time][serialized executable]
      <key>-atime                 last use, 8-byte little-endian ns (JAX's LRUCache format)
      <key>-meta.json             our metadata: label, compile seconds, sha256, devices, ...
      .lock                       serialises an entry's write with its metadata (flock)
      xla_gpu_per_fusion_autotune_cache_dir/   XLA's per-fusion autotune results (GPU only)
    <key>-cache                   entries JAX wrote straight into the root (no profile)

`<key>` is JAX's cache key, `<module name>-<64 hex digits>`. Entries without `-meta.json` or
`-atime` (written by plain JAX) are listed too: the function comes from the key, times from the
file.

What is the cache's. The commands that delete (clear, prune, verify) act only on a root that
holds the mark, which `configure()` writes into a root it creates or finds holding nothing but
the cache's own files (`python -m compile_cache mark` adopts any other). Inside a marked root a
file is the cache's only by name and place together: a regular file (never a symlink, never
followed) named `<key>-cache|-atime|-meta.json`, our temporary names or `.lock`, in the root or
in a profile subdirectory, which is one whose name is a profile's and which holds a
`profile.json`. Anything else (a user's notes, someone's data directory) is never read,
listed or removed.

Every write is a temporary file renamed into place, so a reader or a second writer never sees
half an entry. The metadata's `sha256` is the digest of the `-cache` file as written: a reader
that finds other bytes (a truncated or bit-flipped file) treats the entry as absent. Writers
hold `.lock` exclusively while they write an entry and its metadata and readers hold it shared
while they read both, so two processes storing the same key at once cannot leave one's
executable beside the other's digest (two compilations of one program are not byte-identical).
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import json
import os
from pathlib import Path
import re
import secrets
import shlex
import shutil
import stat
import time
from typing import Any, Iterable, Iterator

from compile_cache.errors import CompileCacheError

CACHE_SUFFIX = '-cache'
ATIME_SUFFIX = '-atime'
META_SUFFIX = '-meta.json'
PROFILE_FILE = 'profile.json'
LOCK_FILE = '.lock'
AUTOTUNE_DIRNAME = 'xla_gpu_per_fusion_autotune_cache_dir'
ROOT_MARK = 'compile_cache_root.json'
# Bumped when the layout changes so that an older compile_cache would misread it.
MARK_FORMAT = 1
# JAX's lock file when its own LRU eviction runs (jax._src.lru_cache).
JAX_LOCK_FILE = '.lockfile'

# JAX 0.10.2 keys are the module name, '-' and a sha256 in hex (jax/_src/cache_key.py).
_KEY_FILE_RE = re.compile(r'^(?P<key>.+-[0-9a-f]{64})(?P<suffix>-cache|-atime|-meta\.json)$')
# `atomic_write`'s temporary names: `.<final name>.<pid>.<8 hex>.tmp`.
_TMP_RE = re.compile(r'^\.(?P<name>.+)\.\d+\.[0-9a-f]{8}\.tmp$')
_PROBE_RE = re.compile(r'^\.write_probe\.\d+\.[0-9a-f]{8}$')
# A profile's name, plus a hash of the free flags when there are any (profiles.resolve).
_PROFILE_DIR_RE = re.compile(r'^[a-z0-9_]+(\+[0-9a-f]{10})?$')


@dataclasses.dataclass(frozen=True)
class Entry:
  """One executable in the cache.

  Attributes:
    key: JAX's cache key (the file name without `-cache`).
    directory: the directory holding its files.
    profile: the profile subdirectory's name, '' for an entry in the root.
    size: bytes of the `-cache` file.
    created: when it was written (seconds since the epoch).
    last_used: when it was last written or loaded (seconds since the epoch).
    function: the label given at compile time, else the module name in the key.
    compile_seconds: what compiling it cost, i.e. what a load saves; None when unknown.
    meta: the full metadata record ({} when there is none).
  """
  key: str
  directory: Path
  profile: str
  size: int
  created: float
  last_used: float
  function: str
  compile_seconds: float | None
  meta: dict[str, Any]

  @property
  def path(self) -> Path:
    return self.directory / (self.key + CACHE_SUFFIX)


def function_from_key(key: str) -> str:
  """`'jit_f-0123…'` -> `'jit_f'`: JAX starts every key with the module name."""
  return key.rsplit('-', 1)[0]


def atomic_write(path: Path, data: bytes) -> None:
  """Writes `data` to a temporary file beside `path` and renames it over `path`."""
  tmp = path.with_name(f'.{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp')
  # os.open with 0o666 applies the umask like JAX's own writes (mkstemp would force 0600 and
  # hide a shared cache from other users).
  fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
  try:
    with os.fdopen(fd, 'wb') as f:
      f.write(data)
    os.replace(tmp, path)
  except BaseException:
    tmp.unlink(missing_ok=True)
    raise


def digest(value: bytes) -> str:
  """The sha256 of an entry's bytes, as its metadata records it."""
  return hashlib.sha256(value).hexdigest()


@contextlib.contextmanager
def locked(directory: Path, *, exclusive: bool) -> Iterator[None]:
  """Holds `directory`'s lock: exclusive to write an entry with its metadata, shared to read.

  In a directory where the lock file cannot be created (read-only) a reader opens it read-only
  if some writer made it, else goes unlocked: no writer of ours has been there. Not reentrant:
  a process holding it must not ask again.
  """
  path = directory / LOCK_FILE
  try:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
  except OSError:
    if exclusive:
      raise
    try:
      fd = os.open(path, os.O_RDONLY)
    except OSError:
      yield
      return
  try:
    fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
    yield
  finally:
    os.close(fd)  # releases the lock


def write_entry(directory: Path, key: str, value: bytes) -> None:
  """Stores an entry (replacing any previous file under that key) and marks it used now.

  Call under `locked(directory, exclusive=True)` together with the metadata update that
  records `digest(value)`.
  """
  atomic_write(directory / (key + CACHE_SUFFIX), value)
  touch(directory, key)


def touch(directory: Path, key: str) -> None:
  """Records that the entry was used now."""
  atomic_write(directory / (key + ATIME_SUFFIX), time.time_ns().to_bytes(8, 'little'))


def _read_regular(path: Path) -> bytes:
  """The bytes of a regular file; OSError for a symlink (never followed) or anything else."""
  fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
  with os.fdopen(fd, 'rb') as f:
    if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
      raise IsADirectoryError(f'{path} is not a regular file')
    return f.read()


def _is_regular(path: Path | os.DirEntry) -> bool:
  """A regular file itself, not a symlink to one."""
  try:
    mode = path.stat(follow_symlinks=False).st_mode
  except OSError:
    return False
  return stat.S_ISREG(mode)


def _unlink_regular(path: Path) -> bool:
  """Deletes `path` if it is a regular file (symlinks and the rest stay); True if deleted."""
  if not _is_regular(path):
    return False
  try:
    path.unlink()
  except FileNotFoundError:
    return False  # another process removed it first
  return True


def read_meta(directory: Path, key: str) -> dict[str, Any]:
  """The entry's metadata, {} when it has none or the file is unreadable."""
  try:
    meta = json.loads(_read_regular(directory / (key + META_SUFFIX)))
  except (OSError, ValueError):
    return {}
  return meta if isinstance(meta, dict) else {}


def update_meta(directory: Path, key: str, **fields: Any) -> dict[str, Any]:
  """Merges `fields` (None values skipped) into the entry's metadata and writes it."""
  meta = read_meta(directory, key)
  meta.update({k: v for k, v in fields.items() if v is not None})
  meta.setdefault('created', time.time())
  atomic_write(directory / (key + META_SUFFIX),
               json.dumps(meta, sort_keys=True, allow_nan=False).encode())
  return meta


def check_writable(directory: Path) -> None:
  """Creates and removes a file in `directory`; raises OSError where that is refused.

  A test by doing: permission bits, ACLs, read-only mounts and a root without
  CAP_DAC_OVERRIDE all answer it truthfully, where `os.access` can be wrong.
  """
  probe = directory / f'.write_probe.{os.getpid()}.{secrets.token_hex(4)}'
  os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
  probe.unlink()


def write_profile_marker(directory: Path, name: str, flags: Iterable[str]) -> None:
  """Records which profile and flags a subdirectory's entries were compiled with."""
  data = json.dumps({'name': name, 'flags': list(flags)}, indent=1, allow_nan=False).encode()
  path = directory / PROFILE_FILE
  if not path.exists() or path.read_bytes() != data:
    atomic_write(path, data)


def _mark_bytes() -> bytes:
  return json.dumps({
      'written_by': 'compile_cache',
      'format': MARK_FORMAT,
      'about': 'A persistent XLA compilation cache. python -m compile_cache clear|prune|verify '
               'delete only in a directory holding this file, and only the cache\'s own '
               'files.',
  }, indent=1, allow_nan=False).encode() + b'\n'


def read_mark(root: Path) -> dict[str, Any] | None:
  """The root's mark when it is a regular file that compile_cache wrote, else None."""
  try:
    mark = json.loads(_read_regular(root / ROOT_MARK))
  except (OSError, ValueError):
    return None
  if (not isinstance(mark, dict) or mark.get('written_by') != 'compile_cache'
      or not isinstance(mark.get('format'), int)):
    return None
  return mark


def shell_arg(path: Path) -> str:
  """`path` quoted for a shell command in a message; escaped when it holds control characters
  (which no message prints raw)."""
  text = str(path)
  return shlex.quote(text) if text.isprintable() else repr(text)


def require_root(root: Path, command: str) -> None:
  """Raises unless `root` is a directory holding compile_cache's mark, of a format we read.

  Args:
    root: the directory a command was given.
    command: the command's name, for the message.

  Raises:
    CompileCacheError: missing directory, no mark, or a mark of a newer format.
  """
  if not root.is_dir():
    raise CompileCacheError(
        f'cache_dir={str(root)!r} does not exist or is not a directory; pass the directory '
        f'that a program configured as its compile cache (--cache_dir or $COMPILE_CACHE_DIR)')
  mark = read_mark(root)
  if mark is None:
    raise CompileCacheError(
        f'cache_dir={str(root)!r} is not marked as a compile cache (no {ROOT_MARK}), so '
        f'{command} changes nothing in it; if it is one (made by plain JAX or an older '
        f'compile_cache), mark it first: python -m compile_cache mark --cache_dir '
        f'{shell_arg(root)}')
  if mark['format'] > MARK_FORMAT:
    raise CompileCacheError(
        f'cache_dir={str(root)!r} was marked by a newer compile_cache (format '
        f'{mark["format"]}, this one reads {MARK_FORMAT}); run {command} with that version')


def mark_root(root: Path) -> bool:
  """Writes the mark into `root`; False when it was already there.

  Raises:
    CompileCacheError: `root` is not a directory, or holds a file of the mark's name that
      compile_cache did not write (left as it is).
    OSError: the mark cannot be written.
  """
  if not root.is_dir():
    raise CompileCacheError(f'cache_dir={str(root)!r} does not exist or is not a directory; '
                            'pass an existing cache directory')
  if read_mark(root) is not None:
    return False
  path = root / ROOT_MARK
  if os.path.lexists(path):
    raise CompileCacheError(
        f'{str(path)!r} exists but is not a mark compile_cache wrote; move it away, or use '
        'another directory for the cache')
  atomic_write(path, _mark_bytes())
  return True


def _is_profile_dir(path: Path) -> bool:
  """A real directory named like a profile that holds a readable `profile.json`."""
  if not _PROFILE_DIR_RE.match(path.name) or path.is_symlink() or not path.is_dir():
    return False
  try:
    profile = json.loads(_read_regular(path / PROFILE_FILE))
  except (OSError, ValueError):
    return False
  return isinstance(profile, dict) and isinstance(profile.get('name'), str)


def _is_own_file(name: str) -> bool:
  """A name the cache or JAX writes into a cache directory, that `clear` may delete.

  The mark is not one, nor JAX's `.lockfile` (a running JAX process may hold it).
  """
  if _KEY_FILE_RE.match(name) or _PROBE_RE.match(name) or name == LOCK_FILE:
    return True
  tmp = _TMP_RE.match(name)
  return bool(tmp) and (tmp['name'] in (PROFILE_FILE, ROOT_MARK)
                        or bool(_KEY_FILE_RE.match(tmp['name'])))


def foreign_names(root: Path) -> list[str]:
  """Names in `root` that are not the cache's own files or profile subdirectories."""
  foreign = []
  for child in sorted(root.iterdir()):
    if child.name == ROOT_MARK and read_mark(root) is not None:
      continue
    if _is_regular(child) and (_is_own_file(child.name) or child.name == JAX_LOCK_FILE):
      continue
    if child.name == AUTOTUNE_DIRNAME and not child.is_symlink() and child.is_dir():
      continue
    if _is_profile_dir(child):
      continue
    foreign.append(child.name)
  return foreign


def adopt_root(root: Path) -> list[str]:
  """Marks `root` when it holds nothing but the cache's own files (an unmarked cache).

  Returns:
    The foreign names that kept an unmarked root unmarked ([] when it is marked now).

  Raises:
    OSError: the mark cannot be written.
  """
  if read_mark(root) is not None:
    return []
  foreign = foreign_names(root)
  if not foreign:
    mark_root(root)
  return foreign


def entry_dirs(root: Path) -> list[Path]:
  """The root and its profile subdirectories (everything that may hold `-cache` files)."""
  if not root.is_dir():
    return []
  return [root, *sorted(d for d in root.iterdir() if _is_profile_dir(d))]


def _read_atime(directory: Path, key: str) -> float | None:
  try:
    data = _read_regular(directory / (key + ATIME_SUFFIX))
  except OSError:
    return None
  return int.from_bytes(data, 'little') / 1e9 if len(data) == 8 else None


def load_entry(directory: Path, key: str, profile: str) -> Entry | None:
  """Reads one entry's file sizes, times and metadata; None when its `-cache` file is gone
  (or is not a regular file)."""
  try:
    info = (directory / (key + CACHE_SUFFIX)).stat(follow_symlinks=False)
  except OSError:
    return None
  if not stat.S_ISREG(info.st_mode):
    return None
  meta = read_meta(directory, key)
  seconds = meta.get('compile_seconds')
  return Entry(
      key=key, directory=directory, profile=profile, size=info.st_size,
      created=float(meta.get('created', info.st_mtime)),
      last_used=_read_atime(directory, key) or info.st_mtime,
      function=meta.get('label') or function_from_key(key),
      compile_seconds=float(seconds) if seconds is not None else None, meta=meta)


def _own_files(directory: Path, suffix: str) -> Iterator[tuple[str, Path]]:
  """(key, path) of the regular files in `directory` named `<key><suffix>`."""
  for child in directory.iterdir():
    match = _KEY_FILE_RE.match(child.name)
    if match and match['suffix'] == suffix and _is_regular(child):
      yield match['key'], child


def list_entries(root: Path) -> list[Entry]:
  """Every entry under `root`, least recently used first."""
  entries = []
  for directory in entry_dirs(root):
    profile = '' if directory == root else directory.name
    for key, _ in _own_files(directory, CACHE_SUFFIX):
      entry = load_entry(directory, key, profile)
      if entry is not None:
        entries.append(entry)
  return sorted(entries, key=lambda e: (e.last_used, e.key))


def remove_key(directory: Path, key: str) -> None:
  """Deletes the files of the entry `key`; one already removed is not an error."""
  for suffix in (CACHE_SUFFIX, ATIME_SUFFIX, META_SUFFIX):
    _unlink_regular(directory / (key + suffix))


def remove(entry: Entry) -> None:
  """Deletes an entry's files; a file another process already removed is not an error."""
  remove_key(entry.directory, entry.key)


def evict_to_size(root: Path, max_bytes: int, protect: Iterable[str] = ()) -> list[Entry]:
  """Removes least-recently-used entries until the entries total at most `max_bytes`.

  Only entries `list_entries` finds are removed. A command given a directory by a person
  calls `require_root` first; a configured cache evicts in the root it configured.

  Args:
    root: the cache root.
    max_bytes: the size to get under.
    protect: keys never removed (the entry just written).

  Returns:
    The removed entries, oldest first.
  """
  entries = list_entries(root)
  total = sum(e.size for e in entries)
  protected = set(protect)
  removed = []
  for entry in entries:
    if total <= max_bytes:
      break
    if entry.key in protected:
      continue
    remove(entry)
    total -= entry.size
    removed.append(entry)
  return removed


def find_by_fingerprint(directory: Path, fingerprint: str) -> Entry | None:
  """The entry whose metadata records `fingerprint` and whose executable is still there."""
  for key, _ in _own_files(directory, META_SUFFIX):
    if read_meta(directory, key).get('fingerprint') == fingerprint:
      entry = load_entry(directory, key, directory.name)
      if entry is not None:
        return entry
  return None


def dir_bytes(path: Path) -> int:
  """Total size of the regular files under `path`, symlinks not followed (0 when absent)."""
  if path.is_symlink() or not path.is_dir():
    return 0
  total = 0
  for parent, _, names in os.walk(path):
    for name in names:
      info = os.lstat(os.path.join(parent, name))
      total += info.st_size if stat.S_ISREG(info.st_mode) else 0
  return total


def autotune_bytes(root: Path) -> int:
  """Bytes of XLA's per-fusion autotune results under all profiles."""
  return sum(dir_bytes(d / AUTOTUNE_DIRNAME) for d in entry_dirs(root))


def clear(root: Path) -> int:
  """Removes every entry, metadata file and autotune result under a marked `root`.

  Only the cache's own files go (see the module docstring); a profile subdirectory left
  empty is removed, the root and its mark stay.

  Returns:
    The number of entries removed.

  Raises:
    CompileCacheError: `root` is not a marked cache root.
  """
  require_root(root, 'clear')
  entries = list_entries(root)
  for entry in entries:
    remove(entry)
  for directory in entry_dirs(root):
    autotune = directory / AUTOTUNE_DIRNAME
    if not autotune.is_symlink() and autotune.is_dir():
      # XLA's own directory, inside ours; rmtree removes symlinks in it without following.
      shutil.rmtree(autotune, ignore_errors=True)
    for child in directory.iterdir():
      # Orphans of entries removed by hand, temporary files of a killed writer, locks.
      if _is_own_file(child.name):
        _unlink_regular(child)
    if directory != root:
      _unlink_regular(directory / PROFILE_FILE)
      try:
        directory.rmdir()
      except OSError:
        pass  # holds files that are not ours: leave them
  return len(entries)
