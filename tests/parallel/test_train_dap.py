"""The train step on a data x dap mesh (8 fake CPU devices) equals the one-device step.

Within a multiple of the one-device step's own spread under a one-ulp change of the
state (tests/tolerance.py): the mesh changes only the order of float32 operations.
"""

import jax
import numpy as np

from af_jax.parallel.mesh import make_mesh
from af_jax.train.data import TrainingData
from af_jax.train.state import init_train_state
from af_jax.train.step import TrainStep
from tests import tolerance
from tests.train.train_case import ALIGNMENT_DIR, MMCIF_DIR, small_train_config

METRICS = ('loss', 'fape', 'distogram', 'masked_msa', 'grad_norm')
# The loss terms are means over up to 32 x 32 residue pairs of two examples, summed in
# another order on the mesh, and the one-ulp change of the state does not reach them
# at initialisation (zero-initialised output layers): n roundings at worst.
METRIC_OPS = 2 * 32 * 32


def _outputs(state, metrics):
  """The compared numbers: the metrics and every parameter after the step, by name."""
  out = {k: np.asarray(jax.device_get(metrics[k])) for k in METRICS}
  for path, x in jax.tree_util.tree_leaves_with_path(jax.device_get(state.params)):
    out[jax.tree_util.keystr(path)] = np.asarray(x)
  return out


def test_data_and_dap_parallel_step_equals_one_device():
  """Two examples on data=2 x dap=2 (crop 32 of 2Q2K, one recycle, dropout on)."""
  assert jax.device_count() >= 4
  cfg = small_train_config(**{'data.data_module.data_loaders.batch_size': 2})
  data = TrainingData(ALIGNMENT_DIR, MMCIF_DIR, cfg.data, batch_size=2)
  batch = data.batch(2)
  assert int(batch['num_recycles'][0]) == 1
  state = init_train_state(cfg)
  one_step = TrainStep(cfg, state.graphdef, donate=False)
  want = _outputs(*one_step(state, batch))
  spread = tolerance.spread(lambda s: _outputs(*one_step(s, batch)), state)

  mesh = make_mesh(dap=2, data=2)
  # Per data-parallel group one example: the global batch is the same two.
  cfg.data.data_module.data_loaders.batch_size = 1
  sharded_state = init_train_state(cfg, mesh=mesh)
  step = TrainStep(cfg, sharded_state.graphdef, mesh=mesh, donate=False)
  many, m_many = step(sharded_state, batch)
  leaf = jax.tree_util.tree_leaves(many.params)[0]
  assert leaf.sharding.mesh.shape == {'data': 2, 'dap': 2}
  tolerance.assert_close(_outputs(many, m_many), want, spread,
                         ops={k: METRIC_OPS for k in METRICS}, what='data=2 x dap=2')
