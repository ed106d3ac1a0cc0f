"""The stack helper equals an unrolled loop; chunked axial_map equals unchunked."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from af_jax.chunking import axial_map
from af_jax.model import primitives, stack


class _Block(nnx.Module):
  def __init__(self, rngs):
    self.linear = primitives.Linear(8, 8, rngs=rngs)
    self.norm = primitives.LayerNorm(8)

  def __call__(self, x):
    return x + jnp.tanh(self.linear(self.norm(x)))


@pytest.mark.parametrize('remat', [False, True])
def test_scan_matches_unrolled_loop(remat):
  stacked = stack.create(_Block, 4, nnx.Rngs(0))
  assert stacked.linear.weights[...].shape == (4, 8, 8)
  x = jax.random.normal(jax.random.key(1), (5, 8))
  scanned = stack.scan(stacked, lambda block, c, _: block(c), x, remat=remat)
  graphdef, state = nnx.split(stacked)
  y = x
  for i in range(4):
    layer = nnx.merge(graphdef, jax.tree_util.tree_map(lambda a: a[i], state))
    y = layer(y)
  np.testing.assert_allclose(scanned, y, rtol=1e-6, atol=1e-6)
  # Gradients flow through the scanned stack (and its remat).
  grad = jax.grad(lambda s: jnp.sum(stack.scan(nnx.merge(graphdef, s),
                                               lambda b, c, _: b(c), x, remat=remat)))(state)
  assert np.isfinite(np.asarray(grad['linear']['weights'][...])).all()


def test_layers_are_independent_draws():
  stacked = stack.create(_Block, 3, nnx.Rngs(0))
  w = np.asarray(stacked.linear.weights[...])
  assert not np.allclose(w[0], w[1])


@pytest.mark.parametrize('chunk', [None, 1, 3, 7, 100])
def test_axial_map_chunked_equals_whole(chunk):
  x = jax.random.normal(jax.random.key(0), (7, 5, 4))
  y = jax.random.normal(jax.random.key(1), (5, 7))
  fn = lambda a, b: jnp.tanh(a @ a.T).sum(-1) + b  # noqa: E731
  want = jnp.stack([fn(x[i], y[:, i]) for i in range(7)])
  got = axial_map(fn, (x, y), axis=(0, 1), chunk=chunk)
  np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
  got_t = axial_map(fn, (x, y), axis=(0, 1), chunk=chunk, out_axis=1)
  np.testing.assert_allclose(got_t, want.T, rtol=1e-6, atol=1e-6)
