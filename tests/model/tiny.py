"""A tiny AlphaFold config and random processed batches for fast model tests."""

import numpy as np

import af_jax
from af_jax.data import transforms_multimer

TINY = {
    'model.embeddings_and_evoformer.evoformer_num_block': 2,
    'model.embeddings_and_evoformer.extra_msa_stack_num_block': 1,
    'model.embeddings_and_evoformer.msa_channel': 32,
    'model.embeddings_and_evoformer.pair_channel': 16,
    'model.embeddings_and_evoformer.extra_msa_channel': 16,
    'model.embeddings_and_evoformer.seq_channel': 32,
    'model.embeddings_and_evoformer.evoformer.outer_product_mean.num_outer_channel': 8,
    'model.embeddings_and_evoformer.evoformer.triangle_multiplication_outgoing.'
    'num_intermediate_channel': 16,
    'model.embeddings_and_evoformer.evoformer.triangle_multiplication_incoming.'
    'num_intermediate_channel': 16,
    'model.embeddings_and_evoformer.template.template_pair_stack.num_block': 1,
    'model.embeddings_and_evoformer.template.attention.key_dim': 16,
    'model.embeddings_and_evoformer.template.attention.value_dim': 16,
    'model.heads.structure_module.num_layer': 3,
    'model.heads.structure_module.num_channel': 32,
    'model.heads.structure_module.num_head': 4,
    'model.heads.structure_module.num_scalar_qk': 4,
    'model.heads.structure_module.num_scalar_v': 4,
    'model.heads.structure_module.num_point_qk': 2,
    'model.heads.structure_module.num_point_v': 2,
    'model.heads.structure_module.sidechain.num_channel': 16,
    'model.heads.predicted_lddt.num_channels': 16,
}
for _name in ('triangle_attention_starting_node', 'triangle_attention_ending_node'):
  TINY[f'model.embeddings_and_evoformer.template.template_pair_stack.{_name}.key_dim'] = 16
  TINY[f'model.embeddings_and_evoformer.template.template_pair_stack.{_name}.value_dim'] = 16
for _name in ('triangle_multiplication_outgoing', 'triangle_multiplication_incoming'):
  TINY[f'model.embeddings_and_evoformer.template.template_pair_stack.{_name}.'
       'num_intermediate_channel'] = 16


def tiny_config(preset: str = 'model_1_ptm', **overrides):
  cfg = af_jax.model_config(preset)
  cfg.update_from_flattened_dict({**TINY, **overrides})
  return cfg


def random_batch(seed: int = 0, n_res: int = 12, n_seq: int = 5, n_extra: int = 7,
                 n_templ: int = 2, n_slices: int = 4) -> dict:
  """Processed features with AlphaFold's names, [n_slices, ...]."""
  rng = np.random.default_rng(seed)
  aatype = rng.integers(0, 20, n_res)
  target_feat = np.zeros((n_res, 22), np.float32)
  target_feat[np.arange(n_res), aatype + 1] = 1
  seq_mask = np.ones(n_res, np.float32)
  pos = rng.normal(size=(n_templ, n_res, 37, 3)).astype(np.float32) * 6
  one = {
      'aatype': aatype.astype(np.int32),
      'residue_index': np.arange(n_res, dtype=np.int32),
      'seq_mask': seq_mask,
      'target_feat': target_feat,
      'msa_feat': rng.random((n_seq, n_res, 49)).astype(np.float32),
      'msa_mask': np.ones((n_seq, n_res), np.float32),
      'extra_msa': rng.integers(0, 23, (n_extra, n_res)).astype(np.int32),
      'extra_msa_mask': np.ones((n_extra, n_res), np.float32),
      'extra_has_deletion': (rng.random((n_extra, n_res)) > 0.9).astype(np.float32),
      'extra_deletion_value': rng.random((n_extra, n_res)).astype(np.float32),
      'template_aatype': rng.integers(0, 21, (n_templ, n_res)).astype(np.int32),
      'template_all_atom_positions': pos,
      'template_all_atom_masks': np.ones((n_templ, n_res, 37), np.float32),
      'template_pseudo_beta': pos[:, :, 3],
      'template_pseudo_beta_mask': np.ones((n_templ, n_res), np.float32),
      'template_mask': np.ones(n_templ, np.float32),
  }
  batch = {k: np.stack([v] * n_slices) for k, v in one.items()}
  # Fresh MSA features per recycle, as resampling does.
  batch['msa_feat'] = rng.random(batch['msa_feat'].shape).astype(np.float32)
  return batch


