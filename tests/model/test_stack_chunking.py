"""The stack helper equals an unrolled loop; chunked axial_map equals unchunked.

Both sides compute the same float32 operations in another order or fusion: they agree
within a stated number of roundings at the magnitude compared (tests/tolerance.py).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from af_jax.chunking import axial_map
from af_jax.model import primitives, stack
from tests import tolerance

# Roundings one element goes through: 4 blocks of layer norm, an 8-term matmul and tanh
# (scan); one slice's 4-term matmul, tanh and a 5- or 7-term sum (axial_map).
SCAN_OPS, MAP_OPS = 32, 16


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
  np.testing.assert_allclose(scanned, y, rtol=0, atol=tolerance.rounding_atol(y, SCAN_OPS))
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
  atol = tolerance.rounding_atol(want, MAP_OPS)
  got = axial_map(fn, (x, y), axis=(0, 1), chunk=chunk)
  np.testing.assert_allclose(got, want, rtol=0, atol=atol)
  got_t = axial_map(fn, (x, y), axis=(0, 1), chunk=chunk, out_axis=1)
  np.testing.assert_allclose(got_t, want.T, rtol=0, atol=atol)


@pytest.mark.parametrize('chunk', [None, 1, 3, 7])
@pytest.mark.parametrize('axis', [0, 1])
def test_axial_map_residual_adds_to_the_activation_it_reads(chunk, axis):
  """`residual=x` with x among the args: each slice sees x's input values, the result is
  x + the stacked outputs (the chunked loop writes x's buffer while it reads from it)."""
  x = jax.random.normal(jax.random.key(2), (7, 7, 4))
  w = jax.random.normal(jax.random.key(3), (7, 4))
  fn = lambda a, b: jnp.tanh(a @ a.T) @ a + b  # noqa: E731 (every element of the slice)
  xs = jnp.moveaxis(x, axis, 0)
  want = x + jnp.moveaxis(jnp.stack([fn(xs[i], w) for i in range(7)]), 0, axis)
  got = axial_map(lambda a: fn(a, w), (x,), axis=axis, chunk=chunk, out_axis=axis, residual=x)
  np.testing.assert_allclose(got, want, rtol=0, atol=tolerance.rounding_atol(want, MAP_OPS))
  # A residual that is not an arg (the outer product mean's pair): the same sum.
  other = jax.random.normal(jax.random.key(4), x.shape)
  got = axial_map(lambda a: fn(a, w), (x,), axis=axis, chunk=chunk, out_axis=axis,
                  residual=other)
  want = want - x + other
  np.testing.assert_allclose(got, want, rtol=0, atol=tolerance.rounding_atol(want, MAP_OPS))


@pytest.mark.parametrize('chunk', [None, 2])
def test_axial_map_residual_arg_on_another_axis_is_refused(chunk):
  x = jnp.ones((6, 6, 2))
  with pytest.raises(ValueError, match='residual buffer'):
    axial_map(lambda a: a, (x,), axis=1, chunk=chunk, out_axis=0, residual=x)
