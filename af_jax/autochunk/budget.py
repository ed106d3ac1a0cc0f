"""AutoChunk's memory budget: sizes as people write them, and the default from the device."""

from __future__ import annotations

import compile_cache
import jax

from af_jax.errors import ConfigError


def parse_memory(text: str | int) -> int:
  """Bytes from `'1.5GB'`, `'800MB'`, `'512MiB'`, `'2G'` or a plain byte count.

  Decimal units (kB, MB, GB, TB) and binary ones (KiB, MiB, GiB, TiB), any case.

  Raises:
    ConfigError: the text is not a positive size.
  """
  try:
    value = compile_cache.parse_size(text.strip() if isinstance(text, str) else text)
  except (compile_cache.CompileCacheError, TypeError, ValueError) as e:
    raise ConfigError(f'memory size {text!r} is not understood; write bytes or a number '
                      'with a unit, such as 1.5GB, 800MB or 512MiB') from e
  if value <= 0:
    raise ConfigError(f'memory size {text!r} must be positive, such as 1.5GB or 800MB')
  return value


def format_bytes(num_bytes: int | float) -> str:
  """`1.50 GB`, `812.3 MB`: decimal units, as `parse_memory` reads them back."""
  size = float(num_bytes)
  for unit in ('B', 'kB', 'MB'):
    if abs(size) < 1000:
      return f'{size:.0f} {unit}' if unit == 'B' else f'{size:.1f} {unit}'
    size /= 1000
  return f'{size:.2f} GB'


def available_host_memory() -> int | None:
  """MemAvailable from /proc/meminfo in bytes (Linux), else None."""
  try:
    with open('/proc/meminfo') as f:
      for line in f:
        if line.startswith('MemAvailable:'):
          return int(line.split()[1]) * 1024
  except (OSError, ValueError, IndexError):
    pass
  return None


_CPU_FRACTION = 0.45  # of MemAvailable; see default_budget


def default_budget(device: jax.Device | None = None, fraction: float | None = None) -> int:
  """A memory budget from the device's own limit, times a safety fraction.

  On an accelerator, XLA's allocator limit (`memory_stats()['bytes_limit']`,
  already the preallocated share of the device) times 0.9: fragmentation and
  buffers outside the compiled program (inputs in flight, the next recycle's
  features) need the rest. On CPU, the RAM available now (MemAvailable) times
  0.45: besides Python, the data pipeline and the host parameters, XLA:CPU
  (jaxlib 0.10.2) runs dots through YNNPACK fusions whose packing buffers are
  allocated at run time, outside the buffer assignment the budget is checked
  against, so a process grows well past its compiled peak (numbers: bench/RESULTS.md,
  "Behind the code"). That figure is rounded down to a coarse step (`coarse`): free
  memory drifts between runs, and the budget keys AutoChunk's decision (and so a
  bucket's plan and executable), which must be the same in a warm-up and the fold after it.
  """
  device = device or jax.devices()[0]
  stats = None
  try:
    stats = device.memory_stats()
  except (AttributeError, NotImplementedError, RuntimeError):
    stats = None
  if stats and stats.get('bytes_limit'):
    return int(stats['bytes_limit'] * (0.9 if fraction is None else fraction))
  avail = available_host_memory()
  if avail is None:
    raise ConfigError(f'cannot tell how much memory {device} has; pass --memory_budget '
                      '(e.g. 16GB)')
  return coarse(int(avail * (_CPU_FRACTION if fraction is None else fraction)))


def coarse(num_bytes: int) -> int:
  """`num_bytes` rounded down to the nearest 2**k or 1.5 * 2**k bytes (1 GiB, 1.5 GiB, 2 GiB,
  3 GiB, 4 GiB, 6 GiB, ...): at most a third less, and the same for any amount up to the
  next step."""
  if num_bytes < 2:
    return max(int(num_bytes), 0)
  power = 1 << (int(num_bytes).bit_length() - 1)
  return power + power // 2 if num_bytes >= power + power // 2 else power
