"""The train step on a data x dap mesh (8 fake CPU devices) equals the one-device step."""

import jax
import numpy as np
import pytest

from af_jax.parallel.mesh import make_mesh
from af_jax.train.data import TrainingData
from af_jax.train.state import init_train_state
from af_jax.train.step import TrainStep
from tests.train.train_case import ALIGNMENT_DIR, MMCIF_DIR, small_train_config


def test_data_and_dap_parallel_step_equals_one_device():
  """Two examples on data=2 x dap=2 (crop 32 of 2Q2K, one recycle, dropout on)."""
  assert jax.device_count() >= 4
  cfg = small_train_config(**{'data.data_module.data_loaders.batch_size': 2})
  data = TrainingData(ALIGNMENT_DIR, MMCIF_DIR, cfg.data, batch_size=2)
  batch = data.batch(2)
  assert int(batch['num_recycles'][0]) == 1
  state = init_train_state(cfg)
  one, m_one = TrainStep(cfg, state.graphdef, donate=False)(state, batch)

  mesh = make_mesh(dap=2, data=2)
  # Per data-parallel group one example: the global batch is the same two.
  cfg.data.data_module.data_loaders.batch_size = 1
  sharded_state = init_train_state(cfg, mesh=mesh)
  step = TrainStep(cfg, sharded_state.graphdef, mesh=mesh, donate=False)
  many, m_many = step(sharded_state, batch)
  leaf = jax.tree_util.tree_leaves(many.params)[0]
  assert leaf.sharding.mesh.shape == {'data': 2, 'dap': 2}

  m_one, m_many = jax.device_get(m_one), jax.device_get(m_many)
  for key in ('loss', 'fape', 'distogram', 'masked_msa', 'grad_norm'):
    assert float(m_many[key]) == pytest.approx(float(m_one[key]), rel=2e-4, abs=1e-5), key
  for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(jax.device_get(many.params)),
                          jax.tree_util.tree_leaves(jax.device_get(one.params))):
    np.testing.assert_allclose(a, b, rtol=1e-3, atol=2e-5, err_msg=jax.tree_util.keystr(path))
