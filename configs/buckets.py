"""Padded sizes: sequence lengths and MSA depths are rounded up to a few buckets.

Each distinct padded shape is one XLA executable to compile (DESIGN.md
decision 4), so a handful of buckets serves every protein. Steps grow with
size (16 up to 128 residues, then about an eighth to a quarter of the length), so
padding adds at most 16 residues or 25% of the length; with the persistent compilation cache
each bucket compiles once, ever, so fine buckets cost little.
"""

from __future__ import annotations

from collections.abc import Sequence

# Residues per chain.
LENGTH_BUCKETS: tuple[int, ...] = (32, 48, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384,
                                   448, 512, 640, 768, 896, 1024, 1280, 1536, 1792, 2048, 2560,
                                   3072, 3584, 4096)
# MSA cluster centres and extra-MSA rows. 1 pads an empty extra MSA to one masked row;
# 512 and 1024 hold AlphaFold's defaults (508/512 clusters, 1024 extra rows), 5120 the
# extra MSA of models 1, 3 and 4.
MSA_BUCKETS: tuple[int, ...] = (1, 8, 32, 64, 128, 256, 512, 1024, 2048, 3072, 4096, 5120)


def _config_error(message: str) -> Exception:
  # Imported late, as in configs.model: af_jax imports configs at start-up.
  from af_jax.errors import ConfigError
  return ConfigError(message)


def bucket_size(n: int, buckets: Sequence[int]) -> int:
  """The smallest bucket >= n.

  Past the last bucket, n is rounded up to a multiple of the last step
  (last - second to last bucket; the last bucket itself when there is one),
  so very long inputs still share shapes.

  Args:
    n: the natural size (>= 0).
    buckets: ascending positive sizes, e.g. LENGTH_BUCKETS.

  Returns:
    The padded size.
  """
  buckets = tuple(int(b) for b in buckets)
  if not buckets or any(b < 1 for b in buckets) or list(buckets) != sorted(set(buckets)):
    raise _config_error(f'buckets {buckets} must be ascending distinct positive sizes; '
                      'e.g. --buckets=64,128,256')
  if n < 0:
    raise _config_error(f'size {n} is negative; bucket_size takes a count of residues or rows')
  for b in buckets:
    if b >= n:
      return b
  step = buckets[-1] - buckets[-2] if len(buckets) > 1 else buckets[-1]
  return -(-n // step) * step


def parse_buckets(text: str) -> tuple[int, ...]:
  """Bucket sizes from a flag value such as '64,128,256' (any order; returned ascending)."""
  parts = [p.strip() for p in text.split(',')]
  if not all(p.isdigit() for p in parts):
    raise _config_error(f'buckets {text!r} must be comma-separated positive integers, '
                      'e.g. --buckets=64,128,256')
  sizes = sorted(int(p) for p in parts)
  if sizes[0] < 1 or len(set(sizes)) != len(sizes):
    raise _config_error(f'buckets {text!r} must be distinct sizes >= 1, e.g. --buckets=64,128,256')
  return tuple(sizes)
