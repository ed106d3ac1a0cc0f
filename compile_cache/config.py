"""`configure()`: where the persistent cache lives, its size limit and its autotuning profile.

The cache key. JAX 0.10.2 hashes into every key (jax/_src/cache_key.py): the module with debug
info stripped, the jaxlib version, the platform and its version, the XLA_FLAGS environment
variable (minus dump flags and `--xla_force_host_platform_device_count`), every `sys.argv`
argument that starts with `--xla`, the serialized compile options, the device topology and the
compression codec. A profile's flags go into XLA_FLAGS, so they enter the key; on top of that
each profile (plus a hash of any free flags) gets its own subdirectory, so entries and XLA's
per-fusion autotune results never mix between profiles. JAX also writes that autotune
directory's path into the compile options it hashes; `jax_hooks.install` clears it from what
is hashed (not from what XLA gets), so the key does not depend on where the cache lives: a
cache copied or moved to another path, or baked into a container image, hits every entry.
"""

from __future__ import annotations

import dataclasses
import errno
import logging
import os
from pathlib import Path
import sys
import warnings

import jax

from compile_cache import jax_hooks
from compile_cache import profiles
from compile_cache import store
from compile_cache import units
from compile_cache.errors import CompileCacheError

logger = logging.getLogger(__name__)

ENV_VAR = 'COMPILE_CACHE_DIR'


@dataclasses.dataclass(frozen=True)
class Settings:
  """What `configure()` set up in this process.

  Attributes:
    root: the cache root (what the command line's --cache_dir names).
    profile: the autotuning profile with any free flags.
    max_size_bytes: the limit on all entries under `root`, None for none.
    writable: False when the directory is read-only (entries load, none are written).
  """
  root: Path
  profile: profiles.Profile
  max_size_bytes: int | None
  writable: bool

  @property
  def directory(self) -> Path:
    """Where this profile's entries live (JAX's `jax_compilation_cache_dir`)."""
    return self.root / self.profile.dirname


_settings: Settings | None = None
# XLA_FLAGS as the process had it before configure() first added a profile's flags.
_original_xla_flags: str | None = None


def default_dir() -> Path:
  """`$COMPILE_CACHE_DIR`, else `$XDG_CACHE_HOME/af_jax/xla`, else `~/.cache/af_jax/xla`."""
  if os.environ.get(ENV_VAR):
    return Path(os.environ[ENV_VAR]).expanduser()
  base = os.environ.get('XDG_CACHE_HOME') or os.path.join(os.path.expanduser('~'), '.cache')
  return Path(base) / 'af_jax' / 'xla'


def current() -> Settings | None:
  """The settings of the last `configure()` call in this process, None before any."""
  return _settings


def strip_xla_argv() -> list[str]:
  """Removes `--xla*` arguments from `sys.argv` (after flag parsing) and returns them.

  JAX hashes every `sys.argv` entry that starts with `--xla` into the cache key, so a command
  line's `--xla_flags=...` would give keys that no other program reproduces. Call this once
  the command line is parsed; `configure()` already put the flags into XLA_FLAGS.
  """
  removed = [a for a in sys.argv[1:] if a.startswith('--xla')]
  sys.argv[1:] = [a for a in sys.argv[1:] if not a.startswith('--xla')]
  return removed


def _apply_xla_flags(profile: profiles.Profile) -> None:
  """Puts the profile's flags into XLA_FLAGS, which XLA reads when the backend starts."""
  global _original_xla_flags
  current_flags = os.environ.get('XLA_FLAGS', '')
  if _original_xla_flags is None:
    _original_xla_flags = current_flags
  wanted = ' '.join(profiles.merge_flags(_original_xla_flags.split(), profile.flags))
  if wanted == current_flags:
    return
  if jax_hooks.backends_are_initialized():
    raise CompileCacheError(
        f'autotune_profile={profile.name!r} needs XLA_FLAGS={wanted!r}, but the JAX backend '
        'already started and XLA reads XLA_FLAGS only then; call compile_cache.configure() '
        'before the first jax.devices()/jit call, or set XLA_FLAGS before starting Python')
  os.environ['XLA_FLAGS'] = wanted


