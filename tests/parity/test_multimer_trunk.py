"""Parity of AlphaFold-Multimer's trunk with the reference's modules_multimer (float32).

The multimer samples its MSA inside the model, so these tests hand both sides
the same key: the sample, the BERT mask and the cluster profiles must be
identical (not close), and the trunk's outputs equal to float32 rounding.
"""

import haiku as hk
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from alphafold.model import modules_multimer, prng
from alphafold.model import utils as ref_model_utils
from flax import nnx

from af_jax.model import embedders_multimer as emb
from af_jax.model.evoformer_multimer import EmbeddingsAndEvoformerMultimer
from af_jax.model.template_multimer import TemplateEmbeddingMultimer
from tests.parity import ref_utils

TOL = 1e-5
# Chains: A and B copies of one entity (a homodimer), C another entity; 2 padding residues.
CHAIN_LENGTHS = (9, 9, 6)
N_PAD = 2
N_RES = sum(CHAIN_LENGTHS) + N_PAD
N_SEQ, N_MSA, N_EXTRA, N_TEMPL = 20, 8, 10, 2


@pytest.fixture(scope='module')
def cfg():
  c = ref_utils.ref_model_config('model_1_multimer_v3')
  c.model.calc_extended_ptm = False
  c.model.use_probs_extended = False
  e = c.model.embeddings_and_evoformer
  e.num_msa, e.num_extra_msa = N_MSA, N_EXTRA
  e.evoformer_num_block, e.extra_msa_stack_num_block = 2, 1
  return c


def complex_batch(seed: int) -> dict:
  """Random raw multimer features of a 3-chain complex with padding."""
  rng = np.random.default_rng(seed)
  asym, entity, sym, residue_index = [], [], [], []
  for i, (n, ent, s) in enumerate(zip(CHAIN_LENGTHS, (1, 1, 2), (1, 2, 1))):
    asym += [i + 1] * n
    entity += [ent] * n
    sym += [s] * n
    residue_index += list(range(n))
  pad = [0] * N_PAD
  seq_mask = np.array([1.0] * (N_RES - N_PAD) + [0.0] * N_PAD, np.float32)
  aatype = rng.integers(0, 21, N_RES).astype(np.int32)
  aatype[:2] = [7, 17]  # glycine, tryptophan
  msa = rng.integers(0, 22, (N_SEQ, N_RES)).astype(np.int32)
  msa[0] = aatype
  msa_mask = np.broadcast_to(seq_mask, (N_SEQ, N_RES)).copy()
  msa_mask[-3:] = 0.0  # padding rows
  msa_mask[5, :4] = 0.0  # a row that does not cover chain A's start
  deletion = (rng.random((N_SEQ, N_RES)) < 0.2) * rng.integers(1, 9, (N_SEQ, N_RES))
  pos = rng.normal(size=(N_TEMPL, N_RES, 37, 3)).astype(np.float32) * 6.0
  tmask = (rng.random((N_TEMPL, N_RES, 37)) > 0.1).astype(np.float32)
  tmask[1] = 0.0  # an empty template slot
  return {
      'aatype': aatype,
      'residue_index': np.array(residue_index + pad, np.int32),
      'asym_id': np.array(asym + pad, np.int32),
      'entity_id': np.array(entity + pad, np.int32),
      'sym_id': np.array(sym + pad, np.int32),
      'seq_mask': seq_mask,
      'msa': msa,
      'msa_mask': msa_mask,
      'deletion_matrix': deletion.astype(np.float32),
      'cluster_bias_mask': np.array([1.0] + [0.0] * (N_SEQ - 1), np.float32),
      'bert_mask': msa_mask.copy(),
      'template_aatype': rng.integers(0, 21, (N_TEMPL, N_RES)).astype(np.int32),
      'template_all_atom_positions': pos,
      'template_all_atom_mask': tmask,
  }


