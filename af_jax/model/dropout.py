"""Residual updates with AlphaFold's shared (row- or column-broadcast) dropout."""

from __future__ import annotations

import jax


def residual(act: jax.Array, update: jax.Array, config, key: jax.Array | None) -> jax.Array:
  """`act + dropout(update)`; no dropout when `key` is None (inference).

  Shared dropout draws one mask per column for `per_row` ops and one per row
  for `per_column` ops (Jumper et al. (2021) Suppl. 1.11.6).
  """
  rate = config.get('dropout_rate', 0.0)
  if key is None or not rate:
    return act + update
  shape = list(update.shape)
  if config.get('shared_dropout', False):
    shape[0 if config.orientation == 'per_row' else 1] = 1
  keep = jax.random.bernoulli(key, 1.0 - rate, shape)
  return act + keep * update / (1.0 - rate)
