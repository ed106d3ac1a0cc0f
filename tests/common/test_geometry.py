"""Rigid-body geometry against AlphaFold's `r3` and `quat_affine`, and its own identities."""

import jax
import jax.numpy as jnp
import numpy as np
from alphafold.model import quat_affine, r3

from af_jax.common import geometry, residue_constants
from af_jax.common.geometry import QuatRigid, Rigid

N = 257


def _quaternions(seed, n=N):
  q = np.random.default_rng(seed).normal(size=(n, 4)).astype(np.float32)
  return q / np.linalg.norm(q, axis=-1, keepdims=True)


def _vectors(seed, n=N, scale=1.0):
  return (np.random.default_rng(seed).normal(size=(n, 3)) * scale).astype(np.float32)


def _random_rigid(seed, n=N) -> Rigid:
  return QuatRigid(jnp.asarray(_quaternions(seed, n)), jnp.asarray(_vectors(seed + 1, n, 5.))
                   ).to_rigid()


def _ref_rot(rot_lists):
  return jnp.stack([jnp.stack(row, -1) for row in rot_lists], -2)


def test_quaternion_to_rotation_matches_reference_bitwise():
  q = _quaternions(0)
  ours = jax.jit(geometry.quaternion_to_rotation)(q)
  ref = jax.jit(lambda q: _ref_rot(quat_affine.quat_to_rot(q)))(q)
  np.testing.assert_array_equal(ours, ref)
  rrt = np.einsum('nij,nkj->nik', ours, ours)
  np.testing.assert_allclose(rrt, np.broadcast_to(np.eye(3), rrt.shape), atol=1e-6)
  np.testing.assert_allclose(np.linalg.det(ours), 1.0, atol=1e-5)


def test_quaternion_multiply_by_vector_matches_reference_bitwise():
  q, v = _quaternions(1), _vectors(2)
  ours = jax.jit(geometry.quaternion_multiply_by_vector)(q, v)
  np.testing.assert_array_equal(ours, jax.jit(quat_affine.quat_multiply_by_vec)(q, v))


def test_pre_compose_matches_quat_affine():
  tensor = np.concatenate([_quaternions(3), _vectors(4)], -1)
  update = np.random.default_rng(5).normal(size=(N, 6)).astype(np.float32)
  ours = jax.jit(lambda t, u: QuatRigid.from_tensor(t).pre_compose(u))(tensor, update)
  ref = jax.jit(lambda t, u: quat_affine.QuatAffine.from_tensor(t).pre_compose(u).to_tensor())(
      tensor, update)
  np.testing.assert_allclose(ours.to_tensor(), ref, rtol=0, atol=1e-6)
  # The zero update is the identity; a pure translation update moves along the frame's axes.
  same = QuatRigid.from_tensor(tensor).pre_compose(np.zeros_like(update))
  np.testing.assert_allclose(same.to_tensor(), tensor, atol=1e-6)
  t_only = np.concatenate([np.zeros((N, 3)), update[:, 3:]], -1)
  moved = QuatRigid.from_tensor(tensor).pre_compose(t_only)
  frame = QuatRigid.from_tensor(tensor).to_rigid()
  np.testing.assert_allclose(moved.translation, frame.apply(update[:, 3:]), atol=1e-5)


def test_rigid_apply_invert_compose():
  a, b = _random_rigid(6), _random_rigid(8)
  x = _vectors(10, scale=3.)
  np.testing.assert_allclose(a.invert_apply(a.apply(x)), x, atol=1e-5)
  np.testing.assert_allclose(a.invert().apply(a.apply(x)), x, atol=1e-5)
  np.testing.assert_allclose(a.compose(b).apply(x), a.apply(b.apply(x)), atol=1e-4)
  ident = a.compose(a.invert())
  np.testing.assert_allclose(ident.rotation, np.broadcast_to(np.eye(3), (N, 3, 3)), atol=1e-6)
  np.testing.assert_allclose(ident.translation, 0, atol=1e-5)
  # Extra point axes broadcast through expand_batch.
  pts = np.random.default_rng(11).normal(size=(N, 5, 3)).astype(np.float32)
  np.testing.assert_allclose(a.expand_batch(1).apply(pts)[:, 2], a.apply(pts[:, 2]), atol=1e-6)
  # Array round trips.
  np.testing.assert_array_equal(Rigid.from_flat12(a.to_flat12()).rotation, a.rotation)
  m = np.zeros((N, 4, 4), np.float32)
  m[:, :3, :3], m[:, :3, 3], m[:, 3, 3] = a.rotation, a.translation, 1
  np.testing.assert_array_equal(Rigid.from_tensor_4x4(m).translation, a.translation)
  ident = Rigid.identity((2, 3))
  assert ident.rotation.shape == (2, 3, 3, 3) and ident.translation.shape == (2, 3, 3)


