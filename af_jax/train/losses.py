"""AlphaFold's training losses. Jumper et al. (2021) Suppl. 1.9 and 1.11.

The other heads' losses (distogram, masked MSA, pLDDT, experimentally resolved,
aligned error) with AlphaFold's definitions, masks and names, and `alphafold_loss`,
every head's loss weighted and summed as AlphaFold's `AlphaFoldIteration` does: the
structure module's own mix of backbone FAPE, side-chain FAPE, torsion and violation
terms (`af_jax.train.structure_losses`), then `heads.<name>.weight` times each head's loss.

Padding: every term is a masked mean whose masks are zero on padded residues
(labels from `labels.make_labels`, residue-type masks times `seq_mask`), so
padding a batch changes no loss.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from af_jax.common import residue_constants as rc
from af_jax.common.geometry import QuatRigid
from af_jax.errors import InputError
from af_jax.model import all_atom
from af_jax.train import labels as labels_lib
from af_jax.train.structure_losses import structure_module_loss


def softmax_cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """-sum(labels * log_softmax(logits)) over the last axis."""
  return -jnp.sum(labels * jax.nn.log_softmax(logits), axis=-1)


def sigmoid_cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """Elementwise binary cross entropy of logits (log_sigmoid(-x) for stability)."""
  return -labels * jax.nn.log_sigmoid(logits) - (1.0 - labels) * jax.nn.log_sigmoid(-logits)


def _resolution_filter(loss: jax.Array, config, batch: dict) -> jax.Array:
  """Zero a confidence loss outside [min, max] resolution (NMR and distillation have 0)."""
  if not config.filter_by_resolution:
    return loss
  if 'resolution' not in batch:
    raise InputError("batch has no 'resolution' but a head's filter_by_resolution is set; add "
                     'the structure\'s resolution in Å (0 for NMR) to the batch')
  res = jnp.reshape(batch['resolution'], (-1,))[0]
  keep = (res >= config.min_resolution) & (res <= config.max_resolution)
  return loss * keep.astype(loss.dtype)


# ---------------------------------------------------------------------------
# The other heads. Suppl. 1.9.6-1.9.10.


def distogram_loss(logits: jax.Array, bin_edges: jax.Array, pseudo_beta: jax.Array,
                   pseudo_beta_mask: jax.Array) -> jax.Array:
  """Cross entropy of the binned pseudo-beta distances. Suppl. 1.9.8.

  Args:
    logits: [N_res, N_res, n_bins]; bin_edges: [n_bins - 1] (Å).
    pseudo_beta: [N_res, 3]; pseudo_beta_mask: [N_res].
  """
  dist2 = jnp.sum(jnp.square(pseudo_beta[:, None] - pseudo_beta[None, :]), axis=-1,
                  keepdims=True)
  true_bins = jnp.sum(dist2 > jnp.square(bin_edges), axis=-1)
  errors = softmax_cross_entropy(logits, jax.nn.one_hot(true_bins, logits.shape[-1]))
  square_mask = pseudo_beta_mask[None, :] * pseudo_beta_mask[:, None]
  return jnp.sum(errors * square_mask) / (1e-6 + jnp.sum(square_mask))


def masked_msa_loss(logits: jax.Array, true_msa: jax.Array, bert_mask: jax.Array) -> jax.Array:
  """Cross entropy at the masked MSA positions (BERT objective). Suppl. 1.9.9.

  Args:
    logits: [N_seq, N_res, 23]; true_msa: [N_seq, N_res] int; bert_mask: [N_seq, N_res].
  """
  errors = softmax_cross_entropy(logits, jax.nn.one_hot(true_msa, logits.shape[-1]))
  return jnp.sum(errors * bert_mask) / (1e-8 + jnp.sum(bert_mask))


def lddt(predicted_points: jax.Array, true_points: jax.Array, true_points_mask: jax.Array,
         cutoff: float = 15.0, per_residue: bool = False) -> jax.Array:
  """Approximate lDDT (no stereochemistry checks) of points against the truth.

  Mariani et al. (2013); pairs closer than `cutoff` in the truth, thresholds
  0.5, 1, 2, 4 Å.

  Args:
    predicted_points, true_points: [N, 3].
    true_points_mask: [N].
    per_residue: return [N] scores instead of the global score.
  """
  def dmat(x):
    return jnp.sqrt(1e-10 + jnp.sum(jnp.square(x[:, None] - x[None, :]), axis=-1))
  d_true, d_pred = dmat(true_points), dmat(predicted_points)
  n = true_points.shape[0]
  scored = ((d_true < cutoff).astype(jnp.float32) * true_points_mask[:, None]
            * true_points_mask[None, :] * (1.0 - jnp.eye(n)))
  l1 = jnp.abs(d_true - d_pred)
  score = 0.25 * sum((l1 < t).astype(jnp.float32) for t in (0.5, 1.0, 2.0, 4.0))
  axes = (-1,) if per_residue else (-2, -1)
  return (1.0 / (1e-10 + jnp.sum(scored, axis=axes))
          * (1e-10 + jnp.sum(scored * score, axis=axes)))


def predicted_lddt_loss(logits: jax.Array, final_atom_positions: jax.Array, batch: dict,
                        config) -> jax.Array:
  """Cross entropy of the binned per-residue lDDT-CA of the prediction. Alg. 29.

  Args:
    logits: [N_res, n_bins].
    final_atom_positions: [N_res, 37, 3] predicted.
    batch: all_atom_positions [N_res, 37, 3], all_atom_mask [N_res, 37], resolution.
    config: `heads.predicted_lddt`.
  """
  ca = rc.atom_order['CA']
  mask_ca = batch['all_atom_mask'][:, ca].astype(jnp.float32)
  score = jax.lax.stop_gradient(lddt(final_atom_positions[:, ca],
                                     batch['all_atom_positions'][:, ca], mask_ca, cutoff=15.0,
                                     per_residue=True))
  num_bins = config.num_bins
  bins = jnp.minimum(jnp.floor(score * num_bins).astype(jnp.int32), num_bins - 1)
  errors = softmax_cross_entropy(logits, jax.nn.one_hot(bins, num_bins))
  loss = jnp.sum(errors * mask_ca) / (jnp.sum(mask_ca) + 1e-8)
  return _resolution_filter(loss, config, batch)


def experimentally_resolved_loss(logits: jax.Array, batch: dict, config) -> jax.Array:
  """Sigmoid cross entropy: is each atom of the residue type resolved? Suppl. 1.9.10.

  Args:
    logits: [N_res, 37].
    batch: atom37_atom_exists [N_res, 37] (zero on padding), all_atom_mask, resolution.
    config: `heads.experimentally_resolved`.
  """
  exists = batch['atom37_atom_exists']
  xent = sigmoid_cross_entropy(logits, batch['all_atom_mask'].astype(jnp.float32))
  loss = jnp.sum(xent * exists) / (1e-8 + jnp.sum(exists))
  return _resolution_filter(loss, config, batch)


def aligned_error_loss(logits: jax.Array, breaks: jax.Array, final_affines: jax.Array,
                       batch: dict, config) -> jax.Array:
  """Cross entropy of the binned aligned error (pAE / pTM head). Suppl. 1.9.7.

  The error of residue j's CA in residue i's frame, prediction against truth.

  Args:
    logits: [N_res, N_res, n_bins]; breaks: [n_bins - 1] (Å).
    final_affines: [N_res, 7] predicted backbone frames (quaternion, Å).
    batch: backbone_affine_tensor [N_res, 7], backbone_affine_mask [N_res], resolution.
    config: `heads.predicted_aligned_error`.
  """
  def local_points(affine):  # [N (frames), N (points), 3]
    frames = QuatRigid.from_tensor(affine).to_rigid()
    return frames.expand_batch(1).invert_apply(frames.translation[None])
  d = local_points(final_affines) - local_points(batch['backbone_affine_tensor'])
  error_dist2 = jax.lax.stop_gradient(
      jnp.square(d[..., 0]) + jnp.square(d[..., 1]) + jnp.square(d[..., 2]))
  true_bins = jnp.sum((error_dist2[..., None] > jnp.square(breaks)).astype(jnp.int32), axis=-1)
  errors = softmax_cross_entropy(logits, jax.nn.one_hot(true_bins, logits.shape[-1]))
  mask = batch['backbone_affine_mask']
  square_mask = mask[:, None] * mask[None, :]
  loss = jnp.sum(errors * square_mask) / (1e-8 + jnp.sum(square_mask))
  return _resolution_filter(loss, config, batch)


# ---------------------------------------------------------------------------
# Everything together.

_LABEL_KEYS = ('atom14_gt_positions', 'atom14_alt_gt_positions', 'atom14_gt_exists',
               'atom14_alt_gt_exists', 'atom14_atom_is_ambiguous', 'rigidgroups_gt_frames',
               'rigidgroups_alt_gt_frames', 'rigidgroups_gt_exists', 'backbone_affine_tensor',
               'backbone_affine_mask', 'chi_mask', 'pseudo_beta', 'pseudo_beta_mask')


def final_recycle_features(features: dict, outputs: dict) -> dict:
  """The recycle slice of per-recycle features that the model's last iteration used.

  Args:
    features: model features with a leading recycle axis [R, ...].
    outputs: the model's outputs (`num_recycles` = iterations run - 1).
  """
  num_slices = features['aatype'].shape[0]
  index = jnp.minimum(jnp.asarray(outputs.get('num_recycles', num_slices - 1)), num_slices - 1)
  return jax.tree_util.tree_map(lambda x: jax.lax.dynamic_index_in_dim(x, index, 0, False),
                                features)


def prepare_batch(batch: dict) -> dict:
  """Labels added where missing, residue-type masks zeroed on padding."""
  if batch['aatype'].ndim != 1:
    raise InputError(f"batch['aatype'] has shape {batch['aatype'].shape}; the loss takes one "
                     'example and one recycle slice: index the features with '
                     'final_recycle_features(features, outputs)')
  batch = dict(batch)
  seq_mask = batch['seq_mask'].astype(jnp.float32)
  if any(k not in batch for k in _LABEL_KEYS):
    made = labels_lib.make_labels(batch['aatype'], batch['all_atom_positions'],
                                  batch['all_atom_mask'], seq_mask)
    batch = {**made, **batch}
  masks = all_atom.make_atom14_masks(batch['aatype'])
  for key in ('atom14_atom_exists', 'atom37_atom_exists'):
    batch[key] = batch.get(key, masks[key]) * seq_mask[:, None]
  return batch


def alphafold_loss(outputs: dict, batch: dict, config) -> tuple[jax.Array, dict[str, jax.Array]]:
  """AlphaFold's total training loss and its terms. Suppl. 1.9, 1.11.

  Args:
    outputs: `af_jax.model.alphafold.AlphaFold`'s outputs (structure_module,
      distogram, masked_msa, predicted_lddt, experimentally_resolved,
      predicted_aligned_error_head).
    batch: one example, one recycle slice (`final_recycle_features`): aatype,
      seq_mask, residue_index, true_msa, bert_mask, all_atom_positions,
      all_atom_mask, resolution, optional use_clamped_fape; label features
      (`labels.make_labels`) are computed here when absent.
    config: the model config (`configs.model.model_config(name).model`); its
      `heads.<name>.weight` weigh each head, a zero weight drops the head.

  Returns:
    (total, terms): total = sum of weight * head loss, the structure module's
    own loss mixed as AlphaFold mixes it; terms maps fape, unclamped_fape,
    sidechain_fape, chi_loss, angle_norm_loss, violations (unweighted),
    structure_module, distogram, masked_msa, predicted_lddt,
    experimentally_resolved, aligned_error (each head's unweighted loss) and
    the violation metrics to scalars.
  """
  heads = config.heads if 'heads' in config else config.model.heads
  batch = prepare_batch(batch)
  terms, total = {}, jnp.float32(0.0)

  def add(name, head, loss):
    nonlocal total
    terms[name] = loss
    total = total + head.weight * loss

  if heads.structure_module.weight:
    sm = structure_module_loss(outputs['structure_module'], batch, heads.structure_module)
    add('structure_module', heads.structure_module, sm.pop('loss'))
    terms.update(sm)
  if heads.distogram.weight:
    add('distogram', heads.distogram,
        distogram_loss(outputs['distogram']['logits'], outputs['distogram']['bin_edges'],
                       batch['pseudo_beta'], batch['pseudo_beta_mask']))
  if heads.masked_msa.weight:
    add('masked_msa', heads.masked_msa,
        masked_msa_loss(outputs['masked_msa']['logits'], batch['true_msa'], batch['bert_mask']))
  if heads.experimentally_resolved.weight:
    add('experimentally_resolved', heads.experimentally_resolved,
        experimentally_resolved_loss(outputs['experimentally_resolved']['logits'], batch,
                                     heads.experimentally_resolved))
  if heads.predicted_lddt.weight:
    add('predicted_lddt', heads.predicted_lddt,
        predicted_lddt_loss(outputs['predicted_lddt']['logits'],
                            outputs['structure_module']['final_atom_positions'], batch,
                            heads.predicted_lddt))
  if heads.get('predicted_aligned_error') and heads.predicted_aligned_error.weight:
    pae = outputs['predicted_aligned_error_head']
    add('aligned_error', heads.predicted_aligned_error,
        aligned_error_loss(pae['logits'], pae['breaks'],
                           outputs['structure_module']['final_affines'], batch,
                           heads.predicted_aligned_error))
  return total, terms


__all__ = [
    'distogram_loss', 'masked_msa_loss', 'lddt', 'predicted_lddt_loss',
    'experimentally_resolved_loss', 'aligned_error_loss', 'final_recycle_features',
    'prepare_batch', 'alphafold_loss',
]
