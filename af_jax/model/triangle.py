"""Triangle updates of the pair representation: multiplication and attention."""

from __future__ import annotations

import functools

import chex
import jax
import jax.numpy as jnp
from flax import nnx

from af_jax.chunking import axial_map
from af_jax.model import primitives
from af_jax.model.attention import Attention
from af_jax.parallel import NO_DAP, Dap


class TriangleMultiplication(nnx.Module):
  """Triangle multiplicative update, outgoing or incoming edges.

  Jumper et al. (2021) Suppl. Alg. 11 (outgoing, `ikc,jkc->ijc`) and Alg. 12
  (incoming, `kjc,kic->ijc`). Parameters are stored as published (separate
  left/right projections and gates); they are applied as one concatenated
  projection, as alphafold-colabfold's fused form does.
  """

  def __init__(self, config, *, c_z: int, zero_init: bool = True, dtype=jnp.float32,
               rngs: nnx.Rngs):
    c = config.num_intermediate_channel
    self.dtype = jnp.dtype(dtype)
    self.equation = config.equation
    if self.equation not in ('ikc,jkc->ijc', 'kjc,kic->ijc'):
      raise ValueError(f'unsupported triangle equation {self.equation!r}')
    final = primitives.final_init(zero_init)
    lin = functools.partial(primitives.Linear, dtype=dtype)
    self.layer_norm_input = primitives.LayerNorm(c_z)
    self.left_projection = lin(c_z, c, rngs=rngs)
    self.right_projection = lin(c_z, c, rngs=rngs)
    self.left_gate = lin(c_z, c, initializer=final, bias_init=1.0, rngs=rngs)
    self.right_gate = lin(c_z, c, initializer=final, bias_init=1.0, rngs=rngs)
    self.center_layer_norm = primitives.LayerNorm(c)
    self.output_projection = lin(c, c_z, initializer=final, rngs=rngs)
    self.gating_linear = lin(c_z, c_z, initializer=final, bias_init=1.0, rngs=rngs)

  def _fused(self, a: primitives.Linear, b: primitives.Linear, x: jax.Array) -> jax.Array:
    # PERF: one matmul for the left and right halves.
    w = jnp.concatenate([a.weights[...], b.weights[...]], axis=-1)
    bias = jnp.concatenate([a.bias[...], b.bias[...]], axis=-1)
    return primitives.matmul(x, w, dtype=self.dtype) + bias.astype(self.dtype)

  def __call__(self, pair: jax.Array, pair_mask: jax.Array, chunk: int | None = None,
               dap: Dap = NO_DAP) -> jax.Array:
    """Args: pair [N_res, N_res, c_z]; pair_mask [N_res, N_res]. Returns the update.

    Under DAP, pair and pair_mask are this device's rows (outgoing) or columns
    (incoming); the right projection is all-gathered along that axis.
    """
    chex.assert_rank([pair, pair_mask], [3, 2])
    c = self.left_projection.out_shape[0]
    x = self.layer_norm_input(pair)
    dt = self.dtype
    proj = pair_mask[..., None].astype(dt) * self._fused(
        self.left_projection, self.right_projection, x)
    proj = primitives.gate(proj, self._fused(self.left_gate, self.right_gate, x))
    left, right = proj[..., :c], proj[..., c:]
    outgoing = self.equation == 'ikc,jkc->ijc'
    right = dap.gather(right, axis=0 if outgoing else 1)

    def finish(row, x_row):
      # NUMERICS: center_layer_norm takes its statistics in float32.
      row = self.center_layer_norm(row)
      return primitives.gate(self.output_projection(row), self.gating_linear(x_row))

    if outgoing:
      # Outgoing, Alg. 11 line 4: row i is sum_k left[i,k] * right[j,k].
      def row_fn(left_i, x_row):
        return finish(primitives.einsum('kc,jkc->jc', left_i, right, dtype=dt), x_row)
      return axial_map(row_fn, (left, x), axis=0, chunk=chunk)

    # Incoming, Alg. 12 line 4: row i is sum_k right[k,i] * left[k,j].
    def col_fn(right_i, x_row):
      return finish(primitives.einsum('kjc,kc->jc', left, right_i, dtype=dt), x_row)
    return axial_map(col_fn, (right, x), axis=(1, 0), chunk=chunk)


class TriangleAttention(nnx.Module):
  """Triangle self-attention around the starting or ending node.

  Jumper et al. (2021) Suppl. Alg. 13 (`per_row`, starting node) and Alg. 14
  (`per_column`, ending node: the same op on the transposed pair).
  """

  def __init__(self, config, *, c_z: int, zero_init: bool = True, dtype=jnp.float32,
               rngs: nnx.Rngs):
    self.per_column = config.orientation == 'per_column'
    self.dtype = jnp.dtype(dtype)
    h = config.num_head
    self.query_norm = primitives.LayerNorm(c_z)
    self.feat_2d_weights = primitives.param(rngs, (c_z, h), f'normal:{c_z ** -0.5}')
    self.attention = Attention(c_z, c_z, c_z, num_head=h, key_dim=config.get('key_dim'),
                               value_dim=config.get('value_dim'), gating=config.gating,
                               zero_init=zero_init, dtype=dtype, rngs=rngs)

  def __call__(self, pair: jax.Array, pair_mask: jax.Array, chunk: int | None = None,
               dap: Dap = NO_DAP) -> jax.Array:
    """Args: pair [N_res, N_res, c_z]; pair_mask [N_res, N_res]. Returns the update.

    Under DAP, pair and pair_mask are this device's rows (starting node) or columns
    (ending node); the triangle bias is all-gathered.
    """
    if self.per_column:
      pair, pair_mask = jnp.swapaxes(pair, 0, 1), jnp.swapaxes(pair_mask, 0, 1)
    mask_bias = primitives.mask_to_bias(pair_mask)
    pair = self.query_norm(pair)
    # Alg. 13 line 3: the triangle bias b_jk, shared by every row i.
    # NUMERICS: float32, like the logits it is added to.
    tri_bias = primitives.einsum('qkc,ch->hqk', pair, self.feat_2d_weights[...],
                                 dtype=self.dtype, out_dtype=jnp.float32)
    tri_bias = dap.gather(tri_bias, axis=1)

    def row(x, b):
      return self.attention(x, x, b[None, None, :] + tri_bias)

    out = axial_map(row, (pair, mask_bias), axis=0, chunk=chunk)
    return jnp.swapaxes(out, 0, 1) if self.per_column else out