def test_rigid_ops_match_r3():
  a, b = _random_rigid(12), _random_rigid(14)
  x = _vectors(16, scale=3.)

  def to_r3(r):
    return r3.Rigids(r3.rots_from_tensor3x3(r.rotation), r3.vecs_from_tensor(r.translation))

  ref = r3.rigids_mul_rigids(to_r3(a), to_r3(b))
  ours = a.compose(b)
  np.testing.assert_allclose(ours.to_flat12(), r3.rigids_to_tensor_flat12(ref), atol=1e-5)
  ref_inv = r3.invert_rigids(to_r3(a))
  np.testing.assert_allclose(a.invert().to_flat12(), r3.rigids_to_tensor_flat12(ref_inv),
                             atol=1e-5)
  np.testing.assert_allclose(
      a.apply(x), r3.vecs_to_tensor(r3.rigids_mul_vecs(to_r3(a), r3.vecs_from_tensor(x))),
      atol=1e-5)


def test_rigids_from_3_points_matches_r3():
  p0, p1, p2 = _vectors(17, scale=2.), _vectors(18, scale=2.), _vectors(19, scale=2.)
  ours = jax.jit(geometry.rigids_from_3_points)(p0, p1, p2)
  ref = r3.rigids_from_3_points(*(r3.vecs_from_tensor(p) for p in (p0, p1, p2)))
  np.testing.assert_allclose(ours.to_flat12(), r3.rigids_to_tensor_flat12(ref), atol=1e-5)
  # p1 is the origin, p0 lies on -x, p2 in the xy plane (y > 0).
  local0, local2 = ours.invert_apply(p0), ours.invert_apply(p2)
  # float32 rounding grows with the coordinates (up to ~20 A here): 1e-5 of the largest.
  atol = 1e-5 * float(np.abs(np.concatenate([local0, local2])).max())
  np.testing.assert_allclose(local0[:, 1:], 0, atol=atol)
  assert np.all(np.asarray(local0[:, 0]) < 0)
  np.testing.assert_allclose(local2[:, 2], 0, atol=atol)
  assert np.all(np.asarray(local2[:, 1]) > 0)


def test_make_transform_from_reference_matches_quat_affine():
  n, ca, c = _vectors(20, scale=5.), _vectors(21, scale=5.), _vectors(22, scale=5.)
  rot, trans = jax.jit(geometry.make_transform_from_reference)(n, ca, c)
  ref_rot, ref_trans = quat_affine.make_transform_from_reference(n, ca, c)
  np.testing.assert_allclose(rot, ref_rot, atol=1e-6)
  np.testing.assert_allclose(trans, ref_trans, atol=1e-6)


def test_make_transform_from_reference_recovers_frames():
  """Ideal backbone atoms moved by a rigid motion give back that motion."""
  lit = {name: np.asarray(pos, np.float32) for name, _, pos
         in residue_constants.rigid_group_atom_positions['ALA']}
  frames = _random_rigid(23)
  n, ca, c = (frames.apply(np.broadcast_to(lit[a], (N, 3))) for a in ('N', 'CA', 'C'))
  rot, trans = geometry.make_transform_from_reference(n, ca, c)
  np.testing.assert_allclose(rot, frames.rotation, atol=1e-5)
  np.testing.assert_allclose(trans, frames.translation, atol=1e-5)


def test_rotation_to_quaternion_round_trip():
  q = _quaternions(24)
  back = geometry.rotation_to_quaternion(geometry.quaternion_to_rotation(q))
  back = back * np.sign(np.sum(back * q, axis=-1, keepdims=True))  # q and -q: same rotation
  np.testing.assert_allclose(back, q, atol=1e-5)
