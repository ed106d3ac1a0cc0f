"""Parity of each Evoformer op and a whole block against the reference (float32)."""

import haiku as hk
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from alphafold.model import modules, prng
from flax import nnx

from af_jax.model.evoformer import EvoformerIteration
from af_jax.model.msa import (MSAColumnAttention, MSAColumnGlobalAttention,
                              MSARowAttentionWithPairBias)
from af_jax.model.outer_product_mean import OuterProductMean
from af_jax.model.transition import Transition
from af_jax.model.triangle import TriangleAttention, TriangleMultiplication
from tests.parity import ref_utils

N_SEQ, N_RES, C_M, C_Z = 7, 13, 256, 128
TOL = 1e-5


@pytest.fixture(scope='module')
def cfg():
  return ref_utils.ref_model_config('model_1_ptm')


def _inputs(seed, n_seq=N_SEQ, c_m=C_M):
  rng = np.random.default_rng(seed)
  msa = rng.normal(size=(n_seq, N_RES, c_m)).astype(np.float32)
  pair = rng.normal(size=(N_RES, N_RES, C_Z)).astype(np.float32)
  msa_mask = (rng.random((n_seq, N_RES)) > 0.2).astype(np.float32)
  msa_mask[:, -2:] = 0.0  # padded residues
  seq_mask = np.ones(N_RES, np.float32)
  seq_mask[-2:] = 0.0
  pair_mask = seq_mask[:, None] * seq_mask[None, :]
  return msa, pair, msa_mask, pair_mask


def _check(ours, ref):
  err = ref_utils.rel_err(ours, ref)
  assert err <= TOL, f'relative error {err:.2e} > {TOL:.0e}'


@pytest.mark.parametrize('chunk', [None, 3])
def test_msa_row_attention(cfg, chunk):
  c = cfg.model.embeddings_and_evoformer.evoformer.msa_row_attention_with_pair_bias
  gc = cfg.model.global_config
  msa, pair, msa_mask, _ = _inputs(1)
  ref, flat = ref_utils.run_ref(
      lambda m, mm, p: modules.MSARowAttentionWithPairBias(c, gc)(m, mm, p), msa, msa_mask, pair)
  mod = MSARowAttentionWithPairBias(c, c_m=C_M, c_z=C_Z, rngs=nnx.Rngs(0))
  ref_utils.load_into(mod, flat, 'msa_row_attention_with_pair_bias')
  _check(mod(jnp.asarray(msa), jnp.asarray(msa_mask), jnp.asarray(pair), chunk), ref)


@pytest.mark.parametrize('chunk', [None, 4])
def test_msa_column_attention(cfg, chunk):
  c = cfg.model.embeddings_and_evoformer.evoformer.msa_column_attention
  gc = cfg.model.global_config
  msa, _, msa_mask, _ = _inputs(2)
  ref, flat = ref_utils.run_ref(lambda m, mm: modules.MSAColumnAttention(c, gc)(m, mm),
                                msa, msa_mask)
  mod = MSAColumnAttention(c, c_m=C_M, rngs=nnx.Rngs(0))
  ref_utils.load_into(mod, flat, 'msa_column_attention')
  _check(mod(jnp.asarray(msa), jnp.asarray(msa_mask), chunk), ref)


def test_msa_column_global_attention(cfg):
  c = cfg.model.embeddings_and_evoformer.evoformer.msa_column_attention
  gc = cfg.model.global_config
  msa, _, msa_mask, _ = _inputs(3, n_seq=19, c_m=64)
  ref, flat = ref_utils.run_ref(lambda m, mm: modules.MSAColumnGlobalAttention(c, gc)(m, mm),
                                msa, msa_mask)
  mod = MSAColumnGlobalAttention(c, c_m=64, rngs=nnx.Rngs(0))
  ref_utils.load_into(mod, flat, 'msa_column_global_attention')
  _check(mod(jnp.asarray(msa), jnp.asarray(msa_mask), 5), ref)


@pytest.mark.parametrize('name', ['triangle_attention_starting_node',
                                  'triangle_attention_ending_node'])
