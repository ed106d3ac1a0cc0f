"""The structure module's training loss. Jumper et al. (2021) Suppl. 1.9.1-1.9.5, 1.9.11.

Backbone FAPE over every layer, side-chain FAPE against the ground truth renamed to fit
the prediction, chi-angle and angle-norm losses, and the structural violation loss,
mixed as AlphaFold's `StructureModule.loss` mixes them. Every term is a masked mean
whose masks are zero on padded residues; `af_jax.train.losses.alphafold_loss` weighs
the result with the other heads' losses.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from af_jax.common import residue_constants as rc
from af_jax.common import violations as viol
from af_jax.common.geometry import QuatRigid, Rigid


# ---------------------------------------------------------------------------
# Frame aligned point error. Suppl. Alg. 28.


def frame_aligned_point_error(pred_frames: Rigid, target_frames: Rigid, frames_mask: jax.Array,
                              pred_positions: jax.Array, target_positions: jax.Array,
                              positions_mask: jax.Array, length_scale: float,
                              l1_clamp_distance: float | None = None,
                              epsilon: float = 1e-4) -> jax.Array:
  """Mean distance of every position to its target, in every frame's local coordinates.

  Args:
    pred_frames, target_frames: Rigid [F].
    frames_mask: [F].
    pred_positions, target_positions: [P, 3].
    positions_mask: [P].
    length_scale: the loss is in units of this length (Å).
    l1_clamp_distance: clamp each distance at this many Å (no gradient beyond).
    epsilon: regularises the distance and the normalisation.

  Returns:
    Scalar FAPE.
  """
  # [F, P, 3]: every position in every frame.
  local_pred = pred_frames.invert().expand_batch(1).apply(pred_positions[None])
  local_target = target_frames.invert().expand_batch(1).apply(target_positions[None])
  d = local_pred - local_target
  error = jnp.sqrt(jnp.square(d[..., 0]) + jnp.square(d[..., 1]) + jnp.square(d[..., 2])
                   + epsilon)
  if l1_clamp_distance:
    error = jnp.clip(error, 0, l1_clamp_distance)
  normed = error / length_scale * frames_mask[:, None] * positions_mask[None, :]
  norm = jnp.sum(frames_mask) * jnp.sum(positions_mask)
  return jnp.sum(normed) / (epsilon + norm)


def backbone_fape(traj: jax.Array, backbone_affine_tensor: jax.Array,
                  backbone_affine_mask: jax.Array, config,
                  use_clamped_fape: jax.Array | None = None) -> dict[str, jax.Array]:
  """Backbone FAPE of every structure-module layer. Alg. 20 line 17, Suppl. 1.11.5.

  Args:
    traj: [L, N_res, 7] per-layer backbone frames (quaternion, translation in Å).
    backbone_affine_tensor: [N_res, 7] ground-truth frames.
    backbone_affine_mask: [N_res].
    config: `heads.structure_module` (fape.clamp_distance, fape.loss_unit_distance).
    use_clamped_fape: optional scalar in [0, 1], the weight of the clamped loss
      against the unclamped one (AlphaFold clamps 90 % of examples).

  Returns:
    per_layer [L] (what the loss averages), fape (last layer, as AlphaFold
    reports it) and unclamped_fape (last layer, never clamped).
  """
  pred = QuatRigid.from_tensor(traj).to_rigid()
  gt = QuatRigid.from_tensor(backbone_affine_tensor).to_rigid()
  mask = backbone_affine_mask

  def per_layer(clamp):
    def one(frames):
      return frame_aligned_point_error(frames, gt, mask, frames.translation, gt.translation,
                                       mask, config.fape.loss_unit_distance, clamp)
    return jax.vmap(one)(pred)

  unclamped = per_layer(None)
  losses = per_layer(config.fape.clamp_distance)
  if use_clamped_fape is not None:
    w = jnp.reshape(jnp.asarray(use_clamped_fape, jnp.float32), (-1,))[0]
    losses = losses * w + unclamped * (1 - w)
  return {'per_layer': losses, 'fape': losses[-1], 'unclamped_fape': unclamped[-1]}


# ---------------------------------------------------------------------------
# Side chains. Suppl. Alg. 26 (renaming) and the all-atom FAPE.


def find_optimal_renaming(atom14_gt_positions: jax.Array, atom14_alt_gt_positions: jax.Array,
                          atom14_atom_is_ambiguous: jax.Array, atom14_gt_exists: jax.Array,
                          atom14_pred_positions: jax.Array) -> jax.Array:
  """1.0 where the swapped naming of a residue fits the prediction better. Alg. 26 lines 1-5.

  Compares distances from each residue's ambiguous atoms to every unambiguous
  atom, under both namings, with the predicted distances.

  Returns:
    [N_res] float.
  """
  def dists(x):  # [N, N, 14, 14]
    return jnp.sqrt(1e-10 + jnp.sum(jnp.square(x[:, None, :, None, :] - x[None, :, None, :, :]),
                                    axis=-1))
  pred = dists(atom14_pred_positions)
  err = jnp.sqrt(1e-10 + jnp.square(pred - dists(atom14_gt_positions)))
  alt_err = jnp.sqrt(1e-10 + jnp.square(pred - dists(atom14_alt_gt_positions)))
  mask = (atom14_gt_exists[:, None, :, None] * atom14_atom_is_ambiguous[:, None, :, None]
          * atom14_gt_exists[None, :, None, :]
          * (1.0 - atom14_atom_is_ambiguous[None, :, None, :]))
  per_res = jnp.sum(mask * err, axis=(1, 2, 3))
  alt_per_res = jnp.sum(mask * alt_err, axis=(1, 2, 3))
  return (alt_per_res < per_res).astype(jnp.float32)


def compute_renamed_ground_truth(batch: dict, atom14_pred_positions: jax.Array
                                 ) -> dict[str, jax.Array]:
  """Ground truth with each symmetric side chain named as the prediction fits best. Alg. 26.

  Returns:
    alt_naming_is_better [N_res], renamed_atom14_gt_positions [N_res, 14, 3],
    renamed_atom14_gt_exists [N_res, 14].
  """
  alt = find_optimal_renaming(batch['atom14_gt_positions'], batch['atom14_alt_gt_positions'],
                              batch['atom14_atom_is_ambiguous'], batch['atom14_gt_exists'],
                              atom14_pred_positions)
  positions = ((1.0 - alt[:, None, None]) * batch['atom14_gt_positions']
               + alt[:, None, None] * batch['atom14_alt_gt_positions'])
  exists = ((1.0 - alt[:, None]) * batch['atom14_gt_exists']
            + alt[:, None] * batch['atom14_alt_gt_exists'])
  return {'alt_naming_is_better': alt, 'renamed_atom14_gt_positions': positions,
          'renamed_atom14_gt_exists': exists}


def sidechain_fape(batch: dict, renamed: dict, sidechains: dict, config) -> jax.Array:
  """All-atom FAPE of the last layer: 8 frames x 14 atoms per residue, renamed truth.

  Args:
    batch: rigidgroups_gt_frames, rigidgroups_alt_gt_frames [N_res, 8, 12],
      rigidgroups_gt_exists [N_res, 8].
    renamed: `compute_renamed_ground_truth`'s output.
    sidechains: the structure module's per-layer `frames` [L, N_res, 8, 12]
      (flat12) and `atom_pos` [L, N_res, 14, 3].
    config: `heads.structure_module` (sidechain.atom_clamp_distance, .length_scale).
  """
  alt = renamed['alt_naming_is_better'][:, None, None]
  gt_frames = ((1.0 - alt) * batch['rigidgroups_gt_frames']
               + alt * batch['rigidgroups_alt_gt_frames'])
  return frame_aligned_point_error(
      pred_frames=Rigid.from_flat12(jnp.reshape(sidechains['frames'][-1], (-1, 12))),
      target_frames=Rigid.from_flat12(jnp.reshape(gt_frames, (-1, 12))),
      frames_mask=jnp.reshape(batch['rigidgroups_gt_exists'], (-1,)),
      pred_positions=jnp.reshape(sidechains['atom_pos'][-1], (-1, 3)),
      target_positions=jnp.reshape(renamed['renamed_atom14_gt_positions'], (-1, 3)),
      positions_mask=jnp.reshape(renamed['renamed_atom14_gt_exists'], (-1,)),
      length_scale=config.sidechain.length_scale,
      l1_clamp_distance=config.sidechain.atom_clamp_distance)


def _mask_mean(mask: jax.Array, value: jax.Array, eps: float = 1e-10) -> jax.Array:
  """Masked mean with `mask` broadcast against `value` (a size-1 mask axis counts fully)."""
  factor = 1.0
  for m, v in zip(mask.shape, value.shape):
    if m == 1:
      factor *= v
  return jnp.sum(mask * value) / (jnp.sum(mask) * factor + eps)


def supervised_chi_loss(batch: dict, sidechains: dict, seq_mask: jax.Array,
                        config) -> dict[str, jax.Array]:
  """Torsion loss on the chi angles (either pi-symmetric form) and the angle-norm loss. Alg. 27.

  Args:
    batch: aatype [N_res], chi_mask [N_res, 4], and chi_angles_sin_cos
      [N_res, 4, 2] (or chi_angles [N_res, 4] in radians, AlphaFold's feature).
    sidechains: angles_sin_cos and unnormalized_angles_sin_cos [L, N_res, 7, 2].
    seq_mask: [N_res].
    config: `heads.structure_module` (chi_weight, angle_norm_weight).

  Returns:
    chi_loss, angle_norm_loss, and loss = chi_weight * chi_loss +
    angle_norm_weight * angle_norm_loss.
  """
  chi_mask = batch['chi_mask'].astype(jnp.float32)
  pred = sidechains['angles_sin_cos'][:, :, 3:]  # [L, N, 4, 2], all layers
  if 'chi_angles_sin_cos' in batch:
    true = batch['chi_angles_sin_cos'][None]
  else:
    chi = batch['chi_angles'][None]
    true = jnp.stack([jnp.sin(chi), jnp.cos(chi)], axis=-1)
  pi_periodic = jnp.asarray(rc.chi_pi_periodic, jnp.float32)[batch['aatype']][None]
  true_shifted = (1.0 - 2.0 * pi_periodic)[..., None] * true  # chi + pi where symmetric
  err = jnp.sum(jnp.square(true - pred), axis=-1)
  err_shifted = jnp.sum(jnp.square(true_shifted - pred), axis=-1)
  chi_loss = _mask_mean(chi_mask[None], jnp.minimum(err, err_shifted))

  unnormalized = sidechains['unnormalized_angles_sin_cos']
  norm = jnp.sqrt(jnp.sum(jnp.square(unnormalized), axis=-1) + 1e-6)
  angle_norm_loss = _mask_mean(seq_mask[None, :, None], jnp.abs(norm - 1.0))
  return {'chi_loss': chi_loss, 'angle_norm_loss': angle_norm_loss,
          'loss': config.chi_weight * chi_loss + config.angle_norm_weight * angle_norm_loss}


def structural_violation_loss(violations: dict, atom14_atom_exists: jax.Array) -> jax.Array:
  """Bond, angle and clash losses as AlphaFold sums them (Suppl. 1.9.11 eq. 47), unweighted."""
  between = violations['between_residues']
  num_atoms = jnp.sum(atom14_atom_exists).astype(jnp.float32)
  return (between['bonds_c_n_loss_mean'] + between['angles_ca_c_n_loss_mean']
          + between['angles_c_n_ca_loss_mean']
          + jnp.sum(between['clashes_per_atom_loss_sum']
                    + violations['within_residues']['per_atom_loss_sum']) / (1e-6 + num_atoms))


def structure_module_loss(sm: dict, batch: dict, config) -> dict[str, jax.Array]:
  """The structure module's loss and its terms, as AlphaFold's `StructureModule.loss`.

  loss = (1 - w) * mean over layers of backbone FAPE + w * side-chain FAPE
  + chi_weight * chi + angle_norm_weight * angle norm
  + structural_violation_loss_weight * violations, w = sidechain.weight_frac.

  Args:
    sm: the model's `structure_module` outputs (traj, sidechains,
      final_atom14_positions).
    batch: features and labels of one example (see `alphafold_loss`).
    config: `heads.structure_module`.
  """
  out = {}
  bb = backbone_fape(sm['traj'], batch['backbone_affine_tensor'], batch['backbone_affine_mask'],
                     config, batch.get('use_clamped_fape'))
  out['fape'], out['unclamped_fape'] = bb['fape'], bb['unclamped_fape']
  pred14 = sm['final_atom14_positions']
  renamed = compute_renamed_ground_truth(batch, pred14)
  out['sidechain_fape'] = sidechain_fape(batch, renamed, sm['sidechains'], config)
  w = config.sidechain.weight_frac
  loss = (1 - w) * jnp.mean(bb['per_layer']) + w * out['sidechain_fape']
  chi = supervised_chi_loss(batch, sm['sidechains'], batch['seq_mask'], config)
  out['chi_loss'], out['angle_norm_loss'] = chi['chi_loss'], chi['angle_norm_loss']
  loss = loss + chi['loss']

  exists = batch['atom14_atom_exists']
  if config.structural_violation_loss_weight or config.get('compute_in_graph_metrics', False):
    v = viol.find_structural_violations(
        pred14, aatype=batch['aatype'], residue_index=batch['residue_index'],
        atom14_atom_exists=exists, violation_tolerance_factor=config.violation_tolerance_factor,
        clash_overlap_tolerance=config.clash_overlap_tolerance,
        use_ca_c_n_angle_stddev=config.use_ca_c_n_angle_stddev)
    out['violations'] = structural_violation_loss(v, exists)
    if config.structural_violation_loss_weight:
      loss = loss + config.structural_violation_loss_weight * out['violations']
    if config.get('compute_in_graph_metrics', False):
      out.update(jax.lax.stop_gradient(viol.compute_violation_metrics(
          pred14, v, atom14_atom_exists=exists, residue_index=batch['residue_index'],
          seq_mask=batch['seq_mask'])))
  out['loss'] = loss
  return out


__all__ = [
    'frame_aligned_point_error', 'backbone_fape', 'find_optimal_renaming',
    'compute_renamed_ground_truth', 'sidechain_fape', 'supervised_chi_loss',
    'structural_violation_loss', 'structure_module_loss',
]