def _mark_root(root: Path) -> None:
  """Marks the root as the cache's when it holds nothing else; says so when it cannot.

  A root this process just created, and one an older compile_cache or plain JAX filled
  (only entries and profile subdirectories), are marked, so the maintenance commands keep
  working on caches made before the mark existed. A directory that also holds other files is
  used but left unmarked: the mark is what lets `clear`, `prune` and `verify` delete in a
  directory, and a person, not a program, should decide that for one shared with other data.
  """
  try:
    foreign = store.adopt_root(root)
  except OSError as e:  # e.g. a root-owned shared cache whose profile directory is writable
    logger.warning('compile cache root %s could not be marked (%s); python -m compile_cache '
                   'clear|prune|verify refuse it until its owner runs python -m compile_cache '
                   'mark --cache_dir %s', repr(str(root)), e, store.shell_arg(root))
    return
  if foreign:
    shown = ', '.join(repr(name) for name in foreign[:3]) + (', ...' if len(foreign) > 3 else '')
    logger.warning('compile cache root %s also holds files that are not the cache\'s (%s), so '
                   'it is not marked as a cache root and python -m compile_cache '
                   'clear|prune|verify refuse it; give the cache a directory of its own, or '
                   'mark this one: python -m compile_cache mark --cache_dir %s', repr(str(root)),
                   shown, store.shell_arg(root))


def configure(cache_dir: str | os.PathLike | None = None, *,
              max_size_bytes: int | str | None = None, autotune_profile: str = 'default',
              xla_flags: str = '') -> Path:
  """Enables the persistent cache; call before the first compilation.

  Every executable is stored whatever its compile time or size. On a GPU the profile's XLA
  flags apply to every compilation of the process; on a CPU they are recorded and harmless.
  A root created here, or holding only the cache's own files, gets the mark
  (`store.ROOT_MARK`) that the maintenance commands require before they delete anything.

  Args:
    cache_dir: the cache root (default: `default_dir()`).
    max_size_bytes: keep all entries under the root within this size, evicting the least
      recently used after each write; an int or a string such as '1.5GB'. None: no limit.
    autotune_profile: a key of `profiles.PROFILES`.
    xla_flags: extra XLA flags separated by spaces; they override the profile's and enter
      the cache key.

  Returns:
    The cache root in use.

  Raises:
    CompileCacheError: unknown profile, malformed flag or size, a directory that cannot be
      created, or flags that would change after the JAX backend started.
  """
  global _settings
  profile = profiles.resolve(autotune_profile, xla_flags)
  max_size = units.parse_size(max_size_bytes) if max_size_bytes is not None else None
  if max_size == 0:
    raise CompileCacheError('max_size_bytes=0 would store nothing; give a positive size such '
                            "as '2GB', or None for no limit")
  root = Path(cache_dir).expanduser() if cache_dir else default_dir()
  _apply_xla_flags(profile)
  directory = root / profile.dirname
  writable = True
  try:
    directory.mkdir(parents=True, exist_ok=True)
    store.write_profile_marker(directory, profile.name, profile.flags)
    store.check_writable(directory)  # the marker may already be there: no write so far
  except OSError as e:
    # A read-only root may lack this profile's subdirectory: then nothing loads, but the
    # program runs (uncached) like in any other read-only cache.
    read_only = isinstance(e, PermissionError) or e.errno == errno.EROFS
    if not directory.is_dir() and not (read_only and root.is_dir()):
      raise CompileCacheError(f'cache_dir={str(root)!r} cannot be used ({e}); pass a writable '
                              f'directory or set ${ENV_VAR}') from e
    writable = False
    warnings.warn(f'compile cache {directory} is not writable ({e}); executables load from '
                  'it but new ones are not stored', stacklevel=2)
  if writable:
    _mark_root(root)
  if any(a.startswith('--xla') for a in sys.argv[1:]):
    logger.warning('sys.argv holds --xla* arguments, which JAX hashes into every cache key; '
                   'call compile_cache.strip_xla_argv() after parsing the command line')
  jax.config.update('jax_enable_compilation_cache', True)
  jax.config.update('jax_compilation_cache_dir', str(directory))
  # Cache every executable: a fast compile is still worth skipping at start-up.
  jax.config.update('jax_persistent_cache_min_compile_time_secs', 0.0)
  jax.config.update('jax_persistent_cache_min_entry_size_bytes', -1)
  # Eviction is ours (IndexedCache); JAX's would need the optional `filelock` package.
  jax.config.update('jax_compilation_cache_max_size', -1)
  # XLA keeps per-fusion autotune results in <directory>/xla_gpu_per_fusion_autotune_cache_dir,
  # so they travel with the entries (the path stays out of the key: jax_hooks.install).
  jax.config.update('jax_persistent_cache_enable_xla_caches',
                    'xla_gpu_per_fusion_autotune_cache_dir')
  cache = jax_hooks.IndexedCache(directory, root, max_size, profile.name, writable=writable)
  jax_hooks.install(cache)
  _settings = Settings(root=root, profile=profile, max_size_bytes=max_size, writable=writable)
  logger.info('compile cache: %s (profile %s, limit %s)', directory, profile.name,
              units.format_size(max_size) if max_size else 'none')
  return root
