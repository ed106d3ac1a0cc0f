"""One preset's model as a module: AlphaFold or AlphaFold-Multimer, with its weights loaded.

Inference (Predictor), training (the train state) and tools that need random weights all
build the model here, so the choice of class and the loading of AlphaFold's flat
parameters happen in one place.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from flax import nnx

from af_jax import params as af_params
from af_jax.model import kind
from af_jax.model.alphafold import AlphaFold


def build_model(model_config, flat_params: Mapping[str, np.ndarray] | None = None,
                *, preset: str | None = None, seed: int = 0) -> AlphaFold:
  """An AlphaFold (or AlphaFoldMultimer) module, with `flat_params` (AlphaFold keys) loaded."""
  cls = kind.for_config(model_config).module_class()
  if flat_params is None:
    return cls(model_config, rngs=nnx.Rngs(seed))
  model = nnx.eval_shape(lambda: cls(model_config, rngs=nnx.Rngs(seed)))
  af_params.assign_flat(model, flat_params, preset=preset)
  return model
