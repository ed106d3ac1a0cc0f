"""Tolerances that follow float32 rounding, for comparing two equivalent computations.

Two computations that are one function in exact arithmetic (one device and DAP over
four, chunked and unchunked, scanned and unrolled, padded and unpadded, this CPU's
vector width and another's) differ by rounding: every float32 op leaves a relative
error of up to EPS32 (1.2e-7) in its result, and a deep computation amplifies those
errors (recycling, the structure module's iterations, attention's softmax). A fixed
absolute tolerance holds for one machine's order of operations at one magnitude and
depth only; coordinates reach 100 Å where a pLDDT is below 1. The tolerances here
scale with both, two ways:

- `rounding_atol(want, ops)`: EPS32 * max|want| * ops, for a computation whose depth
  is known: `ops` counts the roundings one output element goes through in sequence
  (a sum over n terms: n at worst).
- `spread(fn, params, *args)`: measured. The largest change of each output of `fn`
  when every element of `params` is moved by one unit in its last place (times
  1 ± EPS32, random signs): how much this computation amplifies a rounding error
  made at its start, on the machine that runs the test. `assert_close` allows
  SPREAD_FACTOR times that, plus `rounding_atol` of FLOOR_OPS roundings (or a stated
  depth) for what the perturbation cannot move: an output below one ulp of spread,
  a reduction over inputs the perturbation leaves alone.

The magnitude is the whole output's, max|want|, never each element's own: rounding
in a structure 100 Å across moves a coordinate near the origin as much as one at
the far end, which an elementwise rtol does not allow for.

SPREAD_FACTOR is a stated multiple of the largest |difference| / spread measured
over the comparisons that use it (DAP, chunking, padding, recycling loop, multiple
hosts, the sharded train step; the ratios are in the commit that set it), wide
enough for other CPUs' vector widths and op orders and still far below what a wrong
mask or a wrong collective gives.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np

EPS32 = float(np.finfo(np.float32).eps)
SPREAD_FACTOR = 16.0
# Roundings allowed on top of the measured spread: an output the one-ulp perturbation
# does not move (an integer count, a masked entry) still gets a few ulps of room.
FLOOR_OPS = 8


def rounding_atol(want, ops: float) -> float:
  """EPS32 * max|want| * ops: `ops` sequential float32 roundings at `want`'s magnitude."""
  want = np.asarray(want)
  if want.size == 0 or not np.issubdtype(want.dtype, np.inexact):
    return 0.0
  return EPS32 * float(np.max(np.abs(want))) * float(ops)


def perturb_ulp(tree, seed: int = 0):
  """Every floating element of `tree` times (1 ± EPS32), signs random; others unchanged."""
  rng = np.random.default_rng(seed)

  def one(x):
    dtype = getattr(x, 'dtype', None)
    if dtype is None or not jnp.issubdtype(dtype, jnp.floating):
      return x  # integers, PRNG keys, Python scalars
    signs = rng.choice(np.array([-1.0, 1.0], np.float32), size=np.shape(x))
    return x * (1 + EPS32 * signs).astype(dtype)

  return jax.tree_util.tree_map(one, tree)


def _flat(outputs) -> dict[str, np.ndarray]:
  if isinstance(outputs, Mapping):
    return {k: np.asarray(v) for k, v in outputs.items()}
  return {'': np.asarray(outputs)}


def spread(fn: Callable, params, *args, seeds=(0, 1), **kwargs) -> dict[str, float]:
  """Largest |fn(perturbed params) - fn(params)| of each output over `seeds`.

  Args:
    fn: the reference computation, `fn(params, *args, **kwargs)`; returns an array
      or a flat dict of arrays.
    params: the pytree perturbed (parameters, or the float inputs).
    seeds: one perturbation per seed; the largest change is kept.

  Returns:
    {output name: spread} ('' for a single array).
  """
  base = _flat(fn(params, *args, **kwargs))
  worst = {k: 0.0 for k in base}
  for seed in seeds:
    moved = _flat(fn(perturb_ulp(params, seed), *args, **kwargs))
    for k, v in base.items():
      if np.issubdtype(v.dtype, np.inexact) and v.size:
        worst[k] = max(worst[k], float(np.max(np.abs(moved[k].astype(np.float64) - v))))
  return worst