def test_triangle_attention(cfg, name):
  c = cfg.model.embeddings_and_evoformer.evoformer[name]
  gc = cfg.model.global_config
  _, pair, _, pair_mask = _inputs(4)
  ref, flat = ref_utils.run_ref(
      lambda p, m: modules.TriangleAttention(c, gc, name=name)(p, m), pair, pair_mask)
  mod = TriangleAttention(c, c_z=C_Z, rngs=nnx.Rngs(0))
  ref_utils.load_into(mod, flat, name)
  _check(mod(jnp.asarray(pair), jnp.asarray(pair_mask)), ref)
  _check(mod(jnp.asarray(pair), jnp.asarray(pair_mask), 5), ref)


@pytest.mark.parametrize('fused', [True, False])
@pytest.mark.parametrize('name', ['triangle_multiplication_outgoing',
                                  'triangle_multiplication_incoming'])
def test_triangle_multiplication(cfg, name, fused):
  c = cfg.model.embeddings_and_evoformer.evoformer[name]
  c.fuse_projection_weights = fused
  gc = cfg.model.global_config
  _, pair, _, pair_mask = _inputs(5)
  ref, flat = ref_utils.run_ref(
      lambda p, m: modules.TriangleMultiplication(c, gc, name=name)(p, m), pair, pair_mask)
  mod = TriangleMultiplication(c, c_z=C_Z, rngs=nnx.Rngs(0))
  ref_utils.load_into(mod, flat, name)
  _check(mod(jnp.asarray(pair), jnp.asarray(pair_mask)), ref)
  _check(mod(jnp.asarray(pair), jnp.asarray(pair_mask), 4), ref)


def test_outer_product_mean(cfg):
  c = cfg.model.embeddings_and_evoformer.evoformer.outer_product_mean
  gc = cfg.model.global_config
  msa, _, msa_mask, _ = _inputs(6)
  ref, flat = ref_utils.run_ref(
      lambda m, mm: modules.OuterProductMean(c, gc, C_Z)(m, mm), msa, msa_mask)
  mod = OuterProductMean(c, c_m=C_M, c_z=C_Z, rngs=nnx.Rngs(0))
  ref_utils.load_into(mod, flat, 'outer_product_mean')
  _check(mod(jnp.asarray(msa), jnp.asarray(msa_mask)), ref)
  _check(mod(jnp.asarray(msa), jnp.asarray(msa_mask), 4), ref)


@pytest.mark.parametrize('name,channels', [('msa_transition', C_M), ('pair_transition', C_Z)])
def test_transition(cfg, name, channels):
  c = cfg.model.embeddings_and_evoformer.evoformer[name]
  gc = cfg.model.global_config
  rng = np.random.default_rng(7)
  act = rng.normal(size=(9, N_RES, channels)).astype(np.float32)
  mask = np.ones(act.shape[:2], np.float32)
  ref, flat = ref_utils.run_ref(lambda a, m: modules.Transition(c, gc, name=name)(a, m), act, mask)
  mod = Transition(c, c=channels, rngs=nnx.Rngs(0))
  ref_utils.load_into(mod, flat, name)
  _check(mod(jnp.asarray(act), jnp.asarray(mask), 2), ref)


@pytest.mark.parametrize('is_extra_msa', [False, True])
def test_evoformer_block(cfg, is_extra_msa):
  c = cfg.model.embeddings_and_evoformer.evoformer
  gc = cfg.model.global_config
  c_m = 64 if is_extra_msa else C_M
  name = 'extra_msa_stack' if is_extra_msa else 'evoformer_iteration'
  msa, pair, msa_mask, pair_mask = _inputs(8, c_m=c_m)

  def ref_fn(m, p, mm, pm):
    block = modules.EvoformerIteration(c, gc, is_extra_msa=is_extra_msa, name=name)
    out = block({'msa': m, 'pair': p}, {'msa': mm, 'pair': pm}, is_training=False,
                safe_key=prng.SafeKey(hk.next_rng_key()))
    return out['msa'], out['pair']

  (ref_msa, ref_pair), flat = ref_utils.run_ref(ref_fn, msa, pair, msa_mask, pair_mask)
  mod = EvoformerIteration(c, c_m=c_m, c_z=C_Z, is_extra_msa=is_extra_msa, rngs=nnx.Rngs(0))
  ref_utils.load_into(mod, flat, name)
  out_msa, out_pair = jax.jit(lambda *a: mod(*a))(msa, pair, msa_mask, pair_mask)
  _check(out_msa, ref_msa)
  _check(out_pair, ref_pair)
