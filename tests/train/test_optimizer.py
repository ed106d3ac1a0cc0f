"""The optimiser's norms and sums give optax's numbers on the model's own parameter shapes.

`global_norm` and `weighted_sum` compute per-leaf reductions as matrix products (fewer
kernels for XLA to compile); here they are checked against optax and numpy on a tree with
every leaf shape of the tiny training model, random values, odd sizes, under vmap, and with
infinite and NaN elements.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from af_jax.train.optimizer import clip_scale, global_norm, weighted_sum
from af_jax.train.state import abstract_train_state
from tests.train.train_case import small_train_config


@pytest.fixture(scope='module')
def shapes():
  params = abstract_train_state(small_train_config()).params
  shapes = [x.shape for x in jax.tree_util.tree_leaves(params)]
  assert len(shapes) > 200
  # Odd sizes take the plain reduction; scalars and 1-D leaves are views too.
  return shapes + [(23,), (37, 3), (), (1,)]


def _tree(shapes, seed, batch=None):
  rng = np.random.default_rng(seed)
  lead = () if batch is None else (batch,)
  # Each leaf at its own scale, as gradients are.
  return [(rng.standard_normal(lead + s) * 10.0 ** rng.uniform(-4, 1)).astype(np.float32)
          for s in shapes]


def _np_norm(leaves):
  return np.sqrt(sum(np.sum(x.astype(np.float64) ** 2) for x in leaves))


def test_global_norm_is_optaxs(shapes):
  tree = _tree(shapes, 0)
  got = float(jax.jit(global_norm)(tree))
  assert got == pytest.approx(float(optax.tree.norm(tree)), rel=1e-6)
  assert got == pytest.approx(_np_norm(tree), rel=1e-6)


def test_global_norm_under_vmap_is_each_examples_norm(shapes):
  batched = _tree(shapes, 1, batch=3)
  got = np.asarray(jax.jit(jax.vmap(global_norm))(batched))
  want = [_np_norm([x[b] for x in batched]) for b in range(3)]
  np.testing.assert_allclose(got, want, rtol=1e-6)


@pytest.mark.parametrize('bad', [np.inf, -np.inf, np.nan])
def test_one_non_finite_element_makes_the_norm_non_finite(shapes, bad):
  batched = _tree(shapes, 2, batch=2)
  leaf = int(np.argmax([np.prod(s, dtype=int) for s in shapes]))
  batched[leaf][1].flat[batched[leaf][1].size // 2 + 1] = bad
  norms = np.asarray(jax.jit(jax.vmap(global_norm))(batched))
  assert np.isfinite(norms[0]) and not np.isfinite(norms[1])
  assert not np.isfinite(float(jax.jit(global_norm)(batched)))


def test_clipped_weighted_sum_is_optaxs_per_example_clip_and_mean(shapes):
  batched = _tree(shapes, 3, batch=2)
  max_norm = 0.1
  norms = jax.vmap(global_norm)(batched)
  got = jax.jit(weighted_sum)(batched, clip_scale(norms, max_norm) / 2)
  clip = optax.clip_by_global_norm(max_norm)
  clipped = [clip.update([x[b] for x in batched], clip.init(None))[0] for b in range(2)]
  for g, a, b in zip(got, *clipped):
    np.testing.assert_allclose(np.asarray(g), (np.asarray(a) + np.asarray(b)) / 2,
                               rtol=2e-5, atol=1e-9)
  assert float(global_norm(got)) <= max_norm * (1 + 1e-6)


def test_clip_scale_is_one_below_the_threshold_and_zero_means_no_clip():
  norms = jnp.array([0.05, 0.1, 0.4])
  np.testing.assert_allclose(np.asarray(clip_scale(norms, 0.1)), [1.0, 1.0, 0.25], rtol=1e-6)
  np.testing.assert_array_equal(np.asarray(clip_scale(norms, 0.0)), [1.0, 1.0, 1.0])
