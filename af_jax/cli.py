"""Shared command-line plumbing: `--config.a.b=value` overrides, the compilation-cache flags,
one-line errors."""

from __future__ import annotations

import ast
import sys
from collections.abc import Callable, Sequence

from absl import flags, logging

from af_jax.data.names import shown
from af_jax.errors import AfJaxError, ConfigError

_PREFIX = '--config.'


def split_config_overrides(argv: Sequence[str]) -> tuple[list[str], dict[str, str]]:
  """Separate `--config.key=value` arguments (any preset key) from the others."""
  rest, overrides = [], {}
  for arg in argv:
    if arg.startswith(_PREFIX):
      key, sep, value = arg[len(_PREFIX):].partition('=')
      if not sep:
        raise ConfigError(f'{arg!r} has no value; write --config.{key}=VALUE')
      overrides[key] = value
    else:
      rest.append(arg)
  return rest, overrides


def _parse(text: str, like):
  if isinstance(like, bool):
    if text.lower() in ('true', '1', 'yes'):
      return True
    if text.lower() in ('false', '0', 'no'):
      return False
    raise ValueError(text)
  if isinstance(like, (int, float)) and not isinstance(like, bool):
    return float(text) if isinstance(like, float) else int(text)
  if isinstance(like, str):
    return text
  return ast.literal_eval(text)


def apply_overrides(config, overrides: dict[str, str]) -> None:
  """Set each dotted key, typed like the value it replaces.

  Raises:
    ConfigError: for an unknown key or a value of the wrong type.
  """
  for key, text in overrides.items():
    node = config
    parts = key.split('.')
    for part in parts[:-1]:
      if part not in node:
        raise ConfigError(f'unknown config key {key!r} (no {part!r}); see configs/model.py')
      node = node[part]
    leaf = parts[-1]
    if leaf not in node:
      raise ConfigError(f'unknown config key {key!r}; see configs/model.py for the keys')
    try:
      node[leaf] = _parse(text, node[leaf])
    except (ValueError, SyntaxError):
      raise ConfigError(f'--config.{key}={text!r} is not a valid '
                        f'{type(node[leaf]).__name__}') from None


def define_compile_cache_flags() -> None:
  """The persistent-cache and XLA flags every af_jax command line accepts."""
  flags.DEFINE_string('compilation_cache_dir', None, 'Persistent XLA cache directory (default: '
                      '$COMPILE_CACHE_DIR, else $XDG_CACHE_HOME or ~/.cache, /af_jax/xla). Each '
                      'shape compiles once, ever; later runs load it.')
  flags.DEFINE_bool('compilation_cache', True, 'Use the persistent cache '
                    '(--nocompilation_cache: compile in memory only).')
  flags.DEFINE_string('compilation_cache_max_size', None, 'Evict least recently used entries '
                      'beyond this size (e.g. 20GB).')
  flags.DEFINE_string('autotune_profile', 'default', 'XLA GPU flag preset, part of the cache '
                      'key: default, fast_compile, max_autotune, multi_device (see python -m '
                      'compile_cache --help). Harmless on CPU.')
  flags.DEFINE_string('xla_flags', '', 'Extra XLA flags (space separated), added after the '
                      'profile\'s and part of the cache key.')


def configure_compile_cache(values: flags.FlagValues) -> None:
  """Apply `define_compile_cache_flags`' values; call before anything touches JAX (the
  profile's XLA flags are read when the backend starts)."""
  if not values.compilation_cache:
    return
  import compile_cache
  path = compile_cache.configure(
      values.compilation_cache_dir, max_size_bytes=values.compilation_cache_max_size,
      autotune_profile=values.autotune_profile, xla_flags=values.xla_flags)
  compile_cache.strip_xla_argv()
  logging.info('compilation cache: %s (profile %s)', path, values.autotune_profile)


def run_main(main: Callable[[list[str]], None], argv: Sequence[str] | None = None) -> None:
  """absl-style entry: AfJaxError (or CompileCacheError) becomes one line on stderr, exit 2.

  The line escapes unprintable characters, so no control sequence from an input reaches
  the terminal.
  """
  from compile_cache import CompileCacheError
  try:
    main(list(sys.argv if argv is None else argv))
  except (AfJaxError, CompileCacheError) as e:
    print(f'error: {shown(str(e))}', file=sys.stderr)
    sys.exit(2)
