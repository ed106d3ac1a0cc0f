"""`axial_map`: run a per-slice function over one axis, whole or in chunks.

Modules write each axial op for ONE slice (one MSA row, one pair row, ...).
`axial_map` vectorises it over the axis: with `chunk=None` as a single batched
computation (`jax.vmap`), otherwise as a loop over `chunk` slices at a time
(what `lax.map(fn, slices, batch_size=chunk)` computes, with each chunk read
from the inputs in place and written into one output buffer), which bounds the
live activations to one chunk's. Both give the same numbers up to float32
rounding, so chunking never needs a branch in a module.

With `residual`, the op's update is added to that activation where it lies:
each chunk's sum is written over the chunk's own slices, so a chunked residual
op holds the activation once instead of the activation, the update and their sum.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import jax
from jax import lax

from af_jax.common import tracing


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
              out_axis: int = 0, residual: jax.Array | None = None) -> Any:
  """Map `fn` over `axis` of every array in `args`.

  Args:
    fn: function of one slice of each arg (the axis removed); returns a pytree.
    args: arrays sharing the size of `axis`.
    axis: the axial dimension of the args (one int, or one per arg).
    chunk: slices computed at once; None for all of them.
    out_axis: where the mapped axis goes in each output.
    residual: None, or an array of the shape of fn's (single-array) stacked
      output: the result is then `residual + outputs`, each chunk's sum written
      into residual's buffer. An arg that IS `residual` is read from that buffer
      (its axis must be `out_axis`): a chunk reads its own slices before it
      overwrites them, so it sees the input values.

  Returns:
    fn's outputs stacked along `out_axis` (plus `residual` when given).
  """
  axes = tuple(axis) if isinstance(axis, (tuple, list)) else (axis,) * len(args)
  size = args[0].shape[axes[0]]
  # Checked whatever the chunk, so a call valid unchunked is valid chunked too.
  from_buffer = [residual is not None and a is residual for a in args]
  if any(f and ax != out_axis for f, ax in zip(from_buffer, axes)):
    raise ValueError(f'an arg read from the residual buffer must map over out_axis '
                     f'({out_axis}); got axes {axes}')
  if chunk is None or chunk >= size:
    out = jax.vmap(fn, in_axes=axes, out_axes=out_axis)(*args)
    return out if residual is None else residual + out
  # Rematerialised per chunk: differentiated, the backward pass recomputes one chunk's
  # intermediates at a time instead of keeping every chunk's (attention logits, ...);
  # not differentiated, jax.checkpoint is inlined and changes nothing.
  batched = jax.checkpoint(lambda *xs: jax.vmap(fn, in_axes=axes, out_axes=out_axis)(*xs),
                           prevent_cse=False)

  def run(buf, start, n):
    return batched(*[lax.dynamic_slice_in_dim(buf if f else a, start, n, ax)
                     for a, ax, f in zip(args, axes, from_buffer)])

  def write(out, start, y):
    if residual is not None:  # out is the activation: its chunk plus the update.
      y = lax.dynamic_slice_in_dim(out, start, y.shape[out_axis], out_axis) + y
    return jax.tree_util.tree_map(
        lambda o, v: lax.dynamic_update_slice_in_dim(o, v, start, out_axis), out, y)

  # PERF: each chunk is sliced from the inputs where they lie and its result written in
  # place into one output buffer. `lax.map` over moved-axis inputs (the textbook form) keeps
  # the transposed copies of the inputs and a stacked output that is transposed back
  # (bench/RESULTS.md, "Behind the code").
  n_full, rest = divmod(size, chunk)
  # One trace of a full chunk gives the output buffer's shapes and serves as the loop body.
  if residual is None:
    run_chunk, chunk_out = tracing.trace_once(lambda start: run(None, start, chunk),
                                              jax.numpy.int32(0))
    out = jax.tree_util.tree_map(lambda a: _zeros(a, size, out_axis), chunk_out)
    body = lambda i, o: write(o, i * chunk, run_chunk(i * chunk))  # noqa: E731
  else:
    run_chunk, _ = tracing.trace_once(lambda buf, start: run(buf, start, chunk), residual,
                                      jax.numpy.int32(0))
    out = residual
    body = lambda i, o: write(o, i * chunk, run_chunk(o, i * chunk))  # noqa: E731
  out = lax.fori_loop(0, n_full, body, out)
  if rest:
    out = write(out, n_full * chunk, run(out, n_full * chunk, rest))
  return out


def _zeros(chunk_out: jax.core.ShapedArray, size: int, out_axis: int) -> jax.Array:
  """The zero output buffer: one chunk's output grown to `size` along `out_axis`. Inside
  shard_map (DAP) it varies over the mesh axes the chunk's output varies over (a loop's
  initial carry must have its updates' type)."""
  shape = chunk_out.shape[:out_axis] + (size,) + chunk_out.shape[out_axis + 1:]
  zeros = jax.numpy.zeros(shape, chunk_out.dtype)
  manual = getattr(chunk_out, 'manual_axis_type', None)
  varying = tuple(sorted(manual.varying)) if manual is not None else ()
  return lax.pcast(zeros, varying, to='varying') if varying else zeros
