"""Residual updates with AlphaFold's shared (row- or column-broadcast) dropout."""

from __future__ import annotations

from collections.abc import Callable

import jax

from af_jax.parallel import NO_DAP, Dap


def residual(act: jax.Array, update: Callable[[jax.Array | None], jax.Array], config,
             key: jax.Array | None, dap: Dap = NO_DAP, shard_axis: int = 0) -> jax.Array:
  """`act + dropout(update)`; no dropout when `key` is None (inference).

  `update(residual)` runs the op: without dropout it is called with `act` and
  returns `act + update`, which a chunked op computes in place (`axial_map`'s
  `residual`: no separate update buffer); with dropout it is called with None
  and returns the bare update for the mask to scale.

  Shared dropout draws one mask per column for `per_row` ops and one per row
  for `per_column` ops (Jumper et al. (2021) Suppl. 1.11.6). Under DAP, `act` is
  this device's slice along `shard_axis`: the mask is drawn whole (the same key
  on every device) and sliced, so it is the mask a single device would draw.
  """
  rate = config.get('dropout_rate', 0.0)
  if key is None or not rate:
    return update(act)
  update = update(None)
  shape = list(update.shape)
  shape[shard_axis] *= dap.size
  if config.get('shared_dropout', False):
    shape[0 if config.orientation == 'per_row' else 1] = 1
  keep = jax.random.bernoulli(key, 1.0 - rate, shape)
  if shape[shard_axis] > 1:
    keep = dap.local(keep, shard_axis)
  return act + keep * update / (1.0 - rate)


def apply(x: jax.Array, rate: float, key: jax.Array | None) -> jax.Array:
  """Plain element-wise dropout of `x` (the structure module's); identity without a key."""
  if key is None or not rate:
    return x
  keep = jax.random.bernoulli(key, 1.0 - rate, x.shape)
  return keep * x / (1.0 - rate)
