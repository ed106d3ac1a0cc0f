"""The trunk: embeddings, extra-MSA stack and Evoformer blocks.

Jumper et al. (2021) Suppl. Alg. 2-6 and 18.
"""

from __future__ import annotations

import dataclasses
import functools

import chex
import jax
import jax.numpy as jnp
from flax import nnx
from jax.sharding import Mesh

from af_jax.chunking import ChunkPlan
from af_jax.data import schema
from af_jax.model import dropout, embedders, primitives, stack
from af_jax.model.msa import (MSAColumnAttention, MSAColumnGlobalAttention,
                              MSARowAttentionWithPairBias)
from af_jax.model.outer_product_mean import OuterProductMean
from af_jax.model.template import TemplateEmbedding
from af_jax.model.transition import Transition
from af_jax.model.triangle import TriangleAttention, TriangleMultiplication
from af_jax.parallel import NO_DAP, Dap
from af_jax.parallel import dap as dap_lib
from af_jax.parallel.mesh import constrain


class EvoformerIteration(nnx.Module):
  """MSA and pair updates of one block.

  With `is_extra_msa` the column attention is global (Alg. 19) and the module
  is AlphaFold's `extra_msa_stack` block; otherwise `evoformer_iteration`.
  """

  def __init__(self, config, *, c_m: int, c_z: int, is_extra_msa: bool,
               zero_init: bool = True, dtype=jnp.float32, rngs: nnx.Rngs):
    kw = dict(zero_init=zero_init, dtype=dtype, rngs=rngs)
    self.config = config
    self.is_extra_msa = is_extra_msa
    self.msa_row_attention_with_pair_bias = MSARowAttentionWithPairBias(
        config.msa_row_attention_with_pair_bias, c_m=c_m, c_z=c_z, **kw)
    if is_extra_msa:
      self.msa_column_global_attention = MSAColumnGlobalAttention(
          config.msa_column_attention, c_m=c_m, **kw)
    else:
      self.msa_column_attention = MSAColumnAttention(config.msa_column_attention, c_m=c_m, **kw)
    self.msa_transition = Transition(config.msa_transition, c=c_m, **kw)
    self.outer_product_mean = OuterProductMean(config.outer_product_mean, c_m=c_m, c_z=c_z, **kw)
    self.triangle_multiplication_outgoing = TriangleMultiplication(
        config.triangle_multiplication_outgoing, c_z=c_z, **kw)
    self.triangle_multiplication_incoming = TriangleMultiplication(
        config.triangle_multiplication_incoming, c_z=c_z, **kw)
    self.triangle_attention_starting_node = TriangleAttention(
        config.triangle_attention_starting_node, c_z=c_z, **kw)
    self.triangle_attention_ending_node = TriangleAttention(
        config.triangle_attention_ending_node, c_z=c_z, **kw)
    self.pair_transition = Transition(config.pair_transition, c=c_z, **kw)

  @jax.named_scope('evoformer_iteration')
  def __call__(self, msa: jax.Array, pair: jax.Array, msa_mask: jax.Array,
               pair_mask: jax.Array, plan: ChunkPlan = ChunkPlan(),
               key: jax.Array | None = None, dap: Dap = NO_DAP) -> tuple[jax.Array, jax.Array]:
    """Args: msa [N_seq, N_res, c_m]; pair [N_res, N_res, c_z]; masks of both.

    `key` enables dropout (training). Under DAP (`parallel.dap`), msa and pair are
    this device's rows in and out (sequences; pair rows) and the masks are whole;
    each op runs in the layout it needs, switched by all-to-all (FastFold's
    Dynamic Axial Parallelism). Returns the updated (msa, pair).
    """
    chex.assert_rank([msa, pair, msa_mask, pair_mask], [3, 3, 2, 2])
    c = self.config
    keys = list(jax.random.split(key, 10)) if key is not None else [None] * 10
    msa_rows, msa_cols = dap.rows(msa_mask), dap.columns(msa_mask)
    pair_rows, pair_cols = dap.rows(pair_mask), dap.columns(pair_mask)

    def add(act, op, cfg, shard_axis, *args):
      # op(*args, residual=...): act + update, in place when chunked (dropout.residual).
      update = lambda r: op(*args, residual=r)  # noqa: E731
      return dropout.residual(act, update, cfg, keys.pop(), dap, shard_axis)

    if c.outer_product_mean.first:  # msa in columns layout; the update is in pair rows.
      pair = add(pair, self.outer_product_mean, c.outer_product_mean, 0,
                 dap.to_columns(msa), msa_mask, plan.outer_product_mean, dap)
    # Alg. 6 lines 2-4: MSA stack; row attention in rows, the rest in columns.
    msa = add(msa, self.msa_row_attention_with_pair_bias, c.msa_row_attention_with_pair_bias, 0,
              msa, msa_rows, pair, plan.msa_row_attention, dap)
    msa = dap.to_columns(msa)
    if self.is_extra_msa:
      msa = add(msa, self.msa_column_global_attention, c.msa_column_attention, 1,
                msa, msa_cols, plan.msa_column_global_attention)
    else:
      msa = add(msa, self.msa_column_attention, c.msa_column_attention, 1,
                msa, msa_cols, plan.msa_column_attention)
    msa = add(msa, self.msa_transition, c.msa_transition, 1, msa, msa_cols, plan.msa_transition)
    # Alg. 6 line 5: communication.
    if not c.outer_product_mean.first:
      pair = add(pair, self.outer_product_mean, c.outer_product_mean, 0,
                 msa, msa_mask, plan.outer_product_mean, dap)
    msa = dap.to_rows(msa)
    # Alg. 6 lines 6-10: pair stack; outgoing/starting-node ops in rows,
    # incoming/ending-node ops and the transition in columns.
    tm, ta = plan.triangle_multiplication, plan.triangle_attention
    pair = add(pair, self.triangle_multiplication_outgoing, c.triangle_multiplication_outgoing,
               0, pair, pair_rows, tm, dap)
    pair = dap.to_columns(pair)
    pair = add(pair, self.triangle_multiplication_incoming, c.triangle_multiplication_incoming,
               1, pair, pair_cols, tm, dap)
    pair = dap.to_rows(pair)
    pair = add(pair, self.triangle_attention_starting_node, c.triangle_attention_starting_node,
               0, pair, pair_rows, ta, dap)
    pair = dap.to_columns(pair)
    pair = add(pair, self.triangle_attention_ending_node, c.triangle_attention_ending_node, 1,
               pair, pair_cols, ta, dap)
    pair = add(pair, self.pair_transition, c.pair_transition, 1,
               pair, pair_cols, plan.pair_transition)
    return msa, dap.to_rows(pair)


