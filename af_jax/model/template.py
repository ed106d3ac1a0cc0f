"""Template embedding: template pair stack and point-wise attention.

Jumper et al. (2021) Suppl. Alg. 2 lines 9-13, Alg. 16 (TemplatePairStack) and
Alg. 17 (TemplatePointwiseAttention).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import nnx
from jax.sharding import Mesh

from af_jax.chunking import ChunkPlan, axial_map
from af_jax.model import dropout, embedders, primitives, stack
from af_jax.model.attention import Attention
from af_jax.model.transition import Transition
from af_jax.model.triangle import TriangleAttention, TriangleMultiplication
from af_jax.parallel import NO_DAP, Dap
from af_jax.parallel import dap as dap_lib
from af_jax.parallel.mesh import dap_size, round_up


# Each op of a template pair block, in the layout it runs in (DAP rows/columns).
_LAYOUT = {'triangle_attention_starting_node': 'rows', 'triangle_attention_ending_node': 'columns',
           'triangle_multiplication_outgoing': 'rows',
           'triangle_multiplication_incoming': 'columns', 'pair_transition': 'columns'}
# DIFFERS FROM THE EVOFORMER: the monomer's template stack runs triangle
# attention before triangle multiplication (Alg. 16); AlphaFold-Multimer's runs
# them in the Evoformer's order.
MONOMER_ORDER = ('triangle_attention_starting_node', 'triangle_attention_ending_node',
                 'triangle_multiplication_outgoing', 'triangle_multiplication_incoming',
                 'pair_transition')
MULTIMER_ORDER = ('triangle_multiplication_outgoing', 'triangle_multiplication_incoming',
                  'triangle_attention_starting_node', 'triangle_attention_ending_node',
                  'pair_transition')


class TemplatePairBlock(nnx.Module):
  """One block of the template pair stack. Jumper et al. (2021) Suppl. Alg. 16 lines 2-6.

  `order` is MONOMER_ORDER or MULTIMER_ORDER.
  """

  def __init__(self, config, *, c_t: int, zero_init: bool = True, dtype=jnp.float32,
               order: tuple[str, ...] = MONOMER_ORDER, rngs: nnx.Rngs):
    kw = dict(c_z=c_t, zero_init=zero_init, dtype=dtype, rngs=rngs)
    self.config = config
    self.order = order
    self.triangle_attention_starting_node = TriangleAttention(
        config.triangle_attention_starting_node, **kw)
    self.triangle_attention_ending_node = TriangleAttention(
        config.triangle_attention_ending_node, **kw)
    self.triangle_multiplication_outgoing = TriangleMultiplication(
        config.triangle_multiplication_outgoing, **kw)
    self.triangle_multiplication_incoming = TriangleMultiplication(
        config.triangle_multiplication_incoming, **kw)
    self.pair_transition = Transition(config.pair_transition, c=c_t, zero_init=zero_init,
                                      dtype=dtype, rngs=rngs)

  def __call__(self, pair: jax.Array, pair_mask: jax.Array, plan: ChunkPlan = ChunkPlan(),
               key: jax.Array | None = None, dap: Dap = NO_DAP) -> jax.Array:
    """Under DAP, pair is this device's rows in and out; pair_mask is whole."""
    c = self.config
    keys = list(jax.random.split(key, 5)) if key is not None else [None] * 5
    ta, tm = plan.triangle_attention, plan.triangle_multiplication
    masks = {'rows': dap.rows(pair_mask), 'columns': dap.columns(pair_mask)}
    layout = 'rows'
    chunks = {'triangle_attention_starting_node': ta, 'triangle_attention_ending_node': ta,
              'triangle_multiplication_outgoing': tm, 'triangle_multiplication_incoming': tm,
              'pair_transition': plan.pair_transition}
    for name in self.order:
      chunk, want = chunks[name], _LAYOUT[name]
      if want != layout:
        pair = dap.to_columns(pair) if want == 'columns' else dap.to_rows(pair)
        layout = want
      op = getattr(self, name)
      args = (pair, masks[layout], chunk) + ((dap,) if name != 'pair_transition' else ())
      pair = dropout.residual(pair, lambda r, op=op, args=args: op(*args, residual=r), c[name],
                              keys.pop(), dap, 0 if layout == 'rows' else 1)
    return dap.to_rows(pair) if layout == 'columns' else pair


