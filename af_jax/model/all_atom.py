"""All-atom geometry: torsion angles <-> rigid-group frames <-> atom positions.

Pure jnp functions on the tables of `af_jax.common.residue_constants`. Residue
axes are `N` (N_res); atoms come in two layouts: atom14 (dense, per residue
type) and atom37 (one slot per atom type). Rigid groups per residue (8):
backbone, pre-omega, phi, psi, chi1..chi4. Torsions per residue (7):
pre-omega, phi, psi, chi1..chi4, as (sin, cos) pairs.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from af_jax.common import residue_constants as rc
from af_jax.common.geometry import Rigid, cross, rigids_from_3_points


def gather_atoms(data: jax.Array, index: jax.Array) -> jax.Array:
  """data [..., A, *rest], index [..., B] -> [..., B, *rest] (gather along A)."""
  lead = index.ndim - 1
  rest = data.shape[lead + 1:]
  idx = jnp.reshape(index, index.shape + (1,) * len(rest))
  idx = jnp.broadcast_to(idx, index.shape + rest)
  return jnp.take_along_axis(data, idx, axis=lead)


def make_atom14_masks(aatype: jax.Array) -> dict[str, jax.Array]:
  """Atom existence masks and atom14 <-> atom37 index maps from residue types.

  The same four features AlphaFold's data pipeline adds (`make_atom14_masks`),
  computed in jnp so that a model needs only `aatype`.

  Args:
    aatype: [..., N] int residue types (20 = unknown: no atoms).

  Returns:
    atom14_atom_exists [..., N, 14] f32, residx_atom14_to_atom37 [..., N, 14]
    int32, residx_atom37_to_atom14 [..., N, 37] int32, atom37_atom_exists
    [..., N, 37] f32.
  """
  return {
      'atom14_atom_exists': jnp.asarray(rc.restype_atom14_mask)[aatype],
      'residx_atom14_to_atom37': jnp.asarray(rc.restype_atom14_to_atom37)[aatype],
      'residx_atom37_to_atom14': jnp.asarray(rc.restype_atom37_to_atom14)[aatype],
      'atom37_atom_exists': jnp.asarray(rc.restype_atom37_mask)[aatype],
  }


def _convert_layout(data: jax.Array, aatype: jax.Array, index: np.ndarray,
                    exists: np.ndarray) -> jax.Array:
  """Gather per-residue atom slots by a per-restype index table; zero absent slots."""
  out = gather_atoms(data, jnp.asarray(index)[aatype])
  mask = jnp.asarray(exists)[aatype].astype(out.dtype)
  return out * jnp.reshape(mask, mask.shape + (1,) * (out.ndim - mask.ndim))


def atom14_to_atom37(atom14_data: jax.Array, aatype: jax.Array) -> jax.Array:
  """Scatter atom14 data into the atom37 layout; absent atoms are zero.

  Args:
    atom14_data: [..., N, 14, *C] (e.g. positions with C = (3,)).
    aatype: [..., N] int.

  Returns:
    [..., N, 37, *C].
  """
  return _convert_layout(atom14_data, aatype, rc.restype_atom37_to_atom14,
                         rc.restype_atom37_mask)


def atom37_to_atom14(atom37_data: jax.Array, aatype: jax.Array) -> jax.Array:
  """Gather atom37 data into the atom14 layout; empty slots are zero.

  Args:
    atom37_data: [..., N, 37, *C].
    aatype: [..., N] int.

  Returns:
    [..., N, 14, *C].
  """
  return _convert_layout(atom37_data, aatype, rc.restype_atom14_to_atom37,
                         rc.restype_atom14_mask)


def _rotation_about_x(sin: jax.Array, cos: jax.Array) -> jax.Array:
  """[..., 3, 3] rotations about the x axis. Jumper et al. (2021) Suppl. Alg. 25."""
  zero, one = jnp.zeros_like(sin), jnp.ones_like(sin)
  return jnp.stack([jnp.stack([one, zero, zero], -1),
                    jnp.stack([zero, cos, -sin], -1),
                    jnp.stack([zero, sin, cos], -1)], -2)


def torsion_angles_to_frames(aatype: jax.Array, backb_to_global: Rigid,
                             torsion_angles_sin_cos: jax.Array) -> Rigid:
  """Frames of the 8 rigid groups from backbone frames and torsion angles.

  Jumper et al. (2021) Suppl. Alg. 24 lines 2-10 (with Alg. 25 makeRotX).

  Args:
    aatype: [N] int.
    backb_to_global: Rigid [N], backbone frames in Å.
    torsion_angles_sin_cos: [N, 7, 2] (sin, cos) of the 7 torsions.

  Returns:
    Rigid [N, 8], each group's frame -> global.
  """
  num_res = aatype.shape[0]
  default = Rigid.from_tensor_4x4(jnp.asarray(rc.restype_rigid_group_default_frame)[aatype])
  # The backbone group has no torsion: rotation by angle 0.
  sin = jnp.concatenate([jnp.zeros((num_res, 1)), torsion_angles_sin_cos[..., 0]], axis=-1)
  cos = jnp.concatenate([jnp.ones((num_res, 1)), torsion_angles_sin_cos[..., 1]], axis=-1)
  to_backb = default.compose_rotation(_rotation_about_x(sin, cos))  # [N, 8]

  # chi2..chi4 frames are defined relative to the previous chi frame: chain them.
  chi = to_backb.map(lambda x: x[:, 4])
  chained = []
  for group in (5, 6, 7):
    chi = chi.compose(to_backb.map(lambda x, g=group: x[:, g]))
    chained.append(chi)
  to_backb = Rigid(
      jnp.concatenate([to_backb.rotation[:, :5]] + [c.rotation[:, None] for c in chained], 1),
      jnp.concatenate([to_backb.translation[:, :5]] + [c.translation[:, None] for c in chained],
                      1))
  return backb_to_global.expand_batch(1).compose(to_backb)


def frames_and_literature_positions_to_atom14_pos(aatype: jax.Array,
                                                  all_frames_to_global: Rigid) -> jax.Array:
  """Idealised atoms placed by their rigid group's frame. Alg. 24 line 11.

  Args:
    aatype: [N] int.
    all_frames_to_global: Rigid [N, 8].

  Returns:
    [N, 14, 3] atom14 positions (Å), zero for empty slots.
  """
  group = jnp.asarray(rc.restype_atom14_to_rigid_group)[aatype]  # [N, 14]
  # A gather equals AlphaFold's one-hot sum exactly (one non-zero term).
  atom_frames = Rigid(gather_atoms(all_frames_to_global.rotation, group),
                      gather_atoms(all_frames_to_global.translation, group))
  local = jnp.asarray(rc.restype_atom14_rigid_group_positions)[aatype]  # [N, 14, 3]
  mask = jnp.asarray(rc.restype_atom14_mask)[aatype]
  return atom_frames.apply(local) * mask[..., None]


# Below this sine of the angle between two non-zero vectors they count as
# parallel: rounding leaves ~1e-7, real atoms (even a missing one at the
# origin, 1000 Å away) give > 1e-3.
_PARALLEL_SINE = 1e-4


def _parallel(u: jax.Array, v: jax.Array) -> jax.Array:
  """[...] bool: u, v [..., 3] both non-zero and parallel (sine of their angle < 1e-4)."""
  uu, vv = jnp.sum(u * u, axis=-1), jnp.sum(v * v, axis=-1)
  cross2 = jnp.sum(jnp.square(cross(u, v)), axis=-1)
  return (uu > 0) & (vv > 0) & (cross2 <= _PARALLEL_SINE ** 2 * uu * vv)


def atom37_to_torsion_angles(aatype: jax.Array, all_atom_pos: jax.Array,
                             all_atom_mask: jax.Array,
                             placeholder_for_undefined: bool = False) -> dict[str, jax.Array]:
  """The 7 torsion angles of each residue from its atoms (sin, cos encoding).

  Used for the template torsion-angle features (and the torsion loss). Each
  torsion is measured on 4 atoms; the frame of the first three (Alg. 21) puts
  the fourth at (., cos, sin) up to scale. psi is measured through O and
  mirrored; pre-omega and phi use the previous residue (undefined for the first).

  A masked torsion (an atom missing, its position zero) still gets the value
  AlphaFold computes from the positions as given: a template without side
  chains has its chi1 measured to a CG at the origin, and AlphaFold's template
  features (hence the published weights) include that value.

  DIFFERS FROM AF2: where the dihedral is undefined, because three consecutive
  points of the four are collinear but distinct (the first residue's
  pre-omega: the previous CA and C both sit at the zero padding, on the line
  through the origin and N), AlphaFold returns float rounding noise blown up
  to a unit vector, different jitted and eager; it is (0, 0) here, the value
  AlphaFold gets when that rounding happens to be exact.

  Args:
    aatype: [..., N] int (values > 20 are treated as unknown).
    all_atom_pos: [..., N, 37, 3].
    all_atom_mask: [..., N, 37].
    placeholder_for_undefined: replace masked-out torsions by (sin, cos) = (1, 0)
      (AlphaFold sets this when its global config does not zero-init).

  Returns:
    torsion_angles_sin_cos [..., N, 7, 2], alt_torsion_angles_sin_cos (chis
    with pi-periodic symmetry shifted by pi) and torsion_angles_mask [..., N, 7].
  """
  aatype = jnp.minimum(aatype, rc.unk_restype_index)
  n_axis = aatype.ndim - 1

  def previous(x):  # shift by one residue; zeros before the first
    pad = [(0, 0)] * x.ndim
    pad[n_axis] = (1, 0)
    return jnp.pad(jax.lax.slice_in_dim(x, 0, x.shape[n_axis] - 1, axis=n_axis), pad)

  pos, mask = all_atom_pos, all_atom_mask.astype(jnp.float32)
  prev_pos, prev_mask = previous(pos), previous(mask)
  n, ca, c, o = (rc.atom_order[a] for a in ('N', 'CA', 'C', 'O'))

  # [..., N, 4, 3] atoms of each backbone torsion.
  pre_omega_pos = jnp.stack([prev_pos[..., ca, :], prev_pos[..., c, :], pos[..., n, :],
                             pos[..., ca, :]], axis=-2)
  phi_pos = jnp.stack([prev_pos[..., c, :], pos[..., n, :], pos[..., ca, :], pos[..., c, :]],
                      axis=-2)
  psi_pos = jnp.stack([pos[..., n, :], pos[..., ca, :], pos[..., c, :], pos[..., o, :]], axis=-2)
  pre_omega_mask = prev_mask[..., ca] * prev_mask[..., c] * (mask[..., n] * mask[..., ca])
  phi_mask = prev_mask[..., c] * (mask[..., n] * mask[..., ca] * mask[..., c])
  psi_mask = mask[..., n] * mask[..., ca] * mask[..., c] * mask[..., o]

  # Chi atoms: [..., N, 4 chis, 4 atoms] atom37 indices.
  chi_index = jnp.asarray(rc.chi_atom_indices)[aatype]
  flat_index = jnp.reshape(chi_index, chi_index.shape[:-2] + (16,))
  chi_pos = jnp.reshape(gather_atoms(pos, flat_index), chi_index.shape + (3,))
  chi_atoms_mask = jnp.reshape(gather_atoms(mask, flat_index), chi_index.shape)
  chi_exists = jnp.asarray(np.array(rc.chi_angles_mask + [[0.0] * 4], np.float32))[aatype]
  chis_mask = chi_exists * jnp.prod(chi_atoms_mask, axis=-1)

  torsion_pos = jnp.concatenate(
      [pre_omega_pos[..., None, :, :], phi_pos[..., None, :, :], psi_pos[..., None, :, :],
       chi_pos], axis=-3)  # [..., N, 7, 4, 3]
  torsion_mask = jnp.concatenate(
      [pre_omega_mask[..., None], phi_mask[..., None], psi_mask[..., None], chis_mask],
      axis=-1)  # [..., N, 7]

  # Frame: atom 2 at the origin, atom 1 on -x, atom 0 in the xy plane; the
  # fourth atom's (y, z) in that frame give (cos, sin) of the dihedral.
  frames = rigids_from_3_points(point_on_neg_x_axis=torsion_pos[..., 1, :],
                                origin=torsion_pos[..., 2, :],
                                point_on_xy_plane=torsion_pos[..., 0, :])
  fourth = frames.invert().apply(torsion_pos[..., 3, :])
  sin_cos = jnp.stack([fourth[..., 2], fourth[..., 1]], axis=-1)
  sin_cos = sin_cos / jnp.sqrt(jnp.sum(jnp.square(sin_cos), axis=-1, keepdims=True) + 1e-8)
  axis = torsion_pos[..., 2, :] - torsion_pos[..., 1, :]
  undefined = (_parallel(axis, torsion_pos[..., 0, :] - torsion_pos[..., 2, :])
               | _parallel(axis, torsion_pos[..., 3, :] - torsion_pos[..., 2, :]))
  sin_cos = jnp.where(undefined[..., None], 0.0, sin_cos)
  # psi was measured through O, which sits opposite the next N: mirror it.
  sin_cos = sin_cos * jnp.asarray([1., 1., -1., 1., 1., 1., 1.])[:, None]

  pi_periodic = jnp.asarray(np.array(rc.chi_pi_periodic, np.float32))[aatype]
  mirror = jnp.concatenate([jnp.ones(aatype.shape + (3,)), 1.0 - 2.0 * pi_periodic], axis=-1)
  alt_sin_cos = sin_cos * mirror[..., None]

  if placeholder_for_undefined:
    placeholder = jnp.stack([jnp.ones(sin_cos.shape[:-1]), jnp.zeros(sin_cos.shape[:-1])], -1)
    m = torsion_mask[..., None]
    sin_cos = sin_cos * m + placeholder * (1 - m)
    alt_sin_cos = alt_sin_cos * m + placeholder * (1 - m)

  return {'torsion_angles_sin_cos': sin_cos, 'alt_torsion_angles_sin_cos': alt_sin_cos,
          'torsion_angles_mask': torsion_mask}


def pseudo_beta(aatype: jax.Array, all_atom_positions: jax.Array,
                all_atom_mask: jax.Array | None = None
                ) -> jax.Array | tuple[jax.Array, jax.Array]:
  """CB position (CA for glycine), e.g. for template and recycling distograms.

  Args:
    aatype: [..., N] int.
    all_atom_positions: [..., N, 37, 3].
    all_atom_mask: optional [..., N, 37].

  Returns:
    pseudo_beta [..., N, 3], and its mask [..., N] (f32) if a mask was given.
  """
  is_gly = (aatype == rc.restype_order['G'])
  ca, cb = rc.atom_order['CA'], rc.atom_order['CB']
  pos = jnp.where(is_gly[..., None], all_atom_positions[..., ca, :],
                  all_atom_positions[..., cb, :])
  if all_atom_mask is None:
    return pos
  mask = jnp.where(is_gly, all_atom_mask[..., ca], all_atom_mask[..., cb])
  return pos, mask.astype(jnp.float32)
