"""Invariant point attention. Jumper et al. (2021) Suppl. Alg. 22."""

from __future__ import annotations

import math

import chex
import jax
import jax.numpy as jnp
from flax import nnx

from af_jax.common.geometry import Rigid
from af_jax.model import primitives

# Logits are the sum of three terms (scalar, point, pair bias), each scaled to
# unit variance and then by 1/sqrt(3) (Alg. 22 lines 7-8: w_L, w_C).
_NUM_LOGIT_TERMS = 3


class InvariantPointAttention(nnx.Module):
  """Attention over residues with scalar, 3-D point and pair-bias terms.

  Queries, keys and values include points produced in each residue's local
  frame and compared in the global frame, so the output does not change when
  all frames move together. Parameters: `q_scalar`, `kv_scalar`,
  `q_point_local`, `kv_point_local`, `attention_2d`, `output_projection`,
  `trainable_point_weights` (AlphaFold's names; keys and values share one
  projection each).

  Args:
    config: AlphaFold's `structure_module` config (num_head, num_scalar_qk,
      num_scalar_v, num_point_qk, num_point_v, num_channel).
    c_s: single channels in (and out: `config.num_channel`).
    c_z: pair channels.
    zero_init: zero-initialise the output projection.
    dist_epsilon: keeps the norm of output points differentiable at zero.
    rngs: random streams.
  """

  def __init__(self, config, *, c_s: int, c_z: int, zero_init: bool = True,
               dist_epsilon: float = 1e-8, rngs: nnx.Rngs):
    h = config.num_head
    self.num_head = h
    self.num_scalar_qk, self.num_scalar_v = config.num_scalar_qk, config.num_scalar_v
    self.num_point_qk, self.num_point_v = config.num_point_qk, config.num_point_v
    self.dist_epsilon = dist_epsilon
    self.q_scalar = primitives.Linear(c_s, h * self.num_scalar_qk, rngs=rngs)
    self.kv_scalar = primitives.Linear(c_s, h * (self.num_scalar_qk + self.num_scalar_v),
                                       rngs=rngs)
    self.q_point_local = primitives.Linear(c_s, h * 3 * self.num_point_qk, rngs=rngs)
    self.kv_point_local = primitives.Linear(
        c_s, h * 3 * (self.num_point_qk + self.num_point_v), rngs=rngs)
    # softplus^-1(1): the point weights gamma^h start at 1 (Alg. 22 line 7).
    self.trainable_point_weights = primitives.param(rngs, (h,), f'const:{math.log(math.e - 1)}')
    self.attention_2d = primitives.Linear(c_z, h, rngs=rngs)
    num_features = h * (self.num_scalar_v + 4 * self.num_point_v + c_z)
    self.output_projection = primitives.Linear(
        num_features, config.num_channel, initializer=primitives.final_init(zero_init),
        rngs=rngs)

  def _points(self, linear: primitives.Linear, act: jax.Array, frames: Rigid,
              num_points: int) -> jax.Array:
    """Points [N, H, P, 3] from `act`, made in local frames, returned global."""
    n = act.shape[0]
    local = jnp.reshape(linear(act), (n, 3, self.num_head * num_points))  # x | y | z blocks
    local = jnp.swapaxes(local, -1, -2)  # [N, H*P, 3]
    return jnp.reshape(frames.expand_batch(1).apply(local), (n, self.num_head, num_points, 3))

  @jax.named_scope('invariant_point_attention')
  def __call__(self, single: jax.Array, pair: jax.Array, mask: jax.Array,
               frames: Rigid) -> jax.Array:
    """Args: single [N_res, c_s]; pair [N_res, N_res, c_z]; mask [N_res]; frames Rigid [N_res].

    Frames are in AlphaFold's internal units (nm-like: Å / position_scale).
    Returns the update to the single representation, [N_res, c_s].
    """
    chex.assert_rank([single, pair, mask], [2, 3, 1])
    n, h = single.shape[0], self.num_head
    cqk, cv, pqk = self.num_scalar_qk, self.num_scalar_v, self.num_point_qk

    # Alg. 22 line 1: scalar queries, keys, values [N, H, c].
    q = jnp.reshape(self.q_scalar(single), (n, h, cqk))
    kv = jnp.reshape(self.kv_scalar(single), (n, h, cqk + cv))
    k, v = kv[..., :cqk], kv[..., cqk:]
    # Alg. 22 lines 2-3: points [N, H, P, 3] in the global frame.
    q_point = self._points(self.q_point_local, single, frames, pqk)
    kv_point = self._points(self.kv_point_local, single, frames, pqk + self.num_point_v)
    k_point, v_point = kv_point[:, :, :pqk], kv_point[:, :, pqk:]

    # Alg. 22 line 7. Each term is normalised for unit-variance inputs: a
    # scalar q·k has variance c; a point term 0.5|q - k|^2 has variance 9/2 per point.
    scalar_weight = math.sqrt(1.0 / (_NUM_LOGIT_TERMS * cqk))
    point_weight = math.sqrt(1.0 / (_NUM_LOGIT_TERMS * pqk * 9.0 / 2.0))
    point_weights = point_weight * jax.nn.softplus(self.trainable_point_weights[...])  # [H]

    logits_scalar = jnp.einsum('ihc,jhc->hij', q * scalar_weight, k)
    # PERF: coordinates first ([3, H, N, P]) so that |q - k|^2 is one fused loop over
    # [H, i, j, P]; with xyz minor, XLA:CPU materialises the three [i, j, H, P]
    # differences before squaring them (bench/RESULTS.md, "Behind the code").
    qc, kc = jnp.transpose(q_point, (3, 1, 0, 2)), jnp.transpose(k_point, (3, 1, 0, 2))
    dist2 = sum(jnp.square(qc[x][:, :, None] - kc[x][:, None, :]) for x in range(3))
    logits_point = -0.5 * jnp.sum(point_weights[:, None, None, None] * dist2, axis=-1)
    logits = logits_scalar + logits_point  # [H, i, j]
    logits_pair = jnp.transpose(self.attention_2d(pair), (2, 0, 1))  # [H, i, j]
    logits = logits + math.sqrt(1.0 / _NUM_LOGIT_TERMS) * logits_pair
    # NUMERICS: AlphaFold masks IPA with -1e5 (not -1e9 as elsewhere).
    mask_2d = mask[:, None] * mask[None, :]
    logits = logits - 1e5 * (1.0 - mask_2d)
    attn = jax.nn.softmax(logits, axis=-1)  # [H, i, j]

    # Alg. 22 lines 10-11: outputs. Point values are averaged in the global
    # frame, then taken back to each query's local frame.
    out_scalar = jnp.reshape(jnp.einsum('hij,jhc->ihc', attn, v), (n, h * cv))
    # NUMERICS: coordinates at full float32 precision even where the default
    # matmul precision is lower (TF32 on GPUs); AlphaFold uses a multiply-sum.
    out_point = jnp.einsum('hij,jhpx->ihpx', attn, v_point,
                           precision=jax.lax.Precision.HIGHEST)
    out_point = jnp.reshape(out_point, (n, h * self.num_point_v, 3))
    out_point = frames.expand_batch(1).invert_apply(out_point)  # [N, H*P_v, 3]
    x, y, z = out_point[..., 0], out_point[..., 1], out_point[..., 2]
    out_norm = jnp.sqrt(self.dist_epsilon + jnp.square(x) + jnp.square(y) + jnp.square(z))
    out_pair = jnp.reshape(jnp.einsum('hij,ijc->ihc', attn, pair), (n, -1))

    features = jnp.concatenate([out_scalar, x, y, z, out_norm, out_pair], axis=-1)
    return self.output_projection(features)
