"""Linear and LayerNorm with AlphaFold's parameter names, layouts and numerics.

Every learnable array in af_jax is created through these helpers, so a module's
attribute path plus the variable name *is* its AlphaFold key (params.py only
rewrites the path separator and a short table of exceptions).

Precision: parameters are always STORED in float32 (AlphaFold's .npz loads
unchanged). A module that does matmuls takes a compute `dtype`
(`compute_dtype(global_config)`: bfloat16 when `global_config.bfloat16`) and
runs every matmul/einsum through `einsum`/`matmul` below, which cast the
activations and the float32 weights to that dtype at the matmul, as AlphaFold's
`bfloat16_context` casts its parameters on read. LayerNorm statistics, softmax
and sigmoid gates (`gate`) are computed in float32 whatever the dtype.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

# Truncated normal on [-2, 2] has std 0.8796; AlphaFold divides by it so that
# the *truncated* distribution has the requested std.
_TRUNCATED_NORMAL_STD = 0.87962566103423978


def _as_tuple(x: int | Sequence[int]) -> tuple[int, ...]:
  return (int(x),) if isinstance(x, int) else tuple(int(d) for d in x)


def _host_generator(key: jax.Array) -> np.random.Generator | None:
  """A numpy generator seeded by a concrete key; None while tracing (eval_shape, vmap, jit).

  PERF: drawing on the host costs no compilation. Through jax.random every
  distinct parameter shape compiled its own sampler (137 compiles, over a
  minute on a 2-core CPU, even for a tiny config); numpy draws the same
  distributions in well under a second.
  """
  if isinstance(key, jax.core.Tracer):
    return None
  return np.random.default_rng([int(x) for x in np.asarray(jax.random.key_data(key)).ravel()])


def _truncated_normal(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
  """Standard normal truncated to [-2, 2] (redraw the tails until none are left)."""
  x = rng.standard_normal(shape)
  bad = np.abs(x) > 2.0
  while bad.any():
    x[bad] = rng.standard_normal(int(bad.sum()))
    bad = np.abs(x) > 2.0
  return x


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
  if fan_in is None:
    fan_in = math.prod(shape[:-1]) if len(shape) > 1 else 1
  host = _host_generator(key)
  if initializer.startswith('normal:'):
    std = float(initializer.split(':')[1])
    if host is not None:
      return jnp.asarray(std * host.standard_normal(shape, np.float32))
    return std * jax.random.normal(key, shape, jnp.float32)
  if initializer in ('linear', 'relu'):
    scale = (2.0 if initializer == 'relu' else 1.0) / max(fan_in, 1)
    std = math.sqrt(scale) / _TRUNCATED_NORMAL_STD
    if host is not None:
      return jnp.asarray((std * _truncated_normal(host, shape)).astype(np.float32))
    return std * jax.random.truncated_normal(key, -2.0, 2.0, shape, jnp.float32)
  if initializer == 'glorot':
    # Fans as Haiku's VarianceScaling counts them: leading axes beyond the
    # last two act as a receptive field.
    receptive = math.prod(shape[:-2]) if len(shape) > 2 else 1
    fan_in_g = (shape[-2] if len(shape) > 1 else shape[-1]) * receptive
    fan_out = shape[-1] * receptive
    limit = math.sqrt(3.0 / ((fan_in_g + fan_out) / 2.0))
    if host is not None:
      return jnp.asarray(host.uniform(-limit, limit, shape).astype(np.float32))
    return jax.random.uniform(key, shape, jnp.float32, -limit, limit)
  raise ValueError(f'unknown initializer {initializer!r}')


def compute_dtype(global_config) -> jnp.dtype:
  """The trunk's matmul dtype: bfloat16 if `global_config.bfloat16`, else float32."""
  return jnp.dtype(jnp.bfloat16 if global_config.get('bfloat16', False) else jnp.float32)


def _in_dtype(fn, operands, dtype, out_dtype) -> jax.Array:
  dtype = jnp.dtype(dtype)
  operands = [x.astype(dtype) for x in operands]
  if out_dtype is None or jnp.dtype(out_dtype) == dtype:
    return fn(*operands)
  # NUMERICS: XLA:CPU has no bfloat16 x bfloat16 -> float32 dot; there the
  # (already rounded) operands are widened instead, which forms the same
  # products. GPUs and TPUs keep the bfloat16 dot with its float32 result.
  return jax.lax.platform_dependent(
      *operands,
      cpu=lambda *xs: fn(*[x.astype(out_dtype) for x in xs]),
      default=lambda *xs: fn(*xs, preferred_element_type=out_dtype))


def einsum(equation: str, *operands: jax.Array, dtype=jnp.float32,
           out_dtype=None) -> jax.Array:
  """`jnp.einsum` computed in `dtype`, the result in `out_dtype` (default `dtype`).

  NUMERICS: operands (activations and float32-stored weights alike) are cast to
  `dtype` here, at the matmul; XLA accumulates a bfloat16 dot in float32, and
  `out_dtype=float32` keeps that accumulator instead of rounding it to
  bfloat16 (for attention logits, normalised sums and head logits). In
  float32 this is exactly `jnp.einsum`.
  """
  return _in_dtype(functools.partial(jnp.einsum, equation), operands, dtype, out_dtype)


def matmul(x: jax.Array, w: jax.Array, *, dtype=jnp.float32, out_dtype=None) -> jax.Array:
  """`x @ w` with `einsum`'s casts: computed in `dtype`, result in `out_dtype`."""
  return _in_dtype(jnp.matmul, (x, w), dtype, out_dtype)


def gate(x: jax.Array, logits: jax.Array) -> jax.Array:
  """`x * sigmoid(logits)`, in `x`'s dtype.

  NUMERICS: the sigmoid is taken in float32 (it fuses into the product, so
  this costs no memory); only the gated result is rounded to `x.dtype`.
  """
  return (x * jax.nn.sigmoid(logits.astype(jnp.float32))).astype(x.dtype)


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
    dtype: compute dtype of the matmul (parameters stay float32).
    out_dtype: dtype of the result (default `dtype`); float32 keeps the
      matmul's float32 accumulator, e.g. for logits.
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
      dtype=jnp.float32,
      out_dtype=None,
      rngs: nnx.Rngs,
  ):
    self.dtype = jnp.dtype(dtype)
    self.out_dtype = jnp.dtype(dtype if out_dtype is None else out_dtype)
    self.in_shape = _as_tuple(num_input)
    self.out_shape = _as_tuple(num_output)
    self.weights = param(rngs, self.in_shape + self.out_shape, initializer,
                         fan_in=math.prod(self.in_shape))
    self.bias = (param(rngs, self.out_shape, f'const:{bias_init}')
                 if use_bias else None)

  def __call__(self, x: jax.Array) -> jax.Array:
    n_in, n_out = len(self.in_shape), len(self.out_shape)
    w = self.weights[...]
    kw = dict(dtype=self.dtype, out_dtype=self.out_dtype)
    if n_in == 1 and n_out == 1:
      y = matmul(x, w, **kw)
    else:
      ins, outs = 'abcde'[:n_in], 'fghij'[:n_out]
      y = einsum(f'...{ins},{ins}{outs}->...{outs}', x, w, **kw)
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