def prev_inputs(seed: int) -> dict:
  rng = np.random.default_rng(seed)
  return {'prev_msa_first_row': rng.normal(size=(N_RES, 256)).astype(np.float32),
          'prev_pair': rng.normal(size=(N_RES, N_RES, 128)).astype(np.float32),
          'prev_pos': rng.normal(size=(N_RES, 37, 3)).astype(np.float32) * 10.0}


def test_padding_consistent_uniform_matches_reference():
  key = jax.random.PRNGKey(3)
  ours = emb.padding_consistent_uniform(key, (5, 7, 3))
  ref = ref_model_utils.padding_consistent_rng(jax.random.uniform)(key, (5, 7, 3))
  np.testing.assert_array_equal(ours, ref)
  # Padding does not change the draws of the real block.
  padded = emb.padding_consistent_uniform(key, (6, 9, 3))
  np.testing.assert_array_equal(padded[:5, :7], ours)


def test_msa_sampling_identical(cfg):
  """sample + BERT mask + cluster profile + msa_feat: equal to the reference bit for bit."""
  c = cfg.model.embeddings_and_evoformer
  batch = {k: jnp.asarray(v) for k, v in complex_batch(0).items()}
  key = jax.random.PRNGKey(7)
  sample_key, mask_key = emb.iteration_keys(key)

  def ref_fn(batch):
    b = dict(batch)
    b['msa_profile'] = modules_multimer.make_msa_profile(b)
    b = modules_multimer.sample_msa(prng.SafeKey(sample_key), b, c.num_msa)
    b = modules_multimer.make_masked_msa(b, prng.SafeKey(mask_key), c.masked_msa)
    b['cluster_profile'], b['cluster_deletion_mean'] = (
        modules_multimer.nearest_neighbor_clusters(b))
    b['msa_feat'] = modules_multimer.create_msa_feat(b)
    b['extra_feat'], b['extra_feat_mask'] = modules_multimer.create_extra_msa_feature(
        b, c.num_extra_msa)
    return b

  ref = jax.jit(ref_fn)(batch)
  trunk = EmbeddingsAndEvoformerMultimer(c, cfg.model.global_config, rngs=nnx.Rngs(0))
  ours = jax.jit(lambda b: trunk.sample(b, key))(batch)
  ours['msa_feat'] = emb.msa_features(ours)
  ours['extra_feat'], ours['extra_feat_mask'] = emb.extra_msa_features(ours, c.num_extra_msa)
  # The MSA is really resampled: the sampled rows are not the first rows.
  assert not np.array_equal(np.asarray(ours['msa'][1:]), np.asarray(batch['msa'][1:N_MSA]))
  assert float(jnp.sum(ours['bert_mask'])) > 0
  for k in ('msa', 'msa_mask', 'deletion_matrix', 'bert_mask', 'true_msa', 'extra_msa',
            'extra_msa_mask', 'extra_deletion_matrix', 'cluster_profile',
            'cluster_deletion_mean', 'msa_feat', 'extra_feat', 'extra_feat_mask'):
    np.testing.assert_array_equal(np.asarray(ours[k]), np.asarray(ref[k]), err_msg=k)


def test_template_embedding(cfg):
  c = cfg.model.embeddings_and_evoformer.template
  gc = cfg.model.global_config
  batch = complex_batch(1)
  rng = np.random.default_rng(5)
  pair = rng.normal(size=(N_RES, N_RES, 128)).astype(np.float32)
  mask_2d = batch['seq_mask'][:, None] * batch['seq_mask'][None]
  same_chain = batch['asym_id'][:, None] == batch['asym_id'][None, :]
  templates = {k: batch[k] for k in ('template_aatype', 'template_all_atom_positions',
                                     'template_all_atom_mask')}
  with ref_utils.self_unit_vectors_zeroed():
    ref, flat = ref_utils.run_ref(
        lambda p, t, m, s: modules_multimer.TemplateEmbedding(c, gc)(
            p, t, m, s, is_training=False), pair, templates, mask_2d, same_chain)
  mod = TemplateEmbeddingMultimer(c, c_z=128, rngs=nnx.Rngs(0))
  ref_utils.load_into(mod, flat, 'template_embedding')
  out = nnx.jit(lambda m, *a: m(*a))(mod, pair, templates, mask_2d, same_chain)
  err = ref_utils.rel_err(out, ref)
  print(f'template embedding: relative error {err:.2e}')
  assert err <= TOL, err


