"""Persistent XLA compilation cache for any JAX program (imports nothing from af_jax).

Compile each shape once, ever: `configure()` points JAX's persistent cache at a directory
(one subdirectory per autotuning profile), stores every executable with a metadata record
(label, compile seconds, last use) and keeps the directory under a size by evicting the least
recently used. `compile_with_cache()` compiles one lowered function through it and reports
hit or miss; `warmup()` fills it ahead of time from shapes alone. `python -m compile_cache
stats|list|prune|clear|verify|mark|warmup` inspects and maintains it; the commands that delete
act only on a root marked as the cache's, and there only on the cache's own files.

Typical use::

  import compile_cache
  compile_cache.configure(autotune_profile='max_autotune')   # before the first JAX call
  compile_cache.warmup([('f/L128', jax.jit(f), (jax.ShapeDtypeStruct((128, 64), 'f4'),))])
"""

from compile_cache.cached_compile import CompileResult
from compile_cache.cached_compile import compile_with_cache
from compile_cache.compile_log import xla_compilations
from compile_cache.config import ENV_VAR
from compile_cache.config import Settings
from compile_cache.config import configure
from compile_cache.config import current
from compile_cache.config import default_dir
from compile_cache.config import strip_xla_argv
from compile_cache.errors import CompileCacheError
from compile_cache.profiles import PROFILES
from compile_cache.units import format_size
from compile_cache.units import parse_size
from compile_cache.warm import Spec
from compile_cache.warm import warmup

__all__ = [
    'CompileCacheError', 'CompileResult', 'ENV_VAR', 'PROFILES', 'Settings', 'Spec',
    'compile_with_cache', 'configure', 'current', 'default_dir', 'format_size', 'parse_size',
    'strip_xla_argv', 'warmup', 'xla_compilations',
]
