"""Which programs a process compiled, read from JAX's compile log (`jax_log_compiles`).

A run that should have found everything in the cache can be checked from its log alone:
set JAX_LOG_COMPILES=1 for the process and pass its stderr to `xla_compilations`.
"""

from __future__ import annotations

_HIT = 'Persistent compilation cache hit for '
_FINISHED = 'Finished XLA compilation of '


def xla_compilations(log: str) -> list[str]:
  """The programs XLA compiled, in order (e.g. `jit(_apply)`): each 'Finished XLA
  compilation' line that does not follow a persistent cache hit for the same program
  (JAX logs that line for a loaded executable too)."""
  compiled, hit = [], None
  for line in log.splitlines():
    if _HIT in line:
      hit = line.split(_HIT, 1)[1].strip("'").split("'", 1)[0]  # e.g. jit__apply
    elif _FINISHED in line:
      name = line.split(_FINISHED, 1)[1].split(' in ', 1)[0]  # e.g. jit(_apply)
      if hit != name.replace('(', '_').rstrip(')'):
        compiled.append(name)
      hit = None
  return compiled
