"""Changes to a config from outside: `--config.a.b=value` arguments and the recycle count.

Command lines (run_inference.py, run_train.py) split the `--config.*` arguments off
their other flags and apply them to any preset, inference or training alike.
"""

from __future__ import annotations

import ast
from collections.abc import Mapping, Sequence

import ml_collections

from af_jax.errors import ConfigError

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


def apply_overrides(config: ml_collections.ConfigDict, overrides: Mapping[str, str]) -> None:
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


def set_num_recycle(config: ml_collections.ConfigDict, num_recycle: int) -> None:
  """Run `num_recycle` recycles: the model's loop bound and, for a monomer preset, the
  data pipeline's recycle slices (a multimer samples per recycle inside the model)."""
  config.model.num_recycle = num_recycle
  if 'num_recycle' in config.data.get('common', {}):
    config.data.common.num_recycle = num_recycle
