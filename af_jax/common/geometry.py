"""Rigid-body geometry for AlphaFold2: rotations, rigid transforms, quaternions.

Arrays, not lists of components: a rotation is `[..., 3, 3]` (row i, column j),
a point `[..., 3]`, a rigid transform `x -> R x + t` a `Rigid` of the two.

NUMERICS: 3-vectors and 3x3 matrices are combined with explicit elementwise
multiply-adds, summed left to right in the order AlphaFold's `r3`/`quat_affine`
use, never with matmul/einsum. That keeps float32 results identical to the
reference (a dot may reorder the sum, and on GPUs would run in TF32).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np


def apply_rotation(rot: jax.Array, v: jax.Array) -> jax.Array:
  """R v. rot: [..., 3, 3]; v: [..., 3] (broadcast). Returns [..., 3]."""
  return (rot[..., :, 0] * v[..., None, 0] + rot[..., :, 1] * v[..., None, 1]
          + rot[..., :, 2] * v[..., None, 2])


def apply_inverse_rotation(rot: jax.Array, v: jax.Array) -> jax.Array:
  """R^T v for a rotation R. rot: [..., 3, 3]; v: [..., 3]. Returns [..., 3]."""
  return (rot[..., 0, :] * v[..., 0, None] + rot[..., 1, :] * v[..., 1, None]
          + rot[..., 2, :] * v[..., 2, None])


def rotation_multiply(a: jax.Array, b: jax.Array) -> jax.Array:
  """Matrix product a b of [..., 3, 3] arrays (broadcast)."""
  return (a[..., :, 0, None] * b[..., None, 0, :] + a[..., :, 1, None] * b[..., None, 1, :]
          + a[..., :, 2, None] * b[..., None, 2, :])


def robust_normalize(v: jax.Array, eps: float = 1e-8) -> jax.Array:
  """v / sqrt(|v|^2 + eps) over the last axis ([..., 3])."""
  norm = jnp.sqrt(jnp.square(v[..., 0]) + jnp.square(v[..., 1]) + jnp.square(v[..., 2]) + eps)
  return v / norm[..., None]


def cross(a: jax.Array, b: jax.Array) -> jax.Array:
  """Cross product of [..., 3] vectors."""
  return jnp.stack([a[..., 1] * b[..., 2] - a[..., 2] * b[..., 1],
                    a[..., 2] * b[..., 0] - a[..., 0] * b[..., 2],
                    a[..., 0] * b[..., 1] - a[..., 1] * b[..., 0]], axis=-1)


class Rigid(NamedTuple):
  """Rigid transforms x -> R x + t, batched over leading axes.

  Attributes:
    rotation: [..., 3, 3].
    translation: [..., 3].
  """

  rotation: jax.Array
  translation: jax.Array

  @classmethod
  def identity(cls, shape: tuple[int, ...], dtype=jnp.float32) -> Rigid:
    """Identity transforms of batch shape `shape`."""
    return cls(jnp.broadcast_to(jnp.eye(3, dtype=dtype), (*shape, 3, 3)),
               jnp.zeros((*shape, 3), dtype))

  @classmethod
  def from_tensor_4x4(cls, m: jax.Array) -> Rigid:
    """From homogeneous [..., 4, 4] matrices."""
    return cls(m[..., :3, :3], m[..., :3, 3])

  @classmethod
  def from_flat12(cls, m: jax.Array) -> Rigid:
    """From [..., 12] = 9 rotation entries (row-major) + translation."""
    return cls(jnp.reshape(m[..., :9], (*m.shape[:-1], 3, 3)), m[..., 9:])

  def to_flat12(self) -> jax.Array:
    """[..., 12]: row-major rotation then translation (AlphaFold's flat12)."""
    flat = jnp.reshape(self.rotation, (*self.rotation.shape[:-2], 9))
    return jnp.concatenate([flat, self.translation], axis=-1)

  def apply(self, points: jax.Array) -> jax.Array:
    """R x + t. points: [..., 3] broadcasting against the batch shape."""
    return apply_rotation(self.rotation, points) + self.translation

  def invert_apply(self, points: jax.Array) -> jax.Array:
    """R^T (x - t), the inverse transform applied to [..., 3] points."""
    return apply_inverse_rotation(self.rotation, points - self.translation)

  def compose(self, other: Rigid) -> Rigid:
    """self ∘ other: x -> R1 (R2 x + t2) + t1."""
    return Rigid(rotation_multiply(self.rotation, other.rotation),
                 self.translation + apply_rotation(self.rotation, other.translation))

  def compose_rotation(self, rot: jax.Array) -> Rigid:
    """self ∘ (rot, 0): rotate first, then apply self."""
    return Rigid(rotation_multiply(self.rotation, rot), self.translation)

  def invert(self) -> Rigid:
    """The inverse transform x -> R^T x - R^T t."""
    inv_rot = jnp.swapaxes(self.rotation, -1, -2)
    return Rigid(inv_rot, -apply_rotation(inv_rot, self.translation))

  def scale_translation(self, factor: float | jax.Array) -> Rigid:
    """Same rotation, translation times `factor` (e.g. nm-like units -> Å)."""
    return Rigid(self.rotation, self.translation * factor)

  def expand_batch(self, n: int = 1) -> Rigid:
    """Append `n` unit batch axes, to broadcast against extra point axes."""
    rot, trans = self.rotation, self.translation
    for _ in range(n):
      rot, trans = rot[..., None, :, :], trans[..., None, :]
    return Rigid(rot, trans)

  def map(self, fn) -> Rigid:
    """Apply `fn` to both arrays (e.g. indexing the batch axes)."""
    return Rigid(fn(self.rotation), fn(self.translation))


def rigids_from_3_points(point_on_neg_x_axis: jax.Array, origin: jax.Array,
                         point_on_xy_plane: jax.Array) -> Rigid:
  """Frames by Gram-Schmidt from three points. Jumper et al. (2021) Suppl. Alg. 21.

  Args:
    point_on_neg_x_axis: [..., 3], lies on the frame's negative x axis.
    origin: [..., 3], the frame's origin.
    point_on_xy_plane: [..., 3], lies in the xy plane (positive y).

  Returns:
    Rigid mapping local coordinates to global ones.
  """
  e0 = robust_normalize(origin - point_on_neg_x_axis)
  e1 = point_on_xy_plane - origin
  c = e1[..., 0] * e0[..., 0] + e1[..., 1] * e0[..., 1] + e1[..., 2] * e0[..., 2]
  e1 = robust_normalize(e1 - c[..., None] * e0)
  e2 = cross(e0, e1)
  return Rigid(jnp.stack([e0, e1, e2], axis=-1), origin)


# ---------------------------------------------------------------------------
# Quaternions (w, x, y, z), as AlphaFold's backbone frames carry them.


def _quaternion_tables() -> tuple[np.ndarray, np.ndarray]:
  """Coefficients C with R = sum_ij C[i, j] q_i q_j and q⊗(0, v) = sum_ij M[i, j] q_i v_j."""
  to_rot = np.zeros((4, 4, 3, 3), np.float32)
  to_rot[0, 0] = np.diag([1, 1, 1])
  to_rot[1, 1] = np.diag([1, -1, -1])
  to_rot[2, 2] = np.diag([-1, 1, -1])
  to_rot[3, 3] = np.diag([-1, -1, 1])
  for (i, j), (r, c) in {(1, 2): (0, 1), (1, 3): (0, 2), (2, 3): (1, 2)}.items():
    to_rot[i, j, r, c] = to_rot[i, j, c, r] = 2  # xy, xz, yz: symmetric part
  for i, (r, c) in {1: (2, 1), 2: (0, 2), 3: (1, 0)}.items():
    to_rot[0, i, r, c], to_rot[0, i, c, r] = 2, -2  # wx, wy, wz: antisymmetric part
  # Hamilton product (a, b, c, d)⊗(0, x, y, z) as [quaternion i, vector j, output k]:
  # w' = -bx - cy - dz, x' = ax + cz - dy, y' = ay - bz + dx, z' = az + by - cx.
  by_vec = np.zeros((4, 3, 4), np.float32)
  for k, terms in enumerate([((1, 0, -1), (2, 1, -1), (3, 2, -1)),
                             ((0, 0, 1), (2, 2, 1), (3, 1, -1)),
                             ((0, 1, 1), (1, 2, -1), (3, 0, 1)),
                             ((0, 2, 1), (1, 1, 1), (2, 0, -1))]):
    for i, j, sign in terms:
      by_vec[i, j, k] = sign
  return to_rot.reshape(4, 4, 9), by_vec


_QUAT_TO_ROT, _QUAT_BY_VEC = _quaternion_tables()


def quaternion_to_rotation(q: jax.Array) -> jax.Array:
  """Rotation matrices [..., 3, 3] from unit quaternions [..., 4] (w, x, y, z)."""
  # NUMERICS: a reduction over the products rather than a closed form: XLA
  # fuses closed forms into FMAs, the reduction sums in AlphaFold's order.
  rot = jnp.sum(_QUAT_TO_ROT * q[..., :, None, None] * q[..., None, :, None], axis=(-3, -2))
  return jnp.reshape(rot, (*q.shape[:-1], 3, 3))


def quaternion_multiply_by_vector(q: jax.Array, v: jax.Array) -> jax.Array:
  """Hamilton product q ⊗ (0, v). q: [..., 4]; v: [..., 3]. Returns [..., 4]."""
  return jnp.sum(_QUAT_BY_VEC * q[..., :, None, None] * v[..., None, :, None], axis=(-3, -2))


class QuatRigid(NamedTuple):
  """Backbone frames as a unit quaternion plus translation (AlphaFold's QuatAffine).

  The rotation matrix is derived from the quaternion when needed.

  Attributes:
    quaternion: [..., 4] unit quaternion (w, x, y, z).
    translation: [..., 3].
  """

  quaternion: jax.Array
  translation: jax.Array

  @classmethod
  def identity(cls, shape: tuple[int, ...], dtype=jnp.float32) -> QuatRigid:
    q = jnp.zeros((*shape, 4), dtype).at[..., 0].set(1.0)
    return cls(q, jnp.zeros((*shape, 3), dtype))

  @classmethod
  def from_tensor(cls, tensor: jax.Array) -> QuatRigid:
    """From [..., 7] = quaternion then translation (not renormalised)."""
    return cls(tensor[..., :4], tensor[..., 4:])

  def to_tensor(self) -> jax.Array:
    """[..., 7]: quaternion then translation."""
    return jnp.concatenate([self.quaternion, self.translation], axis=-1)

  @property
  def rotation(self) -> jax.Array:
    return quaternion_to_rotation(self.quaternion)

  def to_rigid(self) -> Rigid:
    return Rigid(self.rotation, self.translation)

  def pre_compose(self, update: jax.Array) -> QuatRigid:
    """Apply a backbone update first, then self. Jumper et al. (2021) Suppl. Alg. 23.

    Args:
      update: [..., 6]: (b, c, d) of the non-normalised quaternion update
        (1, b, c, d), then the translation update in the local frame.

    Returns:
      The composed frames, quaternion renormalised.
    """
    q_update, t_update = update[..., :3], update[..., 3:]
    # NUMERICS: q + q⊗(0, v) equals q⊗(1, v); normalising afterwards is
    # AlphaFold's form of Alg. 23 line 3 (which normalises (1, b, c, d) first).
    quaternion = self.quaternion + quaternion_multiply_by_vector(self.quaternion, q_update)
    translation = self.translation + apply_rotation(self.rotation, t_update)
    quaternion = quaternion / jnp.linalg.norm(quaternion, axis=-1, keepdims=True)
    return QuatRigid(quaternion, translation)

  def scale_translation(self, factor: float | jax.Array) -> QuatRigid:
    return QuatRigid(self.quaternion, self.translation * factor)

  def stop_rotation_gradient(self) -> QuatRigid:
    """Block gradients through the rotation only (Alg. 20 line 20)."""
    return QuatRigid(jax.lax.stop_gradient(self.quaternion), self.translation)


# ---------------------------------------------------------------------------
# Frames from backbone atoms, as AlphaFold's template embedder builds them.


def _rot_z(cos: jax.Array, sin: jax.Array) -> jax.Array:
  zero, one = jnp.zeros_like(cos), jnp.ones_like(cos)
  return jnp.stack([jnp.stack([cos, -sin, zero], -1), jnp.stack([sin, cos, zero], -1),
                    jnp.stack([zero, zero, one], -1)], -2)


def _rot_y(cos: jax.Array, sin: jax.Array) -> jax.Array:
  zero, one = jnp.zeros_like(cos), jnp.ones_like(cos)
  return jnp.stack([jnp.stack([cos, zero, sin], -1), jnp.stack([zero, one, zero], -1),
                    jnp.stack([-sin, zero, cos], -1)], -2)


def _rot_x(cos: jax.Array, sin: jax.Array) -> jax.Array:
  zero, one = jnp.zeros_like(cos), jnp.ones_like(cos)
  return jnp.stack([jnp.stack([one, zero, zero], -1), jnp.stack([zero, cos, -sin], -1),
                    jnp.stack([zero, sin, cos], -1)], -2)


def make_transform_from_reference(n_xyz: jax.Array, ca_xyz: jax.Array,
                                  c_xyz: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Frames that carry the reference backbone onto the given N, CA, C atoms.

  The canonical frame has CA at the origin, C on the positive x axis and N in
  the xy plane (positive y); it is built from three elementary rotations, as
  AlphaFold's `quat_affine.make_transform_from_reference` (used by the template
  embedder). Mirror images are not handled: swapped N/C give a reflected frame.

  Args:
    n_xyz, ca_xyz, c_xyz: [..., 3] atom positions.

  Returns:
    (rotation [..., 3, 3], translation [..., 3]): global = rotation @ local + translation.
  """
  n = n_xyz - ca_xyz
  c = c_xyz - ca_xyz
  cx, cy, cz = c[..., 0], c[..., 1], c[..., 2]
  # Rotate about z so that C lies in the xz plane ...
  norm_xy = jnp.sqrt(1e-20 + cx**2 + cy**2)
  rot1 = _rot_z(cx / norm_xy, -cy / norm_xy)
  # ... then about y so that C lies on the x axis ...
  norm_xyz = jnp.sqrt(1e-20 + cx**2 + cy**2 + cz**2)
  rot2 = _rot_y(jnp.sqrt(cx**2 + cy**2) / norm_xyz, cz / norm_xyz)
  c_rot = rotation_multiply(rot2, rot1)
  # ... then about x so that N lies in the xy plane.
  n = apply_rotation(c_rot, n)
  ny, nz = n[..., 1], n[..., 2]
  norm_yz = jnp.sqrt(1e-20 + ny**2 + nz**2)
  rot3 = _rot_x(ny / norm_yz, -nz / norm_yz)
  to_canonical = rotation_multiply(rot3, c_rot)
  return jnp.swapaxes(to_canonical, -1, -2), ca_xyz


def rotation_to_quaternion(rot: jax.Array) -> jax.Array:
  """Unit quaternion [..., 4] (w, x, y, z) of rotations [..., 3, 3].

  The eigenvector of the largest eigenvalue of the symmetric 4x4 matrix of
  Bar-Itzhack's method, as AlphaFold computes it (sign is arbitrary).
  """
  r = [[rot[..., i, j] for j in range(3)] for i in range(3)]
  (xx, xy, xz), (yx, yy, yz), (zx, zy, zz) = r
  k = [[xx + yy + zz, zy - yz, xz - zx, yx - xy],
       [zy - yz, xx - yy - zz, xy + yx, xz + zx],
       [xz - zx, xy + yx, yy - xx - zz, yz + zy],
       [yx - xy, xz + zx, yz + zy, zz - xx - yy]]
  k = (1.0 / 3.0) * jnp.stack([jnp.stack(row, axis=-1) for row in k], axis=-2)
  _, vecs = jnp.linalg.eigh(k)
  return vecs[..., -1]


__all__ = [
    'Rigid', 'QuatRigid', 'apply_rotation', 'apply_inverse_rotation', 'rotation_multiply',
    'robust_normalize', 'cross', 'rigids_from_3_points', 'quaternion_to_rotation',
    'quaternion_multiply_by_vector', 'make_transform_from_reference',
    'rotation_to_quaternion',
]