@dataclasses.dataclass(frozen=True)
class MonomerInputs:
  """The monomer trunk's input embedder part: features read from the processed batch.

  A part is stateless: it names and sizes the trunk's input Linears and turns a
  batch into the features they embed. Multimer's is `evoformer_multimer.MultimerInputs`.
  """

  target_features = 22  # one-hot aatype (21) + between-segment-residues bit
  msa_features = 49
  relpos_name = 'pair_activations'

  def make_relpos(self, config, c_z: int, dtype, rngs: nnx.Rngs):
    """The relative-position Linear (Alg. 4), or None when the config has none."""
    if not config.max_relative_feature:
      return None
    return primitives.Linear(2 * config.max_relative_feature + 1, c_z, dtype=dtype, rngs=rngs)

  def features(self, config, batch: dict, msa_key: jax.Array | None) -> dict:
    """`target_feat`, `msa_feat`, `msa_mask`, `extra_feat`, `extra_mask` and `relpos` (or None)."""
    del msa_key  # the monomer's MSA is sampled by the data pipeline
    relpos = (embedders.relative_position_one_hot(batch['residue_index'],
                                                  config.max_relative_feature)
              if config.max_relative_feature else None)
    return {'target_feat': batch['target_feat'], 'msa_feat': batch['msa_feat'],
            'msa_mask': batch['msa_mask'].astype(jnp.float32),
            'extra_feat': embedders.extra_msa_features(batch),
            'extra_mask': batch['extra_msa_mask'].astype(jnp.float32), 'relpos': relpos}


@dataclasses.dataclass(frozen=True)
class MonomerTemplates:
  """The monomer trunk's template embedder part: Alg. 16-17 and torsion-angle MSA rows.

  Multimer's is `evoformer_multimer.MultimerTemplates`.
  """

  single_features_dim = embedders.TEMPLATE_SINGLE_FEATURES

  def torsion_rows(self, config) -> bool:
    return bool(config.template.embed_torsion_angles)

  def make(self, config, *, c_z: int, zero_init: bool, dtype, rngs: nnx.Rngs):
    return TemplateEmbedding(config, c_z=c_z, zero_init=zero_init, dtype=dtype, rngs=rngs)

  def embed(self, module, pair: jax.Array, batch: dict, mask_2d: jax.Array, plan: ChunkPlan,
            key: jax.Array | None, remat: bool, mesh: Mesh | None) -> jax.Array:
    templates = {k: batch[k] for k in schema.MONOMER_TEMPLATES.names}
    return module(pair, templates, mask_2d, plan, key, remat, mesh)

  def single_features(self, batch: dict, global_config) -> tuple[jax.Array, jax.Array]:
    """The template rows' features and their float32 row mask."""
    feats, row_mask = embedders.template_single_features(batch, global_config.zero_init)
    return feats, row_mask.astype(jnp.float32)


