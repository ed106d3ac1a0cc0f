"""Input features built inside the model: relative positions, recycling
distogram, extra-MSA one-hots and template features.

Pure functions (no parameters); the trunk (`evoformer.EmbeddingsAndEvoformer`)
owns the Linear layers that embed them, under AlphaFold's names.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from af_jax.common import geometry
from af_jax.common import residue_constants as rc
from af_jax.model import all_atom

# Channel counts of the features below (they fix the published weight shapes).
EXTRA_MSA_FEATURES = 25      # 23-way one-hot + has_deletion + deletion_value
TEMPLATE_PAIR_FEATURES = 88  # 39 dgram + 1 mask + 2 x 22 aatype + 3 unit vector + 1 mask
TEMPLATE_SINGLE_FEATURES = 57  # 22 aatype + 14 torsion sin/cos + 14 alt + 7 mask

_N, _CA, _C = (rc.atom_order[a] for a in ('N', 'CA', 'C'))


def relative_position_one_hot(residue_index: jax.Array, max_relative_feature: int) -> jax.Array:
  """Clipped residue offsets, one-hot [N_res, N_res, 2*max+1].

  Jumper et al. (2021) Suppl. Alg. 4.
  """
  offset = residue_index[:, None] - residue_index[None, :]
  offset = jnp.clip(offset + max_relative_feature, 0, 2 * max_relative_feature)
  return jax.nn.one_hot(offset, 2 * max_relative_feature + 1)


def dgram_from_positions(positions: jax.Array, num_bins: int, min_bin: float,
                         max_bin: float) -> jax.Array:
  """One-hot distance bins [N, N, num_bins]; the last bin is open-ended."""
  lower = jnp.square(jnp.linspace(min_bin, max_bin, num_bins))
  upper = jnp.concatenate([lower[1:], jnp.array([1e8], jnp.float32)])
  dist2 = jnp.sum(jnp.square(positions[:, None, :] - positions[None, :, :]), axis=-1,
                  keepdims=True)
  return ((dist2 > lower) & (dist2 < upper)).astype(jnp.float32)


def recycled_position_dgram(aatype: jax.Array, prev_pos: jax.Array, config) -> jax.Array:
  """15-bin pseudo-beta distogram of the previous structure. Alg. 32 lines 1-2."""
  pseudo_beta = all_atom.pseudo_beta(aatype, prev_pos)
  return dgram_from_positions(pseudo_beta, **config)


def extra_msa_features(batch: dict) -> jax.Array:
  """[N_extra, N_res, 25]: one-hot residue (20 + X + gap + mask) and deletions."""
  return jnp.concatenate([
      jax.nn.one_hot(batch['extra_msa'], 23),
      batch['extra_has_deletion'][..., None],
      batch['extra_deletion_value'][..., None]], axis=-1)


def template_pair_features(template: dict, config) -> jax.Array:
  """The 88 pair features of ONE template, [N_res, N_res, 88].

  Args:
    template: `template_aatype` [N_res], `template_all_atom_positions`
      [N_res, 37, 3], `template_all_atom_masks` [N_res, 37],
      `template_pseudo_beta` [N_res, 3], `template_pseudo_beta_mask` [N_res].
    config: the `template` sub-config (dgram_features, use_template_unit_vector).
  """
  n_res = template['template_aatype'].shape[0]
  pb_mask = template['template_pseudo_beta_mask']
  pb_mask_2d = pb_mask[:, None] * pb_mask[None, :]
  dgram = dgram_from_positions(template['template_pseudo_beta'], **config.dgram_features)
  aatype = jax.nn.one_hot(template['template_aatype'], 22)
  pos = template['template_all_atom_positions'].astype(jnp.float32)
  atom_mask = template['template_all_atom_masks']
  # The backbone mask (N, CA and C present), not the pseudo-beta mask, gates
  # the unit vectors and the whole feature.
  bb_mask = atom_mask[:, _N] * atom_mask[:, _CA] * atom_mask[:, _C]
  bb_mask_2d = bb_mask[:, None] * bb_mask[None, :]
  if config.use_template_unit_vector:
    rot, trans = geometry.make_transform_from_reference(pos[:, _N], pos[:, _CA], pos[:, _C])
    frames = geometry.Rigid(rot[:, None], trans[:, None])
    vec = frames.invert_apply(trans[None, :, :])  # [i, j, 3]: j's CA in i's frame
    inv_dist = jax.lax.rsqrt(1e-6 + jnp.sum(jnp.square(vec), axis=-1)) * bb_mask_2d
    unit_vector = vec * inv_dist[..., None]
  else:
    # NUMERICS: AlphaFold's monomer models were trained with zero unit vectors.
    unit_vector = jnp.zeros((n_res, n_res, 3), jnp.float32)
  act = jnp.concatenate([
      dgram, pb_mask_2d[..., None],
      jnp.broadcast_to(aatype[None, :, :], (n_res, n_res, 22)),
      jnp.broadcast_to(aatype[:, None, :], (n_res, n_res, 22)),
      unit_vector, bb_mask_2d[..., None]], axis=-1)
  return act * bb_mask_2d[..., None]


def template_single_features(batch: dict, zero_init: bool = True) -> tuple[jax.Array, jax.Array]:
  """Torsion-angle features of every template, as extra MSA rows. Alg. 2 lines 7-8.

  Returns:
    features [N_templ, N_res, 57] and their row mask [N_templ, N_res] (the psi
    angle's mask: it depends on one residue's backbone only).
  """
  aatype = batch['template_aatype']
  n_templ, n_res = aatype.shape
  torsions = all_atom.atom37_to_torsion_angles(
      aatype=aatype,
      all_atom_pos=batch['template_all_atom_positions'],
      all_atom_mask=batch['template_all_atom_masks'],
      placeholder_for_undefined=not zero_init)
  # As AlphaFold: the (sin, cos) of masked torsions are fed as computed, beside the mask.
  feats = jnp.concatenate([
      jax.nn.one_hot(aatype, 22),
      torsions['torsion_angles_sin_cos'].reshape(n_templ, n_res, 14),
      torsions['alt_torsion_angles_sin_cos'].reshape(n_templ, n_res, 14),
      torsions['torsion_angles_mask']], axis=-1)
  return feats, torsions['torsion_angles_mask'][:, :, 2]
