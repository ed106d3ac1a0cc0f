"""`compile_with_cache`: compile a lowered function through the cache and say what happened."""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import time
from typing import Any, Literal

import jax
import jaxlib

from compile_cache import config
from compile_cache import jax_hooks
from compile_cache import store

logger = logging.getLogger(__name__)

# Characters of a label an INFO line shows (the whole label and the key are at DEBUG).
_SHOWN_LABEL = 64

Status = Literal['compiled', 'loaded', 'skipped', 'in_process', 'uncached']


@dataclasses.dataclass(frozen=True)
class CompileResult:
  """The outcome of compiling one labelled function.

  Attributes:
    label: the caller's name for it (e.g. `model_1_ptm/L256/msa512`).
    compiled: the executable; None when a warm-up skipped it.
    status: 'compiled' (cache miss: XLA ran, entry written), 'loaded' (cache hit),
      'skipped' (warm-up found it cached and did not load it), 'in_process' (this process had
      already compiled it), 'uncached' (no persistent cache configured).
    seconds: wall time of the compile or load.
    key: JAX's cache key, None when the cache was not consulted.
    size_bytes: the cache entry's size, None when there is no entry.
    compile_seconds: what compiling it cost (now or when it was stored), None if unknown.
  """
  label: str
  compiled: Any
  status: Status
  seconds: float
  key: str | None = None
  size_bytes: int | None = None
  compile_seconds: float | None = None

  @property
  def hit(self) -> bool:
    """True when no XLA compilation ran."""
    return self.status in ('loaded', 'skipped', 'in_process')


def fingerprint(lowered: jax.stages.Lowered) -> str:
  """A hash of what decides the executable, to find an entry before compiling.

  Ours, not JAX's key (which needs its compile options): the lowered module's text, the
  JAX and jaxlib versions, XLA_FLAGS, the cache profile and the devices.
  """
  settings = config.current()
  device = jax.devices()[0]
  parts = [
      lowered.as_text(), jax.__version__, jaxlib.__version__,
      ' '.join(sorted(os.environ.get('XLA_FLAGS', '').split())),
      settings.profile.dirname if settings else '',
      device.platform, device.device_kind, str(jax.device_count()),
  ]
  digest = hashlib.sha256()
  for part in parts:
    digest.update(part.encode())
    digest.update(b'\0')
  return digest.hexdigest()


def _device_info(compiled: jax.stages.Compiled) -> tuple[str | None, int | None]:
  """(platform, number of devices) the executable runs on, from its shardings."""
  shardings = jax.tree.leaves((compiled.input_shardings, compiled.output_shardings),
                              is_leaf=lambda x: isinstance(x, jax.sharding.Sharding))
  devices = set()
  for sharding in shardings:
    if isinstance(sharding, jax.sharding.Sharding):
      devices |= set(sharding.device_set)
  if not devices:
    return None, None
  return next(iter(devices)).platform, len(devices)


def compile_with_cache(label: str, lowered: jax.stages.Lowered, *,
                       known_fingerprint: str | None = None) -> CompileResult:
  """Compiles `lowered` (loading it from the persistent cache when there) and records it.

  The entry's metadata gets the label, the compile seconds (on a miss), the platform and the
  device count (which `verify` needs), and the fingerprint that lets a warm-up skip it.

  Args:
    label: the name `python -m compile_cache list` shows for the entry.
    lowered: `jitted_fn.lower(*shape_structs)`.
    known_fingerprint: `fingerprint(lowered)` when the caller already computed it.

  Returns:
    The executable with the hit/miss status, timings and the entry's size.
  """
  settings = config.current()
  start = time.monotonic()
  with jax_hooks.observe() as lookup:
    compiled = lowered.compile()
  seconds = time.monotonic() - start
  if settings is None or jax_hooks.installed() is None:
    return CompileResult(label, compiled, 'uncached', seconds)
  if lookup.key is None:
    return CompileResult(label, compiled, 'in_process', seconds)
  status: Status = 'loaded' if lookup.hit else 'compiled'
  platform, num_devices = _device_info(compiled)
  directory = settings.directory
  entry = store.load_entry(directory, lookup.key, directory.name)
  compile_seconds = round(seconds, 3) if status == 'compiled' else None
  cache = jax_hooks.installed()
  if entry is not None and settings.writable and getattr(cache, 'writable', True):
    try:
      entry_fingerprint = known_fingerprint or fingerprint(lowered)
      # Locked: a concurrent put() of the same key must not lose its sha256 to this merge.
      with store.locked(directory, exclusive=True):
        meta = store.update_meta(
            directory, lookup.key, label=label, platform=platform, num_devices=num_devices,
            fingerprint=entry_fingerprint, compile_seconds=compile_seconds)
      compile_seconds = meta.get('compile_seconds')
    except OSError as e:
      if isinstance(cache, jax_hooks.IndexedCache):
        cache.no_more_writes(e)  # one warning for the process, then no more writes
      else:
        logger.warning('compile cache: metadata for %s not written (%s)', label, e)
  elif entry is not None:
    compile_seconds = entry.compile_seconds
  shown = label if len(label) <= _SHOWN_LABEL else label[:_SHOWN_LABEL - 3] + '...'
  logger.info('compile cache %s: %s in %.2f s', 'hit' if status == 'loaded' else 'miss', shown,
              seconds)
  logger.debug('compile cache key of %s: %s', label, lookup.key)
  return CompileResult(label, compiled, status, seconds, key=lookup.key,
                       size_bytes=entry.size if entry else None, compile_seconds=compile_seconds)
