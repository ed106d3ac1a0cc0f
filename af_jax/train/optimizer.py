"""AlphaFold's optimiser: Adam, linear warm-up, step decay, clipping, and a parameter EMA.

Jumper et al. (2021) Suppl. 1.11.3: Adam (learning rate 1e-3, beta1 0.9, beta2
0.999, epsilon 1e-6); the learning rate rises linearly over the first 0.128 M
samples (1,000 steps of 128) and is multiplied by 0.95 after 6.4 M samples
(50,000 steps), which OpenFold and Uni-Fold read as x0.95 every further 50,000
steps; gradients are clipped to global norm 0.1, per example (AlphaFold had one
example per TPU core and clipped before averaging across cores); evaluation uses
an exponential moving average of the parameters (decay 0.999).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import optax

from af_jax.errors import ConfigError


def _check(opt: ml_collections.ConfigDict) -> None:
  checks = [
      (opt.learning_rate > 0, f'optimizer.learning_rate={opt.learning_rate} must be > 0'),
      (opt.warmup_steps >= 0, f'optimizer.warmup_steps={opt.warmup_steps} must be >= 0'),
      (opt.decay_every_steps > 0,
       f'optimizer.decay_every_steps={opt.decay_every_steps} must be > 0'),
      (0 < opt.decay_factor <= 1, f'optimizer.decay_factor={opt.decay_factor} must be in (0, 1]'),
      (opt.clip_global_norm >= 0,
       f'optimizer.clip_global_norm={opt.clip_global_norm} must be >= 0 (0: no clipping)'),
      (0 <= opt.ema_decay < 1, f'optimizer.ema_decay={opt.ema_decay} must be in [0, 1)'),
  ]
  for ok, message in checks:
    if not ok:
      raise ConfigError(f'{message}; fix the training config')


def learning_rate_schedule(opt: ml_collections.ConfigDict) -> optax.Schedule:
  """Learning rate after `count` applied updates: warm-up, plateau, then x decay_factor steps.

  DIFFERS FROM OpenFold: the first update already gets 1/warmup_steps of the peak
  (OpenFold's scheduler starts at 0, which makes the first step a no-op).
  """
  _check(opt)
  peak = float(opt.learning_rate)
  warmup = int(opt.warmup_steps)
  decay_after, every = int(opt.decay_after_steps), int(opt.decay_every_steps)
  factor = float(opt.decay_factor)

  def schedule(count):
    count = jnp.asarray(count, jnp.float32)
    warm = jnp.minimum(1.0, (count + 1.0) / warmup) if warmup else 1.0
    # Decays once the plateau is over, then every `every` updates.
    decays = jnp.where(count >= decay_after, jnp.floor((count - decay_after) / every) + 1, 0.0)
    return peak * warm * factor ** decays

  return schedule


def make_optimizer(opt: ml_collections.ConfigDict) -> optax.GradientTransformation:
  """Adam with AlphaFold's schedule; batch-level clipping unless clipping is per example.

  With `opt.clip_per_example` the train step clips each example's gradient itself
  (`clip_by_global_norm`) before averaging, and the chain does not clip again.
  """
  _check(opt)
  parts = []
  if opt.clip_global_norm and not opt.clip_per_example:
    parts.append(optax.clip_by_global_norm(float(opt.clip_global_norm)))
  parts += [optax.scale_by_adam(b1=float(opt.b1), b2=float(opt.b2), eps=float(opt.eps)),
            optax.scale_by_learning_rate(learning_rate_schedule(opt))]
  return optax.chain(*parts)


def _sum_of_squares(x: jax.Array) -> jax.Array:
  """x's sum of squares (float32), computed as a matrix product.

  XLA:CPU compiles one kernel per distinct fused computation: a reduction over a
  leaf is a new kernel (two, after its tree-reduction pass) for every leaf shape,
  hundreds over a model's ~300 leaves. A matrix product runs in XLA's matmul
  library instead. The operand is the leaf viewed as [2, n/2]: the diagonal of its
  [2, 2] Gram matrix sums the squares (a [1, n] view would be rewritten back into a
  reduction). Under vmap the example axis stays a batch axis of the product, so a
  batch split over devices needs no communication.
  """
  v = x.reshape(-1)
  if v.size % 2:  # a few small leaves: a plain reduction
    return jnp.sum(jnp.square(v.astype(jnp.float32)))
  halves = v.reshape(2, -1)
  gram = jax.lax.dot_general(halves, halves, (((1,), (1,)), ((), ())),
                             preferred_element_type=jnp.float32)
  return gram[0, 0] + gram[1, 1]


def global_norm(tree: Any) -> jax.Array:
  """The L2 norm of all of `tree`'s elements (float32): `optax.global_norm` up to
  summation order, with one matrix product per leaf (see `_sum_of_squares`)."""
  leaves = jax.tree_util.tree_leaves(tree)
  return jnp.sqrt(jnp.sum(jnp.stack([_sum_of_squares(x) for x in leaves])))


def clip_scale(norm: jax.Array, max_norm: float) -> jax.Array:
  """The factor that brings a gradient of norm `norm` to norm <= `max_norm`: as
  `optax.clip_by_global_norm`, 1 below the threshold; 0 = no clipping."""
  if not max_norm:
    return jnp.ones_like(norm)
  return jnp.where(norm < max_norm, 1.0, max_norm / norm)


def weighted_sum(trees: Any, weights: jax.Array) -> Any:
  """sum_b weights[b] * trees[b] over a tree of [B, ...] leaves, per leaf a
  [1, B] x [B, n] matrix product (see `_sum_of_squares`); a batch split over
  devices adds up with one all-reduce, as a mean would."""
  def one(x):
    flat = x.reshape(x.shape[0], -1)
    total = jnp.dot(weights.astype(flat.dtype)[None], flat, preferred_element_type=jnp.float32)
    return total.astype(x.dtype).reshape(x.shape[1:])
  return jax.tree_util.tree_map(one, trees)


def ema_update(ema: Any, params: Any, decay: float) -> Any:
  """ema <- decay * ema + (1 - decay) * params, leaf by leaf."""
  return jax.tree_util.tree_map(lambda e, p: decay * e + (1.0 - decay) * p, ema, params)
