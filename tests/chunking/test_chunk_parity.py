"""Every axial op gives the same numbers chunked and unchunked (issue 5 item 1).

Each op kind in ChunkPlan is run through its module with random (non-zero)
parameters, unchunked and at chunk sizes that do and do not divide the axis, and
the whole model is compared end to end with every op chunked. Chunking only
changes how many slices `lax.map` computes at once, so the outputs must agree to
float32 rounding (the per-slice arithmetic is identical; only XLA's fusion and
reduction order may differ): within a multiple of the unchunked result's own spread
under a one-ulp change of the parameters (tests/tolerance.py).
"""

import dataclasses

import jax
import numpy as np
import pytest
from flax import nnx

from af_jax.chunking import ChunkPlan
from af_jax.inference import select_features
from af_jax.model.build import build_model
from af_jax.model.evoformer import EvoformerIteration
from af_jax.model.msa import (MSAColumnAttention, MSAColumnGlobalAttention,
                              MSARowAttentionWithPairBias)
from af_jax.model.outer_product_mean import OuterProductMean
from af_jax.model.template import TemplateEmbedding, TemplatePairBlock
from af_jax.model.transition import Transition
from af_jax.model.triangle import TriangleAttention, TriangleMultiplication
from tests import tolerance
from tests.model.tiny import random_batch, tiny_config

N_SEQ, N_RES, C_M, C_Z = 6, 11, 32, 16
CHUNKS = [1, 5]  # 5 leaves a remainder over 6 and 11 slices

EVO = tiny_config().model.embeddings_and_evoformer


def _inputs(seed=0):
  k = jax.random.split(jax.random.key(seed), 4)
  msa = jax.random.normal(k[0], (N_SEQ, N_RES, C_M))
  pair = jax.random.normal(k[1], (N_RES, N_RES, C_Z))
  msa_mask = (jax.random.uniform(k[2], (N_SEQ, N_RES)) > 0.2).astype(np.float32)
  pair_mask = (jax.random.uniform(k[3], (N_RES, N_RES)) > 0.2).astype(np.float32)
  return msa, pair, msa_mask, pair_mask


def _rngs():
  return nnx.Rngs(3)


# (op kind, module factory, call(module, chunk) -> outputs)
def _cases():
  e = EVO.evoformer
  msa, pair, msa_mask, pair_mask = _inputs()
  kw = dict(zero_init=False)
  return {
      'msa_row_attention': (
          lambda: MSARowAttentionWithPairBias(e.msa_row_attention_with_pair_bias, c_m=C_M,
                                              c_z=C_Z, rngs=_rngs(), **kw),
          lambda m, c: m(msa, msa_mask, pair, c)),
      'msa_column_attention': (
          lambda: MSAColumnAttention(e.msa_column_attention, c_m=C_M, rngs=_rngs(), **kw),
          lambda m, c: m(msa, msa_mask, c)),
      'msa_column_global_attention': (
          lambda: MSAColumnGlobalAttention(e.msa_column_attention, c_m=C_M, rngs=_rngs(), **kw),
          lambda m, c: m(msa, msa_mask, c)),
      'msa_transition': (
          lambda: Transition(e.msa_transition, c=C_M, rngs=_rngs(), **kw),
          lambda m, c: m(msa, msa_mask, c)),
      'pair_transition': (
          lambda: Transition(e.pair_transition, c=C_Z, rngs=_rngs(), **kw),
          lambda m, c: m(pair, pair_mask, c)),
      'outer_product_mean': (
          lambda: OuterProductMean(e.outer_product_mean, c_m=C_M, c_z=C_Z, rngs=_rngs(), **kw),
          lambda m, c: m(msa, msa_mask, c)),
      'triangle_multiplication_outgoing': (
          lambda: TriangleMultiplication(e.triangle_multiplication_outgoing, c_z=C_Z,
                                         rngs=_rngs(), **kw),
          lambda m, c: m(pair, pair_mask, c)),
      'triangle_multiplication_incoming': (
          lambda: TriangleMultiplication(e.triangle_multiplication_incoming, c_z=C_Z,
                                         rngs=_rngs(), **kw),
          lambda m, c: m(pair, pair_mask, c)),
      'triangle_attention_starting_node': (
          lambda: TriangleAttention(e.triangle_attention_starting_node, c_z=C_Z, rngs=_rngs(),
                                    **kw),
          lambda m, c: m(pair, pair_mask, c)),
      'triangle_attention_ending_node': (
          lambda: TriangleAttention(e.triangle_attention_ending_node, c_z=C_Z, rngs=_rngs(),
                                    **kw),
          lambda m, c: m(pair, pair_mask, c)),
  }


