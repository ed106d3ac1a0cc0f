"""XLA settings af_jax runs with unless the user sets them: added to XLA_FLAGS on import.

XLA reads XLA_FLAGS once, when JAX's backend starts, and a per-executable
`compiler_options` entry for these flags is accepted but not applied by
XLA:CPU (jaxlib 0.10.2), so the environment variable is the only place for them.

- `--xla_cpu_enable_concurrency_optimized_scheduler=false` (PERF): XLA:CPU's
  default scheduler keeps buffers alive early so that independent ops can run at
  once; in chunked loops that means copies of whole pair-sized outputs. The
  memory-minimising scheduler uses less memory and runs no slower (bench/RESULTS.md,
  "Behind the code"). GPU backends ignore it.
"""

from __future__ import annotations

import logging
import os
import sys

DEFAULT_FLAGS = ('--xla_cpu_enable_concurrency_optimized_scheduler=false',)


def _name(flag: str) -> str:
  return flag.split('=', 1)[0]


def apply_defaults() -> tuple[str, ...]:
  """Adds each default flag whose name XLA_FLAGS lacks (a user's own value wins).

  Returns:
    The flags added. None are added once JAX's backend has started (XLA would ignore
    them); a CPU process then logs one warning naming the flag to set.
  """
  current = os.environ.get('XLA_FLAGS', '')
  present = {_name(f) for f in current.split()}
  missing = tuple(f for f in DEFAULT_FLAGS if _name(f) not in present)
  if not missing:
    return ()
  bridge = sys.modules.get('jax._src.xla_bridge')
  if bridge is not None and bridge.backends_are_initialized():
    import jax
    if jax.default_backend() == 'cpu':
      logging.getLogger('af_jax').warning(
          'JAX started before af_jax was imported, so XLA:CPU keeps its concurrency-optimised '
          'scheduler (more memory for chunked ops); import af_jax first or set '
          'XLA_FLAGS=%s', ' '.join(missing))
    return ()
  os.environ['XLA_FLAGS'] = ' '.join([current, *missing]).strip()
  return missing
