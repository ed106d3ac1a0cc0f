"""A training config that compiles and steps fast on a CPU, and 2Q2K chain A as its data."""

from configs.train import train_config
from tests.data.shared_data import CHAIN_2Q2K
from tests.model.tiny import TINY

ALIGNMENT_DIR = CHAIN_2Q2K / 'alignments'
MMCIF_DIR = CHAIN_2Q2K

# The `small` preset (crop 32, 8 clusters, 16 extra rows) on the tiny model, at most one
# recycle; --config.* overrides for run_train.py and the same values for Python.
SMALL_OVERRIDES = {
    **TINY,
    'model_preset': 'model_3_ptm',
    'data.common.max_recycling_iters': 1,
    'data.data_module.data_loaders.batch_size': 1,
    'optimizer.learning_rate': 2e-3,
}


def small_train_config(**overrides):
  """`small` on model_3_ptm's tiny variant, batch 1; `overrides` are flattened keys."""
  cfg = train_config('small', 'model_3_ptm')
  values = {k: v for k, v in SMALL_OVERRIDES.items() if k != 'model_preset'}
  cfg.update_from_flattened_dict({**values, **overrides})
  return cfg
