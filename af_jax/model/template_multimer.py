"""AlphaFold-Multimer's template embedding. Evans et al. (2021) Suppl. 2.3.

DIFFERS FROM THE MONOMER (template.py): each template's pair features enter
through one Linear per feature (`template_pair_embedding_0..8`, the last one of
the layer-normed query pair), the templates are averaged instead of attended
over, and distances between chains are masked out (templates are per chain).
AlphaFold's scope: `evoformer/template_embedding`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx
from jax.sharding import Mesh

from af_jax.chunking import ChunkPlan
from af_jax.data import schema
from af_jax.model import embedders_multimer, primitives, stack
from af_jax.model.template import MULTIMER_ORDER, TemplatePairBlock
from af_jax.parallel import NO_DAP, Dap
from af_jax.parallel import dap as dap_lib
from af_jax.parallel.mesh import dap_size, round_up

# Input channels of template_pair_embedding_0..7 (`()`: a scalar per pair);
# the 9th takes the query pair (c_z channels).
_PAIR_INPUTS = (39, (), 22, 22, (), (), (), ())
_COLUMN_FEATURE = 2  # aatype of j, [1, N_res, 22]: the same for every row


class SingleTemplateEmbedding(nnx.Module):
  """One template -> [N_res, N_res, c_t]: feature Linears, pair stack, layer norm."""

  def __init__(self, config, *, c_z: int, zero_init: bool = True, dtype=jnp.float32,
               rngs: nnx.Rngs):
    c_t = config.num_channels
    self.config = config
    self.query_embedding_norm = primitives.LayerNorm(c_z)
    for i, n_in in enumerate(_PAIR_INPUTS + (c_z,)):
      setattr(self, f'template_pair_embedding_{i}',
              primitives.Linear(n_in, c_t, initializer='relu', dtype=dtype, rngs=rngs))
    self.template_embedding_iteration = stack.create(
        lambda r: TemplatePairBlock(config.template_pair_stack, c_t=c_t, zero_init=zero_init,
                                    dtype=dtype, order=MULTIMER_ORDER, rngs=r),
        config.template_pair_stack.num_block, rngs)
    self.output_layer_norm = primitives.LayerNorm(c_t)

  def __call__(self, query_rows: jax.Array, template: dict, mask_2d: jax.Array,
               multichain_mask: jax.Array, plan: ChunkPlan = ChunkPlan(),
               key: jax.Array | None = None, remat: bool = False,
               dap: Dap = NO_DAP) -> jax.Array:
    """Args: query_rows: this device's rows of the pair; template: one template's features.

    mask_2d and multichain_mask [N_res, N_res] are whole. Returns this device's rows.
    """
    feats = embedders_multimer.template_pair_features(
        template['template_aatype'], template['template_all_atom_positions'],
        template['template_all_atom_mask'], multichain_mask, self.config)
    # NUMERICS: features are float32; each Linear casts at its matmul.
    feats = [f if i == _COLUMN_FEATURE else dap.rows(f) for i, f in enumerate(feats)]
    act = self.template_pair_embedding_8(self.query_embedding_norm(query_rows))
    for i, f in enumerate(feats):
      act = act + getattr(self, f'template_pair_embedding_{i}')(f)
    keys = (jax.random.split(key, self.config.template_pair_stack.num_block)
            if key is not None else None)
    body = lambda block, p, k: block(p, mask_2d, plan, k, dap)  # noqa: E731
    act = stack.scan(self.template_embedding_iteration, body, act, keys, remat=remat)
    return self.output_layer_norm(act)


class TemplateEmbeddingMultimer(nnx.Module):
  """All templates: mean of their embeddings, relu, `output_linear` to c_z."""

  def __init__(self, config, *, c_z: int, zero_init: bool = True, dtype=jnp.float32,
               rngs: nnx.Rngs):
    self.single_template_embedding = SingleTemplateEmbedding(config, c_z=c_z,
                                                             zero_init=zero_init, dtype=dtype,
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
        emb = self.single_template_embedding(pair_rows, template, mask_2d, chain_mask, plan, k,
                                             remat, dap)
        return total + emb, None

      c_t = self.single_template_embedding.config.num_channels
      # zeros_like, not zeros: under DAP the carry must vary over `dap` like the rows it
      # sums (scan in shard_map rejects a replicated initial carry).
      zero = jnp.zeros_like(pair_rows, shape=pair_rows.shape[:2] + (c_t,))
      total, _ = jax.lax.scan(add, zero, (per_residue, keys))
      return self.output_linear(jax.nn.relu(total / n_templ))

    return dap_lib.pair_stack(apply, mesh, pair, mask_2d, per_residue, chain_mask)
