"""Every use of JAX internals in compile_cache, in one place (checked against JAX 0.10.2).

JAX's persistent cache (jax._src.compilation_cache) keeps one `CacheInterface` object in the
module global `_cache` and builds its own `LRUCache` there on first use. We put an
`IndexedCache` there instead: the same files in the same format (`<key>-cache`, `<key>-atime`),
plus a metadata record per entry, least-recently-used eviction of our own, and a sha256
check of every entry before JAX sees its bytes. We do not use JAX's eviction
(`jax_compilation_cache_max_size`): in 0.10.2 it needs the optional `filelock` package, and
without it the cache fails to initialise and JAX silently runs uncached after one warning.

What JAX 0.10.2 does with a damaged entry (compiler._cache_read): any exception while
decompressing or deserializing is caught, warned about (`Error reading persistent compilation
cache entry`), and the function is compiled again and `put` over the bad file. That covers
truncation and, with zlib (whose checksum JAX relies on when zstandard is absent), flipped bits.
It does not cover bytes that decompress but differ: with zstd (no checksum by default) a
flipped bit reaches `deserialize_executable`, which then runs wrong code or aborts the process
(tried by re-compressing a corrupted executable). Hence the digest in `IndexedCache.get`.

The key. JAX derives the paths of XLA's own side caches from `jax_compilation_cache_dir` and
writes them into the compile options (compiler.get_compile_options: by default
`xla_gpu_per_fusion_autotune_cache_dir`, on every platform), and cache_key.get hashes those
options with only dump flags, the CUDA directory and the autotune cache *mode* cleared. So the
key named the cache's own directory, and a cache copied, moved or baked into a container image
never hit. `install` wraps `compilation_cache.get_cache_key` (the one function compiler.py calls
for every key) to hash a copy of the options with those paths cleared; the compiler still gets
the real ones, so XLA keeps reading and writing its autotune results beside the entries. The
paths say where XLA keeps results, not what it compiles: the key never covered what the
autotune directory holds, only its name, so clearing the name loses no guarantee.

Executables with host callbacks (`jax.debug.callback`, `io_callback`): JAX 0.10.2 neither
writes them (compiler._cache_write skips them) nor could it load them, since a callback is a
Python object the executable reaches by its index in the list given to the compiler, and
`get_executable_and_time` deserializes without one, so calling such an entry crashes the
process. `install` wraps three functions so that they are cached like any other:
`compiler.compile_or_get_cached` notes the lowering's callbacks for its thread,
`compilation_cache.get_executable_and_time` hands them to `deserialize_executable`, and
`compiler._cache_write` writes the entry. Such an entry's key is hashed once more
(`_callback_key`), so a process without these wrappers (plain JAX on the same directory)
never finds it and never loads it without its callbacks. The callbacks are the ones of this
process's own lowering of the same program, at the same indices (the key covers the HLO, which
holds the indices), so a loaded executable calls this process's functions.

Other internals used: `xla_bridge.backends_are_initialized` (XLA reads XLA_FLAGS once, when
the first backend starts), and the entry codec (`decompress_executable`,
`extract_executable_and_time`) plus `Client.deserialize_executable` for `verify`.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import hashlib
import logging
from pathlib import Path
import threading
import time
from typing import Any, Callable, Iterator
import warnings

import jax
from jax._src import compilation_cache as _jax_cache
from jax._src import compiler as _jax_compiler
from jax._src import xla_bridge as _xla_bridge
from jax._src.compilation_cache_interface import CacheInterface
from jax._src.lib import xla_client as _xla_client

from compile_cache import store

logger = logging.getLogger(__name__)

_local = threading.local()


def backends_are_initialized() -> bool:
  """True once a JAX backend has started (after which XLA_FLAGS changes are ignored)."""
  return _xla_bridge.backends_are_initialized()


def decode_entry(value: bytes) -> tuple[bytes, int]:
  """A `-cache` file's bytes -> (serialized executable, whole compile seconds JAX stored)."""
  return _jax_cache.extract_executable_and_time(_jax_cache.decompress_executable(value))


def deserialize(executable: bytes, devices: list[jax.Device]) -> None:
  """Loads a serialized executable onto `devices` and drops it; raises if it cannot load.

  The device count must be the one the executable was compiled for: XLA aborts the process
  (a CHECK failure, not an exception) when a sharded executable meets fewer devices.
  """
  client = devices[0].client
  client.deserialize_executable(executable, _xla_client.DeviceList(tuple(devices)), None)


@dataclasses.dataclass
class Lookup:
  """What the persistent cache saw during one compilation in this thread.

  Attributes:
    key: JAX's cache key for the executable (None: the cache was not consulted).
    hit: the executable was loaded from the cache.
    written: a freshly compiled executable was written to the cache.
  """
  key: str | None = None
  hit: bool = False
  written: bool = False


