"""Dynamic Axial Parallelism: one example's MSA and pair split across the `dap` devices.

Inside a block every device holds a slice of the activations in one of two
layouts (Cheng et al. (2022) FastFold, Sec. 4):

- rows: MSA [N_seq/d, N_res, c] (its sequences) and pair [N_res/d, N_res, c]
  (its rows i). Row-wise ops (MSA row attention, triangle multiplication
  outgoing, triangle attention around the starting node) need no more than this.
- columns: MSA [N_seq, N_res/d, c] and pair [N_res, N_res/d, c]. Column-wise ops
  (MSA column attention, outer product mean, triangle multiplication incoming,
  triangle attention around the ending node) run here.

Moving between layouts is one all-to-all. What a row needs from every other row
(the pair bias of row attention and of triangle attention, the right projection
of the outer product mean and of the triangle multiplications) is all-gathered.
Nothing is ever all-reduced. `Dap` holds these collectives for one block; outside
`shard_map` (`NO_DAP`) they are identities, so the same block code runs on one
device.

`evoformer_stack` and `pair_stack` run a stack of blocks under `shard_map`, padding
sizes that do not divide by the number of devices (the padding is masked).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jax.sharding import Mesh, PartitionSpec

from af_jax.parallel.mesh import DAP_AXIS, dap_size, round_up


@dataclasses.dataclass(frozen=True)
class Dap:
  """The collectives of one DAP group; `axis_name=None` is a single device."""

  axis_name: str | None = None
  size: int = 1

  @property
  def active(self) -> bool:
    return self.axis_name is not None

  def index(self) -> jax.Array | int:
    return jax.lax.axis_index(self.axis_name) if self.active else 0

  def gather(self, x: jax.Array, axis: int) -> jax.Array:
    """Every device's slice of `x` along `axis`, concatenated in device order."""
    if not self.active:
      return x
    return jax.lax.all_gather(x, self.axis_name, axis=axis, tiled=True)

  def to_columns(self, x: jax.Array) -> jax.Array:
    """Rows layout [A/d, B, ...] -> columns layout [A, B/d, ...] (one all-to-all)."""
    if not self.active:
      return x
    return jax.lax.all_to_all(x, self.axis_name, split_axis=1, concat_axis=0, tiled=True)

  def to_rows(self, x: jax.Array) -> jax.Array:
    """Columns layout [A, B/d, ...] -> rows layout [A/d, B, ...] (one all-to-all)."""
    if not self.active:
      return x
    return jax.lax.all_to_all(x, self.axis_name, split_axis=0, concat_axis=1, tiled=True)

  def local(self, x: jax.Array, axis: int) -> jax.Array:
    """This device's slice along `axis` of an array every device holds whole (masks)."""
    if not self.active:
      return x
    n = x.shape[axis] // self.size
    return jax.lax.dynamic_slice_in_dim(x, self.index() * n, n, axis)

  def rows(self, x: jax.Array) -> jax.Array:
    return self.local(x, 0)

  def columns(self, x: jax.Array) -> jax.Array:
    return self.local(x, 1)


NO_DAP = Dap()


def _pad_to(x: jax.Array, shape: tuple[int, ...]) -> jax.Array:
  pad = [(0, s - d) for s, d in zip(shape, x.shape)] + [(0, 0)] * (x.ndim - len(shape))
  return jnp.pad(x, pad) if any(p for _, p in pad) else x


def _shard(fn: Callable[..., Any], mesh: Mesh, sharded: tuple, whole: tuple) -> Any:
  """Run `fn(dap, *sharded_slices, *whole)` with `sharded` split along axis 0 over `dap`."""
  d = dap_size(mesh)
  spec = PartitionSpec(DAP_AXIS)
  mapped = jax.shard_map(
      lambda *args: fn(Dap(DAP_AXIS, d), *args), mesh=mesh,
      in_specs=(spec,) * len(sharded) + (PartitionSpec(),) * len(whole),
      out_specs=spec if len(sharded) == 1 else (spec,) * len(sharded),
      axis_names={DAP_AXIS})
  return mapped(*sharded, *whole)


def evoformer_stack(apply: Callable[..., tuple[jax.Array, jax.Array]], mesh: Mesh | None,
                    msa: jax.Array, pair: jax.Array, msa_mask: jax.Array,
                    pair_mask: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Run MSA+pair blocks with the MSA split along sequences and the pair along rows.

  Args:
    apply: `apply(dap, msa_rows, pair_rows, msa_mask, pair_mask) -> (msa_rows, pair_rows)`,
      the whole stack on one device's slices (rows layout in and out); masks are whole.
    mesh: a mesh with a `dap` axis, or None to run `apply` unsharded.
    msa: [N_seq, N_res, c_m]; pair [N_res, N_res, c_z]; their masks.

  Returns:
    The updated (msa, pair), whole and unpadded.
  """
  if mesh is None:
    return apply(NO_DAP, msa, pair, msa_mask, pair_mask)
  d = dap_size(mesh)
  n_seq, n_res = msa.shape[:2]
  s, r = round_up(n_seq, d), round_up(n_res, d)
  msa_out, pair_out = _shard(
      apply, mesh, (_pad_to(msa, (s, r)), _pad_to(pair, (r, r))),
      (_pad_to(msa_mask, (s, r)), _pad_to(pair_mask, (r, r))))
  return msa_out[:n_seq, :n_res], pair_out[:n_res, :n_res]


def pair_stack(apply: Callable[..., jax.Array], mesh: Mesh | None, pair: jax.Array,
               pair_mask: jax.Array, *whole: Any) -> jax.Array:
  """Run pair-only blocks with the pair split along rows.

  Args:
    apply: `apply(dap, pair_rows, pair_mask, *whole) -> pair_rows` on one device's rows.
    mesh: a mesh with a `dap` axis, or None to run `apply` unsharded.
    pair: [N_res, N_res, c]; pair_mask [N_res, N_res].
    *whole: further inputs every device receives whole (e.g. template features),
      their residue axes padded by `apply` itself if it needs them aligned.

  Returns:
    The updated pair, whole and unpadded.
  """
  if mesh is None:
    return apply(NO_DAP, pair, pair_mask, *whole)
  d = dap_size(mesh)
  n_res = pair.shape[0]
  r = round_up(n_res, d)
  out = _shard(apply, mesh, (_pad_to(pair, (r, r)),), (_pad_to(pair_mask, (r, r)), *whole))
  return out[:n_res, :n_res]


def pad_residues(x: jax.Array, n_res: int, axes: tuple[int, ...]) -> jax.Array:
  """Zero-pad the residue `axes` of `x` to `n_res` (template features inside `pair_stack`)."""
  shape = list(x.shape)
  for a in axes:
    shape[a] = n_res
  return _pad_to(x, tuple(shape))
