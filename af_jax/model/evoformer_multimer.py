"""AlphaFold-Multimer's trunk: in-model MSA sampling, embeddings, extra-MSA stack, Evoformer.

Evans et al. (2021) Suppl. 2. The blocks are the monomer's (`evoformer.EvoformerIteration`,
with the outer product mean first, as the multimer config says); what differs is
the input side: the MSA is sampled and masked here from the raw alignment (so
every recycle draws a fresh sample inside the compiled program), relative
positions know about chains, and templates are embedded per chain
(`template_multimer`). AlphaFold's scope: `evoformer`.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from flax import nnx
from jax.sharding import Mesh

from af_jax.chunking import ChunkPlan
from af_jax.data import schema
from af_jax.model import embedders, primitives, stack
from af_jax.model import embedders_multimer as emb
from af_jax.model.evoformer import EvoformerIteration
from af_jax.model.template_multimer import TemplateEmbeddingMultimer
from af_jax.parallel import dap as dap_lib
from af_jax.parallel.mesh import constrain

class RelativeEncoding(nnx.Module):
  """Holds `position_activations` (AlphaFold's scope `~_relative_encoding`)."""

  def __init__(self, num_input: int, c_z: int, *, dtype=jnp.float32, rngs: nnx.Rngs):
    self.position_activations = primitives.Linear(num_input, c_z, dtype=dtype, rngs=rngs)

  def __call__(self, features: jax.Array) -> jax.Array:
    return self.position_activations(features)


class EmbeddingsAndEvoformerMultimer(nnx.Module):
  """One recycling iteration's trunk for complexes.

  NUMERICS: as the monomer trunk, matmuls run in `primitives.compute_dtype`
  and the outputs are float32; sampling, features and geometry stay float32.
  """

  def __init__(self, config, global_config, *, rngs: nnx.Rngs):
    c = config
    zi = global_config.zero_init
    dt = primitives.compute_dtype(global_config)
    lin = functools.partial(primitives.Linear, dtype=dt)
    c_m, c_z, c_e = c.msa_channel, c.pair_channel, c.extra_msa_channel
    self.config = c
    self.global_config = global_config
    self.preprocess_1d = lin(emb.TARGET_FEATURES, c_m, rngs=rngs)
    self.preprocess_msa = lin(emb.MSA_FEATURES, c_m, rngs=rngs)
    self.left_single = lin(emb.TARGET_FEATURES, c_z, rngs=rngs)
    self.right_single = lin(emb.TARGET_FEATURES, c_z, rngs=rngs)
    if c.recycle_pos:
      self.prev_pos_linear = lin(c.prev_pos.num_bins, c_z, rngs=rngs)
    if c.recycle_features:
      self.prev_msa_first_row_norm = primitives.LayerNorm(c_m)
      self.prev_pair_norm = primitives.LayerNorm(c_z)
    if c.max_relative_idx:
      n_rel = 2 * c.max_relative_idx + 2 + 1 + 2 * c.max_relative_chain + 2
      self.relative_encoding = RelativeEncoding(n_rel, c_z, dtype=dt, rngs=rngs)
    if c.template.enabled:
      self.template_embedding = TemplateEmbeddingMultimer(c.template, c_z=c_z, zero_init=zi,
                                                          dtype=dt, rngs=rngs)
      self.template_single_embedding = lin(emb.TEMPLATE_SINGLE_FEATURES, c_m,
                                           initializer='relu', rngs=rngs)
      self.template_projection = lin(c_m, c_m, initializer='relu', rngs=rngs)
    self.extra_msa_activations = lin(emb.EXTRA_MSA_FEATURES, c_e, rngs=rngs)
    self.extra_msa_stack = stack.create(
        lambda r: EvoformerIteration(c.evoformer, c_m=c_e, c_z=c_z, is_extra_msa=True,
                                     zero_init=zi, dtype=dt, rngs=r),
        c.extra_msa_stack_num_block, rngs)
    self.evoformer_iteration = stack.create(
        lambda r: EvoformerIteration(c.evoformer, c_m=c_m, c_z=c_z, is_extra_msa=False,
                                     zero_init=zi, dtype=dt, rngs=r),
        c.evoformer_num_block, rngs)
    self.single_activations = lin(c_m, c.seq_channel, out_dtype=jnp.float32, rngs=rngs)

  def sample(self, batch: dict, msa_key: jax.Array) -> dict:
    """The iteration's MSA sample: cluster centres (BERT-masked), extra rows, profiles."""
    c = self.config
    batch = dict(batch)
    batch['msa_mask'] = batch['msa_mask'].astype(jnp.float32)
    batch['deletion_matrix'] = batch['deletion_matrix'].astype(jnp.float32)
    batch['msa_profile'] = emb.msa_profile(batch['msa'], batch['msa_mask'])
    sample_key, mask_key = emb.iteration_keys(msa_key)
    batch = emb.sample_msa(sample_key, batch, c.num_msa)
    batch = emb.mask_msa(mask_key, batch, c.masked_msa)
    if c.use_cluster_profile:
      batch['cluster_profile'], batch['cluster_deletion_mean'] = (
          emb.nearest_neighbour_clusters(batch))
    return batch

  def __call__(self, batch: dict, prev: dict, msa_key: jax.Array,
               plan: ChunkPlan = ChunkPlan(), key: jax.Array | None = None,
               mesh: Mesh | None = None) -> dict:
    """Runs one recycling iteration's trunk.

    Args:
      batch: raw multimer features (`data.schema.MULTIMER`), padded
        to a bucket, no recycle axis.
      prev: `prev_msa_first_row`, `prev_pair`, `prev_pos` of the previous recycle.
      msa_key: this iteration's sampling key (`embedders_multimer.iteration_keys`).
      plan: chunk sizes per op.
      key: dropout key (training) or None.
      mesh: a mesh with a `dap` axis, or None.

    Returns:
      `single`, `pair`, `msa` (the sampled rows), `msa_first_row` (float32).
    """
    c, gc = self.config, self.global_config
    dt = primitives.compute_dtype(gc)
    remat = bool(gc.get('use_remat', False))
    k_templ, k_extra, k_evo = (jax.random.split(key, 3) if key is not None else (None,) * 3)
    sampled = self.sample(batch, msa_key)
    target_feat = jax.nn.one_hot(batch['aatype'], emb.TARGET_FEATURES)
    msa = (self.preprocess_1d(target_feat)[None]
           + self.preprocess_msa(emb.msa_features(sampled)))
    pair = self.left_single(target_feat)[:, None] + self.right_single(target_feat)[None, :]
    seq_mask = batch['seq_mask'].astype(jnp.float32)
    mask_2d = seq_mask[:, None] * seq_mask[None, :]
    if c.recycle_pos:
      dgram = embedders.recycled_position_dgram(batch['aatype'], prev['prev_pos'], c.prev_pos)
      pair = pair + self.prev_pos_linear(dgram)
    if c.recycle_features:
      msa = msa.at[0].add(self.prev_msa_first_row_norm(prev['prev_msa_first_row']).astype(dt))
      pair = pair + self.prev_pair_norm(prev['prev_pair']).astype(dt)
    if c.max_relative_idx:
      rel = emb.relative_encoding_features(batch, c.max_relative_idx, c.max_relative_chain)
      pair = pair + self.relative_encoding(rel)
    pair = constrain(pair, mesh, 'res_i', 'res_j', 'channel')
    if c.template.enabled:
      templates = {k: batch[k] for k in schema.MULTIMER_TEMPLATES.names}
      same_chain = batch['asym_id'][:, None] == batch['asym_id'][None, :]
      pair = pair + self.template_embedding(pair, templates, mask_2d, same_chain, plan, k_templ,
                                            remat, mesh)
    extra_feats, extra_mask = emb.extra_msa_features(sampled, c.num_extra_msa)
    extra = self.extra_msa_activations(extra_feats)
    extra_keys = (jax.random.split(k_extra, c.extra_msa_stack_num_block)
                  if k_extra is not None else None)

    def run_stack(stacked, keys):
      def apply(dap, m, p, m_mask, p_mask):
        body = lambda block, carry, k: block(*carry, m_mask, p_mask, plan, k, dap)  # noqa: E731
        return stack.scan(stacked, body, (m, p), keys, remat=remat)
      return apply

    with jax.named_scope('extra_msa_stack'):
      _, pair = dap_lib.evoformer_stack(run_stack(self.extra_msa_stack, extra_keys), mesh,
                                        extra, pair, extra_mask.astype(jnp.float32), mask_2d)
    n_msa = msa.shape[0]
    msa_mask = sampled['msa_mask']
    if c.template.enabled:
      feats, row_mask = emb.template_single_features(batch)
      rows = self.template_projection(jax.nn.relu(self.template_single_embedding(feats)))
      msa = jnp.concatenate([msa, rows.astype(msa.dtype)], axis=0)
      msa_mask = jnp.concatenate([msa_mask, row_mask], axis=0)
    evo_keys = (jax.random.split(k_evo, c.evoformer_num_block) if k_evo is not None else None)
    msa = constrain(msa, mesh, 'msa_seq', 'res_j', 'channel')
    with jax.named_scope('evoformer'):
      msa, pair = dap_lib.evoformer_stack(run_stack(self.evoformer_iteration, evo_keys), mesh,
                                          msa, pair, msa_mask, mask_2d)
    single = self.single_activations(msa[0])
    out = {'single': single, 'pair': pair, 'msa': msa[:n_msa], 'msa_first_row': msa[0]}
    return {k: v.astype(jnp.float32) for k, v in out.items()}
