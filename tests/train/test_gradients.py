"""Gradients: remat and chunking change memory, not results; bfloat16 trains; the eval step."""

import jax
import numpy as np
import optax
import pytest

from af_jax.train.data import TrainingData
from af_jax.train.state import init_train_state
from af_jax.train.step import EvalStep, make_gradient_fn, select_batch, training_model_config
from tests.train.train_case import ALIGNMENT_DIR, MMCIF_DIR, small_train_config


@pytest.fixture(scope='module')
def case():
  cfg = small_train_config(**{'data.data_module.data_loaders.batch_size': 2})
  data = TrainingData(ALIGNMENT_DIR, MMCIF_DIR, cfg.data, batch_size=2)
  batch = data.batch(2)
  assert int(batch['num_recycles'][0]) == 1  # the recycle runs too
  return cfg, init_train_state(cfg), batch


def _gradients(cfg, state, batch, **overrides):
  cfg = cfg.copy_and_resolve_references()
  cfg.update_from_flattened_dict(overrides)
  fn = jax.jit(make_gradient_fn(cfg, state.graphdef))
  grads, metrics = fn(state.params, select_batch(batch, training_model_config(cfg)),
                      jax.random.PRNGKey(3))
  return jax.device_get(grads), jax.device_get(metrics)


@pytest.fixture(scope='module')
def remat_gradients(case):
  """The training default: float32, rematerialised blocks."""
  cfg, state, batch = case
  assert cfg.remat and not cfg.bfloat16
  return _gradients(cfg, state, batch)


def test_remat_gives_the_same_gradients(case, remat_gradients):
  """Per-block rematerialisation recomputes the blocks; gradients equal to rounding."""
  cfg, state, batch = case
  g_remat, m_remat = remat_gradients
  g_plain, m_plain = _gradients(cfg, state, batch, remat=False)
  assert float(m_remat['loss']) == pytest.approx(float(m_plain['loss']), rel=1e-6)
  flat_r = jax.tree_util.tree_leaves_with_path(g_remat)
  flat_p = jax.tree_util.tree_leaves(g_plain)
  assert len(flat_r) == len(flat_p) > 100
  for (path, a), b in zip(flat_r, flat_p):
    scale = max(float(np.abs(b).max()), 1e-8)
    assert float(np.abs(a - b).max()) <= 1e-4 * scale + 1e-7, jax.tree_util.keystr(path)
  assert float(m_plain['grad_norm']) > 0 and bool(m_plain['finite'])


def test_each_examples_gradient_is_clipped_before_the_mean(case, remat_gradients):
  """clip_per_example: the mean of two gradients clipped to norm 0.1 has norm <= 0.1,
  while the examples' own norms (the grad_norm metric) are above it."""
  cfg, _, _ = case
  assert cfg.optimizer.clip_per_example and cfg.optimizer.clip_global_norm == 0.1
  grads, metrics = remat_gradients
  assert float(metrics['grad_norm']) > 0.1
  assert float(optax.tree.norm(grads)) <= 0.1 * (1 + 1e-5)


def test_chunked_ops_give_the_same_gradients(case, remat_gradients):
  """Chunks of 8 (each recomputed in the backward pass) equal the unchunked gradients."""
  cfg, state, batch = case
  g_chunk, m_chunk = _gradients(cfg, state, batch, chunk_size=8)
  g_whole, m_whole = remat_gradients
  assert float(m_chunk['loss']) == pytest.approx(float(m_whole['loss']), rel=1e-5)
  for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(g_chunk),
                          jax.tree_util.tree_leaves(g_whole)):
    scale = max(float(np.abs(b).max()), 1e-8)
    assert float(np.abs(a - b).max()) <= 1e-4 * scale + 1e-7, jax.tree_util.keystr(path)


def test_bfloat16_trains_with_float32_weights(case, remat_gradients):
  cfg, state, batch = case
  grads, metrics = _gradients(cfg, state, batch, bfloat16=True)
  _, reference = remat_gradients
  assert bool(metrics['finite'])
  assert {x.dtype for x in jax.tree_util.tree_leaves(grads)} == {np.dtype('float32')}
  # Same function at lower precision: the loss within a few percent.
  assert float(metrics['loss']) == pytest.approx(float(reference['loss']), rel=0.05)


def test_eval_step_is_deterministic_and_reads_the_ema(case):
  cfg, state, batch = case
  evaluate = EvalStep(cfg, state.graphdef)
  first = jax.device_get(evaluate(state, batch))
  again = jax.device_get(evaluate(state, batch))
  assert first.keys() >= {'loss', 'fape', 'lddt_ca', 'distogram'}
  assert all(float(first[k]) == float(again[k]) for k in first)
  moved = state.replace(ema_params=jax.tree_util.tree_map(lambda x: x * 1.01, state.ema_params))
  assert float(jax.device_get(evaluate(moved, batch))['loss']) != float(first['loss'])
