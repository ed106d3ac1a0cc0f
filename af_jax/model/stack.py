"""Stacked blocks: parameters on a leading layer axis, applied with one `lax.scan`.

Like AlphaFold's `layer_stack`: the 48 Evoformer blocks compile as one block.
`create` builds the stacked module (its arrays are `[num_layers, ...]`, the
published layout); `scan` runs a body over the layers, optionally
rematerialised per layer for training.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import jax
import jax.numpy as jnp
from flax import nnx

M = TypeVar('M', bound=nnx.Module)


def create(make_block: Callable[[nnx.Rngs], M], num_layers: int, rngs: nnx.Rngs) -> M:
  """Build `num_layers` independent copies of a block as one stacked module."""
  keys = jax.random.split(rngs.params(), num_layers)
  if not isinstance(keys, jax.core.Tracer):
    # PERF: eagerly, build the layers one by one (their initializers then draw on
    # the host, see primitives.init_array) and stack their arrays; tracing the
    # block under nnx.vmap would compile every initializer instead.
    layers = [nnx.split(make_block(nnx.Rngs(params=k))) for k in keys]
    graphdef = layers[0][0]
    state = jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *(st for _, st in layers))
    return nnx.merge(graphdef, state)

  @nnx.vmap(in_axes=0, out_axes=0)
  def make(key):
    return make_block(nnx.Rngs(params=key))

  return make(keys)


def scan(stacked: nnx.Module, body: Callable[[nnx.Module, Any, Any], Any], carry: Any,
         xs: Any = None, *, remat: bool = False) -> Any:
  """Apply `body(block, carry, x) -> carry` for each layer of `stacked` in order.

  Args:
    stacked: a module built by `create`.
    body: one layer's computation given that layer's block.
    carry: the activations threaded through the layers.
    xs: optional per-layer inputs with a leading layer axis (e.g. dropout keys).
    remat: recompute each layer in the backward pass (saves activation memory).
  """
  graphdef, state = nnx.split(stacked)

  def step(c, layer):
    st, x = layer
    return body(nnx.merge(graphdef, st), c, x), None

  if remat:
    step = jax.checkpoint(step)
  carry, _ = jax.lax.scan(step, carry, (state, xs))
  return carry
