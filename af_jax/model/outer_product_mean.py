"""Outer product mean: MSA -> pair update. Jumper et al. (2021) Suppl. Alg. 10."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from af_jax.chunking import axial_map
from af_jax.model import primitives


class OuterProductMean(nnx.Module):
  """Mean over sequences of the outer product of two MSA projections.

  Parameters: `layer_norm_input`, `left_projection`, `right_projection`,
  `output_w [c, c, c_z]`, `output_b [c_z]`.
  """

  def __init__(self, config, *, c_m: int, c_z: int, zero_init: bool = True, rngs: nnx.Rngs):
    c = config.num_outer_channel
    self.layer_norm_input = primitives.LayerNorm(c_m)
    self.left_projection = primitives.Linear(c_m, c, rngs=rngs)
    self.right_projection = primitives.Linear(c_m, c, rngs=rngs)
    self.output_w = primitives.param(rngs, (c, c, c_z), 'zeros' if zero_init else 'relu',
                                     fan_in=c * c)
    self.output_b = primitives.param(rngs, (c_z,), 'zeros')

  def __call__(self, msa: jax.Array, msa_mask: jax.Array, chunk: int | None = None) -> jax.Array:
    """Args: msa [N_seq, N_res, c_m]; msa_mask [N_seq, N_res]. Returns [N_res, N_res, c_z]."""
    mask = msa_mask[..., None].astype(msa.dtype)
    x = self.layer_norm_input(msa)
    left = mask * self.left_projection(x)
    right = mask * self.right_projection(x)
    w = self.output_w[...].astype(msa.dtype)
    b = self.output_b[...].astype(msa.dtype)

    def row(left_i, mask_i):
      # left_i [N_seq, c] for residue i; Alg. 10 lines 2-4 for all j at once.
      outer = jnp.einsum('sc,sje->jce', left_i, right)
      out = jnp.einsum('jce,cef->jf', outer, w) + b
      # NUMERICS: bias inside the sum, then divide by (1e-3 + number of pairs).
      norm = jnp.einsum('s,sj->j', mask_i, msa_mask.astype(msa.dtype))
      return out / (1e-3 + norm[:, None])

    return axial_map(row, (left, msa_mask.astype(msa.dtype)), axis=1, chunk=chunk)
