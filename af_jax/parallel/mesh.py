"""The device mesh and the rules that place named activation axes on it.

A mesh has two axes: `data` (independent examples, data parallelism) and `dap`
(one example split across devices, Dynamic Axial Parallelism). Activations are
described by logical axis names; `LOGICAL_RULES` maps each name to a mesh axis
(or None: not sharded). The MSA is split along sequences and the pair along its
rows; the second residue axis and channels are never split.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from af_jax.errors import ConfigError, InputError

DATA_AXIS = 'data'
DAP_AXIS = 'dap'

# Logical axis name -> mesh axis. `res_i` is the pair's first residue axis (its rows),
# `res_j` the second; the MSA's residue axis is `res_j` too (never split outside a block).
LOGICAL_RULES: dict[str, str | None] = {
    'batch': DATA_AXIS,
    'msa_seq': DAP_AXIS,
    'res_i': DAP_AXIS,
    'res_j': None,
    'channel': None,
    'templates': None,
    'recycle': None,
}


def logical_spec(*names: str | None) -> PartitionSpec:
  """The PartitionSpec of an array whose axes carry these logical names (None: replicated)."""
  for n in names:
    if n is not None and n not in LOGICAL_RULES:
      raise ValueError(f'unknown logical axis {n!r}; known: {sorted(LOGICAL_RULES)}')
  return PartitionSpec(*(LOGICAL_RULES[n] if n is not None else None for n in names))


def constrain(x: jax.Array, mesh: Mesh | None, *names: str | None) -> jax.Array:
  """Place `x` by its logical axis names on `mesh` (no-op without a mesh).

  A sharded axis whose size does not divide by its mesh axis is left replicated.
  """
  if mesh is None:
    return x
  spec = logical_spec(*names)
  spec = PartitionSpec(*(a if a is None or x.shape[i] % mesh.shape[a] == 0 else None
                         for i, a in enumerate(spec)))
  return jax.lax.with_sharding_constraint(x, NamedSharding(mesh, spec))


def check_dap(dap: int, devices: Sequence[jax.Device] | None = None) -> None:
  """ConfigError unless `dap` (--dap) is at least 1 and there are that many devices.

  Args:
    dap: devices that share one example (DAP group size).
    devices: the devices to use (default: every device of every process, so call it
      after a multi-host start, which adds the other processes' devices).
  """
  devices = list(jax.devices() if devices is None else devices)
  if dap < 1:
    raise ConfigError(f'--dap={dap} must be at least 1')
  if dap > len(devices):
    raise ConfigError(f'--dap={dap} needs {dap} devices but {len(devices)} are visible '
                      f'({devices[0].platform}); lower --dap, or start every host of a '
                      'multi-host run (--coordinator_address, --num_processes, --process_id)')


def make_mesh(dap: int = 1, data: int | None = None,
              devices: Sequence[jax.Device] | None = None) -> Mesh:
  """A (data, dap) mesh over `devices` (default: every device of every process).

  Args:
    dap: devices that share one example (DAP group size).
    data: DAP groups working on different examples; default all remaining devices.
    devices: the devices to use, in order; the dap axis varies fastest, so a DAP
      group is made of neighbouring devices (one host's, when they fill it).
  """
  devices = list(jax.devices() if devices is None else devices)
  check_dap(dap, devices)
  if data is None:
    data = len(devices) // dap
  if data < 1 or data * dap > len(devices):
    raise InputError(
        f'a mesh of data={data} x dap={dap} needs {max(data, 1) * dap} devices but '
        f'{len(devices)} are available; lower --dap (or the data-parallel size)')
  grid = np.array(devices[:data * dap], dtype=object).reshape(data, dap)
  auto = (jax.sharding.AxisType.Auto,) * 2
  return Mesh(grid, (DATA_AXIS, DAP_AXIS), axis_types=auto)


def replicate(tree, mesh: Mesh | None):
  """Every leaf on every device of `mesh`, or on the default device without a mesh.

  In a multi-host mesh each process passes its own identical copy of the host arrays.
  """
  if mesh is None:
    return jax.device_put(tree)
  sharding = NamedSharding(mesh, PartitionSpec())

  def put(x):
    x = np.asarray(x)
    return jax.make_array_from_callback(x.shape, sharding, lambda index: x[index])

  return jax.tree_util.tree_map(put, tree)


def dap_size(mesh: Mesh | None) -> int:
  return 1 if mesh is None else int(mesh.shape[DAP_AXIS])


def round_up(n: int, multiple: int) -> int:
  return int(math.ceil(n / multiple) * multiple)
