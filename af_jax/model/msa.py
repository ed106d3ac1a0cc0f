"""MSA-axis attention: row attention with pair bias, column and global column attention."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
from flax import nnx

from af_jax.chunking import axial_map
from af_jax.model import primitives
from af_jax.model.attention import Attention, GlobalAttention, per_head_bias
from af_jax.parallel import NO_DAP, Dap


class MSARowAttentionWithPairBias(nnx.Module):
  """MSA per-row attention biased by the pair representation. Jumper et al. (2021) Suppl. Alg. 7."""

  def __init__(self, config, *, c_m: int, c_z: int, zero_init: bool = True,
               dtype=jnp.float32, rngs: nnx.Rngs):
    h = config.num_head
    self.dtype = jnp.dtype(dtype)
    self.query_norm = primitives.LayerNorm(c_m)
    self.feat_2d_norm = primitives.LayerNorm(c_z)
    self.feat_2d_weights = primitives.param(rngs, (c_z, h), f'normal:{c_z ** -0.5}')
    self.attention = Attention(c_m, c_m, c_m, num_head=h, key_dim=config.get('key_dim'),
                               value_dim=config.get('value_dim'), gating=config.gating,
                               zero_init=zero_init, dtype=dtype, rngs=rngs)

  @jax.named_scope('msa_row_attention_with_pair_bias')
  def __call__(self, msa: jax.Array, msa_mask: jax.Array, pair: jax.Array,
               chunk: int | None = None, dap: Dap = NO_DAP, *,
               residual: jax.Array | None = None) -> jax.Array:
    """Args: msa [N_seq, N_res, c_m]; msa_mask [N_seq, N_res]; pair [N_res, N_res, c_z].

    Under DAP, msa, msa_mask and pair are this device's rows (sequences; pair rows).
    Returns the update to msa, [N_seq, N_res, c_m] (added to `residual` if given).
    """
    chex.assert_rank([msa, msa_mask, pair], [3, 2, 3])
    mask_bias = primitives.mask_to_bias(msa_mask)
    # Alg. 7 line 3: one bias per head shared by every row, from normalised pair
    # rows `chunk` at a time.
    pair_bias = per_head_bias(self.feat_2d_norm, self.feat_2d_weights[...], pair, chunk=chunk,
                              dap=dap, dtype=self.dtype)

    def row(x, b):
      x = self.query_norm(x)
      return self.attention(x, x, b[None, None, :] + pair_bias)

    return axial_map(row, (msa, mask_bias), axis=0, chunk=chunk, residual=residual)


class MSAColumnAttention(nnx.Module):
  """MSA per-column attention. Jumper et al. (2021) Suppl. Alg. 8."""

  def __init__(self, config, *, c_m: int, zero_init: bool = True, dtype=jnp.float32,
               rngs: nnx.Rngs):
    self.query_norm = primitives.LayerNorm(c_m)
    self.attention = Attention(c_m, c_m, c_m, num_head=config.num_head,
                               key_dim=config.get('key_dim'), value_dim=config.get('value_dim'),
                               gating=config.gating, zero_init=zero_init, dtype=dtype, rngs=rngs)

  @jax.named_scope('msa_column_attention')
  def __call__(self, msa: jax.Array, msa_mask: jax.Array, chunk: int | None = None, *,
               residual: jax.Array | None = None) -> jax.Array:
    """Args: msa [N_seq, N_res, c_m]; msa_mask [N_seq, N_res].

    Returns the update (added to `residual` if given)."""
    mask_bias = primitives.mask_to_bias(msa_mask)

    def column(x, b):
      x = self.query_norm(x)
      return self.attention(x, x, b[None, None, :])

    return axial_map(column, (msa, mask_bias), axis=1, chunk=chunk, out_axis=1,
                     residual=residual)


class MSAColumnGlobalAttention(nnx.Module):
  """Extra-MSA per-column global attention. Jumper et al. (2021) Suppl. Alg. 19."""

  def __init__(self, config, *, c_m: int, zero_init: bool = True, dtype=jnp.float32,
               rngs: nnx.Rngs):
    self.query_norm = primitives.LayerNorm(c_m)
    self.attention = GlobalAttention(c_m, c_m, c_m, num_head=config.num_head,
                                     key_dim=config.get('key_dim'),
                                     value_dim=config.get('value_dim'), gating=config.gating,
                                     zero_init=zero_init, dtype=dtype, rngs=rngs)

  @jax.named_scope('msa_column_global_attention')
  def __call__(self, msa: jax.Array, msa_mask: jax.Array, chunk: int | None = None, *,
               residual: jax.Array | None = None) -> jax.Array:
    """Args: msa [N_extra, N_res, c_e]; msa_mask [N_extra, N_res].

    Returns the update (added to `residual` if given)."""
    def column(x, m):
      x = self.query_norm(x)
      return self.attention(x, x, m)

    return axial_map(column, (msa, msa_mask), axis=1, chunk=chunk, out_axis=1,
                     residual=residual)
