"""tests/tolerance.py: rounding passes, real differences, NaN and integer changes fail."""

import numpy as np
import pytest

from tests import tolerance


def _case():
  rng = np.random.default_rng(0)
  x = (rng.normal(size=(64, 512)) * 50).astype(np.float32)
  w = rng.normal(size=512).astype(np.float32)
  return x, w


def test_another_summation_order_passes_within_the_spread():
  x, w = _case()
  want = x @ w
  # The same dot products summed in another order: float32 rounding only.
  got = np.stack([np.add.reduce((row * w)[::-1].reshape(8, 64), axis=0).sum() for row in x])
  assert np.any(got != want)
  spread = tolerance.spread(lambda v: x @ v, w)
  assert spread[''] > 0
  tolerance.assert_close(got, want, spread, what='reordered')


def test_the_magnitude_is_the_whole_outputs():
  """An element near zero gets the room of the output's largest element."""
  want = np.array([100.0, 1e-3], np.float32)
  got = want + np.array([0.0, 4 * tolerance.EPS32 * 100], np.float32)
  tolerance.assert_close(got, want, 0.0)


@pytest.mark.parametrize('change', ['a real difference', 'NaN', 'an integer'])
def test_differences_beyond_rounding_fail(change):
  x, w = _case()
  want = {'y': x @ w, 'n': np.array(3)}
  spread = tolerance.spread(lambda v: {'y': x @ v, 'n': np.array(3)}, w)
  got = {'y': want['y'].copy(), 'n': np.array(3)}
  if change == 'a real difference':
    got['y'][5] += 1e-3 * np.abs(want['y']).max()
  elif change == 'NaN':
    got['y'][5] = np.nan
  else:
    got['n'] = np.array(4)
  with pytest.raises(AssertionError, match='y: max|n: not equal'):
    tolerance.assert_close(got, want, spread, what=change)


def test_perturbation_moves_floats_by_one_ulp_and_leaves_the_rest():
  tree = {'f': np.array([1.0, -2.0, 0.0], np.float32), 'i': np.array([1, 2], np.int32)}
  moved = tolerance.perturb_ulp(tree)
  assert np.array_equal(moved['i'], tree['i'])
  ulps = np.abs(moved['f'] - tree['f']) / np.spacing(np.abs(tree['f']))
  assert np.all(ulps[:2] == 1) and moved['f'][2] == 0
