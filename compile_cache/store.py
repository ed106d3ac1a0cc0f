"""The cache directory on disk: entries, their metadata, least-recently-used eviction.

Layout (no JAX needed to read it)::

  <root>/
    <profile>/                    one per autotuning profile (+ hash of free XLA flags)
      profile.json                the profile's name and XLA flags
      <key>-cache                 JAX's entry: compressed [compile time][serialized executable]
      <key>-atime                 last use, 8-byte little-endian ns (JAX's LRUCache format)
      <key>-meta.json             our metadata: label, compile seconds, sha256, devices, ...
      .lock                       serialises an entry's write with its metadata (flock)
      xla_gpu_per_fusion_autotune_cache_dir/   XLA's per-fusion autotune results (GPU only)
    <key>-cache                   entries JAX wrote straight into the root (no profile)

`<key>` is JAX's cache key, `<module name>-<sha256>`. Entries without `-meta.json` or `-atime`
(written by plain JAX) are listed too: the function comes from the key, times from the file.
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
import secrets
import shutil
import time
from typing import Any, Iterable, Iterator

CACHE_SUFFIX = '-cache'
ATIME_SUFFIX = '-atime'
META_SUFFIX = '-meta.json'
PROFILE_FILE = 'profile.json'
LOCK_FILE = '.lock'
AUTOTUNE_DIRNAME = 'xla_gpu_per_fusion_autotune_cache_dir'


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


def read_meta(directory: Path, key: str) -> dict[str, Any]:
  """The entry's metadata, {} when it has none or the file is unreadable."""
  try:
    meta = json.loads((directory / (key + META_SUFFIX)).read_text())
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


def entry_dirs(root: Path) -> list[Path]:
  """The root and its profile subdirectories (everything that may hold `-cache` files)."""
  if not root.is_dir():
    return []
  subdirs = sorted(d for d in root.iterdir() if d.is_dir() and d.name != AUTOTUNE_DIRNAME)
  return [root, *subdirs]


def _read_atime(directory: Path, key: str) -> float | None:
  try:
    data = (directory / (key + ATIME_SUFFIX)).read_bytes()
  except OSError:
    return None
  return int.from_bytes(data, 'little') / 1e9 if len(data) == 8 else None


def load_entry(directory: Path, key: str, profile: str) -> Entry | None:
  """Reads one entry's file sizes, times and metadata; None when its `-cache` file is gone."""
  try:
    stat = (directory / (key + CACHE_SUFFIX)).stat()
  except OSError:
    return None
  meta = read_meta(directory, key)
  seconds = meta.get('compile_seconds')
  return Entry(
      key=key, directory=directory, profile=profile, size=stat.st_size,
      created=float(meta.get('created', stat.st_mtime)),
      last_used=_read_atime(directory, key) or stat.st_mtime,
      function=meta.get('label') or function_from_key(key),
      compile_seconds=float(seconds) if seconds is not None else None, meta=meta)


def list_entries(root: Path) -> list[Entry]:
  """Every entry under `root`, least recently used first."""
  entries = []
  for directory in entry_dirs(root):
    profile = '' if directory == root else directory.name
    for path in directory.glob('*' + CACHE_SUFFIX):
      entry = load_entry(directory, path.name[:-len(CACHE_SUFFIX)], profile)
      if entry is not None:
        entries.append(entry)
  return sorted(entries, key=lambda e: (e.last_used, e.key))


def remove_key(directory: Path, key: str) -> None:
  """Deletes the files of the entry `key`; one already removed is not an error."""
  for suffix in (CACHE_SUFFIX, ATIME_SUFFIX, META_SUFFIX):
    (directory / (key + suffix)).unlink(missing_ok=True)


def remove(entry: Entry) -> None:
  """Deletes an entry's files; a file another process already removed is not an error."""
  remove_key(entry.directory, entry.key)


def evict_to_size(root: Path, max_bytes: int, protect: Iterable[str] = ()) -> list[Entry]:
  """Removes least-recently-used entries until the entries total at most `max_bytes`.

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
  for meta_path in directory.glob('*' + META_SUFFIX):
    key = meta_path.name[:-len(META_SUFFIX)]
    if read_meta(directory, key).get('fingerprint') == fingerprint:
      entry = load_entry(directory, key, directory.name)
      if entry is not None:
        return entry
  return None


def dir_bytes(path: Path) -> int:
  """Total size of the files under `path` (0 when it does not exist)."""
  return sum(p.stat().st_size for p in path.rglob('*') if p.is_file()) if path.is_dir() else 0


def autotune_bytes(root: Path) -> int:
  """Bytes of XLA's per-fusion autotune results under all profiles."""
  return sum(dir_bytes(d / AUTOTUNE_DIRNAME) for d in entry_dirs(root))


def clear(root: Path) -> int:
  """Removes every entry, metadata file and autotune result under `root`.

  Returns:
    The number of entries removed.
  """
  entries = list_entries(root)
  for entry in entries:
    remove(entry)
  for directory in entry_dirs(root):
    shutil.rmtree(directory / AUTOTUNE_DIRNAME, ignore_errors=True)
    for suffix in (ATIME_SUFFIX, META_SUFFIX):  # orphans of entries removed by hand
      for path in directory.glob('*' + suffix):
        path.unlink(missing_ok=True)
    (directory / LOCK_FILE).unlink(missing_ok=True)
    if directory != root:
      (directory / PROFILE_FILE).unlink(missing_ok=True)
      try:
        directory.rmdir()
      except OSError:
        pass  # holds files that are not ours: leave them
  return len(entries)