def tolerance(want, spread_value: float, factor: float = SPREAD_FACTOR,
              ops: float = FLOOR_OPS) -> float:
  """The absolute tolerance `assert_close` uses for one output."""
  return factor * spread_value + rounding_atol(want, ops)


def module_spread(module, call: Callable, *, seeds=(0, 1)) -> dict[str, float]:
  """`spread` of `call(module)` over an nnx.Module's parameters (its whole state)."""
  from flax import nnx
  graphdef, state = nnx.split(module)
  return spread(lambda s: call(nnx.merge(graphdef, s)), state, seeds=seeds)


def predictor_spread(predictor, batch: Mapping, summary: Callable, *,
                     seeds=(0, 1)) -> dict[str, float]:
  """`spread` of `summary(outputs)` of a monomer Predictor over its weights.

  Runs the Predictor's own executable for `batch` (compiled once) with the weights
  perturbed; `summary` picks the compared outputs from the model's output dict.
  """
  from flax import nnx

  from af_jax.inference import select_features
  from af_jax.model.build import build_model
  feats = select_features(batch, predictor.use_templates)
  executable = predictor.compile(feats).compiled
  state = nnx.split(build_model(predictor.config.model, predictor.flat_params(),
                                preset=predictor.config.get('model_name')))[1]
  return spread(lambda s: summary(jax.tree_util.tree_map(np.asarray, executable(s, feats))),
                state, seeds=seeds)


def assert_close(got, want, spreads: Mapping[str, float] | float, *,
                 factor: float = SPREAD_FACTOR, ops: Mapping[str, float] | float = FLOOR_OPS,
                 what: str = '') -> None:
  """|got - want| <= factor * spread + rounding_atol(want, ops), per output.

  Args:
    got, want: arrays or flat dicts of arrays with the same keys.
    spreads: `spread(...)`'s dict, or one value for a single array.
    ops: roundings allowed at each output's magnitude on top of the spread (one
      number, or one per output): what the perturbation cannot show, e.g. a sum over
      n terms that it leaves unchanged (n roundings at worst).
    what: names the comparison in the failure message.

  Every output is checked; the failure lists each one out of tolerance.
  """
  got, want = _flat(got), _flat(want)
  if not isinstance(spreads, Mapping):
    spreads = {k: float(spreads) for k in want}
  failures = []
  for k, w in want.items():
    g = got[k]
    assert g.shape == w.shape, f'{what} {k}: shape {g.shape} != {w.shape}'
    if not np.issubdtype(w.dtype, np.inexact):
      if not np.array_equal(g, w):
        failures.append(f'{k}: not equal ({g} != {w})' if w.size == 1 else f'{k}: not equal')
      continue
    k_ops = ops.get(k, FLOOR_OPS) if isinstance(ops, Mapping) else ops
    atol = tolerance(w, spreads[k], factor, k_ops)
    err = float(np.max(np.abs(g.astype(np.float64) - w))) if w.size else 0.0
    print(f'{what} {k}: max |diff| {err:.2e}, spread {spreads[k]:.2e}, atol {atol:.2e}')
    if not err <= atol:  # NaN fails too
      failures.append(f'{k}: max |diff| {err:.3g} > {atol:.3g} = {factor:g} x spread '
                      f'{spreads[k]:.3g} + {k_ops:g} roundings at max|want| '
                      f'{float(np.max(np.abs(w))) if w.size else 0.0:.3g}')
  assert not failures, f'{what}: ' + '; '.join(failures)
