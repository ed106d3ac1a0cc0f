"""Structural violations: peptide bonds and angles, clashes, intra-residue bounds.

Jumper et al. (2021) Suppl. 1.9.11 (eq. 44-46). The checks and their outputs
(AlphaFold's names) follow AlphaFold's `folding.find_structural_violations` and
`folding.compute_violation_metrics`; the functions are jax.numpy, so the
training loss differentiates through them, and `protein_violations` wraps them
for a `Protein` (numpy in, numpy out) for relaxation and reports. The literature
lengths, angles and radii they compare against are `af_jax.common.stereo_chemistry`'s.

Atoms are in the atom14 layout ([N_res, 14, 3], slots 0-3 = N, CA, C, O).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from af_jax.common import residue_constants as rc
from af_jax.common import stereo_chemistry

_N, _CA, _C = 0, 1, 2  # atom14 (and atom37) slots of the backbone atoms
_CYS_SG = rc.restype_name_to_atom14_names['CYS'].index('SG')


# ---------------------------------------------------------------------------
# The checks. Suppl. 1.9.11.


def _dist(a: jax.Array, b: jax.Array, eps: float) -> jax.Array:
  return jnp.sqrt(eps + jnp.sum(jnp.square(a - b), axis=-1))


def between_residue_bond_loss(pred_atom_positions: jax.Array, pred_atom_mask: jax.Array,
                              residue_index: jax.Array, aatype: jax.Array,
                              tolerance_factor_soft: float = 12.0,
                              tolerance_factor_hard: float = 12.0,
                              use_ca_c_n_angle_stddev: bool = False) -> dict[str, jax.Array]:
  """Flat-bottom losses on the peptide bond C-N and the angles CA-C-N, C-N-CA. Eq. 44-45.

  Consecutive residues are bonded only where residue_index increases by exactly 1.
  Each band is `tolerance_factor` standard deviations wide; for CA-C-N,
  `use_ca_c_n_angle_stddev` picks whose standard deviation (see the comment there).

  Args:
    pred_atom_positions: [N_res, 14 (or 37), 3].
    pred_atom_mask: [N_res, 14 (or 37)].
    residue_index: [N_res].
    aatype: [N_res] int.
    tolerance_factor_soft: loss-free band, in literature standard deviations.
    tolerance_factor_hard: violation threshold, in standard deviations.
    use_ca_c_n_angle_stddev: measure the CA-C-N band in the angle's own cosine
      stddev (0.0311, DeepMind's 2025 correction) instead of the C-N bond length's
      (0.014, AlphaFold 2.3, 2.2x tighter).

  Returns:
    AlphaFold's c_n_loss_mean, ca_c_n_loss_mean, c_n_ca_loss_mean (scalars),
    per_residue_loss_sum and per_residue_violation_mask [N_res] (a link's
    loss is shared by, and its violation marks, both residues); also the per-link violation masks
    c_n_violation_mask, ca_c_n_violation_mask, c_n_ca_violation_mask [N_res - 1].
  """
  residue_index = residue_index.astype(jnp.float32)
  ca, c = pred_atom_positions[:-1, _CA], pred_atom_positions[:-1, _C]
  ca_mask, c_mask = pred_atom_mask[:-1, _CA], pred_atom_mask[:-1, _C]
  n_next, ca_next = pred_atom_positions[1:, _N], pred_atom_positions[1:, _CA]
  n_next_mask, ca_next_mask = pred_atom_mask[1:, _N], pred_atom_mask[1:, _CA]
  bonded = ((residue_index[1:] - residue_index[:-1]) == 1.0).astype(jnp.float32)

  def flat_bottom(error, stddev, mask):
    per_link = jax.nn.relu(error - tolerance_factor_soft * stddev)
    mean = jnp.sum(mask * per_link) / (jnp.sum(mask) + 1e-6)
    # DIFFERS FROM AF2: the per-link loss is masked (AlphaFold's is not, so its
    # per_residue_loss_sum also counts links across breaks and into padding).
    return mask * per_link, mean, mask * (error > tolerance_factor_hard * stddev)

  # C-N bond length; the bond into a proline is slightly longer.
  c_n_length = _dist(c, n_next, 1e-6)
  next_is_pro = (aatype[1:] == rc.resname_to_idx['PRO']).astype(jnp.float32)
  length0, length_pro = rc.between_res_bond_length_c_n
  std0, std_pro = rc.between_res_bond_length_stddev_c_n
  gt_length = (1.0 - next_is_pro) * length0 + next_is_pro * length_pro
  gt_std = (1.0 - next_is_pro) * std0 + next_is_pro * std_pro
  c_n_error = jnp.sqrt(1e-6 + jnp.square(c_n_length - gt_length))
  c_n_loss, c_n_mean, c_n_viol = flat_bottom(c_n_error, gt_std, c_mask * n_next_mask * bonded)

  # Angles, as cosines from unit vectors.
  c_ca_unit = (ca - c) / _dist(ca, c, 1e-6)[:, None]
  c_n_unit = (n_next - c) / c_n_length[:, None]
  n_ca_unit = (ca_next - n_next) / _dist(n_next, ca_next, 1e-6)[:, None]

  ca_c_n_cos = jnp.sum(c_ca_unit * c_n_unit, axis=-1)
  ca_c_n_error = jnp.sqrt(1e-6 + jnp.square(ca_c_n_cos - rc.between_res_cos_angles_ca_c_n[0]))
  # AlphaFold 2.3 measures the CA-C-N band in the C-N bond length's stddev (0.014 Å,
  # a slip: the error is a cosine), not the angle's own cosine stddev (0.0311) that
  # eq. 45 and the C-N-CA band use. DeepMind corrected it in google-deepmind/alphafold
  # 06a8da6; the published weights were trained with the slip.
  if use_ca_c_n_angle_stddev:
    ca_c_n_std = rc.between_res_cos_angles_ca_c_n[1]
  else:
    ca_c_n_std = rc.between_res_bond_length_stddev_c_n[0]
  ca_c_n_loss, ca_c_n_mean, ca_c_n_viol = flat_bottom(
      ca_c_n_error, ca_c_n_std, ca_mask * c_mask * n_next_mask * bonded)

  c_n_ca_cos = jnp.sum((-c_n_unit) * n_ca_unit, axis=-1)
  mean_cos, std_cos = rc.between_res_cos_angles_c_n_ca
  c_n_ca_error = jnp.sqrt(1e-6 + jnp.square(c_n_ca_cos - mean_cos))
  c_n_ca_loss, c_n_ca_mean, c_n_ca_viol = flat_bottom(
      c_n_ca_error, std_cos, c_mask * n_next_mask * ca_next_mask * bonded)

  # Each link's loss is shared half and half by its two residues.
  per_link = c_n_loss + ca_c_n_loss + c_n_ca_loss
  per_residue = 0.5 * (jnp.pad(per_link, [[0, 1]]) + jnp.pad(per_link, [[1, 0]]))
  link_viol = jnp.max(jnp.stack([c_n_viol, ca_c_n_viol, c_n_ca_viol]), axis=0)
  per_residue_viol = jnp.maximum(jnp.pad(link_viol, [[0, 1]]), jnp.pad(link_viol, [[1, 0]]))
  return {'c_n_loss_mean': c_n_mean, 'ca_c_n_loss_mean': ca_c_n_mean,
          'c_n_ca_loss_mean': c_n_ca_mean, 'per_residue_loss_sum': per_residue,
          'per_residue_violation_mask': per_residue_viol,
          'c_n_violation_mask': c_n_viol, 'ca_c_n_violation_mask': ca_c_n_viol,
          'c_n_ca_violation_mask': c_n_ca_viol}


def between_residue_clash_loss(atom14_pred_positions: jax.Array, atom14_atom_exists: jax.Array,
                               atom14_atom_radius: jax.Array, residue_index: jax.Array,
                               overlap_tolerance_soft: float = 1.5,
                               overlap_tolerance_hard: float = 1.5) -> dict[str, jax.Array]:
  """Steric clashes between atoms of different residues. Eq. 46 (i != j part).

  Each pair is counted once (residue_index[i] < residue_index[j]); the peptide
  C-N bond of consecutive residues and CYS SG-SG (disulfides) are exempt.

  Args:
    atom14_pred_positions: [N_res, 14, 3].
    atom14_atom_exists: [N_res, 14].
    atom14_atom_radius: [N_res, 14] van der Waals radii (0 for absent atoms).
    residue_index: [N_res].
    overlap_tolerance_soft: overlap (Å) below the radii sum that costs nothing.
    overlap_tolerance_hard: overlap (Å) beyond which a pair clashes.

  Returns:
    AlphaFold's mean_loss (scalar), per_atom_loss_sum and per_atom_clash_mask
    [N_res, 14]; also num_clashes, the number of clashing atom pairs.
  """
  # [N_res, N_res, 14, 14]: residue i, residue j, atom of i, atom of j.
  dists = _dist(atom14_pred_positions[:, None, :, None, :],
                atom14_pred_positions[None, :, None, :, :], 1e-10)
  mask = atom14_atom_exists[:, None, :, None] * atom14_atom_exists[None, :, None, :]
  mask *= residue_index[:, None, None, None] < residue_index[None, :, None, None]
  is_next = (residue_index[:, None] + 1) == residue_index[None, :]
  c_n_bond = is_next[:, :, None, None] * (jnp.arange(14) == _C)[:, None] * (
      jnp.arange(14) == _N)[None, :]
  mask *= 1.0 - c_n_bond
  sg = (jnp.arange(14) == _CYS_SG).astype(jnp.float32)
  mask *= 1.0 - sg[:, None] * sg[None, :]

  lower_bound = mask * (atom14_atom_radius[:, None, :, None] + atom14_atom_radius[None, :, None, :])
  error = mask * jax.nn.relu(lower_bound - overlap_tolerance_soft - dists)
  mean_loss = jnp.sum(error) / (1e-6 + jnp.sum(mask))
  per_atom_loss_sum = jnp.sum(error, axis=(0, 2)) + jnp.sum(error, axis=(1, 3))
  clash = mask * (dists < (lower_bound - overlap_tolerance_hard))
  per_atom_clash = jnp.maximum(jnp.max(clash, axis=(0, 2)), jnp.max(clash, axis=(1, 3)))
  return {'mean_loss': mean_loss, 'per_atom_loss_sum': per_atom_loss_sum,
          'per_atom_clash_mask': per_atom_clash, 'num_clashes': jnp.sum(clash)}


def within_residue_violations(atom14_pred_positions: jax.Array, atom14_atom_exists: jax.Array,
                              atom14_dists_lower_bound: jax.Array,
                              atom14_dists_upper_bound: jax.Array,
                              tighten_bounds_for_loss: float = 0.0) -> dict[str, jax.Array]:
  """Intra-residue pair distances outside their bounds (bonds, angles, clashes). Eq. 46 (i == j).

  Args:
    atom14_pred_positions: [N_res, 14, 3].
    atom14_atom_exists: [N_res, 14].
    atom14_dists_lower_bound, atom14_dists_upper_bound: [N_res, 14, 14]
      (`stereo_chemistry.make_atom14_dists_bounds` gathered by residue type).
    tighten_bounds_for_loss: narrows the bounds for the loss only.

  Returns:
    AlphaFold's per_atom_loss_sum and per_atom_violations [N_res, 14]; also
    num_violations, the number of violating atom pairs.
  """
  mask = (1.0 - jnp.eye(14))[None] * (atom14_atom_exists[:, :, None]
                                      * atom14_atom_exists[:, None, :])
  dists = _dist(atom14_pred_positions[:, :, None, :], atom14_pred_positions[:, None, :, :], 1e-10)
  too_close = jax.nn.relu(atom14_dists_lower_bound + tighten_bounds_for_loss - dists)
  too_far = jax.nn.relu(dists - (atom14_dists_upper_bound - tighten_bounds_for_loss))
  loss = mask * (too_close + too_far)
  per_atom_loss_sum = jnp.sum(loss, axis=1) + jnp.sum(loss, axis=2)
  violations = mask * ((dists < atom14_dists_lower_bound) | (dists > atom14_dists_upper_bound))
  per_atom = jnp.maximum(jnp.max(violations, axis=1), jnp.max(violations, axis=2))
  # The pair matrix is symmetric: each pair appears twice.
  return {'per_atom_loss_sum': per_atom_loss_sum, 'per_atom_violations': per_atom,
          'num_violations': 0.5 * jnp.sum(violations)}


def _run_checks(atom14_pred_positions: jax.Array, aatype: jax.Array, residue_index: jax.Array,
                atom14_atom_exists: jax.Array, violation_tolerance_factor: float,
                clash_overlap_tolerance: float,
                use_ca_c_n_angle_stddev: bool) -> tuple[dict, dict, dict]:
  """The three checks' full outputs: (between-residue bonds, clashes, within residues)."""
  exists = atom14_atom_exists.astype(jnp.float32)
  connection = between_residue_bond_loss(
      atom14_pred_positions, exists, residue_index, aatype,
      tolerance_factor_soft=violation_tolerance_factor,
      tolerance_factor_hard=violation_tolerance_factor,
      use_ca_c_n_angle_stddev=use_ca_c_n_angle_stddev)
  radius = exists * jnp.asarray(stereo_chemistry.ATOM14_RADIUS)[aatype]
  clashes = between_residue_clash_loss(
      atom14_pred_positions, exists, radius, residue_index,
      overlap_tolerance_soft=clash_overlap_tolerance,
      overlap_tolerance_hard=clash_overlap_tolerance)
  bounds = stereo_chemistry.make_atom14_dists_bounds(
      overlap_tolerance=clash_overlap_tolerance,
      bond_length_tolerance_factor=violation_tolerance_factor)
  within = within_residue_violations(
      atom14_pred_positions, exists, jnp.asarray(bounds['lower_bound'])[aatype],
      jnp.asarray(bounds['upper_bound'])[aatype], tighten_bounds_for_loss=0.0)
  return connection, clashes, within


def _violations_dict(connection: dict, clashes: dict, within: dict) -> dict:
  per_residue = jnp.max(jnp.stack([
      connection['per_residue_violation_mask'],
      jnp.max(clashes['per_atom_clash_mask'], axis=-1),
      jnp.max(within['per_atom_violations'], axis=-1)]), axis=0)
  return {
      'between_residues': {
          'bonds_c_n_loss_mean': connection['c_n_loss_mean'],
          'angles_ca_c_n_loss_mean': connection['ca_c_n_loss_mean'],
          'angles_c_n_ca_loss_mean': connection['c_n_ca_loss_mean'],
          'connections_per_residue_loss_sum': connection['per_residue_loss_sum'],
          'connections_per_residue_violation_mask': connection['per_residue_violation_mask'],
          'clashes_mean_loss': clashes['mean_loss'],
          'clashes_per_atom_loss_sum': clashes['per_atom_loss_sum'],
          'clashes_per_atom_clash_mask': clashes['per_atom_clash_mask'],
      },
      'within_residues': {
          'per_atom_loss_sum': within['per_atom_loss_sum'],
          'per_atom_violations': within['per_atom_violations'],
      },
      'total_per_residue_violations_mask': per_residue,
  }


def find_structural_violations(atom14_pred_positions: jax.Array, *, aatype: jax.Array,
                               residue_index: jax.Array, atom14_atom_exists: jax.Array,
                               violation_tolerance_factor: float = 12.0,
                               clash_overlap_tolerance: float = 1.5,
                               use_ca_c_n_angle_stddev: bool = False) -> dict:
  """All violation checks of a structure, with AlphaFold's output names.

  Args:
    atom14_pred_positions: [N_res, 14, 3] (Å).
    aatype: [N_res] int.
    residue_index: [N_res]; a step other than +1 is a chain break.
    atom14_atom_exists: [N_res, 14]; 0 for padding residues.
    violation_tolerance_factor: bond/angle tolerance in standard deviations
      (`heads.structure_module.violation_tolerance_factor`).
    clash_overlap_tolerance: allowed van der Waals overlap in Å
      (`heads.structure_module.clash_overlap_tolerance`).
    use_ca_c_n_angle_stddev: the CA-C-N angle's band in its own standard deviation
      rather than AlphaFold 2.3's (`heads.structure_module.use_ca_c_n_angle_stddev`;
      see `between_residue_bond_loss`).

  Returns:
    {'between_residues': {bonds_c_n_loss_mean, angles_ca_c_n_loss_mean,
    angles_c_n_ca_loss_mean, connections_per_residue_loss_sum,
    connections_per_residue_violation_mask, clashes_mean_loss,
    clashes_per_atom_loss_sum, clashes_per_atom_clash_mask},
    'within_residues': {per_atom_loss_sum, per_atom_violations},
    'total_per_residue_violations_mask': [N_res]}, as AlphaFold's.
  """
  return _violations_dict(*_run_checks(atom14_pred_positions, aatype, residue_index,
                                       atom14_atom_exists, violation_tolerance_factor,
                                       clash_overlap_tolerance, use_ca_c_n_angle_stddev))


def _mask_mean(mask: jax.Array, value: jax.Array) -> jax.Array:
  return jnp.sum(mask * value) / (jnp.sum(mask) + 1e-10)


def extreme_ca_ca_distance_violations(pred_atom_positions: jax.Array, pred_atom_mask: jax.Array,
                                      residue_index: jax.Array,
                                      max_angstrom_tolerance: float = 1.5) -> jax.Array:
  """Fraction of bonded consecutive CA pairs more than the tolerance beyond 3.8 Å."""
  ca, ca_next = pred_atom_positions[:-1, _CA], pred_atom_positions[1:, _CA]
  residue_index = residue_index.astype(jnp.float32)
  bonded = ((residue_index[1:] - residue_index[:-1]) == 1.0).astype(jnp.float32)
  too_far = (_dist(ca, ca_next, 1e-6) - rc.ca_ca) > max_angstrom_tolerance
  mask = pred_atom_mask[:-1, _CA] * pred_atom_mask[1:, _CA] * bonded
  return _mask_mean(mask, too_far)


def compute_violation_metrics(atom14_pred_positions: jax.Array, violations: dict, *,
                              atom14_atom_exists: jax.Array, residue_index: jax.Array,
                              seq_mask: jax.Array) -> dict[str, jax.Array]:
  """Fractions of residues with each kind of violation, with AlphaFold's names.

  Args:
    atom14_pred_positions: [N_res, 14, 3].
    violations: `find_structural_violations`'s output.
    atom14_atom_exists: [N_res, 14].
    residue_index: [N_res].
    seq_mask: [N_res].

  Returns:
    violations_extreme_ca_ca_distance, violations_between_residue_bond,
    violations_between_residue_clash, violations_within_residue,
    violations_per_residue (scalars).
  """
  between = violations['between_residues']
  return {
      'violations_extreme_ca_ca_distance': extreme_ca_ca_distance_violations(
          atom14_pred_positions, atom14_atom_exists.astype(jnp.float32), residue_index),
      'violations_between_residue_bond': _mask_mean(
          seq_mask, between['connections_per_residue_violation_mask']),
      'violations_between_residue_clash': _mask_mean(
          seq_mask, jnp.max(between['clashes_per_atom_clash_mask'], axis=-1)),
      'violations_within_residue': _mask_mean(
          seq_mask, jnp.max(violations['within_residues']['per_atom_violations'], axis=-1)),
      'violations_per_residue': _mask_mean(
          seq_mask, violations['total_per_residue_violations_mask']),
  }


# ---------------------------------------------------------------------------
# A Protein in, numpy out.


def chain_aware_residue_index(residue_index: np.ndarray,
                              chain_index: np.ndarray | None = None) -> np.ndarray:
  """A strictly increasing index whose +1 steps are exactly the peptide bonds.

  Residue i bonds to i+1 where residue numbers step by +1 within one chain;
  anywhere else (numbering gap, repeated number, chain change) the index skips
  one, so the checks see a break. Residues of a chain must be contiguous.
  """
  residue_index = np.asarray(residue_index, np.int64)
  n = residue_index.shape[0]
  bonded = np.diff(residue_index) == 1
  if chain_index is not None:
    bonded &= np.diff(np.asarray(chain_index)) == 0
  return np.arange(n) + np.concatenate([[0], np.cumsum(~bonded)])


@functools.partial(jax.jit, static_argnums=(4, 5, 6))
def _protein_checks(atom14, aatype, residue_index, exists, violation_tolerance_factor,
                    clash_overlap_tolerance, use_ca_c_n_angle_stddev):
  # PERF: one compiled program per length; op-by-op dispatch compiles ~100
  # small programs and takes seconds per new length.
  connection, clashes, within = _run_checks(atom14, aatype, residue_index, exists,
                                            violation_tolerance_factor, clash_overlap_tolerance,
                                            use_ca_c_n_angle_stddev)
  raw = _violations_dict(connection, clashes, within)
  metrics = compute_violation_metrics(atom14, raw, atom14_atom_exists=exists,
                                      residue_index=residue_index,
                                      seq_mask=jnp.ones(aatype.shape, jnp.float32))
  return connection, clashes, within, raw, metrics


def protein_violations(prot, *, violation_tolerance_factor: float = 12.0,
                       clash_overlap_tolerance: float = 1.5,
                       use_ca_c_n_angle_stddev: bool = True) -> dict:
  """Structural violations of a Protein, as numpy, for relaxation and reports.

  The same checks as AlphaFold's `amber_minimize.find_violations`, on the
  atoms `prot.atom_mask` marks (atoms outside the residue type's atom14 set are
  ignored). DIFFERS FROM AF2: AlphaFold checks every atom of the residue type and
  so places unobserved atoms at the origin; for a prediction (all atoms present)
  the two agree. DIFFERS FROM AF2 v2.3, AS DEEPMIND'S CODE DOES SINCE 06a8da6: by
  default CA-C-N is held to 12 of the angle's own standard deviations, not of the
  C-N bond length's (`between_residue_bond_loss`), so relaxation no longer frees
  residues whose CA-C-N angle lies between the two bands. Peptide bonds are checked
  only between residues whose numbers step by +1 within one chain
  (`prot.chain_index`, when the Protein has one).
  Compiled once per length; memory grows as N^2 x 196 floats.

  Args:
    prot: an `af_jax.common.protein.Protein` (atom_positions [N, 37, 3],
      atom_mask [N, 37], aatype [N], residue_index [N], optional chain_index [N]).
    violation_tolerance_factor: bond/angle tolerance in standard deviations.
    clash_overlap_tolerance: allowed van der Waals overlap (Å).
    use_ca_c_n_angle_stddev: False checks CA-C-N as AlphaFold 2.3 does (tighter).

  Returns:
    per_residue_violation_mask [N] bool: any violation touching the residue;
    num_residue_violations (int); residue_violations: indices of those residues;
    bond_length_violations (int): peptide C-N bonds out of tolerance;
    bond_angle_violations (int): CA-C-N plus C-N-CA angles out of tolerance;
    clashes (int): clashing atom pairs between residues;
    within_residue_violations (int): atom pairs inside residues out of bounds;
    per_residue_{bond,clash,within}_mask [N] bool: each kind on its own;
    raw: `find_structural_violations`'s dict; metrics: `compute_violation_metrics`'s.
  """
  aatype = np.asarray(prot.aatype, np.int32)
  index = chain_aware_residue_index(prot.residue_index, getattr(prot, 'chain_index', None))
  gt_exists = (np.asarray(rc.restype_atom14_mask)[aatype]
               * np.take_along_axis(np.asarray(prot.atom_mask, np.float32),
                                    np.asarray(rc.restype_atom14_to_atom37)[aatype], axis=1))
  atom14 = np.take_along_axis(np.asarray(prot.atom_positions, np.float32),
                              np.asarray(rc.restype_atom14_to_atom37)[aatype][..., None], axis=1)
  atom14 = jnp.asarray(atom14 * gt_exists[..., None])
  exists = jnp.asarray(gt_exists)
  index_j = jnp.asarray(index)

  connection, clashes, within, raw, metrics = jax.tree_util.tree_map(
      np.asarray, _protein_checks(atom14, jnp.asarray(aatype), index_j, exists,
                                  float(violation_tolerance_factor),
                                  float(clash_overlap_tolerance),
                                  bool(use_ca_c_n_angle_stddev)))
  mask = raw['total_per_residue_violations_mask'] > 0
  return {
      'per_residue_violation_mask': mask,
      'num_residue_violations': int(mask.sum()),
      'residue_violations': np.flatnonzero(mask),
      'bond_length_violations': int(np.sum(np.asarray(connection['c_n_violation_mask']))),
      'bond_angle_violations': int(np.sum(np.asarray(connection['ca_c_n_violation_mask']))
                                   + np.sum(np.asarray(connection['c_n_ca_violation_mask']))),
      'clashes': int(clashes['num_clashes']),
      'within_residue_violations': int(within['num_violations']),
      'per_residue_bond_mask': raw['between_residues'][
          'connections_per_residue_violation_mask'] > 0,
      'per_residue_clash_mask': raw['between_residues'][
          'clashes_per_atom_clash_mask'].max(-1) > 0,
      'per_residue_within_mask': raw['within_residues']['per_atom_violations'].max(-1) > 0,
      'raw': raw,
      'metrics': metrics,
  }


__all__ = [
    'between_residue_bond_loss', 'between_residue_clash_loss', 'within_residue_violations',
    'find_structural_violations', 'extreme_ca_ca_distance_violations',
    'compute_violation_metrics', 'chain_aware_residue_index', 'protein_violations',
]
