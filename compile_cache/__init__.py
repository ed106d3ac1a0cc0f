"""Persistent XLA compilation cache for any JAX program (imports nothing from af_jax).

This is the thin start: `configure()` points JAX's persistent cache at a
directory and stores every executable whatever its compile time. Warm-up,
autotune profiles and maintenance commands come with the compile-cache issue.
"""

from __future__ import annotations

import os
from pathlib import Path

import jax

ENV_VAR = 'COMPILE_CACHE_DIR'


def default_dir() -> Path:
  """`$COMPILE_CACHE_DIR`, else `$XDG_CACHE_HOME/af_jax/xla`, else `~/.cache/af_jax/xla`."""
  if os.environ.get(ENV_VAR):
    return Path(os.environ[ENV_VAR]).expanduser()
  base = os.environ.get('XDG_CACHE_HOME') or os.path.join(os.path.expanduser('~'), '.cache')
  return Path(base) / 'af_jax' / 'xla'


def configure(cache_dir: str | os.PathLike | None = None, *,
              max_size_bytes: int | None = None) -> Path:
  """Enable the persistent cache; call before the first compilation.

  Args:
    cache_dir: where executables are stored (default: `default_dir()`).
    max_size_bytes: evict least-recently-used entries beyond this size.

  Returns:
    The cache directory in use.
  """
  path = Path(cache_dir).expanduser() if cache_dir else default_dir()
  path.mkdir(parents=True, exist_ok=True)
  jax.config.update('jax_compilation_cache_dir', str(path))
  # Cache every executable: a fast compile is still worth skipping at start-up.
  jax.config.update('jax_persistent_cache_min_compile_time_secs', 0.0)
  jax.config.update('jax_persistent_cache_min_entry_size_bytes', 0)
  if max_size_bytes is not None:
    jax.config.update('jax_compilation_cache_max_size', int(max_size_bytes))
  return path
