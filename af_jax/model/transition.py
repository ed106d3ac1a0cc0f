"""Two-layer MLP transitions. Jumper et al. (2021) Suppl. Alg. 9 and 15."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from af_jax.chunking import axial_map
from af_jax.model import primitives


class Transition(nnx.Module):
  """LayerNorm, Linear(n*c) + relu, Linear(c): `input_layer_norm`, `transition1/2`."""

  def __init__(self, config, *, c: int, zero_init: bool = True, dtype=jnp.float32,
               rngs: nnx.Rngs):
    n = int(c * config.num_intermediate_factor)
    self.input_layer_norm = primitives.LayerNorm(c)
    self.transition1 = primitives.Linear(c, n, initializer='relu', dtype=dtype, rngs=rngs)
    self.transition2 = primitives.Linear(n, c, initializer=primitives.final_init(zero_init),
                                         dtype=dtype, rngs=rngs)

  @jax.named_scope('transition')
  def __call__(self, act: jax.Array, mask: jax.Array, chunk: int | None = None, *,
               residual: jax.Array | None = None) -> jax.Array:
    """Args: act [N, M, c] (MSA or pair); mask [N, M], unused (AlphaFold does not mask).

    Returns the update, [N, M, c] (added to `residual` if given).
    """
    del mask  # AlphaFold's transition is pointwise and does not mask.
    def row(x):
      # PERF: normalised row by row, so no whole normalised copy is kept.
      return self.transition2(jax.nn.relu(self.transition1(self.input_layer_norm(x))))

    return axial_map(row, (act,), axis=0, chunk=chunk, residual=residual)