def test_template_single_features(cfg):
  batch = complex_batch(2)
  gc = cfg.model.global_config

  def ref_fn(b):
    return modules_multimer.template_embedding_1d(b, 256, gc)

  (ref_act, ref_mask), flat = ref_utils.run_ref(ref_fn, batch)
  feats, mask = emb.template_single_features({k: jnp.asarray(v) for k, v in batch.items()})
  np.testing.assert_array_equal(np.asarray(mask), ref_mask)
  assert float(jnp.sum(mask)) > 0
  # The activations through the reference's two Linears (weights loaded by name).
  w1, b1 = flat['template_single_embedding//weights'], flat['template_single_embedding//bias']
  w2, b2 = flat['template_projection//weights'], flat['template_projection//bias']
  act = jax.nn.relu(feats @ w1 + b1) @ w2 + b2
  err = ref_utils.rel_err(act, ref_act)
  print(f'template single features: relative error {err:.2e}')
  assert err <= TOL, err


def test_trunk(cfg):
  """Embeddings, templates, extra-MSA stack and Evoformer (2 blocks), with padding."""
  c, gc = cfg.model.embeddings_and_evoformer, cfg.model.global_config
  batch = complex_batch(3)
  prev = prev_inputs(4)
  msa_key = jax.random.PRNGKey(11)
  # The reference's trunk gets the second half of the iteration key's split.
  trunk_key = jax.random.split(msa_key)[1]

  def ref_fn(b):
    return modules_multimer.EmbeddingsAndEvoformer(c, gc)(
        b, is_training=False, safe_key=prng.SafeKey(trunk_key))

  with ref_utils.self_unit_vectors_zeroed():
    ref, flat = ref_utils.run_ref(ref_fn, {**batch, **prev})
  trunk = EmbeddingsAndEvoformerMultimer(c, gc, rngs=nnx.Rngs(0))
  ref_utils.load_into(trunk, flat, 'evoformer')
  out = nnx.jit(lambda m, b, p, k: m(b, p, k))(trunk, batch, prev, msa_key)
  for k in ('single', 'pair', 'msa', 'msa_first_row'):
    err = ref_utils.rel_err(out[k], ref[k])
    print(f'trunk {k}: relative error {err:.2e}')
    assert err <= TOL, (k, err)


def test_trunk_keys_are_the_published_layout(cfg):
  """Every reference key of the multimer trunk maps to one af_jax variable (strict both ways)."""
  c, gc = cfg.model.embeddings_and_evoformer, cfg.model.global_config
  batch = {**complex_batch(5), **prev_inputs(6)}
  shapes = jax.eval_shape(
      hk.transform(lambda b: modules_multimer.EmbeddingsAndEvoformer(c, gc)(
          b, is_training=False, safe_key=prng.SafeKey(jax.random.PRNGKey(0)))).init,
      jax.random.PRNGKey(0), batch)
  flat = {f'{s}//{n}': np.zeros(v.shape, np.float32) for s, d in shapes.items()
          for n, v in d.items()}
  assert any('~_relative_encoding' in k for k in flat)
  assert any('/projection//' in k for k in flat)  # v3's fused triangle projections
  trunk = EmbeddingsAndEvoformerMultimer(c, gc, rngs=nnx.Rngs(0))
  ref_utils.load_into(trunk, flat, 'evoformer')