@pytest.mark.parametrize('op', sorted(_cases()))
def test_op_chunked_equals_unchunked(op):
  make, call = _cases()[op]
  module = make()
  want = np.asarray(call(module, None))
  assert np.abs(want).max() > 1e-3  # a zero output would compare equal trivially
  spread = tolerance.module_spread(module, lambda m: call(m, None))
  for chunk in CHUNKS:
    tolerance.assert_close(np.asarray(call(module, chunk)), want, spread,
                           what=f'{op} chunk={chunk}')


def _plan(chunk: int) -> ChunkPlan:
  return ChunkPlan(**{f.name: chunk for f in dataclasses.fields(ChunkPlan)})


@pytest.mark.parametrize('is_extra_msa', [False, True])
def test_evoformer_block_chunked_equals_unchunked(is_extra_msa):
  """One Evoformer (or extra-MSA) block: every op of the block chunked at once."""
  msa, pair, msa_mask, pair_mask = _inputs(1)
  block = EvoformerIteration(EVO.evoformer, c_m=C_M, c_z=C_Z, is_extra_msa=is_extra_msa,
                             zero_init=False, rngs=_rngs())

  def run(block, plan):
    return dict(zip(('msa', 'pair'), block(msa, pair, msa_mask, pair_mask, plan)))

  want = run(block, ChunkPlan())
  spread = tolerance.module_spread(block, lambda b: run(b, ChunkPlan()))
  for chunk in (1, 4):
    tolerance.assert_close(run(block, _plan(chunk)), want, spread, what=f'chunk={chunk}')


def test_template_pair_stack_and_pointwise_attention_chunked_equal_unchunked():
  """The template pair block (triangle ops, transition) and Alg. 17's point-wise attention."""
  t = EVO.template
  c_t = t.template_pair_stack.triangle_attention_ending_node.value_dim
  _, pair, _, pair_mask = _inputs(2)
  t_pair = jax.random.normal(jax.random.key(5), (N_RES, N_RES, c_t))
  block = TemplatePairBlock(t.template_pair_stack, c_t=c_t, zero_init=False, rngs=_rngs())
  want = block(t_pair, pair_mask, ChunkPlan())
  spread = tolerance.module_spread(block, lambda b: b(t_pair, pair_mask, ChunkPlan()))
  for chunk in (1, 4):
    tolerance.assert_close(block(t_pair, pair_mask, _plan(chunk)), want, spread,
                           what=f'template pair block chunk={chunk}')

  embedding = TemplateEmbedding(t, c_z=C_Z, zero_init=False, rngs=_rngs())
  batch = random_batch(seed=3, n_res=N_RES, n_templ=3, n_slices=1)
  templates = {k: batch[k][0] for k in batch if k.startswith('template_')}
  templates['template_mask'] = np.array([1, 1, 0], np.float32)  # one masked template
  want = embedding(pair, templates, pair_mask, ChunkPlan())
  assert np.abs(np.asarray(want)).max() > 1e-3
  spread = tolerance.module_spread(embedding,
                                   lambda e: e(pair, templates, pair_mask, ChunkPlan()))
  # N_res^2 = 121 pair positions: 7 and 50 leave remainders.
  for chunk in (7, 50):
    got = embedding(pair, templates, pair_mask, ChunkPlan(template_pointwise_attention=chunk))
    tolerance.assert_close(got, want, spread,
                           what=f'template point-wise attention chunk={chunk}')


@pytest.mark.slow  # two compiles of the tiny model: about 2 minutes on 2 CPU cores
def test_whole_model_chunked_equals_unchunked():
  """End to end (tiny config, one recycle): every op kind chunked at once changes nothing."""
  cfg = tiny_config(**{'model.num_recycle': 1})
  model = build_model(cfg.model, seed=1)
  # Perturb every parameter so that no zero-initialised output layer hides a difference.
  graphdef, state = nnx.split(model)
  leaves, treedef = jax.tree_util.tree_flatten(state)
  keys = jax.random.split(jax.random.key(7), len(leaves))
  state = jax.tree_util.tree_unflatten(
      treedef, [x + 0.05 * jax.random.normal(k, x.shape, x.dtype) for x, k in zip(leaves, keys)])
  feats = select_features(random_batch(seed=4, n_res=N_RES, n_slices=2), use_templates=True)

  def compiled(plan):
    # One executable per plan: the plan is static, closed over; the weights are an argument.
    forward = jax.jit(lambda s, f: nnx.merge(graphdef, s)(f, plan))

    def run(state):
      out = forward(state, feats)
      return {'pos': out['structure_module']['final_atom_positions'], 'plddt': out['plddt'],
              'distogram': out['distogram']['logits'],
              'pair': out['representations']['pair']}

    return run

  unchunked = compiled(ChunkPlan())
  want = unchunked(state)
  assert np.isfinite(want['pos']).all() and np.abs(want['pos']).max() > 1
  got = compiled(ChunkPlan(**{**{f.name: 3 for f in dataclasses.fields(ChunkPlan)},
                              'template_pointwise_attention': 17}))(state)
  tolerance.assert_close(got, want, tolerance.spread(unchunked, state), what='every op chunked')
