"""Predictor: AlphaFold parameters + a processed feature batch -> outputs.

The model is split once into a graph and a parameter state; a pure function
`(state, batch) -> outputs` is jitted, so each input shape compiles once and
later calls with the same shapes reuse the executable.
"""

from __future__ import annotations

from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from af_jax import params as af_params
from af_jax.chunking import ChunkPlan
from af_jax.errors import InputError
from af_jax.model.alphafold import AlphaFold
from af_jax.model.evoformer import TEMPLATE_FEATURES

# Processed features the model reads, with their dtypes.
MODEL_FEATURES = {
    'aatype': np.int32, 'residue_index': np.int32, 'seq_mask': np.float32,
    'target_feat': np.float32, 'msa_feat': np.float32, 'msa_mask': np.float32,
    'extra_msa': np.int32, 'extra_msa_mask': np.float32, 'extra_has_deletion': np.float32,
    'extra_deletion_value': np.float32,
}


def build_model(model_config, flat_params: Mapping[str, np.ndarray] | None = None,
                *, preset: str | None = None, seed: int = 0) -> AlphaFold:
  """An AlphaFold module, with `flat_params` (AlphaFold keys) loaded if given."""
  if flat_params is None:
    return AlphaFold(model_config, rngs=nnx.Rngs(seed))
  model = nnx.eval_shape(lambda: AlphaFold(model_config, rngs=nnx.Rngs(seed)))
  af_params.assign_flat(model, flat_params, preset=preset)
  return model


def select_features(batch: Mapping, use_templates: bool) -> dict[str, np.ndarray]:
  """The model's inputs from a processed batch, with checked names and dtypes."""
  wanted = dict(MODEL_FEATURES)
  if use_templates:
    wanted.update(TEMPLATE_FEATURES)
  missing = [k for k in wanted if k not in batch]
  if missing:
    raise InputError(f'processed batch lacks {missing}; pass the output of AlphaFold\'s '
                     'RunModel.process_features (or af_jax.data processing)')
  out = {k: np.asarray(batch[k]).astype(dt) for k, dt in wanted.items()}
  if out['aatype'].ndim != 2:
    raise InputError(f"batch['aatype'] has shape {out['aatype'].shape}; expected "
                     '[num_recycle + 1, N_res] (one slice per recycle)')
  return out


class Predictor:
  """Folds processed feature batches with one preset's parameters.

  Args:
    config: a preset ConfigDict (`af_jax.model_config(name)`), overrides applied.
    params: AlphaFold flat parameters (`af_jax.load_params(path)`).
    plan: chunk sizes per op (None: unchunked).
  """

  def __init__(self, config, params: Mapping[str, np.ndarray], *,
               plan: ChunkPlan | None = None):
    self.config = config
    self.plan = plan or ChunkPlan()
    model = build_model(config.model, params, preset=config.get('model_name'))
    self._graphdef, self._state = nnx.split(model)
    self._state = jax.tree_util.tree_map(jnp.asarray, self._state)
    self._forward = jax.jit(self._apply)

  def _apply(self, state, batch):
    model = nnx.merge(self._graphdef, state)
    return model(batch, self.plan)

  @property
  def use_templates(self) -> bool:
    return bool(self.config.model.embeddings_and_evoformer.template.enabled)

  def flat_params(self) -> dict[str, np.ndarray]:
    """The parameters as AlphaFold flat arrays (`scope//name`)."""
    return af_params.module_to_flat(nnx.merge(self._graphdef, self._state))

  def lower(self, batch: Mapping):
    """The jitted forward lowered for `batch`'s shapes (for AOT and cost analysis)."""
    return self._forward.lower(self._state, select_features(batch, self.use_templates))

  def predict_processed(self, batch: Mapping, *, random_seed: int = 0) -> dict:
    """Predict from AlphaFold's processed features (leading axis: one slice per recycle).

    `random_seed` is accepted for API compatibility; inference is deterministic.
    """
    del random_seed
    feats = select_features(batch, self.use_templates)
    out = self._forward(self._state, feats)
    out = jax.tree_util.tree_map(np.asarray, out)
    out['num_recycles'] = int(out['num_recycles'])
    return out