@contextlib.contextmanager
def observe() -> Iterator[Lookup]:
  """Records the cache key and hit/miss of compilations run inside the block in this thread."""
  previous = getattr(_local, 'lookup', None)
  _local.lookup = lookup = Lookup()
  try:
    yield lookup
  finally:
    _local.lookup = previous


def _current_lookup() -> Lookup | None:
  return getattr(_local, 'lookup', None)


class IndexedCache(CacheInterface):
  """JAX's file cache, plus per-entry metadata and least-recently-used eviction.

  Args:
    directory: where this profile's entries live.
    root: the cache root (eviction counts every profile under it).
    max_size_bytes: the size all entries under `root` are kept under; None: no limit.
    profile: the autotuning profile's name, recorded with each entry.
    writable: False for a read-only directory: load entries, store nothing.
  """

  def __init__(self, directory: Path, root: Path, max_size_bytes: int | None, profile: str,
               *, writable: bool = True):
    self._path = directory
    self._root = root
    self._max_size = max_size_bytes
    self._profile = profile
    self._miss_at: dict[str, float] = {}
    self._lock = threading.Lock()
    self._writable = writable

  @property
  def writable(self) -> bool:
    """False once the directory turned out read-only (or was configured so)."""
    return self._writable

  def no_more_writes(self, error: OSError) -> None:
    """Stops writing after a refused write, with one warning for the process."""
    self._no_more_writes(error)

  def _no_more_writes(self, error: OSError) -> None:
    if self._writable:
      self._writable = False
      warnings.warn(f'compile cache {self._path} is not writable ({error}); executables load '
                    'from it but new ones are not stored', stacklevel=2)

  def get(self, key: str) -> bytes | None:
    lookup = _current_lookup()
    if lookup is not None:
      lookup.key = key
    with self._lock:
      # put() follows a miss or a load that failed; it measures the compile from here.
      self._miss_at[key] = time.monotonic()
    path = self._path / (key + store.CACHE_SUFFIX)
    try:
      with store.locked(self._path, exclusive=False):
        value = path.read_bytes()
        expected = store.read_meta(self._path, key).get('sha256')
    except FileNotFoundError:
      return None
    if expected is not None and store.digest(value) != expected:
      # Truncated or corrupted on disk. JAX's codec would catch a truncation, but a flipped
      # bit inside a frame without a checksum (zstd) decompresses and then loads wrong code
      # or aborts the process, so no bytes that differ from what was stored reach XLA.
      warnings.warn(f'compile cache entry {path} is corrupted ({len(value)} bytes, sha256 '
                    'differs from the one stored); recompiling and replacing it', stacklevel=2)
      if self._writable:
        try:
          with store.locked(self._path, exclusive=True):
            store.remove_key(self._path, key)
        except OSError as e:
          self._no_more_writes(e)
      return None
    with self._lock:
      self._miss_at.pop(key, None)
    if lookup is not None:
      lookup.hit = True
    if self._writable:
      try:
        store.touch(self._path, key)
      except OSError as e:
        self._no_more_writes(e)
    return value

  def put(self, key: str, value: bytes) -> None:
    # JAX calls put right after the miss it compiled for, in the same thread; also after a
    # get whose bytes JAX could not decode or load (it warns and compiles), so no hit.
    lookup = _current_lookup()
    if lookup is not None:
      lookup.hit = False
    with self._lock:
      missed = self._miss_at.pop(key, None)
    seconds = time.monotonic() - missed if missed is not None else None
    if not self._writable:
      return
    if self._max_size is not None and len(value) > self._max_size:
      warnings.warn(f'executable {key} ({len(value)} bytes) is larger than the cache limit '
                    f'max_size_bytes={self._max_size}; not stored', stacklevel=2)
      return
    try:
      # Replaces an existing file: JAX only writes after a failed load, so an entry already
      # there is one that could not be read back (truncated, corrupted) and must go.
      with store.locked(self._path, exclusive=True):
        store.write_entry(self._path, key, value)
        store.update_meta(self._path, key, created=time.time(), profile=self._profile,
                          sha256=store.digest(value),
                          compile_seconds=round(seconds, 3) if seconds is not None else None)
    except OSError as e:
      self._no_more_writes(e)
      return
    if lookup is not None:
      lookup.key, lookup.written = key, True
    if self._max_size is not None:
      for entry in store.evict_to_size(self._root, self._max_size, protect=(key,)):
        logger.info('compile cache: evicted %s (%d bytes, least recently used)',
                    entry.key, entry.size)


# Debug options that hold paths JAX derives from the cache directory (see the module docstring).
LOCATION_OPTIONS = ('xla_gpu_per_fusion_autotune_cache_dir', 'xla_gpu_kernel_cache_file')


