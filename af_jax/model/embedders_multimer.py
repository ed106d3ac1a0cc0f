"""Input features AlphaFold-Multimer builds inside the model.

Evans et al. (2021) "Protein complex prediction with AlphaFold-Multimer",
Suppl. 2: the multimer model samples its MSA on device, once per recycle
(cluster centres, BERT masking, nearest-neighbour cluster profiles), encodes
relative positions per chain, and embeds templates with chain-local masks.
Pure functions (no parameters); the trunk (`evoformer.EmbeddingsAndEvoformer`, given
`evoformer_multimer`'s parts) owns the Linears.

Randomness: every draw goes through `padding_consistent_uniform`, so padding the
residue or sequence axes to a bucket does not change the draws of real rows. The
key schedule is AlphaFold-Multimer's (see `iteration_keys`), so the same key
gives the same sample as the reference.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from af_jax.common import geometry
from af_jax.common import residue_constants as rc
from af_jax.model import all_atom, primitives
from af_jax.model.embedders import dgram_from_positions

# Channel counts (they fix the published weight shapes).
TARGET_FEATURES = 21          # one-hot aatype (20 + X); no between-segment bit
MSA_FEATURES = 49             # 23 one-hot + has_del + del_value + 23 profile + del_mean
EXTRA_MSA_FEATURES = 25       # 23 one-hot + has_del + del_value
TEMPLATE_SINGLE_FEATURES = 34  # 22 aatype + 4 chi sin + 4 chi cos + 4 chi mask

_N, _CA, _C = (rc.atom_order[a] for a in ('N', 'CA', 'C'))


def iteration_keys(key: jax.Array) -> tuple[jax.Array, jax.Array]:
  """(sample, mask) keys of one recycling iteration from its key.

  NUMERICS: AlphaFold-Multimer's order of splits (the ensemble loop takes the
  second half of one split, the trunk then splits that in three), kept so the
  same key draws the same MSA sample and BERT mask as the reference.
  """
  trunk_key = jax.random.split(key)[1]
  _, sample_key, mask_key = jax.random.split(trunk_key, 3)
  return sample_key, mask_key


def padding_consistent_uniform(key: jax.Array, shape: tuple[int, ...]) -> jax.Array:
  """U[0, 1) draws where element (i, j, ...) depends on its index only, not on the shape.

  Each element's key is `key` folded in with its index along every axis, so a
  padded array's leading block equals the unpadded draw.
  """
  def grid(k, dims):
    if not dims:
      return jax.random.uniform(k, (), jnp.float32, 0.0, 1.0)
    keys = jax.vmap(lambda i: jax.random.fold_in(k, i))(jnp.arange(dims[0]))
    return jax.vmap(lambda kk: grid(kk, dims[1:]))(keys)

  return grid(key, tuple(shape))


def gumbel_noise(key: jax.Array, shape: tuple[int, ...]) -> jax.Array:
  """Gumbel(0, 1) samples, padding-consistent."""
  eps = 1e-6
  u = padding_consistent_uniform(key, shape)
  return -jnp.log(-jnp.log(u + eps) + eps)


def msa_profile(msa: jax.Array, msa_mask: jax.Array) -> jax.Array:
  """[N_res, 22] residue frequencies over the masked MSA (before sampling)."""
  return primitives.mask_mean(msa_mask[:, :, None], jax.nn.one_hot(msa, 22), axis=0)


def sample_msa(key: jax.Array, batch: dict, num_msa: int) -> dict:
  """Split the MSA into `num_msa` sampled rows and the rest (`extra_*`).

  Rows with no residue go last; `cluster_bias_mask` rows (each chain's query)
  go first; the order among the rest is a Gumbel-perturbed random permutation.
  """
  n_seq = batch['msa'].shape[0]
  logits = (jnp.clip(jnp.sum(batch['msa_mask'], axis=-1), 0.0, 1.0) - 1.0) * 1e6
  bias = batch.get('cluster_bias_mask')
  if bias is None:
    bias = jnp.zeros((n_seq,), jnp.float32).at[0].set(1.0)
  logits = logits + bias * 1e6
  noisy = logits + gumbel_noise(key, (n_seq,))
  # NUMERICS: the reference's unstable ascending sort, reversed (ties among the
  # 1e6-biased rows are resolved the same way).
  _, order = jax.lax.sort_key_val(noisy, jnp.arange(n_seq, dtype=jnp.int32), dimension=-1,
                                  is_stable=False)
  order = order[::-1]
  selected, rest = order[:num_msa], order[num_msa:]
  out = dict(batch)
  for k in ('msa', 'deletion_matrix', 'msa_mask', 'bert_mask'):
    if k in batch:
      out['extra_' + k] = batch[k][rest]
      out[k] = batch[k][selected]
  return out


def mask_msa(key: jax.Array, batch: dict, config) -> dict:
  """BERT-style corruption of the sampled MSA. Suppl. 1.2.7 (AF2), multimer variant.

  A `replace_fraction` of positions are replaced by a uniform residue, a
  profile draw, the same residue or the mask token (index 22).
  """
  uniform_aa = jnp.asarray([0.05] * 20 + [0.0, 0.0], jnp.float32)
  probs = (config.uniform_prob * uniform_aa + config.profile_prob * batch['msa_profile']
           + config.same_prob * jax.nn.one_hot(batch['msa'], 22))
  mask_prob = 1.0 - config.profile_prob - config.same_prob - config.uniform_prob
  probs = jnp.pad(probs, [(0, 0)] * (probs.ndim - 1) + [(0, 1)], constant_values=mask_prob)
  _, position_key, gumbel_key = jax.random.split(key, 3)
  shape = batch['msa'].shape
  replace = padding_consistent_uniform(position_key, shape) < config.replace_fraction
  replace = replace * batch['msa_mask']
  logits = jnp.log(probs + 1e-6)
  drawn = jnp.argmax(logits + gumbel_noise(gumbel_key, logits.shape), axis=-1)
  out = dict(batch)
  out['msa'] = (jnp.where(replace, drawn, batch['msa']) * batch['msa_mask']).astype(
      batch['msa'].dtype)
  out['true_msa'] = batch['msa']
  replace = replace.astype(jnp.float32)
  out['bert_mask'] = batch['bert_mask'] * replace if 'bert_mask' in batch else replace
  return out


def nearest_neighbour_clusters(batch: dict, gap_agreement_weight: float = 0.0
                               ) -> tuple[jax.Array, jax.Array]:
  """Profile and mean deletions of each sampled row's cluster (its nearest extra rows).

  Every extra row joins the sampled row it agrees with at most positions (a
  near-hard softmax); each cluster includes its centre.

  Returns:
    cluster_profile [N_msa, N_res, 23], cluster_deletion_mean [N_msa, N_res].
  """
  weights = jnp.asarray([1.0] * 21 + [gap_agreement_weight, 0.0], jnp.float32)
  msa_mask, extra_mask = batch['msa_mask'], batch['extra_msa_mask']
  msa_1hot = msa_mask[:, :, None] * jax.nn.one_hot(batch['msa'], 23)
  extra_1hot = extra_mask[:, :, None] * jax.nn.one_hot(batch['extra_msa'], 23)
  agreement = jnp.einsum('mrc,nrc->nm', extra_1hot, weights * msa_1hot)
  assignment = jax.nn.softmax(1e3 * agreement, axis=0)
  assignment = assignment * jnp.einsum('mr,nr->mn', msa_mask, extra_mask)
  count = jnp.sum(assignment, axis=-1) + 1.0
  profile = (jnp.einsum('nm,mrc->nrc', assignment, extra_1hot) + msa_1hot) / count[:, None, None]
  deletions = (jnp.einsum('nm,mc->nc', assignment, extra_mask * batch['extra_deletion_matrix'])
               + batch['deletion_matrix'])
  return profile, deletions / count[:, None]


def _deletion_value(d: jax.Array) -> jax.Array:
  return jnp.arctan(d / 3.0) * (2.0 / jnp.pi)


def msa_features(batch: dict) -> jax.Array:
  """[N_msa, N_res, 49] features of the sampled, masked MSA."""
  msa_1hot = jax.nn.one_hot(batch['msa'], 23)
  deletion = batch['deletion_matrix']
  return jnp.concatenate([
      msa_1hot,
      jnp.clip(deletion, 0.0, 1.0)[..., None],
      _deletion_value(deletion)[..., None],
      batch.get('cluster_profile', msa_1hot),
      _deletion_value(batch.get('cluster_deletion_mean', deletion))[..., None]], axis=-1)


def extra_msa_features(batch: dict, num_extra_msa: int) -> tuple[jax.Array, jax.Array]:
  """The first `num_extra_msa` unsampled rows: [N_extra, N_res, 25] features and mask."""
  msa = batch['extra_msa'][:num_extra_msa]
  deletion = batch['extra_deletion_matrix'][:num_extra_msa]
  feats = jnp.concatenate([jax.nn.one_hot(msa, 23), jnp.clip(deletion, 0.0, 1.0)[..., None],
                           _deletion_value(deletion)[..., None]], axis=-1)
  return feats, batch['extra_msa_mask'][:num_extra_msa]


def relative_encoding_features(batch: dict, max_relative_idx: int,
                               max_relative_chain: int) -> jax.Array:
  """[N_res, N_res, 2*max_idx + 2 + 1 + 2*max_chain + 2] chain-aware relative positions.

  Evans et al. (2021) Suppl. 2.2: residue offsets within a chain (one extra bin
  for "other chain"), a same-entity bit, and the clipped sym_id offset between
  copies of one entity (one extra bin for "other entity").
  """
  # The pipeline writes the ids as floats (as AlphaFold's); they are integers.
  pos, asym, entity, sym = (jnp.asarray(batch[k]).astype(jnp.int32)
                            for k in ('residue_index', 'asym_id', 'entity_id', 'sym_id'))
  same_chain = asym[:, None] == asym[None, :]
  offset = jnp.clip(pos[:, None] - pos[None, :] + max_relative_idx, 0, 2 * max_relative_idx)
  offset = jnp.where(same_chain, offset, 2 * max_relative_idx + 1)
  same_entity = entity[:, None] == entity[None, :]
  chain_offset = jnp.clip(sym[:, None] - sym[None, :] + max_relative_chain, 0,
                          2 * max_relative_chain)
  chain_offset = jnp.where(same_entity, chain_offset, 2 * max_relative_chain + 1)
  return jnp.concatenate([
      jax.nn.one_hot(offset, 2 * max_relative_idx + 2),
      same_entity.astype(jnp.float32)[..., None],
      jax.nn.one_hot(chain_offset, 2 * max_relative_chain + 2)], axis=-1)


def backbone_frames(positions: jax.Array, atom_mask: jax.Array
                    ) -> tuple[geometry.Rigid, jax.Array]:
  """Frames from N, CA, C by Gram-Schmidt (x along CA->C) and their mask.

  The multimer's construction (`Rot3Array.from_two_vectors`): it differs in
  rounding, not in value, from the monomer's three elementary rotations.
  """
  n, ca, c = positions[..., _N, :], positions[..., _CA, :], positions[..., _C, :]
  e0 = _normalized(c - ca)
  e1 = n - ca
  e1 = _normalized(e1 - jnp.sum(e1 * e0, axis=-1, keepdims=True) * e0)
  e2 = geometry.cross(e0, e1)
  mask = atom_mask[..., _N] * atom_mask[..., _CA] * atom_mask[..., _C]
  return geometry.Rigid(jnp.stack([e0, e1, e2], axis=-1), ca), mask.astype(jnp.float32)


def _normalized(v: jax.Array, eps: float = 1e-6) -> jax.Array:
  """v / max(|v|, eps), as the multimer's Vec3Array.normalized."""
  return v / jnp.sqrt(jnp.maximum(jnp.sum(jnp.square(v), axis=-1, keepdims=True), eps ** 2))


def template_pair_features(aatype: jax.Array, positions: jax.Array, atom_mask: jax.Array,
                           multichain_mask: jax.Array, config) -> list[jax.Array]:
  """One template's pair features as AlphaFold-Multimer embeds them, each by its own Linear.

  Returns, in the order of `template_pair_embedding_0..7`: distogram
  [N, N, 39], pseudo-beta mask [N, N], aatype of j [1, N, 22], aatype of i
  [N, 1, 22] (they broadcast after their Linear, which is cheaper), unit
  vector x, y, z [N, N] each, backbone mask [N, N]; the 9th
  input (the query pair) is added by the caller. Pair features between
  different chains are zero: templates are per chain.
  """
  pb, pb_mask = all_atom.pseudo_beta(aatype, positions, atom_mask)
  pb_mask_2d = pb_mask[:, None] * pb_mask[None, :] * multichain_mask
  dgram = dgram_from_positions(pb, **config.dgram_features) * pb_mask_2d[..., None]
  aa = jax.nn.one_hot(aatype, 22)
  frames, bb_mask = backbone_frames(positions.astype(jnp.float32), atom_mask)
  bb_mask_2d = bb_mask[:, None] * bb_mask[None, :] * multichain_mask
  # DIFFERS FROM AF2: j's CA in i's frame as R_i^T (t_j - t_i), exactly 0 for
  # i = j; AlphaFold-Multimer forms R_i^T t_j - R_i^T t_i, whose rounding noise
  # its 1e-6-clipped normalisation turns into an arbitrary O(1) diagonal
  # (different jitted and eager). Off the diagonal the two agree to rounding.
  local = frames.expand_batch().invert_apply(frames.translation[None, :, :])  # [i, j, 3]
  unit = _normalized(local) * bb_mask_2d[..., None]
  return [dgram, pb_mask_2d, aa[None, :, :], aa[:, None, :],
          unit[..., 0], unit[..., 1], unit[..., 2], bb_mask_2d]


def dihedral(a: jax.Array, b: jax.Array, c: jax.Array, d: jax.Array) -> jax.Array:
  """Dihedral angle of four points [..., 3] in radians, in [-pi, pi]."""
  v1, v2, v3 = a - b, b - c, d - c
  c1 = geometry.cross(v1, v2)
  c2 = geometry.cross(v3, v2)
  c3 = geometry.cross(c2, c1)
  v2_norm = jnp.sqrt(jnp.maximum(jnp.sum(jnp.square(v2), axis=-1), 1e-12))
  return jnp.arctan2(jnp.sum(c3 * v2, axis=-1), v2_norm * jnp.sum(c1 * c2, axis=-1))


def chi_angles(aatype: jax.Array, positions: jax.Array, atom_mask: jax.Array
               ) -> tuple[jax.Array, jax.Array]:
  """The 4 chi angles [..., N, 4] (radians) and their mask (defined and all atoms present)."""
  aatype = jnp.minimum(aatype, rc.unk_restype_index)
  index = jnp.asarray(rc.chi_atom_indices)[aatype]  # [..., N, 4 chis, 4 atoms]
  flat = index.reshape(*index.shape[:-2], 16)
  atoms = all_atom.gather_atoms(positions, flat).reshape(*index.shape, 3)
  present = jnp.prod(all_atom.gather_atoms(atom_mask, flat).reshape(index.shape), axis=-1)
  exists = jnp.asarray(np.array(rc.chi_angles_mask + [[0.0] * 4], np.float32))[aatype]
  angles = dihedral(atoms[..., 0, :], atoms[..., 1, :], atoms[..., 2, :], atoms[..., 3, :])
  return angles, exists * present.astype(jnp.float32)


def template_single_features(batch: dict) -> tuple[jax.Array, jax.Array]:
  """[N_templ, N_res, 34] template rows for the MSA (aatype, chi sin/cos, chi mask) and row mask."""
  aatype = batch['template_aatype']
  angles, mask = chi_angles(aatype, batch['template_all_atom_positions'].astype(jnp.float32),
                            batch['template_all_atom_mask'])
  feats = jnp.concatenate([jax.nn.one_hot(aatype, 22), jnp.sin(angles) * mask,
                           jnp.cos(angles) * mask, mask], axis=-1)
  return feats, mask[..., 0]
