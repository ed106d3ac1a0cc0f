"""AutoChunk's measurements and memory: what XLA's buffer assignment says a program needs,
and the cache on disk of each plan's measured peak, so that a bucket pays the search once.

A rung is compiled through the persistent compilation cache (`compile`), so the chosen
plan's executable is the one inference then loads, not a second compile.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import pathlib
from collections.abc import Mapping
from typing import Any

import compile_cache
import jax
import numpy as np
from absl import logging

# Bump when the analytic model or the search changes: old cached decisions are then ignored.
_CACHE_VERSION = 5


def _tree_bytes(tree) -> int:
  total = 0
  for leaf in jax.tree_util.tree_leaves(tree):
    aval = getattr(leaf, '_aval', leaf)
    total += math.prod(aval.shape) * np.dtype(aval.dtype).itemsize
  return total


def io_bytes(lowered: jax.stages.Lowered) -> int:
  """Argument + output bytes of a lowered program, known before compiling it."""
  return _tree_bytes(lowered.args_info) + _tree_bytes(lowered.out_info)


def compiled_memory(compiled: jax.stages.Compiled) -> dict[str, int]:
  """XLA's buffer assignment of an executable, per device, with `peak` =
  arguments + outputs + temporaries - aliased: what must be resident at once.

  (JAX 0.10.2's CompiledMemoryStats also has `peak_memory_in_bytes`, but on CPU
  it reports arguments + outputs only, without the temporaries; kept for
  reference.)
  """
  m = compiled.memory_analysis()
  if m is None:
    return {}
  d = {k: int(getattr(m, f'{k}_size_in_bytes', 0) or 0)
       for k in ('argument', 'output', 'temp', 'alias', 'generated_code')}
  d['peak'] = d['argument'] + d['output'] + d['temp'] - d['alias']
  d['xla_peak_memory'] = int(getattr(m, 'peak_memory_in_bytes', 0) or 0)
  return d


def compile_program(label: str, lowered: jax.stages.Lowered
                    ) -> tuple[jax.stages.Compiled, dict, float]:
  """`lowered` compiled through the persistent cache (logged as a hit or a miss) under
  `autochunk/<label>`, its `compiled_memory`, and the seconds the compile (or load) took."""
  result = compile_cache.compile_with_cache(f'autochunk/{label}', lowered)
  return result.compiled, compiled_memory(result.compiled), result.seconds


# ----------------------------------------------------------------------------
# The cache of measured peaks.


def default_cache_dir() -> pathlib.Path:
  """`autochunk/` inside the compilation cache's root (the configured one, e.g.
  `--compilation_cache_dir`, else its default): a run that names another compilation
  cache has its own measurements too, a copied cache carries them along, and nothing is
  written outside the directory the user named. compile_cache's clear/prune/verify leave
  this subdirectory alone (not their files)."""
  settings = compile_cache.current()
  root = settings.root if settings is not None else pathlib.Path(compile_cache.default_dir())
  return root / 'autochunk'


def _config_hash(config) -> str:
  mc = config.model if 'model' in config else config
  text = mc.to_json_best_effort(sort_keys=True) if hasattr(mc, 'to_json_best_effort') \
      else json.dumps(mc, sort_keys=True, default=str, allow_nan=False)
  return hashlib.sha256(text.encode()).hexdigest()[:16]


def _mesh_key(mesh) -> dict | None:
  if mesh is None:
    return None
  return {str(k): int(v) for k, v in dict(mesh.shape).items()}



def program_key(config, shapes: Mapping[str, Any], *, device_kind: str | None = None,
                mesh=None, program: str | None = None) -> dict:
  """What identifies a program in the cache: its config, input shapes, device
  kind (default: the first device's), mesh, and `program` for programs that share config
  and shapes (one block benchmarked alone)."""
  return {
      'shapes': {k: [list(np.shape(v)), str(np.dtype(getattr(v, 'dtype', np.float32)))]
                 for k, v in sorted(shapes.items())},
      'device_kind': device_kind or jax.devices()[0].device_kind,
      'mesh': _mesh_key(mesh),
      'config': _config_hash(config),
      'program': program,
  }


def decision_key(program: Mapping, cpu: bool) -> dict:
  """The cache's key: the program's, the rules and the versions. Not the budget: the cache
  holds each rung's measured peak, which settles the plan for any budget on the same side
  of them (`search._decided`)."""
  return {**program, 'version': _CACHE_VERSION, 'jax': jax.__version__, 'cpu_rules': bool(cpu)}


def cache_path(cache_dir: str | os.PathLike | None, key: Mapping) -> pathlib.Path:
  """The program's file in `cache_dir` (default: `default_cache_dir()`)."""
  text = json.dumps(key, sort_keys=True, allow_nan=False)
  digest = hashlib.sha256(text.encode()).hexdigest()[:24]
  return pathlib.Path(cache_dir or default_cache_dir()) / f'{digest}.json'


def read_peaks(path: pathlib.Path, key: Mapping) -> tuple[int | None, dict[str, int]]:
  """(argument + output bytes, peak bytes by plan summary) cached at `path` for `key`;
  (None, {}) when there is no such entry."""
  try:
    entry = json.loads(path.read_text())
  except (OSError, ValueError):
    return None, {}
  if not isinstance(entry, dict) or entry.get('key') != key:
    return None, {}
  return entry.get('io_bytes'), {str(k): int(v) for k, v in entry.get('peaks', {}).items()}


def write_peaks(path: pathlib.Path, key: Mapping, io: int, peaks: Mapping[str, int]) -> None:
  """Add `peaks` to the entry at `path` (written atomically; a cache that cannot be
  written only costs compiles later)."""
  _, old = read_peaks(path, key)
  entry = {'key': dict(key), 'io_bytes': int(io), 'peaks': {**old, **peaks}}
  try:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f'{path.name}.tmp-{os.getpid()}')
    tmp.write_text(json.dumps(entry, indent=1, sort_keys=True, allow_nan=False))
    os.replace(tmp, path)
  except OSError as e:
    logging.warning('AutoChunk: cannot write its cache %s: %s', path, e)