def run_pair_stack(layer_stack, num_block: int, pair: jax.Array, pair_mask: jax.Array,
                   plan: ChunkPlan = ChunkPlan(), key: jax.Array | None = None,
                   remat: bool = False, dap: Dap = NO_DAP) -> jax.Array:
  """`num_block` stacked TemplatePairBlocks (`stack.create`) over one template's pair."""
  keys = jax.random.split(key, num_block) if key is not None else None
  body = lambda block, p, k: block(p, pair_mask, plan, k, dap)  # noqa: E731
  return stack.scan(layer_stack, body, pair, keys, remat=remat)


class TemplatePairStack(nnx.Module):
  """`num_block` TemplatePairBlocks, stacked (AlphaFold's `__layer_stack_no_state`)."""

  def __init__(self, config, *, c_t: int, zero_init: bool = True, dtype=jnp.float32,
               rngs: nnx.Rngs):
    self.num_block = config.num_block
    self.layer_stack = stack.create(
        lambda r: TemplatePairBlock(config, c_t=c_t, zero_init=zero_init, dtype=dtype, rngs=r),
        config.num_block, rngs) if config.num_block else None

  def __call__(self, pair: jax.Array, pair_mask: jax.Array, plan: ChunkPlan = ChunkPlan(),
               key: jax.Array | None = None, remat: bool = False,
               dap: Dap = NO_DAP) -> jax.Array:
    if self.layer_stack is None:
      return pair
    return run_pair_stack(self.layer_stack, self.num_block, pair, pair_mask, plan, key, remat,
                          dap)


@dataclasses.dataclass(frozen=True)
class MonomerTemplateFeatures:
  """The monomer's part of `SingleTemplateEmbedding`: how a template's pair is embedded.

  One Linear `embedding2d` of the concatenated pair features (Alg. 2 line 9),
  then `template_pair_stack` (blocks in MONOMER_ORDER); c_t is the stack's
  triangle-attention value_dim. Multimer's is `template_multimer.MultimerTemplateFeatures`.
  A part is stateless: the Linears and the stack it makes are the embedding's.
  """

  stack_name = 'template_pair_stack'

  def channels(self, config) -> int:
    return config.template_pair_stack.triangle_attention_ending_node.value_dim

  def make_embedding(self, module: nnx.Module, config, *, c_t: int, c_z: int | None, dtype,
                     rngs: nnx.Rngs) -> None:
    del config, c_z  # the monomer's embedding does not read the query pair
    module.embedding2d = primitives.Linear(embedders.TEMPLATE_PAIR_FEATURES, c_t,
                                           initializer='relu', dtype=dtype, rngs=rngs)

  def make_stack(self, config, *, c_t: int, zero_init: bool, dtype, rngs: nnx.Rngs):
    return TemplatePairStack(config.template_pair_stack, c_t=c_t, zero_init=zero_init,
                             dtype=dtype, rngs=rngs)

  def embed(self, module: nnx.Module, template: dict, dap: Dap, query_rows: jax.Array | None,
            multichain_mask: jax.Array | None) -> jax.Array:
    """This device's rows of the embedded template, before the stack."""
    del query_rows, multichain_mask
    # NUMERICS: the features (distances, unit vectors) are float32; the
    # embedding casts them to the compute dtype at its matmul.
    act = dap.rows(embedders.template_pair_features(template, module.config))
    return module.embedding2d(act)

  def run_stack(self, layer_stack, config, act: jax.Array, mask_2d: jax.Array,
                plan: ChunkPlan, key: jax.Array | None, remat: bool, dap: Dap) -> jax.Array:
    del config
    return layer_stack(act, mask_2d, plan, key, remat, dap)


MONOMER_TEMPLATE_FEATURES = MonomerTemplateFeatures()


