"""af_jax: AlphaFold2 on JAX/XLA with AlphaFold's own parameters."""

from __future__ import annotations

import os

import numpy as np

from af_jax import xla_flags
from af_jax.errors import ConfigError, InputError, ParamsError
from configs import PRESETS, model_config

xla_flags.apply_defaults()

# Recorded with every result (af_jax.run.job): a new version folds old targets again.
__version__ = '0.1.0'


def load_params(path: str | os.PathLike) -> dict[str, np.ndarray]:
  """Read AlphaFold's `params_model_*.npz` (keys `scope//name`) as published."""
  from af_jax import params
  return params.read_npz(path)


def save_params(path: str | os.PathLike, source) -> None:
  """Write parameters in the published `.npz` format (exact inverse of load_params).

  Args:
    path: output file; written under a temporary name, then renamed.
    source: flat AlphaFold arrays (`scope//name` keys), an af_jax model
      (nnx.Module) or a Predictor.
  """
  from af_jax import params
  if hasattr(source, 'flat_params'):
    source = source.flat_params()
  elif not isinstance(source, dict):
    source = params.module_to_flat(source)
  params.write_npz(path, source)


def __getattr__(name):
  # Predictor pulls in Flax; import it lazily so `import af_jax` stays light.
  if name == 'Predictor':
    from af_jax.inference import Predictor
    return Predictor
  raise AttributeError(name)


__all__ = ['__version__', 'PRESETS', 'ConfigError', 'InputError', 'ParamsError', 'Predictor',
           'load_params', 'model_config', 'save_params']
