"""af_jax: AlphaFold2 on JAX/XLA with AlphaFold's own parameters."""

from __future__ import annotations

import os

import numpy as np

from af_jax.errors import ConfigError, InputError, ParamsError
from configs import PRESETS, model_config


def load_params(path: str | os.PathLike) -> dict[str, np.ndarray]:
  """Read AlphaFold's `params_model_*.npz` (keys `scope//name`) as published."""
  from af_jax import params
  return params.read_npz(path)


def save_params(path: str | os.PathLike, flat: dict[str, np.ndarray]) -> None:
  """Write flat AlphaFold parameters in the published `.npz` format."""
  from af_jax import params
  params.write_npz(path, flat)


def __getattr__(name):
  # Predictor pulls in Flax; import it lazily so `import af_jax` stays light.
  if name == 'Predictor':
    from af_jax.inference import Predictor
    return Predictor
  raise AttributeError(name)


__all__ = ['PRESETS', 'ConfigError', 'InputError', 'ParamsError', 'Predictor',
           'load_params', 'model_config', 'save_params']