MONOMER_INPUTS = MonomerInputs()
MONOMER_TEMPLATES = MonomerTemplates()


class EmbeddingsAndEvoformer(nnx.Module):
  """Embeds the inputs and runs the extra-MSA stack and the Evoformer.

  Jumper et al. (2021) Suppl. Alg. 2 lines 5-18: input embedder (Alg. 3),
  relative positions (Alg. 4), recycling embedder (Alg. 32), templates (Alg.
  16-17 and torsion-angle rows), extra-MSA stack (Alg. 18), Evoformer (Alg. 6)
  and the single representation. AlphaFold's scope: `evoformer`.

  The one trunk of both models: what differs between the monomer and
  AlphaFold-Multimer (features, relative positions, templates) is in its two
  parts, `inputs` and `templates` (MONOMER_* here; `evoformer_multimer`'s for
  complexes); the Linears they size and the stacks are the trunk's, under
  AlphaFold's names.

  NUMERICS: with `global_config.bfloat16` every Linear/einsum of the trunk
  computes in bfloat16 (`primitives.compute_dtype`) and the MSA and pair
  activations are carried in bfloat16 between blocks, as AlphaFold's
  `bfloat16_context` does (half the activation memory); features, masks and
  geometry stay float32 and the outputs are float32.
  """

  def __init__(self, config, global_config, *, inputs=MONOMER_INPUTS,
               templates=MONOMER_TEMPLATES, rngs: nnx.Rngs):
    c = config
    zi = global_config.zero_init
    dt = primitives.compute_dtype(global_config)
    lin = functools.partial(primitives.Linear, dtype=dt)
    c_m, c_z, c_e = c.msa_channel, c.pair_channel, c.extra_msa_channel
    self.config = c
    self.global_config = global_config
    self.inputs = inputs
    self.templates = templates
    self.preprocess_1d = lin(inputs.target_features, c_m, rngs=rngs)
    self.preprocess_msa = lin(inputs.msa_features, c_m, rngs=rngs)
    self.left_single = lin(inputs.target_features, c_z, rngs=rngs)
    self.right_single = lin(inputs.target_features, c_z, rngs=rngs)
    if c.recycle_pos:
      self.prev_pos_linear = lin(c.prev_pos.num_bins, c_z, rngs=rngs)
    if c.recycle_features:
      self.prev_msa_first_row_norm = primitives.LayerNorm(c_m)
      self.prev_pair_norm = primitives.LayerNorm(c_z)
    relpos = inputs.make_relpos(c, c_z, dt, rngs)
    if relpos is not None:
      setattr(self, inputs.relpos_name, relpos)
    if c.template.enabled:
      self.template_embedding = templates.make(c.template, c_z=c_z, zero_init=zi, dtype=dt,
                                               rngs=rngs)
      if templates.torsion_rows(c):
        self.template_single_embedding = lin(templates.single_features_dim, c_m,
                                             initializer='relu', rngs=rngs)
        self.template_projection = lin(c_m, c_m, initializer='relu', rngs=rngs)
    self.extra_msa_activations = lin(embedders.EXTRA_MSA_FEATURES, c_e, rngs=rngs)
    self.extra_msa_stack = stack.create(
        lambda r: EvoformerIteration(c.evoformer, c_m=c_e, c_z=c_z, is_extra_msa=True,
                                     zero_init=zi, dtype=dt, rngs=r),
        c.extra_msa_stack_num_block, rngs)
    self.evoformer_iteration = stack.create(
        lambda r: EvoformerIteration(c.evoformer, c_m=c_m, c_z=c_z, is_extra_msa=False,
                                     zero_init=zi, dtype=dt, rngs=r),
        c.evoformer_num_block, rngs)
    # NUMERICS: the single representation keeps the float32 accumulator.
    self.single_activations = lin(c_m, c.seq_channel, out_dtype=jnp.float32, rngs=rngs)

  def __call__(self, batch: dict, prev: dict, plan: ChunkPlan = ChunkPlan(),
               key: jax.Array | None = None, mesh: Mesh | None = None, *,
               msa_key: jax.Array | None = None) -> dict:
    """Runs one recycling iteration's trunk.

    Args:
      batch: one recycle's features, as the `inputs` part reads them: the
        monomer's processed features (`target_feat` [N_res, 22], `msa_feat`
        [N_seq, N_res, 49], `msa_mask`, `seq_mask`, `aatype`, `residue_index`,
        `extra_msa*`, `template_*`), or Multimer's raw features.
      prev: `prev_msa_first_row` [N_res, c_m], `prev_pair` [N_res, N_res, c_z],
        `prev_pos` [N_res, 37, 3] from the previous recycle (zeros first).
      plan: chunk sizes per op.
      key: dropout key (training) or None.
      mesh: a mesh with a `dap` axis: the three stacks run with Dynamic Axial
        Parallelism over it (`parallel.dap`); None runs them on one device.
      msa_key: this iteration's MSA sampling key, for inputs that sample in the
        model (Multimer's); the monomer's ignore it.

    Returns:
      `single` [N_res, c_s], `pair` [N_res, N_res, c_z], `msa` [N_seq, N_res, c_m]
      (the embedded rows, without template rows), `msa_first_row` [N_res, c_m],
      all float32.
    """
    c, gc = self.config, self.global_config
    # The Linears cast features to the compute dtype `dt`; their outputs start
    # the MSA and pair activations in `dt`. Masks stay float32.
    dt = primitives.compute_dtype(gc)
    remat = bool(gc.get('use_remat', False))
    k_templ, k_extra, k_evo = (jax.random.split(key, 3) if key is not None else (None,) * 3)
    feats = self.inputs.features(c, batch, msa_key)
    target_feat = feats['target_feat']
    # Alg. 3: input embedder.
    msa = self.preprocess_1d(target_feat)[None] + self.preprocess_msa(feats['msa_feat'])
    n_seq = msa.shape[0]
    pair = self.left_single(target_feat)[:, None] + self.right_single(target_feat)[None, :]
    seq_mask = batch['seq_mask'].astype(jnp.float32)
    mask_2d = seq_mask[:, None] * seq_mask[None, :]
    # Alg. 32: recycling embedder.
    if c.recycle_pos:
      dgram = embedders.recycled_position_dgram(batch['aatype'], prev['prev_pos'], c.prev_pos)
      pair = pair + self.prev_pos_linear(dgram)
    if c.recycle_features:
      # NUMERICS: float32 layer norms of the float32 recycled outputs.
      first_row = self.prev_msa_first_row_norm(prev['prev_msa_first_row']).astype(dt)
      msa = msa.at[0].add(first_row)
      pair = pair + self.prev_pair_norm(prev['prev_pair']).astype(dt)
    # Alg. 4: relative positions.
    if feats['relpos'] is not None:
      pair = pair + getattr(self, self.inputs.relpos_name)(feats['relpos'])
    # Alg. 2 lines 9-13: template pair embedding.
    pair = constrain(pair, mesh, 'res_i', 'res_j', 'channel')
    if c.template.enabled:
      pair = pair + self.templates.embed(self.template_embedding, pair, batch, mask_2d, plan,
                                         k_templ, remat, mesh)
    # Alg. 2 lines 14-16 and Alg. 18: extra-MSA stack.
    extra = self.extra_msa_activations(feats['extra_feat'])
    extra_keys = (jax.random.split(k_extra, c.extra_msa_stack_num_block)
                  if k_extra is not None else None)

    def run_stack(stacked, keys):
      def apply(dap, m, p, m_mask, p_mask):
        body = lambda block, carry, k: block(*carry, m_mask, p_mask, plan, k, dap)  # noqa: E731
        return stack.scan(stacked, body, (m, p), keys, remat=remat)
      return apply

    with jax.named_scope('extra_msa_stack'):
      _, pair = dap_lib.evoformer_stack(run_stack(self.extra_msa_stack, extra_keys), mesh,
                                        extra, pair, feats['extra_mask'], mask_2d)
    # Alg. 2 lines 7-8: template torsion angles as extra MSA rows.
    msa_mask = feats['msa_mask']
    if c.template.enabled and self.templates.torsion_rows(c):
      single_feats, row_mask = self.templates.single_features(batch, gc)
      rows = self.template_projection(jax.nn.relu(self.template_single_embedding(single_feats)))
      msa = jnp.concatenate([msa, rows.astype(msa.dtype)], axis=0)
      msa_mask = jnp.concatenate([msa_mask, row_mask], axis=0)
    # Alg. 2 lines 17-18: the Evoformer.
    evo_keys = (jax.random.split(k_evo, c.evoformer_num_block) if k_evo is not None else None)

    msa = constrain(msa, mesh, 'msa_seq', 'res_j', 'channel')
    with jax.named_scope('evoformer'):
      msa, pair = dap_lib.evoformer_stack(run_stack(self.evoformer_iteration, evo_keys), mesh,
                                          msa, pair, msa_mask, mask_2d)
    single = self.single_activations(msa[0])
    out = {'single': single, 'pair': pair, 'msa': msa[:n_seq], 'msa_first_row': msa[0]}
    return {k: v.astype(jnp.float32) for k, v in out.items()}
