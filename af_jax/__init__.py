"""af_jax: AlphaFold2 on JAX/XLA with AlphaFold's own parameters."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

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


def load_features(path: str | os.PathLike) -> dict[str, np.ndarray]:
  """Raw features as the data pipeline writes them: `features.npz` (read without pickle) or
  AlphaFold's `features.pkl` (a pickle: load only files you or a pipeline you trust wrote)."""
  from af_jax.data import features
  return features.load_features(path)


def process_features(raw: Mapping[str, np.ndarray] | str | os.PathLike, config, *,
                     random_seed: int = 0,
                     length_buckets: Sequence[int] | None = None) -> dict[str, np.ndarray]:
  """Raw features -> the processed batch `Predictor.predict_processed` takes.

  The command line's own step: MSA clustering, extra MSA, masking and one slice per recycle
  for a monomer (seeded), a complex's batch for a multimer config; padded to the smallest
  length bucket (and MSA-depth bucket) that holds the target, so targets of one bucket
  share an executable.

  Args:
    raw: raw features (a pipeline's output, `load_features`), or a features.npz/.pkl path.
    config: the preset's config (`model_config(name)`), overrides applied.
    random_seed: seeds the MSA sampling and masking (run_inference.py's prediction k of
      model m uses --random_seed + k * num_models + m).
    length_buckets: lengths to pad to (default: configs.buckets.LENGTH_BUCKETS, as
      --buckets).
  """
  from af_jax.model import kind
  from configs import buckets
  if isinstance(raw, (str, os.PathLike)):
    raw = load_features(raw)
  return kind.for_config(config.model).make_batch(
      raw, config, random_seed, tuple(length_buckets or buckets.LENGTH_BUCKETS))


def __getattr__(name):
  # Each pulls in Flax or JAX; imported on first use so that `import af_jax` stays light.
  # `fold` is the run layer's (af_jax.run.api): a door upward that opens only on first use
  # (tests/test_layout.py LAZY_ATTRIBUTES lists it).
  if name == 'Predictor':
    from af_jax.predictor import Predictor
    return Predictor
  if name == 'fold':
    from af_jax.run.api import fold
    return fold
  raise AttributeError(f'module {__name__!r} has no attribute {name!r}')


__all__ = ['__version__', 'PRESETS', 'ConfigError', 'InputError', 'ParamsError', 'Predictor',
           'fold', 'load_features', 'load_params', 'model_config', 'process_features',
           'save_params']
