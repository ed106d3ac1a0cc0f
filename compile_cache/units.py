"""Byte sizes as people write them (`800MB`, `1.5GB`, `2GiB`) and back."""

from __future__ import annotations

import re

from compile_cache.errors import CompileCacheError

# Decimal units are what `du -h --si` and disk vendors print; binary ones are accepted too.
_UNITS = {
    '': 1, 'b': 1,
    'k': 10**3, 'kb': 10**3, 'm': 10**6, 'mb': 10**6,
    'g': 10**9, 'gb': 10**9, 't': 10**12, 'tb': 10**12,
    'kib': 2**10, 'mib': 2**20, 'gib': 2**30, 'tib': 2**40,
}
_SIZE_RE = re.compile(r'^\s*(\d+(?:\.\d*)?|\.\d+)\s*([a-zA-Z]*)\s*$')


def parse_size(text: str | int) -> int:
  """Parses `'800MB'`, `'1.5GB'`, `'2GiB'` or a plain byte count into bytes.

  Args:
    text: a number with an optional unit (B, KB, MB, GB, TB decimal; KiB, MiB, GiB, TiB
      binary; case-insensitive), or an int.

  Returns:
    The size in bytes, rounded down.

  Raises:
    CompileCacheError: the text is not a non-negative size.
  """
  if isinstance(text, int):
    if text < 0:
      raise CompileCacheError(f'size {text} is negative; give a size such as 800MB or 1.5GB')
    return text
  match = _SIZE_RE.match(str(text))
  unit = match.group(2).lower() if match else None
  if not match or unit not in _UNITS:
    raise CompileCacheError(
        f'size {text!r} is not understood; write a number with an optional unit, such as '
        '800MB, 1.5GB or 2GiB')
  return int(float(match.group(1)) * _UNITS[unit])


def format_size(num_bytes: int | None) -> str:
  """Formats bytes with a decimal unit: `1.50 GB`, `812.3 kB`, `17 B`; `-` for None."""
  if num_bytes is None:
    return '-'
  size = float(num_bytes)
  for unit in ('B', 'kB', 'MB', 'GB'):
    if abs(size) < 1000:
      return f'{int(size)} B' if unit == 'B' else f'{size:.1f} {unit}'
    size /= 1000
  return f'{size:.2f} TB'
