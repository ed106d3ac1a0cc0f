"""Progress of the recycling loop, reported from inside the compiled program.

`AlphaFold.recycle` (with `progress=True`) calls `report` once per iteration with that
iteration's confidence and CA change; the values leave the device through a host callback
(`jax.experimental.io_callback`) while the loop goes on, so a caller sees each recycle as it
ends, not when the prediction returns. Whoever wants them `listen`s around the call (the run
layer logs one line per recycle, naming the target and prediction); nobody listening, this
module's logger gets the line.

The executable is compiled once per bucket and reused for every target, model and seed, and
may be loaded from the persistent compilation cache (compile_cache stores executables with
host callbacks and loads them with this process's callbacks): so the callback carries only
numbers, and who the numbers are for comes from the listener set at call time.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import math
import threading
from collections.abc import Callable, Iterator, Mapping

import jax
import numpy as np
from jax.experimental import io_callback
from jax.sharding import Mesh, SingleDeviceSharding

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class RecycleProgress:
  """One recycling iteration's state as it ends.

  Attributes:
    recycle: the iteration, 0 for the first pass (recycle r of `num_recycle`).
    num_recycle: the loop's bound (recycles after the first pass; it may stop early).
    mean_plddt: the mean pLDDT (0-100) over the residues.
    ca_change: how far the CA distances moved since the previous iteration (Å); NaN on
      the first pass, which has no previous structure.
    ptm: pTM, when the model has the predicted aligned error head.
    iptm: interface pTM of a complex.
  """

  recycle: int
  num_recycle: int
  mean_plddt: float
  ca_change: float
  ptm: float | None = None
  iptm: float | None = None

  def describe(self) -> str:
    """`recycle 1/3: pLDDT 71.2, pTM 0.642, CA change 1.37 A`."""
    parts = [f'pLDDT {self.mean_plddt:.1f}']
    parts += [f'{name} {value:.3f}' for name, value in (('pTM', self.ptm), ('ipTM', self.iptm))
              if value is not None]
    parts.append('CA change -' if math.isnan(self.ca_change)
                 else f'CA change {self.ca_change:.2f} A')
    return f'recycle {self.recycle}/{self.num_recycle}: ' + ', '.join(parts)


_lock = threading.Lock()
_listeners: list[Callable[[RecycleProgress], None]] = []


@contextlib.contextmanager
def listen(listener: Callable[[RecycleProgress], None]) -> Iterator[None]:
  """Sends every recycle reported inside the block to `listener` (the latest one set).

  The callback runs on a runtime thread while the program runs; the block must wait for the
  outputs (as `Predictor.predict_processed` does) to see every line inside it.
  """
  with _lock:
    _listeners.append(listener)
  try:
    yield
  finally:
    with _lock:
      _listeners.remove(listener)


def _deliver(num_recycle: int, recycle, metrics: Mapping, ca_change) -> None:
  values = {k: float(np.asarray(v)) for k, v in metrics.items()}
  first = int(recycle) == 0
  info = RecycleProgress(recycle=int(recycle), num_recycle=num_recycle,
                         mean_plddt=values['mean_plddt'],
                         ca_change=math.nan if first else float(np.asarray(ca_change)),
                         ptm=values.get('ptm'), iptm=values.get('iptm'))
  with _lock:
    listener = _listeners[-1] if _listeners else None
  if listener is None:
    logger.info('%s', info.describe())
  else:
    listener(info)


def report(recycle: jax.Array, num_recycle: int, metrics: Mapping[str, jax.Array],
           ca_change: jax.Array, mesh: Mesh | None = None) -> None:
  """Inside the traced loop: hand one iteration's numbers to the host.

  Args:
    recycle: int32 scalar, the iteration (0 = first pass).
    num_recycle: the loop's bound.
    metrics: float32 scalars: `mean_plddt`, and `ptm`, `iptm` where the model has them.
    ca_change: float32 scalar, the CA distance change of the iteration (Å).
    mesh: the prediction's mesh: the callback runs once, from its first device (process 0's
      in a multi-host run), not once per device.
  """
  # Unordered: the values depend on the iteration, so each report follows its recycle, and
  # the loop does not wait for the host. (ordered=True also threads a token through the
  # loop; with one device calling back from an 8-device program it crashed XLA:CPU in
  # JAX 0.10.2.)
  sharding = SingleDeviceSharding(mesh.devices.flat[0]) if mesh is not None else None
  io_callback(functools.partial(_deliver, num_recycle), None, recycle, dict(metrics),
              ca_change, sharding=sharding, ordered=False)
