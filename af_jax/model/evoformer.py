"""One Evoformer block (main trunk or extra-MSA stack). Jumper et al. (2021) Suppl. Alg. 6 and 18."""

from __future__ import annotations

import chex
import jax
from flax import nnx

from af_jax.chunking import ChunkPlan
from af_jax.model import dropout
from af_jax.model.msa import (MSAColumnAttention, MSAColumnGlobalAttention,
                              MSARowAttentionWithPairBias)
from af_jax.model.outer_product_mean import OuterProductMean
from af_jax.model.transition import Transition
from af_jax.model.triangle import TriangleAttention, TriangleMultiplication


class EvoformerIteration(nnx.Module):
  """MSA and pair updates of one block.

  With `is_extra_msa` the column attention is global (Alg. 19) and the module
  is AlphaFold's `extra_msa_stack` block; otherwise `evoformer_iteration`.
  """

  def __init__(self, config, *, c_m: int, c_z: int, is_extra_msa: bool,
               zero_init: bool = True, rngs: nnx.Rngs):
    kw = dict(zero_init=zero_init, rngs=rngs)
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

  def __call__(self, msa: jax.Array, pair: jax.Array, msa_mask: jax.Array,
               pair_mask: jax.Array, plan: ChunkPlan = ChunkPlan(),
               key: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
    """Args: msa [N_seq, N_res, c_m]; pair [N_res, N_res, c_z]; masks [N_seq, N_res], [N_res, N_res].

    `key` enables dropout (training). Returns the updated (msa, pair).
    """
    chex.assert_rank([msa, pair, msa_mask, pair_mask], [3, 3, 2, 2])
    c = self.config
    keys = list(jax.random.split(key, 10)) if key is not None else [None] * 10

    def add(act, update, cfg):
      return dropout.residual(act, update, cfg, keys.pop())

    opm = lambda m: self.outer_product_mean(m, msa_mask, plan.outer_product_mean)  # noqa: E731
    if c.outer_product_mean.first:
      pair = add(pair, opm(msa), c.outer_product_mean)
    # Alg. 6 lines 2-4: MSA stack.
    msa = add(msa, self.msa_row_attention_with_pair_bias(msa, msa_mask, pair,
                                                          plan.msa_row_attention),
              c.msa_row_attention_with_pair_bias)
    if self.is_extra_msa:
      update = self.msa_column_global_attention(msa, msa_mask, plan.msa_column_global_attention)
    else:
      update = self.msa_column_attention(msa, msa_mask, plan.msa_column_attention)
    msa = add(msa, update, c.msa_column_attention)
    msa = add(msa, self.msa_transition(msa, msa_mask, plan.msa_transition), c.msa_transition)
    # Alg. 6 line 5: communication.
    if not c.outer_product_mean.first:
      pair = add(pair, opm(msa), c.outer_product_mean)
    # Alg. 6 lines 6-10: pair stack.
    tm, ta = plan.triangle_multiplication, plan.triangle_attention
    pair = add(pair, self.triangle_multiplication_outgoing(pair, pair_mask, tm),
               c.triangle_multiplication_outgoing)
    pair = add(pair, self.triangle_multiplication_incoming(pair, pair_mask, tm),
               c.triangle_multiplication_incoming)
    pair = add(pair, self.triangle_attention_starting_node(pair, pair_mask, ta),
               c.triangle_attention_starting_node)
    pair = add(pair, self.triangle_attention_ending_node(pair, pair_mask, ta),
               c.triangle_attention_ending_node)
    pair = add(pair, self.pair_transition(pair, pair_mask, plan.pair_transition),
               c.pair_transition)
    return msa, pair
