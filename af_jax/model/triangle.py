"""Triangle updates of the pair representation: multiplication and attention."""

from __future__ import annotations

import functools

import chex
import jax
import jax.numpy as jnp
from flax import nnx

from af_jax.chunking import axial_map
from af_jax.errors import ConfigError
from af_jax.model import primitives
from af_jax.model.attention import Attention, per_head_bias
from af_jax.parallel import NO_DAP, Dap


class TriangleMultiplication(nnx.Module):
  """Triangle multiplicative update, outgoing or incoming edges.

  Jumper et al. (2021) Suppl. Alg. 11 (outgoing, `ikc,jkc->ijc`) and Alg. 12
  (incoming, `kjc,kic->ijc`). Parameters are stored as published (separate
  left/right projections and gates).
  """

  def __init__(self, config, *, c_z: int, zero_init: bool = True, dtype=jnp.float32,
               rngs: nnx.Rngs):
    c = config.num_intermediate_channel
    self.dtype = jnp.dtype(dtype)
    self.equation = config.equation
    if self.equation not in ('ikc,jkc->ijc', 'kjc,kic->ijc'):
      raise ConfigError(f'unsupported triangle equation {self.equation!r}: use AlphaFold\'s '
                        "'ikc,jkc->ijc' (outgoing) or 'kjc,kic->ijc' (incoming)")
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

  def _project(self, pair: jax.Array, mask: jax.Array, proj: primitives.Linear,
               gate: primitives.Linear) -> jax.Array:
    """One side's gated, masked projection of one pair row/column [N_res, c_z], in the
    compute dtype, channels first: [c, N_res]."""
    dt = self.dtype
    x = self.layer_norm_input(pair)

    def linear(lin):  # x @ W + b, written out channels first: W^T x^T + b.
      return (primitives.einsum('kd,dc->ck', x, lin.weights[...], dtype=dt)
              + lin.bias[...].astype(dt)[:, None])

    return primitives.gate(mask.astype(dt) * linear(proj), linear(gate))

  @jax.named_scope('triangle_multiplication')
  def __call__(self, pair: jax.Array, pair_mask: jax.Array, chunk: int | None = None,
               dap: Dap = NO_DAP, *, residual: jax.Array | None = None) -> jax.Array:
    """Args: pair [N_res, N_res, c_z]; pair_mask [N_res, N_res]. Returns the update
    (added to `residual`, normally `pair` itself, if given).

    The op maps over the rows i (outgoing) or the columns j (incoming) of the
    output; each slice computes its own left projection, so only the right
    projection is ever whole ([c, N_res, N_res], built `chunk` slices at a time).
    Under DAP, pair and pair_mask are this device's rows (outgoing) or columns
    (incoming), and the right projection is all-gathered along that axis.

    PERF: the projections are built channels first, so the triangle product is a
    plain matmul per channel (`ck,cjk->cj`, batch dimension leading) and the only
    transpose is of its result, back to [.., c] for the centre layer norm. The
    AlphaFold layout (`ikc,jkc->ijc`) makes XLA:CPU transpose both projections to
    [c, ., .] in strided loop fusions (bench/RESULTS.md, "Behind the code").
    """
    chex.assert_rank([pair, pair_mask], [3, 2])
    dt = self.dtype
    outgoing = self.equation == 'ikc,jkc->ijc'
    axis = 0 if outgoing else 1
    # Outgoing: right[c, j, k] from pair row j; incoming: right[c, k, i] from column i.
    right_axis = 1 if outgoing else 2
    right = axial_map(lambda p, m: self._project(p, m, self.right_projection, self.right_gate),
                      (pair, pair_mask), axis=axis, chunk=chunk, out_axis=right_axis)
    right = dap.gather(right, axis=right_axis)

    def slice_fn(pair_s, mask_s):
      # pair_s: row i (outgoing) or column j (incoming) of the pair, [N_res, c_z].
      left = self._project(pair_s, mask_s, self.left_projection, self.left_gate)
      if outgoing:
        # Alg. 11 line 4: out[i, j] = sum_k left[i, k] * right[j, k], for every j.
        out = primitives.einsum('ck,cjk->jc', left, right, dtype=dt)
      else:
        # Alg. 12 line 4: out[i, j] = sum_k left[k, j] * right[k, i], for every i.
        out = primitives.einsum('ck,cki->ic', left, right, dtype=dt)
      # NUMERICS: center_layer_norm takes its statistics in float32.
      out = self.output_projection(self.center_layer_norm(out))
      return primitives.gate(out, self.gating_linear(self.layer_norm_input(pair_s)))

    return axial_map(slice_fn, (pair, pair_mask), axis=axis, chunk=chunk, out_axis=axis,
                     residual=residual)


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

  @jax.named_scope('triangle_attention')
  def __call__(self, pair: jax.Array, pair_mask: jax.Array, chunk: int | None = None,
               dap: Dap = NO_DAP, *, residual: jax.Array | None = None) -> jax.Array:
    """Args: pair [N_res, N_res, c_z]; pair_mask [N_res, N_res]. Returns the update
    (added to `residual`, normally `pair` itself, if given).

    Under DAP, pair and pair_mask are this device's rows (starting node) or columns
    (ending node); the triangle bias is all-gathered.
    """
    # The ending node is the starting node on the transposed pair: its "rows" are
    # the pair's columns, so the op maps over axis 1 instead of transposing.
    axis = 1 if self.per_column else 0
    mask_bias = primitives.mask_to_bias(pair_mask)
    # Alg. 13 line 3: the triangle bias b_jk, shared by every row i; built from
    # normalised rows `chunk` at a time (no whole normalised pair).
    tri_bias = per_head_bias(self.query_norm, self.feat_2d_weights[...], pair, axis=axis,
                             chunk=chunk, dap=dap, dtype=self.dtype)

    def row(x, b):
      x = self.query_norm(x)
      return self.attention(x, x, b[None, None, :] + tri_bias)

    return axial_map(row, (pair, mask_bias), axis=axis, chunk=chunk, out_axis=axis,
                     residual=residual)
