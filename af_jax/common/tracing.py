"""Trace a function once, replay it many times.

A loop body that needs its own output shapes first (a `lax` loop's zero carry)
would otherwise be traced twice, once for the shapes and once as the body; with
the model code behind it, each trace is Python time every cold process pays.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.extend


def trace_once(fn: Callable[..., Any], *example_args) -> tuple[Callable[..., Any], Any]:
  """Traces `fn(*example_args)` (abstractly) once.

  Returns:
    (replay, out_avals): `replay(*args)` evaluates the traced program on args of the
    example's shapes (no Python of `fn` runs again); `out_avals` is fn's output pytree
    with one abstract value per leaf (shape, dtype, and under shard_map the mesh axes
    it varies over).
  """
  closed, shapes = jax.make_jaxpr(fn, return_shape=True)(*example_args)
  evaluate = jax.extend.core.jaxpr_as_fun(closed)
  out_tree = jax.tree_util.tree_structure(shapes)

  def replay(*args):
    return jax.tree_util.tree_unflatten(out_tree, evaluate(*jax.tree_util.tree_leaves(args)))
  return replay, jax.tree_util.tree_unflatten(out_tree, closed.out_avals)
