"""AlphaFold-Multimer's parts of the one trunk (`evoformer.EmbeddingsAndEvoformer`).

Evans et al. (2021) Suppl. 2. The blocks are the monomer's (`evoformer.EvoformerIteration`,
with the outer product mean first, as the multimer config says); what differs is
the input side: the MSA is sampled and masked here from the raw alignment (so
every recycle draws a fresh sample inside the compiled program), relative
positions know about chains, and templates are embedded per chain
(`template_multimer`). AlphaFold's scope: `evoformer`.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import nnx
from jax.sharding import Mesh

from af_jax.chunking import ChunkPlan
from af_jax.data import schema
from af_jax.model import embedders_multimer as emb
from af_jax.model import primitives
from af_jax.model.evoformer import EmbeddingsAndEvoformer
from af_jax.model.template_multimer import TemplateEmbeddingMultimer


class RelativeEncoding(nnx.Module):
  """Holds `position_activations` (AlphaFold's scope `~_relative_encoding`)."""

  def __init__(self, num_input: int, c_z: int, *, dtype=jnp.float32, rngs: nnx.Rngs):
    self.position_activations = primitives.Linear(num_input, c_z, dtype=dtype, rngs=rngs)

  def __call__(self, features: jax.Array) -> jax.Array:
    return self.position_activations(features)


@dataclasses.dataclass(frozen=True)
class MultimerInputs:
  """The trunk's input embedder part for complexes: samples the MSA from the raw features."""

  target_features = emb.TARGET_FEATURES
  msa_features = emb.MSA_FEATURES
  relpos_name = 'relative_encoding'

  def make_relpos(self, config, c_z: int, dtype, rngs: nnx.Rngs):
    """The chain-aware relative encoding, or None when the config has none."""
    if not config.max_relative_idx:
      return None
    n_rel = 2 * config.max_relative_idx + 2 + 1 + 2 * config.max_relative_chain + 2
    return RelativeEncoding(n_rel, c_z, dtype=dtype, rngs=rngs)

  def sample(self, config, batch: dict, msa_key: jax.Array) -> dict:
    """The iteration's MSA sample: cluster centres (BERT-masked), extra rows, profiles."""
    batch = dict(batch)
    batch['msa_mask'] = batch['msa_mask'].astype(jnp.float32)
    batch['deletion_matrix'] = batch['deletion_matrix'].astype(jnp.float32)
    batch['msa_profile'] = emb.msa_profile(batch['msa'], batch['msa_mask'])
    sample_key, mask_key = emb.iteration_keys(msa_key)
    batch = emb.sample_msa(sample_key, batch, config.num_msa)
    batch = emb.mask_msa(mask_key, batch, config.masked_msa)
    if config.use_cluster_profile:
      batch['cluster_profile'], batch['cluster_deletion_mean'] = (
          emb.nearest_neighbour_clusters(batch))
    return batch

  def features(self, config, batch: dict, msa_key: jax.Array) -> dict:
    """As `evoformer.MonomerInputs.features`, from this iteration's sample (`msa_key`)."""
    sampled = self.sample(config, batch, msa_key)
    extra_feat, extra_mask = emb.extra_msa_features(sampled, config.num_extra_msa)
    relpos = (emb.relative_encoding_features(batch, config.max_relative_idx,
                                             config.max_relative_chain)
              if config.max_relative_idx else None)
    return {'target_feat': jax.nn.one_hot(batch['aatype'], emb.TARGET_FEATURES),
            'msa_feat': emb.msa_features(sampled), 'msa_mask': sampled['msa_mask'],
            'extra_feat': extra_feat, 'extra_mask': extra_mask.astype(jnp.float32),
            'relpos': relpos}


@dataclasses.dataclass(frozen=True)
class MultimerTemplates:
  """The trunk's template embedder part for complexes: per-chain pairs, chi-angle rows."""

  single_features_dim = emb.TEMPLATE_SINGLE_FEATURES

  def torsion_rows(self, config) -> bool:
    del config  # Multimer always adds the template rows
    return True

  def make(self, config, *, c_z: int, zero_init: bool, dtype, rngs: nnx.Rngs):
    return TemplateEmbeddingMultimer(config, c_z=c_z, zero_init=zero_init, dtype=dtype,
                                     rngs=rngs)

  def embed(self, module, pair: jax.Array, batch: dict, mask_2d: jax.Array, plan: ChunkPlan,
            key: jax.Array | None, remat: bool, mesh: Mesh | None) -> jax.Array:
    templates = {k: batch[k] for k in schema.MULTIMER_TEMPLATES.names}
    same_chain = batch['asym_id'][:, None] == batch['asym_id'][None, :]
    return module(pair, templates, mask_2d, same_chain, plan, key, remat, mesh)

  def single_features(self, batch: dict, global_config) -> tuple[jax.Array, jax.Array]:
    del global_config
    return emb.template_single_features(batch)


MULTIMER_INPUTS = MultimerInputs()
MULTIMER_TEMPLATES = MultimerTemplates()


class EmbeddingsAndEvoformerMultimer(EmbeddingsAndEvoformer):
  """The one trunk with Multimer's parts; takes the iteration's MSA sampling key third.

  NUMERICS: as the monomer trunk, matmuls run in `primitives.compute_dtype`
  and the outputs are float32; sampling, features and geometry stay float32.
  """

  def __init__(self, config, global_config, *, rngs: nnx.Rngs):
    super().__init__(config, global_config, inputs=MULTIMER_INPUTS,
                     templates=MULTIMER_TEMPLATES, rngs=rngs)

  def sample(self, batch: dict, msa_key: jax.Array) -> dict:
    """The iteration's MSA sample (`MultimerInputs.sample`)."""
    return self.inputs.sample(self.config, batch, msa_key)

  def __call__(self, batch: dict, prev: dict, msa_key: jax.Array,
               plan: ChunkPlan = ChunkPlan(), key: jax.Array | None = None,
               mesh: Mesh | None = None) -> dict:
    """`EmbeddingsAndEvoformer.__call__` on raw multimer features (`data.schema.MULTIMER`).

    msa_key is this iteration's sampling key (`embedders_multimer.iteration_keys`);
    `msa` of the result is the sampled rows.
    """
    return super().__call__(batch, prev, plan, key, mesh, msa_key=msa_key)
