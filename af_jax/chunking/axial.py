"""`axial_map`: run a per-slice function over one axis, whole or in chunks.

Modules write each axial op for ONE slice (one MSA row, one pair row, ...).
`axial_map` vectorises it over the axis: with `chunk=None` as a single batched
computation (`jax.vmap`), otherwise as `lax.map(fn, slices, batch_size=chunk)`,
which bounds the live activations to `chunk` slices at a time. Both give the
same numbers up to float32 rounding, so chunking never needs a branch in a
module.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import jax


@dataclasses.dataclass(frozen=True)
class ChunkPlan:
  """One chunk size per op kind; None runs the op unchunked."""

  msa_row_attention: int | None = None
  msa_column_attention: int | None = None
  msa_column_global_attention: int | None = None
  msa_transition: int | None = None
  outer_product_mean: int | None = None
  triangle_multiplication: int | None = None
  triangle_attention: int | None = None
  pair_transition: int | None = None
  template_pointwise_attention: int | None = None

  @classmethod
  def uniform(cls, chunk: int | None) -> ChunkPlan:
    """The same chunk size for every op kind."""
    return cls(**{f.name: chunk for f in dataclasses.fields(cls)})


def axial_map(fn: Callable[..., Any], args: Sequence[jax.Array], *,
              axis: int | tuple[int, ...] = 0, chunk: int | None = None,
              out_axis: int = 0) -> Any:
  """Map `fn` over `axis` of every array in `args`.

  Args:
    fn: function of one slice of each arg (the axis removed); returns a pytree.
    args: arrays sharing the size of `axis`.
    axis: the axial dimension of the args (one int, or one per arg).
    chunk: slices computed at once; None for all of them.
    out_axis: where the mapped axis goes in each output.

  Returns:
    fn's outputs stacked along `out_axis`.
  """
  axes = tuple(axis) if isinstance(axis, (tuple, list)) else (axis,) * len(args)
  size = args[0].shape[axes[0]]
  if chunk is None or chunk >= size:
    return jax.vmap(fn, in_axes=axes, out_axes=out_axis)(*args)
  moved = [jax.numpy.moveaxis(a, ax, 0) for a, ax in zip(args, axes)]
  # Rematerialised per chunk: differentiated, the backward pass recomputes one chunk's
  # intermediates at a time instead of keeping every chunk's (attention logits, ...);
  # not differentiated, jax.checkpoint is inlined and changes nothing.
  one_chunk = jax.checkpoint(lambda xs: fn(*xs), prevent_cse=False)
  out = jax.lax.map(one_chunk, moved, batch_size=chunk)
  if out_axis != 0:
    out = jax.tree_util.tree_map(lambda y: jax.numpy.moveaxis(y, 0, out_axis), out)
  return out
