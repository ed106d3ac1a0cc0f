"""The protein both sides of the multi-host test fold: a tiny model on a random batch."""

import jax.numpy as jnp  # noqa: F401  (keeps jax imported before af_jax in the child)

from af_jax import params as af_params
from af_jax.model.build import build_model
from tests.model.tiny import random_batch, tiny_config


def case():
  cfg = tiny_config('model_3_ptm', **{'model.global_config.zero_init': False,
                                      'model.num_recycle': 1})
  params = af_params.module_to_flat(build_model(cfg.model, seed=11))
  return cfg, params, random_batch(seed=12, n_res=13, n_seq=5, n_extra=9, n_slices=2)


def summary(out: dict) -> dict:
  return {'pos': out['structure_module']['final_atom_positions'], 'plddt': out['plddt'],
          'pae': out['predicted_aligned_error'], 'ptm': out['ptm']}
