"""Linear and LayerNorm with AlphaFold's parameter names, layouts and numerics.

Every learnable array in af_jax is created through these helpers, so a module's
attribute path plus the variable name *is* its AlphaFold key (params.py only
rewrites the path separator and a short table of exceptions).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

# Truncated normal on [-2, 2] has std 0.8796; AlphaFold divides by it so that
# the *truncated* distribution has the requested std.
_TRUNCATED_NORMAL_STD = 0.87962566103423978


def _as_tuple(x: int | Sequence[int]) -> tuple[int, ...]:
  return (int(x),) if isinstance(x, int) else tuple(int(d) for d in x)


def init_array(
    rngs: nnx.Rngs, shape: Sequence[int], initializer: str, fan_in: int | None = None
) -> jax.Array:
  """AlphaFold's named initializers.

  Args:
    rngs: random streams; `params` is used.
    shape: array shape.
    initializer: 'linear' (lecun truncated normal), 'relu' (He truncated
      normal), 'glorot' (glorot uniform over the first and last axes as in
      AlphaFold's attention), 'zeros', 'ones', 'normal:<std>', 'const:<v>'.
    fan_in: number of inputs (default: product of all but the last axis).
  """
  shape = tuple(shape)
  if initializer == 'zeros':
    return jnp.zeros(shape, jnp.float32)
  if initializer == 'ones':
    return jnp.ones(shape, jnp.float32)
  if initializer.startswith('const:'):
    return jnp.full(shape, float(initializer.split(':')[1]), jnp.float32)
  key = rngs.params()
  if initializer.startswith('normal:'):
    return float(initializer.split(':')[1]) * jax.random.normal(key, shape, jnp.float32)
  if fan_in is None:
    fan_in = math.prod(shape[:-1]) if len(shape) > 1 else 1
  if initializer in ('linear', 'relu'):
    scale = (2.0 if initializer == 'relu' else 1.0) / max(fan_in, 1)
    std = math.sqrt(scale) / _TRUNCATED_NORMAL_STD
    return std * jax.random.truncated_normal(key, -2.0, 2.0, shape, jnp.float32)
  if initializer == 'glorot':
    # Fans as Haiku's VarianceScaling counts them: leading axes beyond the
    # last two act as a receptive field.
    receptive = math.prod(shape[:-2]) if len(shape) > 2 else 1
    fan_in_g = (shape[-2] if len(shape) > 1 else shape[-1]) * receptive
    fan_out = shape[-1] * receptive
    limit = math.sqrt(3.0 / ((fan_in_g + fan_out) / 2.0))
    return jax.random.uniform(key, shape, jnp.float32, -limit, limit)
  raise ValueError(f'unknown initializer {initializer!r}')


def param(rngs: nnx.Rngs, shape: Sequence[int], initializer: str,
          fan_in: int | None = None) -> nnx.Param:
  """A float32 nnx.Param initialised with an AlphaFold initializer."""
  return nnx.Param(init_array(rngs, shape, initializer, fan_in))


class Linear(nnx.Module):
  """AlphaFold's Linear: `weights [*in, *out]`, `bias [*out]`, any rank.

  Args:
    num_input: input channels (int or tuple for several trailing axes).
    num_output: output channels (int or tuple).
    initializer: 'linear', 'relu' or 'zeros' (AlphaFold's `final_init`).
    use_bias: whether to create `bias`.
    bias_init: constant initial bias (1.0 for AlphaFold's gates).
    rngs: random streams.
  """

  def __init__(
      self,
      num_input: int | Sequence[int],
      num_output: int | Sequence[int],
      *,
      initializer: str = 'linear',
      use_bias: bool = True,
      bias_init: float = 0.0,
      rngs: nnx.Rngs,
  ):
    self.in_shape = _as_tuple(num_input)
    self.out_shape = _as_tuple(num_output)
    self.weights = param(rngs, self.in_shape + self.out_shape, initializer,
                         fan_in=math.prod(self.in_shape))
    self.bias = (param(rngs, self.out_shape, f'const:{bias_init}')
                 if use_bias else None)

  def __call__(self, x: jax.Array) -> jax.Array:
    n_in, n_out = len(self.in_shape), len(self.out_shape)
    w = self.weights[...]
    if n_in == 1 and n_out == 1:
      y = jnp.matmul(x, w.astype(x.dtype))
    else:
      ins, outs = 'abcde'[:n_in], 'fghij'[:n_out]
      y = jnp.einsum(f'...{ins},{ins}{outs}->...{outs}', x, w.astype(x.dtype))
    if self.bias is not None:
      y = y + self.bias[...].astype(y.dtype)
    return y


class LayerNorm(nnx.Module):
  """LayerNorm over the last axis with `scale`/`offset` vectors.

  NUMERICS: epsilon 1e-5 and the exact two-pass variance, as Haiku's LayerNorm
  in AlphaFold (Flax's defaults are 1e-6 and the one-pass variance). Always
  computed in float32, cast back to the input dtype.
  """

  def __init__(self, num_channels: int, *, eps: float = 1e-5, rngs: nnx.Rngs | None = None):
    del rngs
    self.eps = eps
    self.scale = nnx.Param(jnp.ones((num_channels,), jnp.float32))
    self.offset = nnx.Param(jnp.zeros((num_channels,), jnp.float32))

  def __call__(self, x: jax.Array) -> jax.Array:
    dtype = x.dtype
    x = x.astype(jnp.float32)
    mean = jnp.mean(x, axis=-1, keepdims=True)
    var = jnp.mean(jnp.square(x - mean), axis=-1, keepdims=True)
    inv = self.scale[...] * jax.lax.rsqrt(var + self.eps)
    return (inv * (x - mean) + self.offset[...]).astype(dtype)


def final_init(zero_init: bool) -> str:
  """AlphaFold zero-initialises layers that write into a residual stream."""
  return 'zeros' if zero_init else 'linear'


def mask_to_bias(mask: jax.Array, dtype=jnp.float32) -> jax.Array:
  """Additive attention bias: 0 where mask is 1, -1e9 where it is 0."""
  return (1e9 * (mask.astype(jnp.float32) - 1.0)).astype(dtype)


def mask_mean(mask: jax.Array, value: jax.Array, axis, eps: float = 1e-10) -> jax.Array:
  """Mean of `value` over `axis` where `mask` (broadcastable) is set."""
  axis = (axis,) if isinstance(axis, int) else tuple(axis)
  broadcast = 1.0
  for a in axis:
    if mask.shape[a] == 1 and value.shape[a] != 1:
      broadcast *= value.shape[a]
  return jnp.sum(mask * value, axis=axis) / (jnp.sum(mask, axis=axis) * broadcast + eps)
