"""Many hosts: join the processes of one run through `jax.distributed.initialize()`.

Every process runs the same command; afterwards `jax.devices()` lists the
devices of all of them and a mesh (`parallel.make_mesh`) can span hosts. Three
ways in:

- arguments, which the command lines take from their flags (`af_jax/run/cli.py`):
  `--coordinator_address=host:port --num_processes=N --process_id=I`;
- environment: `JAX_COORDINATOR_ADDRESS`, `JAX_NUM_PROCESSES`, `JAX_PROCESS_ID`
  (the same three, for launchers that set variables);
- `auto` (`--distributed`): let JAX read the cluster's own environment (Slurm, Open MPI,
  Kubernetes, Cloud TPU).

Nothing of this given: a single process, nothing to do.
"""

from __future__ import annotations

import os

import jax

from af_jax.errors import InputError


def _env_int(name: str) -> int | None:
  value = os.environ.get(name)
  if value in (None, ''):
    return None
  try:
    return int(value)
  except ValueError:
    raise InputError(f'{name}={value!r} is not an integer') from None


def initialize(coordinator_address: str | None = None, num_processes: int | None = None,
               process_id: int | None = None, *, auto: bool = False) -> bool:
  """Join a multi-host run when one is described; returns whether one was joined.

  Must run before anything touches a device. Explicit arguments win over the
  JAX_* environment variables.

  Raises:
    InputError: an incomplete or inconsistent description.
  """
  address = coordinator_address or os.environ.get('JAX_COORDINATOR_ADDRESS') or None
  count = num_processes if num_processes is not None else _env_int('JAX_NUM_PROCESSES')
  index = process_id if process_id is not None else _env_int('JAX_PROCESS_ID')
  if address is None and count is None and index is None:
    if auto:
      jax.distributed.initialize()
      return True
    return False
  missing = [name for name, v in (('--coordinator_address', address),
                                  ('--num_processes', count), ('--process_id', index))
             if v is None]
  if missing:
    raise InputError(f'a multi-host run needs {", ".join(missing)} as well (or --distributed '
                     "to read them from the cluster's environment)")
  if count < 1 or not 0 <= index < count:
    raise InputError(f'--process_id={index} must be in [0, --num_processes={count})')
  if ':' not in address:
    raise InputError(f'--coordinator_address={address!r} must be host:port')
  jax.distributed.initialize(coordinator_address=address, num_processes=count,
                             process_id=index)
  return True
