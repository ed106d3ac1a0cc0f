"""Training labels from a ground-truth structure in atom37 form.

The features AlphaFold's losses read (its names): atom14 ground truth with the
alternative naming of symmetric side chains, rigid-group frames, the backbone
frame as a quaternion affine, chi angles and pseudo-beta positions. Jumper et
al. (2021) Suppl. 1.2.1 (atom14), 1.8.1 and Table 2 (rigid groups), Table 3
(ambiguous atoms). Pure jnp, so labels can be made on device after cropping.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from af_jax.common import residue_constants as rc
from af_jax.common.geometry import Rigid, rigids_from_3_points, rotation_to_quaternion
from af_jax.model import all_atom


def _restype_tables() -> dict[str, np.ndarray]:
  """Per residue type: atom14 renaming swaps, ambiguous atoms, rigid-group base atoms."""
  # atom14 slot -> slot holding its symmetric partner (identity where unambiguous).
  swap = np.tile(np.arange(14, dtype=np.int32), (21, 1))
  ambiguous = np.zeros((21, 14), np.float32)
  for resname, pairs in rc.residue_atom_renaming_swaps.items():
    restype = rc.restype_order[rc.restype_3to1[resname]]
    names = rc.restype_name_to_atom14_names[resname]
    for a, b in pairs.items():
      i, j = names.index(a), names.index(b)
      swap[restype, i], swap[restype, j] = j, i
      ambiguous[restype, [i, j]] = 1.0

  # Rigid groups: 0 backbone, 1 pre-omega, 2 phi (no heavy atoms), 3 psi,
  # 4-7 chi1-4. Each frame is built from three atoms (Alg. 21): on -x, origin,
  # in the xy plane; (C, CA, N) for the backbone, (CA, C, O) for psi, the
  # last three atoms of each chi.
  base_atoms = np.zeros((21, 8, 3), np.int32)
  group_exists = np.zeros((21, 8), np.float32)
  base_atoms[:, 0] = [rc.atom_order[a] for a in ('C', 'CA', 'N')]
  base_atoms[:, 3] = [rc.atom_order[a] for a in ('CA', 'C', 'O')]
  group_exists[:, [0, 3]] = 1.0
  group_is_ambiguous = np.zeros((21, 8), np.float32)
  for restype, letter in enumerate(rc.restypes):
    resname = rc.restype_1to3[letter]
    for k, atoms in enumerate(rc.chi_angles_atoms[resname]):
      base_atoms[restype, 4 + k] = [rc.atom_order[a] for a in atoms[1:]]
      group_exists[restype, 4 + k] = 1.0
    if resname in rc.residue_atom_renaming_swaps:
      # The symmetric atoms hang off the last chi group.
      group_is_ambiguous[restype, 3 + len(rc.chi_angles_atoms[resname])] = 1.0
  return {'atom14_swap': swap, 'atom14_is_ambiguous': ambiguous, 'base_atoms': base_atoms,
          'group_exists': group_exists, 'group_is_ambiguous': group_is_ambiguous}


_T = _restype_tables()


def _gather_atoms(data: jax.Array, index: jax.Array) -> jax.Array:
  """data [N, A, *rest], index [N, *B] -> [N, *B, *rest] (per-residue gather)."""
  n, rest = data.shape[0], data.shape[2:]
  flat = jnp.reshape(index, (n, -1))
  out = jnp.take_along_axis(data, jnp.reshape(flat, flat.shape + (1,) * len(rest)), axis=1)
  return jnp.reshape(out, index.shape + rest)


def make_atom14_positions(aatype: jax.Array, all_atom_positions: jax.Array,
                          all_atom_mask: jax.Array) -> dict[str, jax.Array]:
  """Ground truth in the atom14 layout, with the alternative (swapped) naming.

  Args:
    aatype: [N_res] int.
    all_atom_positions: [N_res, 37, 3].
    all_atom_mask: [N_res, 37].

  Returns:
    atom14_atom_exists, atom14_gt_exists, atom14_alt_gt_exists,
    atom14_atom_is_ambiguous [N_res, 14]; atom14_gt_positions,
    atom14_alt_gt_positions [N_res, 14, 3]; residx_atom14_to_atom37 [N_res, 14],
    residx_atom37_to_atom14 and atom37_atom_exists [N_res, 37].
  """
  masks = all_atom.make_atom14_masks(aatype)
  index = masks['residx_atom14_to_atom37']
  gt_exists = masks['atom14_atom_exists'] * _gather_atoms(
      all_atom_mask.astype(jnp.float32), index)
  gt_positions = gt_exists[..., None] * _gather_atoms(all_atom_positions, index)
  # Suppl. Table 3: the alternative naming swaps the symmetric atoms' slots. A
  # gather equals AlphaFold's product with a permutation matrix exactly.
  swap = jnp.asarray(_T['atom14_swap'])[aatype]
  return {
      **masks,
      'atom14_gt_exists': gt_exists,
      'atom14_gt_positions': gt_positions,
      'atom14_alt_gt_exists': _gather_atoms(gt_exists, swap),
      'atom14_alt_gt_positions': _gather_atoms(gt_positions, swap),
      'atom14_atom_is_ambiguous': jnp.asarray(_T['atom14_is_ambiguous'])[aatype],
  }


def atom37_to_frames(aatype: jax.Array, all_atom_positions: jax.Array,
                     all_atom_mask: jax.Array) -> dict[str, jax.Array]:
  """Ground-truth frames of the 8 rigid groups (Suppl. Table 2), flat12.

  Args:
    aatype: [N_res] int.
    all_atom_positions: [N_res, 37, 3].
    all_atom_mask: [N_res, 37].

  Returns:
    rigidgroups_gt_frames, rigidgroups_alt_gt_frames [N_res, 8, 12];
    rigidgroups_gt_exists (its three atoms observed), rigidgroups_group_exists
    (the residue type has the group), rigidgroups_group_is_ambiguous [N_res, 8].
  """
  base = jnp.asarray(_T['base_atoms'])[aatype]  # [N, 8, 3]
  pos = _gather_atoms(all_atom_positions, base)  # [N, 8, 3, 3]
  frames = rigids_from_3_points(point_on_neg_x_axis=pos[..., 0, :], origin=pos[..., 1, :],
                                point_on_xy_plane=pos[..., 2, :])
  group_exists = jnp.asarray(_T['group_exists'])[aatype]
  gt_exists = jnp.min(_gather_atoms(all_atom_mask.astype(jnp.float32), base), axis=-1)
  gt_exists = gt_exists * group_exists

  # The backbone frame, built with C on -x, is turned half a turn about y so
  # that x points CA->C, as the structure module's frames do (Alg. 21 with
  # N, CA, C). Ambiguous groups: the alternative frame is turned half a turn
  # about x. Negating columns of R is exact, as the reference's product with a
  # diagonal +-1 matrix.
  backbone_flip = np.ones((8, 3), np.float32)
  backbone_flip[0] = [-1.0, 1.0, -1.0]
  rotation = frames.rotation * jnp.asarray(backbone_flip)[:, None, :]
  frames = Rigid(rotation, frames.translation)
  ambiguous = jnp.asarray(_T['group_is_ambiguous'])[aatype]
  alt_flip = jnp.stack([jnp.ones_like(ambiguous), 1.0 - 2.0 * ambiguous,
                        1.0 - 2.0 * ambiguous], axis=-1)
  alt_frames = Rigid(rotation * alt_flip[..., None, :], frames.translation)
  return {
      'rigidgroups_gt_frames': frames.to_flat12(),
      'rigidgroups_gt_exists': gt_exists,
      'rigidgroups_group_exists': group_exists,
      'rigidgroups_group_is_ambiguous': ambiguous,
      'rigidgroups_alt_gt_frames': alt_frames.to_flat12(),
  }


def make_backbone_affine(rigidgroups_gt_frames: jax.Array,
                         rigidgroups_gt_exists: jax.Array) -> dict[str, jax.Array]:
  """The backbone frame as AlphaFold's quaternion affine tensor.

  Args:
    rigidgroups_gt_frames: [N_res, 8, 12] (`atom37_to_frames`).
    rigidgroups_gt_exists: [N_res, 8].

  Returns:
    backbone_affine_tensor [N_res, 7] (unit quaternion w,x,y,z, then the CA
    position in Å) and backbone_affine_mask [N_res] (N, CA, C observed).
  """
  frames = Rigid.from_flat12(rigidgroups_gt_frames[:, 0])
  mask = rigidgroups_gt_exists[:, 0]
  # A residue without backbone gets the identity rotation (not eigh of zeros).
  eye = jnp.eye(3, dtype=frames.rotation.dtype)
  rotation = jnp.where(mask[:, None, None] > 0, frames.rotation, eye)
  quaternion = rotation_to_quaternion(rotation)
  # Sign is arbitrary; take w >= 0 so that equal frames give equal tensors.
  quaternion = quaternion * jnp.where(quaternion[:, :1] < 0, -1.0, 1.0)
  return {'backbone_affine_tensor': jnp.concatenate([quaternion, frames.translation], -1),
          'backbone_affine_mask': mask}


def make_chi_angles(aatype: jax.Array, all_atom_positions: jax.Array,
                    all_atom_mask: jax.Array) -> dict[str, jax.Array]:
  """Chi angles of the ground truth. Suppl. 1.9.1, Alg. 27 inputs.

  Returns:
    chi_angles_sin_cos, alt_chi_angles_sin_cos [N_res, 4, 2]; chi_angles and
    alt_chi_angles [N_res, 4] in radians (AlphaFold's loss reads these);
    chi_mask [N_res, 4].
  """
  torsions = all_atom.atom37_to_torsion_angles(aatype, all_atom_positions, all_atom_mask)
  sin_cos = torsions['torsion_angles_sin_cos'][:, 3:]
  alt = torsions['alt_torsion_angles_sin_cos'][:, 3:]
  mask = torsions['torsion_angles_mask'][:, 3:]
  # Masked-out chis are rounding noise (see atom37_to_torsion_angles): zero them.
  sin_cos, alt = sin_cos * mask[..., None], alt * mask[..., None]
  return {'chi_angles_sin_cos': sin_cos, 'alt_chi_angles_sin_cos': alt,
          'chi_angles': jnp.arctan2(sin_cos[..., 0], sin_cos[..., 1]),
          'alt_chi_angles': jnp.arctan2(alt[..., 0], alt[..., 1]), 'chi_mask': mask}


def make_labels(aatype: jax.Array, all_atom_positions: jax.Array, all_atom_mask: jax.Array,
                seq_mask: jax.Array | None = None) -> dict[str, jax.Array]:
  """Every label feature AlphaFold's losses read, from atom37 ground truth.

  Args:
    aatype: [N_res] int (20 = unknown).
    all_atom_positions: [N_res, 37, 3] in Å.
    all_atom_mask: [N_res, 37], 1 where the atom was observed.
    seq_mask: optional [N_res], 0 for padding: zeroes the residue-type masks
      (atom14_atom_exists, atom37_atom_exists, rigidgroups_group_exists) there,
      as padding a batch of labels made before padding would.

  Returns:
    The outputs of make_atom14_positions, atom37_to_frames, make_backbone_affine
    and make_chi_angles, plus pseudo_beta [N_res, 3] and pseudo_beta_mask
    [N_res], all_atom_positions and all_atom_mask.
  """
  all_atom_mask = all_atom_mask.astype(jnp.float32)
  if seq_mask is not None:
    all_atom_mask = all_atom_mask * seq_mask[:, None]
  labels = make_atom14_positions(aatype, all_atom_positions, all_atom_mask)
  labels.update(atom37_to_frames(aatype, all_atom_positions, all_atom_mask))
  labels.update(make_backbone_affine(labels['rigidgroups_gt_frames'],
                                     labels['rigidgroups_gt_exists']))
  labels.update(make_chi_angles(aatype, all_atom_positions, all_atom_mask))
  pb, pb_mask = all_atom.pseudo_beta(aatype, all_atom_positions, all_atom_mask)
  labels.update(pseudo_beta=pb, pseudo_beta_mask=pb_mask,
                all_atom_positions=all_atom_positions, all_atom_mask=all_atom_mask)
  if seq_mask is not None:
    seq_mask = seq_mask.astype(jnp.float32)
    for key in ('atom14_atom_exists', 'atom37_atom_exists', 'rigidgroups_group_exists'):
      labels[key] = labels[key] * seq_mask[:, None]
  return labels


__all__ = ['make_atom14_positions', 'atom37_to_frames', 'make_backbone_affine',
           'make_chi_angles', 'make_labels']
