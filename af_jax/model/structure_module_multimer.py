"""AlphaFold-Multimer's frame convention for the structure module. Jumper et al. (2021)
Suppl. Alg. 20, 22-24; Evans et al. (2021) (AlphaFold-Multimer).

The structure module is the one `structure_module.StructureModule`, given
`RIGID_FRAMES`: Multimer's parameterisation and numerics, where backbone
frames are carried as rotation matrices (the quaternion update of Alg. 23 is
turned into a matrix and composed, never renormalised as a quaternion),
invariant point attention has separate query/key/value projections with
per-head point layouts, and positions are scaled by `position_scale` = 20.
The torsion-angle ResNet and the all-atom placement are the monomer's
(`MultiRigidSidechain`, all_atom.py): the same parameters and the same float32
arithmetic.

Units: inside the loop frames are in internal units (Å / `position_scale`);
every output is in Å. Rigid transforms are returned as AlphaFold-Multimer
returns them: `[..., 3, 4]` arrays, the rotation followed by the translation
column.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import chex
import jax
import jax.numpy as jnp
from flax import nnx

from af_jax.common.geometry import Rigid
from af_jax.model import primitives
from af_jax.model.structure_module import FoldIteration, StructureModule


def rigid_to_array(rigid: Rigid) -> jax.Array:
  """[..., 3, 4]: rotation then translation column (Multimer's `Rigid3Array.to_array`)."""
  return jnp.concatenate([rigid.rotation, rigid.translation[..., None]], axis=-1)


def rigid_from_array(array: jax.Array) -> Rigid:
  """Inverse of `rigid_to_array`."""
  return Rigid(array[..., :3], array[..., 3])


def _full_precision(linear: primitives.Linear, x: jax.Array) -> jax.Array:
  """`linear(x)` with float32 matmuls even where the default is lower (TF32 on GPUs).

  NUMERICS: AlphaFold-Multimer computes its point and rigid projections with
  `Precision.HIGHEST`; coordinates are sensitive to matmul rounding. The
  precision is read when the dot is traced, so the context applies under jit.
  """
  with jax.default_matmul_precision('highest'):
    return linear(x)


def rotation_from_quaternion_update(q_update: jax.Array, eps: float = 1e-6) -> jax.Array:
  """Rotation matrices [..., 3, 3] of the quaternion (1, b, c, d), normalised. Alg. 23 lines 2-3.

  NUMERICS: Multimer's formulas: the four components are scaled by
  rsqrt(max(eps, |q|^2)), then R = 1 - 2(y^2 + z^2), 2(xy - wz), ... (diagonal
  as one minus, off-diagonal as twice a difference or sum). The same matrix in
  `geometry.quaternion_to_rotation`'s form rounds differently; 8 layers amplify
  that (1.8e-4 vs 1.1e-4 relative error on atoms in the chaotic parity test).

  Args:
    q_update: [..., 3] the (b, c, d) of the quaternion update.
    eps: lower bound on the squared norm.
  """
  x, y, z = q_update[..., 0], q_update[..., 1], q_update[..., 2]
  w = jnp.ones_like(x)
  inv_norm = jax.lax.rsqrt(jnp.maximum(eps, w**2 + x**2 + y**2 + z**2))
  w, x, y, z = w * inv_norm, x * inv_norm, y * inv_norm, z * inv_norm
  rows = [
      [1 - 2 * (jnp.square(y) + jnp.square(z)), 2 * (x * y - w * z), 2 * (x * z + w * y)],
      [2 * (x * y + w * z), 1 - 2 * (jnp.square(x) + jnp.square(z)), 2 * (y * z - w * x)],
      [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (jnp.square(x) + jnp.square(y))],
  ]
  return jnp.stack([jnp.stack(row, axis=-1) for row in rows], axis=-2)


class BackboneUpdate(nnx.Module):
  """Frame update from the single representation. Jumper et al. (2021) Suppl. Alg. 23.

  Parameter: `rigid` (weights [c, 6], bias [6]): (b, c, d) of the quaternion
  (1, b, c, d) and the translation, in the residue's local frame.
  """

  def __init__(self, c_s: int, *, zero_init: bool = True, rngs: nnx.Rngs):
    self.rigid = primitives.Linear(c_s, 6, initializer=primitives.final_init(zero_init),
                                   rngs=rngs)

  def __call__(self, act: jax.Array) -> Rigid:
    """act [N_res, c_s] -> Rigid [N_res] update (internal units)."""
    update = _full_precision(self.rigid, act)
    return Rigid(rotation_from_quaternion_update(update[..., :3]), update[..., 3:])


class PointProjection(nnx.Module):
  """Points per head made in each residue's local frame, returned global. Alg. 22 lines 2-3.

  Parameter: `point_projection` (weights [c_s, H, 3 P], bias [H, 3 P]); its
  last axis holds P x, then P y, then P z coordinates.
  """

  def __init__(self, c_s: int, num_head: int, num_points: int, *, rngs: nnx.Rngs):
    self.num_points = num_points
    self.point_projection = primitives.Linear(c_s, (num_head, 3 * num_points), rngs=rngs)

  def __call__(self, act: jax.Array, frames: Rigid) -> jax.Array:
    """act [N_res, c_s], frames Rigid [N_res] -> global points [N_res, H, P, 3]."""
    local = _full_precision(self.point_projection, act)
    p = self.num_points
    local = jnp.stack([local[..., :p], local[..., p:2 * p], local[..., 2 * p:]], axis=-1)
    return frames.expand_batch(2).apply(local)


class InvariantPointAttentionMultimer(nnx.Module):
  """Invariant point attention, Multimer's form. Jumper et al. (2021) Suppl. Alg. 22.

  Differs from `ipa.InvariantPointAttention` in its parameters (separate q/k/v
  projections without bias, points from `PointProjection`) and in where the
  scale factors sit: the three logit terms are summed and masked first, then
  scaled by sqrt(1/3) together. Parameters: `trainable_point_weights` [H],
  `q/k/v_scalar_projection`, `q/k/v_point_projection`, `attention_2d`,
  `output_projection`.

  Args:
    config: AlphaFold's `structure_module` config (num_head, num_scalar_qk,
      num_scalar_v, num_point_qk, num_point_v, num_channel).
    c_s: single channels.
    c_z: pair channels.
    zero_init: zero-initialise the output projection.
    dist_epsilon: lower bound on the norm of output points (differentiable at zero).
    rngs: random streams.
  """

  def __init__(self, config, *, c_s: int, c_z: int, zero_init: bool = True,
               dist_epsilon: float = 1e-8, rngs: nnx.Rngs):
    h = config.num_head
    self.num_head = h
    self.num_scalar_qk, self.num_scalar_v = config.num_scalar_qk, config.num_scalar_v
    self.num_point_qk, self.num_point_v = config.num_point_qk, config.num_point_v
    self.dist_epsilon = dist_epsilon
    # softplus^-1(1): the point weights gamma^h start at 1 (Alg. 22 line 7).
    self.trainable_point_weights = primitives.param(rngs, (h,), f'const:{math.log(math.e - 1)}')
    self.q_point_projection = PointProjection(c_s, h, self.num_point_qk, rngs=rngs)
    self.k_point_projection = PointProjection(c_s, h, self.num_point_qk, rngs=rngs)
    self.q_scalar_projection = primitives.Linear(c_s, (h, self.num_scalar_qk), use_bias=False,
                                                 rngs=rngs)
    self.k_scalar_projection = primitives.Linear(c_s, (h, self.num_scalar_qk), use_bias=False,
                                                 rngs=rngs)
    self.attention_2d = primitives.Linear(c_z, h, rngs=rngs)
    self.v_scalar_projection = primitives.Linear(c_s, (h, self.num_scalar_v), use_bias=False,
                                                 rngs=rngs)
    self.v_point_projection = PointProjection(c_s, h, self.num_point_v, rngs=rngs)
    num_features = h * (self.num_scalar_v + 4 * self.num_point_v + c_z)
    self.output_projection = primitives.Linear(
        num_features, config.num_channel, initializer=primitives.final_init(zero_init),
        rngs=rngs)

  @jax.named_scope('invariant_point_attention')
  def __call__(self, single: jax.Array, pair: jax.Array, mask: jax.Array,
               frames: Rigid) -> jax.Array:
    """Args: single [N_res, c_s]; pair [N_res, N_res, c_z]; mask [N_res]; frames Rigid [N_res].

    Frames are in internal units (Å / position_scale). Returns the update to
    the single representation, [N_res, num_channel].
    """
    chex.assert_rank([single, pair, mask], [2, 3, 1])
    n = single.shape[0]

    # Alg. 22 line 7, point term: each (q, k) point pair has variance 9/2 for
    # unit-variance inputs; gamma^h = softplus(trainable weights).
    point_weights = (math.sqrt(1.0 / (max(self.num_point_qk, 1) * 9.0 / 2.0))
                     * jax.nn.softplus(self.trainable_point_weights[...]))  # [H]
    q_point = self.q_point_projection(single, frames)  # [i, H, P, 3]
    k_point = self.k_point_projection(single, frames)  # [j, H, P, 3]
    # NUMERICS: squared distance as x*x + y*y + z*z of the difference (not
    # |q|^2 - 2 q.k + |k|^2), unclipped. PERF: coordinates first ([3, N, H, P]), so
    # that XLA fuses the differences instead of materialising [i, j, H, P, 3].
    qc, kc = jnp.moveaxis(q_point, -1, 0), jnp.moveaxis(k_point, -1, 0)
    dx, dy, dz = (qc[x][:, None] - kc[x][None, :] for x in range(3))  # [i, j, H, P]
    dist2 = dx * dx + dy * dy + dz * dz
    logits = -0.5 * jnp.sum(point_weights[:, None] * dist2, axis=-1)  # [i, j, H]

    # Alg. 22 line 7, scalar term, scaled by 1/sqrt(c) on the queries.
    scalar_weight = math.sqrt(1.0 / max(self.num_scalar_qk, 1))
    q = self.q_scalar_projection(single) * scalar_weight  # [i, H, c]
    k = self.k_scalar_projection(single)
    logits = logits + jnp.einsum('ihc,jhc->ijh', q, k)
    logits = logits + self.attention_2d(pair)  # pair bias [i, j, H]
    # NUMERICS: -1e5 mask term, added before the common 1/sqrt(3) (w_L) scale.
    mask_2d = mask[:, None] * mask[None, :]
    logits = logits - 1e5 * (1.0 - mask_2d[..., None])
    logits = logits * math.sqrt(1.0 / 3.0)
    attn = jax.nn.softmax(logits, axis=-2)  # over j, [i, j, H]

    # Alg. 22 lines 10-11.
    v = self.v_scalar_projection(single)  # [j, H, c_v]
    out_scalar = jnp.reshape(jnp.einsum('ijh,jhc->ihc', attn, v), (n, -1))
    v_point = self.v_point_projection(single, frames)  # [j, H, P_v, 3]
    # NUMERICS: point values are averaged by a multiply-sum per coordinate, as
    # AlphaFold-Multimer does (no dot, so no reduced-precision matmul on GPUs).
    out_point = jnp.stack(
        [jnp.sum(attn[..., None] * v_point[None, ..., d], axis=-3) for d in range(3)],
        axis=-1)  # [i, H, P_v, 3]
    out_point = jnp.reshape(out_point, (n, -1, 3))
    out_point = frames.expand_batch(1).invert_apply(out_point)  # [i, H*P_v, 3] local
    x, y, z = out_point[..., 0], out_point[..., 1], out_point[..., 2]
    # NUMERICS: norm clipped below at epsilon (sqrt(max(|v|^2, eps^2))), not sqrt(eps + |v|^2).
    out_norm = jnp.sqrt(jnp.maximum(x * x + y * y + z * z, self.dist_epsilon**2))
    out_pair = jnp.reshape(jnp.einsum('ijh,ijc->ihc', attn, pair), (n, -1))

    # Order of the output features: scalars, x, y, z, norms, pair.
    features = jnp.concatenate([out_scalar, x, y, z, out_norm, out_pair], axis=-1)
    return self.output_projection(features)


@dataclasses.dataclass(frozen=True)
class RigidFrames:
  """AlphaFold-Multimer's frame convention for the one `structure_module.StructureModule`.

  Frames are carried as rotation matrices (`Rigid`); the backbone update is
  `quat_rigid` (a `BackboneUpdate`), composed as matrices; attention is
  `InvariantPointAttentionMultimer`. Per-layer outputs are `rigid` (Rigid,
  internal units); the final ones `final_rigids`/`traj` ([..., 3, 4] arrays in Å)
  and sidechain frames [L, N_res, 8, 3, 4]. DIFFERS FROM the monomer (as
  Multimer's reference does): padding residues have no atoms in the final masks
  and positions.
  """

  update_name = 'quat_rigid'
  final_name = 'final_rigids'
  mask_padding = True

  def make_attention(self, config, *, c_s: int, c_z: int, zero_init: bool, rngs: nnx.Rngs):
    return InvariantPointAttentionMultimer(config, c_s=c_s, c_z=c_z, zero_init=zero_init,
                                           rngs=rngs)

  def make_update(self, c: int, *, zero_init: bool, rngs: nnx.Rngs):
    return BackboneUpdate(c, zero_init=zero_init, rngs=rngs)

  def identity(self, n: int, dtype) -> Rigid:
    return Rigid.identity((n,), dtype)

  def rigid(self, frames: Rigid) -> Rigid:
    return frames

  def update(self, frames: Rigid, update: Rigid) -> Rigid:
    # Alg. 20 line 10: compose the frames with the update (matrices, not quaternions).
    return frames.compose(update)

  def scaled_rigid(self, frames: Rigid, scale: float) -> Rigid:
    return frames.scale_translation(scale)

  def layer_outputs(self, frames: Rigid) -> dict:
    return {'rigid': frames}

  def stop_rotation_gradient(self, frames: Rigid) -> Rigid:
    return Rigid(jax.lax.stop_gradient(frames.rotation), frames.translation)

  def trajectory(self, outputs: dict, scale: float, dtype) -> jax.Array:
    del dtype  # the rigids keep theirs
    return rigid_to_array(outputs['rigid'].scale_translation(scale))

  def sidechains(self, sc: dict) -> dict:
    sc = dict(sc)
    sc['frames'] = rigid_to_array(Rigid.from_flat12(sc['frames']))
    return sc


RIGID_FRAMES = RigidFrames()

# AlphaFold-Multimer's layer and structure module: the one module with Multimer's frames.
FoldIterationMultimer = functools.partial(FoldIteration, frames=RIGID_FRAMES)
StructureModuleMultimer = functools.partial(StructureModule, frames=RIGID_FRAMES)
