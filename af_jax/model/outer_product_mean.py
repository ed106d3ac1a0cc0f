"""Outer product mean: MSA -> pair update. Jumper et al. (2021) Suppl. Alg. 10."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from af_jax.chunking import axial_map
from af_jax.model import primitives
from af_jax.parallel import NO_DAP, Dap


class OuterProductMean(nnx.Module):
  """Mean over sequences of the outer product of two MSA projections.

  Parameters: `layer_norm_input`, `left_projection`, `right_projection`,
  `output_w [c, c, c_z]`, `output_b [c_z]`.
  """

  def __init__(self, config, *, c_m: int, c_z: int, zero_init: bool = True,
               dtype=jnp.float32, rngs: nnx.Rngs):
    c = config.num_outer_channel
    self.dtype = jnp.dtype(dtype)
    self.layer_norm_input = primitives.LayerNorm(c_m)
    self.left_projection = primitives.Linear(c_m, c, dtype=dtype, rngs=rngs)
    self.right_projection = primitives.Linear(c_m, c, dtype=dtype, rngs=rngs)
    self.output_w = primitives.param(rngs, (c, c, c_z), 'zeros' if zero_init else 'relu',
                                     fan_in=c * c)
    self.output_b = primitives.param(rngs, (c_z,), 'zeros')

  @jax.named_scope('outer_product_mean')
  def __call__(self, msa: jax.Array, msa_mask: jax.Array, chunk: int | None = None,
               dap: Dap = NO_DAP, *, residual: jax.Array | None = None) -> jax.Array:
    """Args: msa [N_seq, N_res, c_m]; msa_mask [N_seq, N_res]. Returns [N_res, N_res, c_z]
    (added to `residual`, the pair, if given).

    Under DAP, msa is this device's columns and the result its pair rows; msa_mask
    is whole. The right projection is all-gathered.
    """
    dt, f32 = self.dtype, jnp.float32
    msa_mask = msa_mask.astype(f32)
    local_mask = dap.columns(msa_mask)
    x = self.layer_norm_input(msa)
    left = local_mask[..., None].astype(dt) * self.left_projection(x)
    right = local_mask[..., None].astype(dt) * self.right_projection(x)
    right = dap.gather(right, axis=1)
    w, b = self.output_w[...], self.output_b[...]

    def row(left_i, mask_i):
      # left_i [N_seq, c] for residue i; Alg. 10 lines 2-4 for all j at once.
      outer = primitives.einsum('sc,sje->jce', left_i, right, dtype=dt)
      # NUMERICS: the projection to c_z accumulates in float32, the bias goes
      # inside the sum, and the division by (1e-3 + number of pairs) is float32
      # (a bfloat16 count is inexact past 256 sequences).
      out = primitives.einsum('jce,cef->jf', outer, w, dtype=dt, out_dtype=f32) + b
      norm = jnp.einsum('s,sj->j', mask_i, msa_mask)
      return (out / (1e-3 + norm[:, None])).astype(dt)

    return axial_map(row, (left, local_mask), axis=1, chunk=chunk, residual=residual)
