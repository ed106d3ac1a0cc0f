"""A tiny AlphaFold config and random processed batches for fast model tests."""

import numpy as np

import af_jax

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
