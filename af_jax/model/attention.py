"""Gated multi-head attention and global attention on ONE axial slice.

Both modules take a single slice (one MSA row, one pair row, ...); callers map
them over the axial dimension with `chunking.axial_map`. Parameter names and
layouts are AlphaFold's: `query_w [c, H, d]`, `output_w [H, d, c_out]`.

Precision: projections run in the module's compute `dtype` (bfloat16 with
`global_config.bfloat16`); logits, softmax and the gate's sigmoid are float32.

PERF: per-head projections are plain [Q, c] @ [c, H*d] matmuls whose [Q, H, d]
result is then swapped to heads-first; asked for a heads-first result directly,
XLA:CPU computes the transposed product and makes the layer norm before it write
its output transposed. The softmax is normalised after the weighted sum
(`_softmax_weighted_sum`): one pass less over the [H, Q, K] weights. Numbers:
bench/RESULTS.md, "Behind the code".
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from af_jax.chunking import axial_map
from af_jax.errors import ConfigError
from af_jax.model import primitives
from af_jax.parallel import NO_DAP, Dap


def _project_heads(x: jax.Array, w: jax.Array, dt) -> jax.Array:
  """[Q, c] @ [c, H, d] -> [H, Q, d], computed as a plain matmul then swapped (see PERF)."""
  return jnp.swapaxes(primitives.einsum('qa,ahc->qhc', x, w, dtype=dt), 0, 1)


def _softmax_weighted_sum(logits: jax.Array, v: jax.Array, equation: str, dt) -> jax.Array:
  """softmax(logits) over the last axis, summed against `v` by `equation`.

  NUMERICS: the exponentials (shifted by their maximum, float32) are rounded to
  `dt` for the matmul, which accumulates in float32; the float32 result is
  divided by the float32 sum of the exponentials and then rounded to `dt`.
  Normalising after the sum instead of before differs from AlphaFold's order by
  float32 rounding only (bench/ops.py's relative-error column).
  """
  shifted = jnp.exp(logits - jax.lax.stop_gradient(jnp.max(logits, axis=-1, keepdims=True)))
  total = primitives.einsum(equation, shifted, v, dtype=dt, out_dtype=jnp.float32)
  norm = jnp.sum(shifted, axis=-1)
  return (total / norm[..., None]).astype(dt)


def per_head_bias(norm: nnx.Module, w: jax.Array, pair: jax.Array, *, axis: int = 0,
                  chunk: int | None = None, dap: Dap = NO_DAP, dtype=jnp.float32) -> jax.Array:
  """The [H, Q, K] attention bias `norm(pair) @ w` (w [c, H]), one slice of `axis` at a time.

  Shared by the MSA row attention's pair bias and the triangle attentions' bias.
  NUMERICS: float32, like the logits it is added to. PERF: computed [Q, K, H] and
  then made heads-first; asked for [H, Q, K] directly, XLA:CPU writes the whole
  normalised pair transposed to feed a transposed product (bench/RESULTS.md, "Behind the code").
  Under DAP, `pair` holds this device's slices of `axis` and the bias is
  all-gathered over Q.
  """
  def bias_slice(x):
    return primitives.einsum('kc,ch->kh', norm(x), w, dtype=dtype, out_dtype=jnp.float32)

  bias = jnp.moveaxis(axial_map(bias_slice, (pair,), axis=axis, chunk=chunk), -1, 0)
  return dap.gather(bias, axis=1)


class _GatedAttentionParams(nnx.Module):
  """Parameters shared by both attentions; `single_kv` gives keys/values one head."""

  def __init__(self, c_q: int, c_m: int, output_dim: int, *, num_head: int,
               key_dim: int | None, value_dim: int | None, gating: bool, zero_init: bool,
               single_kv: bool, dtype, rngs: nnx.Rngs):
    self.dtype = jnp.dtype(dtype)
    key_dim = c_q if key_dim is None else key_dim
    value_dim = c_m if value_dim is None else value_dim
    if num_head < 1 or key_dim % num_head or value_dim % num_head:
      # A config value (an override), not a bug: one line, as every config error.
      raise ConfigError(f'num_head={num_head} does not divide key_dim={key_dim} and '
                        f'value_dim={value_dim} (the input channels where those are unset): '
                        'choose a num_head that divides them')
    self.num_head = num_head
    self.key_dim = key_dim // num_head
    self.value_dim = value_dim // num_head
    kv_heads = () if single_kv else (num_head,)
    p = primitives.param
    self.query_w = p(rngs, (c_q, num_head, self.key_dim), 'glorot')
    self.key_w = p(rngs, (c_m, *kv_heads, self.key_dim), 'glorot')
    self.value_w = p(rngs, (c_m, *kv_heads, self.value_dim), 'glorot')
    if gating:
      self.gating_w = p(rngs, (c_q, num_head, self.value_dim), 'zeros')
      self.gating_b = p(rngs, (num_head, self.value_dim), 'ones')
    else:
      self.gating_w = self.gating_b = None
    self.output_w = p(rngs, (num_head, self.value_dim, output_dim),
                      'zeros' if zero_init else 'glorot')
    self.output_b = p(rngs, (output_dim,), 'zeros')

  def _gate_and_project(self, q_data: jax.Array, weighted_avg: jax.Array) -> jax.Array:
    """[H, Q, d] -> [Q, output_dim], gated from the (normalised) query input.

    PERF: heads leading, the layout of the batched weights @ values: asked for a
    [Q, H, d] result, XLA:CPU emits an Eigen dot with a transposed output instead of
    a YNNPACK fusion (bench/RESULTS.md, "Behind the code").
    """
    dt = self.dtype
    if self.gating_w is not None:
      logits = _project_heads(q_data, self.gating_w[...], dt)
      weighted_avg = primitives.gate(weighted_avg,
                                     logits + self.gating_b[...].astype(dt)[:, None])
    out = primitives.einsum('hqc,hco->qo', weighted_avg, self.output_w[...], dtype=dt)
    return out + self.output_b[...].astype(dt)


class Attention(_GatedAttentionParams):
  """Multi-head attention with a sigmoid gate. Jumper et al. (2021) Suppl. Alg. 7 lines 3-7.

  Args:
    c_q: query channels; c_m: memory channels; output_dim: output channels.
    num_head: H; key_dim, value_dim: total over heads (AlphaFold's convention).
    gating: whether to create `gating_w`/`gating_b`.
    zero_init: zero-initialise `output_w` (AlphaFold's default).
    dtype: compute dtype of the projections (parameters stay float32).
  """

  def __init__(self, c_q: int, c_m: int, output_dim: int, *, num_head: int,
               key_dim: int | None = None, value_dim: int | None = None,
               gating: bool = True, zero_init: bool = True, dtype=jnp.float32,
               rngs: nnx.Rngs):
    super().__init__(c_q, c_m, output_dim, num_head=num_head, key_dim=key_dim,
                     value_dim=value_dim, gating=gating, zero_init=zero_init,
                     single_kv=False, dtype=dtype, rngs=rngs)

  def __call__(self, q_data: jax.Array, m_data: jax.Array, bias: jax.Array) -> jax.Array:
    """Attend from queries to memories.

    Args:
      q_data: [Q, c_q] queries.
      m_data: [K, c_m] memories.
      bias: broadcastable to [H, Q, K] (mask bias and/or pair bias).

    Returns:
      [Q, output_dim].
    """
    dt, f32 = self.dtype, jnp.float32
    q = _project_heads(q_data, self.query_w[...], dt)
    # NUMERICS: AlphaFold scales q before q.k.
    q = q * self.key_dim ** (-0.5)
    k = _project_heads(m_data, self.key_w[...], dt)
    v = _project_heads(m_data, self.value_w[...], dt)
    # NUMERICS: logits (bias included) and softmax in float32 whatever the
    # matmul dtype.
    logits = primitives.einsum('hqc,hkc->hqk', q, k, dtype=dt, out_dtype=f32) + bias
    weighted_avg = _softmax_weighted_sum(logits, v, 'hqk,hkc->hqc', dt)
    return self._gate_and_project(q_data, weighted_avg)


class GlobalAttention(_GatedAttentionParams):
  """Global (mean-query) gated attention. Jumper et al. (2021) Suppl. Alg. 19 lines 2-7.

  One query per slice, the masked mean of the slice; keys and values are
  single-headed (`key_w [c, d]`, `value_w [c, d]`).
  """

  def __init__(self, c_q: int, c_m: int, output_dim: int, *, num_head: int,
               key_dim: int | None = None, value_dim: int | None = None,
               gating: bool = True, zero_init: bool = True, dtype=jnp.float32,
               rngs: nnx.Rngs):
    super().__init__(c_q, c_m, output_dim, num_head=num_head, key_dim=key_dim,
                     value_dim=value_dim, gating=gating, zero_init=zero_init,
                     single_kv=True, dtype=dtype, rngs=rngs)

  def __call__(self, q_data: jax.Array, m_data: jax.Array, q_mask: jax.Array) -> jax.Array:
    """Args: q_data, m_data: [S, c] one column; q_mask: [S]. Returns [S, output_dim]."""
    dt, f32 = self.dtype, jnp.float32
    v = primitives.einsum('ka,ac->kc', m_data, self.value_w[...], dtype=dt)
    # NUMERICS: the masked mean over the slice in float32.
    q_avg = primitives.mask_mean(q_mask[:, None].astype(f32), q_data.astype(f32), axis=0)
    q = primitives.einsum('a,ahc->hc', q_avg, self.query_w[...], dtype=dt)
    q = q * self.key_dim ** (-0.5)
    k = primitives.einsum('ka,ac->kc', m_data, self.key_w[...], dtype=dt)
    bias = primitives.mask_to_bias(q_mask)[None, :]
    logits = primitives.einsum('hc,kc->hk', q, k, dtype=dt, out_dtype=f32) + bias
    weighted_avg = _softmax_weighted_sum(logits, v, 'hk,kc->hc', dt)
    # Every query of the slice receives the one global result, gated per query.
    h, d = weighted_avg.shape
    weighted_avg = jnp.broadcast_to(weighted_avg[:, None], (h, q_data.shape[0], d))
    return self._gate_and_project(q_data, weighted_avg)