def _location_free(compile_options: Any) -> Any:
  """`compile_options`, or a copy with the `LOCATION_OPTIONS` cleared when any is set."""
  debug = compile_options.executable_build_options.debug_options
  if not any(getattr(debug, name) for name in LOCATION_OPTIONS):
    return compile_options
  compile_options = copy.deepcopy(compile_options)  # the original goes on to the compiler
  debug = compile_options.executable_build_options.debug_options
  for name in LOCATION_OPTIONS:
    setattr(debug, name, '')
  return compile_options


def _path_independent(get_cache_key: Callable[..., str]) -> Callable[..., str]:
  """Wraps JAX's `get_cache_key` to hash the options without the cache directory's paths
  (and an executable with host callbacks under a key of its own: `_callback_key`)."""
  def wrapper(module: Any, devices: Any, compile_options: Any, backend: Any, *args: Any,
              **kwargs: Any) -> str:
    key = get_cache_key(module, devices, _location_free(compile_options), backend, *args,
                        **kwargs)
    return _callback_key(key) if _host_callbacks() else key
  wrapper.path_independent = True
  return wrapper


def _callback_key(key: str) -> str:
  """`name-<sha256>` -> `name-<another sha256>`: the key of an entry with host callbacks."""
  name, digest = key.rsplit('-', 1)
  return f'{name}-{hashlib.sha256(f"{digest}/host_callbacks".encode()).hexdigest()}'


def _host_callbacks() -> list:
  """The host callbacks of the executable this thread is compiling or loading."""
  return getattr(_local, 'host_callbacks', None) or []


def _noting_callbacks(compile_or_get_cached: Callable[..., Any]) -> Callable[..., Any]:
  """Wraps `compiler.compile_or_get_cached` to note the lowering's host callbacks."""
  def wrapper(backend: Any, computation: Any, devices: Any, compile_options: Any,
              host_callbacks: Any, *args: Any, **kwargs: Any) -> Any:
    previous = getattr(_local, 'host_callbacks', None)
    _local.host_callbacks = list(host_callbacks)
    try:
      return compile_or_get_cached(backend, computation, devices, compile_options,
                                   host_callbacks, *args, **kwargs)
    finally:
      _local.host_callbacks = previous
  wrapper.notes_callbacks = True
  return wrapper


def _loading_callbacks(get_executable_and_time: Callable[..., Any]) -> Callable[..., Any]:
  """Wraps `get_executable_and_time` to load an entry with this lowering's host callbacks."""
  def wrapper(cache_key: str, compile_options: Any, backend: Any,
              executable_devices: Any) -> tuple[Any, int | None]:
    callbacks = _host_callbacks()
    if not callbacks:
      return get_executable_and_time(cache_key, compile_options, backend, executable_devices)
    cache = _jax_cache._get_cache(backend)
    value = cache.get(cache_key) if cache is not None else None
    if value is None:
      return None, None
    serialized, compile_time = decode_entry(value)
    return backend.deserialize_executable(serialized, executable_devices, compile_options,
                                          host_callbacks=callbacks), compile_time
  wrapper.loads_callbacks = True
  return wrapper


def _writing_callbacks(cache_write: Callable[..., Any]) -> Callable[..., Any]:
  """Wraps `compiler._cache_write` to store an executable that has host callbacks."""
  def wrapper(cache_key: str, compile_time_secs: float, module_name: str, backend: Any,
              executable: Any, host_callbacks: Any) -> None:
    # The callbacks are not part of the serialized executable: the loader supplies them.
    del host_callbacks
    return cache_write(cache_key, compile_time_secs, module_name, backend, executable, [])
  wrapper.writes_callbacks = True
  return wrapper


def install(cache: CacheInterface | None) -> None:
  """Makes `cache` the persistent cache JAX reads and writes (None: JAX builds its own).

  Either way the keys stop depending on the cache directory's path, and executables with host
  callbacks are stored and loaded with them (see the module docstring).
  """
  if not getattr(_jax_cache.get_cache_key, 'path_independent', False):
    _jax_cache.get_cache_key = _path_independent(_jax_cache.get_cache_key)
  if not getattr(_jax_compiler.compile_or_get_cached, 'notes_callbacks', False):
    _jax_compiler.compile_or_get_cached = _noting_callbacks(_jax_compiler.compile_or_get_cached)
  if not getattr(_jax_cache.get_executable_and_time, 'loads_callbacks', False):
    _jax_cache.get_executable_and_time = _loading_callbacks(_jax_cache.get_executable_and_time)
  if not getattr(_jax_compiler._cache_write, 'writes_callbacks', False):
    _jax_compiler._cache_write = _writing_callbacks(_jax_compiler._cache_write)
  _jax_cache.reset_cache()
  if cache is not None:
    with _jax_cache._cache_initialized_mutex:
      _jax_cache._cache = cache
      _jax_cache._cache_initialized = True


def installed() -> CacheInterface | None:
  """The cache object JAX currently uses (None before first use or when disabled)."""
  return _jax_cache._cache
