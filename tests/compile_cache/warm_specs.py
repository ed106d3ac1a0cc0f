"""A warm-up provider for the tests: small jitted matmul chains on shape structs only."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def make_fn(i: int):
  """A few matmuls; `i` changes the program (so each gets its own cache key) and its name."""
  def fn(a, b):
    for _ in range(2):
      a = jnp.tanh(a @ b) * (i + 1)
    return a.sum()
  fn.__name__ = f'mm{i}'
  return jax.jit(fn)


def specs(n: int = 32, count: int = 2) -> list[tuple]:
  """`count` specs `('mm{i}/n{n}', jitted, (a, b))` on [n, n] float32 structs."""
  struct = jax.ShapeDtypeStruct((n, n), jnp.float32)
  return [(f'mm{i}/n{n}', make_fn(i), (struct, struct)) for i in range(count)]
