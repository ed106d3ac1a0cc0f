"""AlphaFold-Multimer's template embedding. Evans et al. (2021) Suppl. 2.3.

The embedding of one template is the monomer's `template.SingleTemplateEmbedding`
given Multimer's part (`MULTIMER_TEMPLATE_FEATURES`). DIFFERS FROM THE MONOMER:
each template's pair features enter through one Linear per feature
(`template_pair_embedding_0..8`, the last one of the layer-normed query pair),
the templates are averaged instead of attended over, and distances between
chains are masked out (templates are per chain).
AlphaFold's scope: `evoformer/template_embedding`.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import nnx
from jax.sharding import Mesh

from af_jax.chunking import ChunkPlan
from af_jax.data import schema
from af_jax.model import embedders_multimer, primitives, stack
from af_jax.model.template import (MULTIMER_ORDER, SingleTemplateEmbedding,
                                   TemplatePairBlock, run_pair_stack)
from af_jax.parallel import Dap
from af_jax.parallel import dap as dap_lib
from af_jax.parallel.mesh import dap_size, round_up

# Input channels of template_pair_embedding_0..7 (`()`: a scalar per pair);
# the 9th takes the query pair (c_z channels).
_PAIR_INPUTS = (39, (), 22, 22, (), (), (), ())
_COLUMN_FEATURE = 2  # aatype of j, [1, N_res, 22]: the same for every row


@dataclasses.dataclass(frozen=True)
class MultimerTemplateFeatures:
  """Multimer's part of `template.SingleTemplateEmbedding`.

  The pair features enter through `template_pair_embedding_0..7` and the
  layer-normed query pair (`query_embedding_norm`) through
  `template_pair_embedding_8`; then `template_embedding_iteration` (blocks in
  MULTIMER_ORDER); c_t = `num_channels`.
  """

  stack_name = 'template_embedding_iteration'

  def channels(self, config) -> int:
    return config.num_channels

  def make_embedding(self, module: nnx.Module, config, *, c_t: int, c_z: int, dtype,
                     rngs: nnx.Rngs) -> None:
    del config
    module.query_embedding_norm = primitives.LayerNorm(c_z)
    for i, n_in in enumerate(_PAIR_INPUTS + (c_z,)):
      setattr(module, f'template_pair_embedding_{i}',
              primitives.Linear(n_in, c_t, initializer='relu', dtype=dtype, rngs=rngs))

  def make_stack(self, config, *, c_t: int, zero_init: bool, dtype, rngs: nnx.Rngs):
    return stack.create(
        lambda r: TemplatePairBlock(config.template_pair_stack, c_t=c_t, zero_init=zero_init,
                                    dtype=dtype, order=MULTIMER_ORDER, rngs=r),
        config.template_pair_stack.num_block, rngs)

  def embed(self, module: nnx.Module, template: dict, dap: Dap, query_rows: jax.Array,
            multichain_mask: jax.Array) -> jax.Array:
    """This device's rows of the embedded template, before the stack."""
    feats = embedders_multimer.template_pair_features(
        template['template_aatype'], template['template_all_atom_positions'],
        template['template_all_atom_mask'], multichain_mask, module.config)
    # NUMERICS: features are float32; each Linear casts at its matmul.
    feats = [f if i == _COLUMN_FEATURE else dap.rows(f) for i, f in enumerate(feats)]
    act = module.template_pair_embedding_8(module.query_embedding_norm(query_rows))
    for i, f in enumerate(feats):
      act = act + getattr(module, f'template_pair_embedding_{i}')(f)
    return act

  def run_stack(self, layer_stack, config, act: jax.Array, mask_2d: jax.Array,
                plan: ChunkPlan, key: jax.Array | None, remat: bool, dap: Dap) -> jax.Array:
    return run_pair_stack(layer_stack, config.template_pair_stack.num_block, act, mask_2d,
                          plan, key, remat, dap)


MULTIMER_TEMPLATE_FEATURES = MultimerTemplateFeatures()


class TemplateEmbeddingMultimer(nnx.Module):
  """All templates: mean of their embeddings, relu, `output_linear` to c_z."""

  def __init__(self, config, *, c_z: int, zero_init: bool = True, dtype=jnp.float32,
               rngs: nnx.Rngs):
    self.single_template_embedding = SingleTemplateEmbedding(
        config, features=MULTIMER_TEMPLATE_FEATURES, c_z=c_z, zero_init=zero_init, dtype=dtype,
        rngs=rngs)
    self.output_linear = primitives.Linear(config.num_channels, c_z, initializer='relu',
                                           dtype=dtype, rngs=rngs)

  @jax.named_scope('template_embedding')
  def __call__(self, pair: jax.Array, templates: dict, mask_2d: jax.Array,
               multichain_mask: jax.Array, plan: ChunkPlan = ChunkPlan(),
               key: jax.Array | None = None, remat: bool = False,
               mesh: Mesh | None = None) -> jax.Array:
    """Args: pair [N_res, N_res, c_z]; templates with a leading N_templ axis.

    Returns the template update to the pair, [N_res, N_res, c_z].

    NUMERICS: the sum is divided by the number of template slots, empty ones
    included, as AlphaFold-Multimer does (an absent template embeds to the
    layer-normed stack output of its zero features, not to zero).
    """
    n_templ = templates['template_aatype'].shape[0]
    keys = jax.random.split(key, n_templ) if key is not None else None
    n_padded = round_up(pair.shape[0], dap_size(mesh))
    per_residue = {k: dap_lib.pad_residues(templates[k], n_padded, (1,))
                   for k in schema.MULTIMER_TEMPLATES.names}
    chain_mask = dap_lib.pad_residues(multichain_mask.astype(jnp.float32), n_padded, (0, 1))

    def apply(dap, pair_rows, mask_2d, per_residue, chain_mask):
      def add(total, xs):
        template, k = xs
        emb = self.single_template_embedding(template, mask_2d, plan, k, remat, dap,
                                             query_rows=pair_rows, multichain_mask=chain_mask)
        return total + emb, None

      c_t = self.single_template_embedding.config.num_channels
      # zeros_like, not zeros: under DAP the carry must vary over `dap` like the rows it
      # sums (scan in shard_map rejects a replicated initial carry).
      zero = jnp.zeros_like(pair_rows, shape=pair_rows.shape[:2] + (c_t,))
      total, _ = jax.lax.scan(add, zero, (per_residue, keys))
      return self.output_linear(jax.nn.relu(total / n_templ))

    return dap_lib.pair_stack(apply, mesh, pair, mask_2d, per_residue, chain_mask)