# The multimer presets with the same small sizes. The multimer template embeds with
# `template.num_channels` and its triangle attentions have no key_dim/value_dim (they use
# the channel count), so TINY's monomer template keys do not apply.
_EVO = 'model.embeddings_and_evoformer'
_TEMPL_STACK = f'{_EVO}.template.template_pair_stack'
TINY_MULTIMER = {
    **{k: v for k, v in TINY.items() if not k.startswith(f'{_EVO}.template.')},
    f'{_EVO}.num_msa': 8,
    f'{_EVO}.num_extra_msa': 16,
    f'{_EVO}.template.num_channels': 16,
    f'{_TEMPL_STACK}.num_block': 1,
    f'{_TEMPL_STACK}.triangle_multiplication_outgoing.num_intermediate_channel': 16,
    f'{_TEMPL_STACK}.triangle_multiplication_incoming.num_intermediate_channel': 16,
    'model.num_recycle': 2,
}


def tiny_multimer_config(preset: str = 'model_1_multimer_v3', **overrides):
  """A multimer preset with TINY's channels and blocks (8 MSA rows, 16 extra, 2 recycles)."""
  cfg = af_jax.model_config(preset)
  cfg.update_from_flattened_dict({**TINY_MULTIMER, **overrides})
  return cfg


def random_multimer_batch(seed: int = 0, chain_lengths: tuple[int, ...] = (9, 9, 6),
                          entity_ids: tuple[int, ...] = (1, 1, 2), n_seq: int = 20,
                          n_templ: int = 2, n_pad: int = 2, n_seq_pad: int = 3) -> dict:
  """Raw multimer features of a random complex, then padding (AlphaFold-Multimer's names).

  Chains with the same entity id are copies of one sequence (sym_id 1, 2, ...), so the
  defaults are a homodimer A, B plus a chain C. The MSA has `n_seq` real rows (the first
  the query, most mutants of it; the last third are unpaired rows that cover one chain
  and have gaps elsewhere, as in a merged complex MSA; one row does not cover chain A's
  start); template 0 has the query's sequence with ~10% of its atoms missing and the last
  template slot is empty (all zeros). `n_pad` padding residues (seq_mask
  0, asym_id 0) and `n_seq_pad` padding rows (msa_mask 0) follow; the real block is the
  same whatever the padding, so a padded and an unpadded batch describe one complex.
  """
  rng = np.random.default_rng(seed)
  asym, entity, sym, residue_index, aatype = [], [], [], [], []
  copies: dict[int, int] = {}
  sequences: dict[int, np.ndarray] = {}
  for i, (n, ent) in enumerate(zip(chain_lengths, entity_ids)):
    copies[ent] = copies.get(ent, 0) + 1
    if ent not in sequences:
      sequences[ent] = rng.integers(0, 20, n)
    assert len(sequences[ent]) == n, 'copies of one entity have one length'
    asym += [i + 1] * n
    entity += [ent] * n
    sym += [copies[ent]] * n
    residue_index += list(range(n))
    aatype += list(sequences[ent])
  n_real = len(aatype)
  aatype = np.array(aatype, np.int32)
  msa = rng.integers(0, 22, (n_seq, n_real)).astype(np.int32)
  msa[0] = aatype
  # Most rows are mutants of the query, so the clusters are not random.
  similar = rng.random((n_seq, n_real)) < 0.6
  msa = np.where(similar, aatype[None], msa).astype(np.int32)
  chain_start = np.cumsum((0,) + tuple(chain_lengths))
  for row in range(n_seq - n_seq // 3, n_seq):  # unpaired rows: one chain, gaps elsewhere
    c = row % len(chain_lengths)
    gap = np.ones(n_real, bool)
    gap[chain_start[c]:chain_start[c + 1]] = False
    msa[row, gap] = 21
  msa_mask = np.ones((n_seq, n_real), np.float32)
  msa_mask[min(5, n_seq - 1), :4] = 0.0  # a row that does not cover chain A's start
  deletion = ((rng.random((n_seq, n_real)) < 0.2)
              * rng.integers(1, 9, (n_seq, n_real))).astype(np.float32)
  pos = rng.normal(size=(n_templ, n_real, 37, 3)).astype(np.float32) * 6.0
  tmask = (rng.random((n_templ, n_real, 37)) > 0.1).astype(np.float32)
  t_aatype = rng.integers(0, 21, (n_templ, n_real)).astype(np.int32)
  t_aatype[0] = aatype
  # The last template slot is empty, as AlphaFold pads missing templates.
  tmask[-1], pos[-1], t_aatype[-1] = 0.0, 0.0, 0
  real = {
      'aatype': aatype,
      'residue_index': np.array(residue_index, np.int32),
      'asym_id': np.array(asym, np.int32),
      'entity_id': np.array(entity, np.int32),
      'sym_id': np.array(sym, np.int32),
      'seq_mask': np.ones(n_real, np.float32),
      'msa': msa,
      'msa_mask': msa_mask,
      'deletion_matrix': deletion,
      'cluster_bias_mask': np.array([1.0] + [0.0] * (n_seq - 1), np.float32),
      'bert_mask': msa_mask.copy(),
      'template_aatype': t_aatype,
      'template_all_atom_positions': pos * tmask[..., None],
      'template_all_atom_mask': tmask,
  }
  return transforms_multimer.make_batch(real, num_res=n_real + n_pad, num_seq=n_seq + n_seq_pad)
