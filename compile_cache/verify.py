"""`verify`: check that every entry decodes and loads; remove the broken ones."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Literal

import jax

from compile_cache import jax_hooks
from compile_cache import store

Status = Literal['ok', 'decoded', 'broken']


@dataclasses.dataclass(frozen=True)
class Check:
  """The verdict on one entry.

  Attributes:
    entry: the entry checked.
    status: 'ok' (decoded and deserialized onto this process's devices), 'decoded' (the file
      decompresses to an executable, but it was not loaded here: see `detail`), 'broken'
      (unreadable, truncated, corrupted or refused by XLA).
    detail: why, in a few words.
  """
  entry: store.Entry
  status: Status
  detail: str


def _check(entry: store.Entry, devices: list[jax.Device]) -> Check:
  try:
    value = entry.path.read_bytes()
  except OSError as e:
    return Check(entry, 'broken', f'unreadable: {e}')
  try:
    executable, _ = jax_hooks.decode_entry(value)
    if not executable:
      raise ValueError('no executable after the header')
  # The codecs raise their own error types (zlib.error, zstd errors): any failure is a verdict.
  except Exception as e:  # noqa: BLE001
    return Check(entry, 'broken', f'does not decode: {type(e).__name__}: {e}')
  expected = entry.meta.get('sha256')
  if expected is not None and store.digest(value) != expected:
    # Decodes (a codec without a checksum) yet differs from what was stored: loading it could
    # run wrong code, as the cache itself refuses to.
    return Check(entry, 'broken', 'corrupted: decodes, but its sha256 differs from the stored')
  platform, num_devices = entry.meta.get('platform'), entry.meta.get('num_devices')
  if platform is None or num_devices is None:
    # Loading with the wrong device count aborts the process, so no guessing.
    return Check(entry, 'decoded', 'not loaded: no metadata gives its device count')
  if platform != devices[0].platform:
    return Check(entry, 'decoded', f'not loaded: compiled for {platform}, this process has '
                 f'{devices[0].platform}')
  if num_devices > len(devices):
    return Check(entry, 'decoded', f'not loaded: needs {num_devices} devices, this process has '
                 f'{len(devices)}')
  try:
    jax_hooks.deserialize(executable, devices[:num_devices])
  except Exception as e:  # noqa: BLE001  (XLA raises JaxRuntimeError and others)
    return Check(entry, 'broken', f'does not deserialize: {type(e).__name__}: {e}')
  return Check(entry, 'ok', f'deserialized onto {num_devices} {platform} device(s)')


def verify(root: Path, *, remove_broken: bool = True) -> list[Check]:
  """Decodes every entry under `root` and loads those whose device count is recorded.

  Args:
    root: the cache root.
    remove_broken: delete entries that fail (JAX would recompile them on next use); the
      root must then hold compile_cache's mark.

  Returns:
    One check per entry, least recently used first.

  Raises:
    CompileCacheError: `remove_broken` and `root` is not a marked cache root.
  """
  if remove_broken:
    store.require_root(root, 'verify')
  devices = jax.devices()
  checks = [_check(entry, devices) for entry in store.list_entries(root)]
  if remove_broken:
    for check in checks:
      if check.status == 'broken':
        store.remove(check.entry)
  return checks