class SingleTemplateEmbedding(nnx.Module):
  """Embeds one template into a [N_res, N_res, c_t] pair. Alg. 2 lines 9 and 11.

  The pair features are embedded, run through the template pair stack and
  layer-normed (`output_layer_norm`). `features` is the part that differs
  between the models: MONOMER_TEMPLATE_FEATURES, or Multimer's
  (`template_multimer.MULTIMER_TEMPLATE_FEATURES`, which also reads the query
  pair, `c_z` channels, and masks distances between chains).
  """

  def __init__(self, config, *, features=MONOMER_TEMPLATE_FEATURES, c_z: int | None = None,
               zero_init: bool = True, dtype=jnp.float32, rngs: nnx.Rngs):
    c_t = features.channels(config)
    self.config = config
    self.features = features
    features.make_embedding(self, config, c_t=c_t, c_z=c_z, dtype=dtype, rngs=rngs)
    setattr(self, features.stack_name,
            features.make_stack(config, c_t=c_t, zero_init=zero_init, dtype=dtype, rngs=rngs))
    self.output_layer_norm = primitives.LayerNorm(c_t)

  def __call__(self, template: dict, mask_2d: jax.Array, plan: ChunkPlan = ChunkPlan(),
               key: jax.Array | None = None, remat: bool = False, dap: Dap = NO_DAP, *,
               query_rows: jax.Array | None = None,
               multichain_mask: jax.Array | None = None) -> jax.Array:
    """Args: template: one template's `template_*` features; mask_2d [N_res, N_res] padding.

    query_rows (this device's rows of the pair) and multichain_mask [N_res, N_res]
    are for Multimer's features. Under DAP, returns this device's rows of the
    embedded template; the masks are whole.
    """
    act = self.features.embed(self, template, dap, query_rows, multichain_mask)
    act = self.features.run_stack(getattr(self, self.features.stack_name), self.config, act,
                                  mask_2d, plan, key, remat, dap)
    return self.output_layer_norm(act)


class TemplateEmbedding(nnx.Module):
  """All templates, combined by point-wise attention from the pair. Alg. 17."""

  def __init__(self, config, *, c_z: int, zero_init: bool = True, dtype=jnp.float32,
               rngs: nnx.Rngs):
    c_t = config.template_pair_stack.triangle_attention_ending_node.value_dim
    a = config.attention
    self.single_template_embedding = SingleTemplateEmbedding(config, zero_init=zero_init,
                                                             dtype=dtype, rngs=rngs)
    self.attention = Attention(c_z, c_t, c_z, num_head=a.num_head, key_dim=a.key_dim,
                               value_dim=a.value_dim, gating=a.gating, zero_init=zero_init,
                               dtype=dtype, rngs=rngs)

  @jax.named_scope('template_embedding')
  def __call__(self, pair: jax.Array, templates: dict, mask_2d: jax.Array,
               plan: ChunkPlan = ChunkPlan(), key: jax.Array | None = None,
               remat: bool = False, mesh: Mesh | None = None) -> jax.Array:
    """Args: pair [N_res, N_res, c_z]; templates: `template_*` with a leading N_templ axis.

    With a `mesh`, the template pair stacks and the point-wise attention run on
    the pair's rows over its `dap` axis. Returns the template update to the
    pair, [N_res, N_res, c_z].
    """
    template_mask = templates['template_mask'].astype(jnp.float32)
    n_templ = template_mask.shape[0]
    keys = jax.random.split(key, n_templ) if key is not None else None
    # Residue axes padded to what the sharded pair holds (no-op on one device).
    n_padded = round_up(pair.shape[0], dap_size(mesh))
    per_residue = {k: dap_lib.pad_residues(v, n_padded, (1,))
                   for k, v in templates.items() if k != 'template_mask'}

    def apply(dap, pair_rows, mask_2d, per_residue):
      n_rows, n_res, c_z = pair_rows.shape

      # PERF: one template at a time bounds memory to one [N_res, N_res, c_t].
      def embed(xs):
        template, k = xs
        return self.single_template_embedding(template, mask_2d, plan, k, remat, dap)

      per_template = jax.lax.map(embed, (per_residue, keys))
      c_t = per_template.shape[-1]
      # Alg. 17: each pair position attends over its templates.
      query = pair_rows.reshape(n_rows * n_res, 1, c_z)
      # PERF: the templates stay [T, positions, c_t] and each chunk slices its positions
      # where they lie; a transposed [positions, T, c_t] copy would be a second whole stack
      # of template outputs, the largest buffer of the template embedding at long L.
      memory = per_template.reshape(n_templ, n_rows * n_res, c_t)
      bias = primitives.mask_to_bias(template_mask)[None, None, :]
      out = axial_map(lambda q, m: self.attention(q, m, bias), (query, memory), axis=(0, 1),
                      chunk=plan.template_pointwise_attention)
      return out.reshape(n_rows, n_res, c_z)

    out = dap_lib.pair_stack(apply, mesh, pair, mask_2d, per_residue)
    # No update (and no gradient) when there is no template at all.
    return out * (jnp.sum(template_mask) > 0).astype(out.dtype)
