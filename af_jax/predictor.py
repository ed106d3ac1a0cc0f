"""The public Predictor (`af_jax.Predictor`): processed batches -> outputs, as
run_inference.py folds them by default.

Each bucket's ChunkPlan is AutoChunk's (`autochunk.bucket_predictor`, the command line's
own call) and every executable goes through the persistent compilation cache at the command
line's default directory; keywords turn either off. It sits above the AutoChunk planner and
wraps the bucket-level `af_jax.inference.Predictor`, which compiles one plan.
"""

from __future__ import annotations

import os
import pathlib
from collections.abc import Mapping

import numpy as np
from absl import logging
from jax.sharding import Mesh

from af_jax import autochunk
from af_jax import inference
from af_jax.chunking import ChunkPlan
from af_jax.errors import InputError


def use_compile_cache(cache: bool | str | os.PathLike = True) -> pathlib.Path | None:
  """Turn on the persistent compilation cache as the command lines do; returns its root.

  Args:
    cache: True: the cache configured already in this process, else the command line's
      default (`$COMPILE_CACHE_DIR`, else `$XDG_CACHE_HOME` or `~/.cache`, then
      `/af_jax/xla`); a path: that directory; False: leave the process as it is (None).
      The cache is process-wide: one turned on earlier stays on.
  """
  import compile_cache
  if cache is False or cache is None:
    return None
  current = compile_cache.current()
  if cache is True:
    return current.root if current is not None else compile_cache.configure()
  path = pathlib.Path(cache).expanduser()
  if current is not None and current.root == path:
    return current.root
  return compile_cache.configure(path)


class Predictor:
  """Folds AlphaFold's processed features with one preset's weights.

  Each batch's shapes (a length and MSA-depth bucket) get a chunk plan once, then one
  executable, compiled or loaded from the persistent cache and kept for later calls.

  Args:
    config: a preset ConfigDict (`af_jax.model_config(name)`), overrides applied.
    params: AlphaFold flat parameters (`af_jax.load_params(path)`).
    chunk: 'auto' (AutoChunk: per-op chunk sizes whose compiled peak memory fits
      `memory_budget`, as `--chunk=auto`), 'none' (unchunked), a chunk size for every
      op, or a ChunkPlan.
    memory_budget: bytes, or text such as '12GB', for chunk='auto' (None: the
      device's default budget, as `--memory_budget`).
    mesh: a (data, dap) mesh (`af_jax.parallel.make_mesh`) to split each prediction over
      its `dap` devices; None: one device.
    compilation_cache: True: the persistent cache (`use_compile_cache`), the command
      line's default directory unless one is configured; a directory; False: none
      turned on here.
    report_progress: each recycle's pLDDT, pTM (ipTM) and CA change reported as it ends
      (`af_jax.model.progress`: to a `listen` callback, else an INFO log line), as
      run_inference.py's default `--progress`; False compiles the loop without it.
  """

  def __init__(self, config, params: Mapping[str, np.ndarray], *,
               chunk: str | int | ChunkPlan = 'auto', memory_budget: int | str | None = None,
               mesh: Mesh | None = None,
               compilation_cache: bool | str | os.PathLike = True, report_progress: bool = True):
    if params is None:
      raise InputError('af_jax.Predictor needs weights: pass af_jax.load_params(path), or '
                       'use af_jax.inference.Predictor(config, None) to compile from shapes')
    self.chunk = chunk if isinstance(chunk, ChunkPlan) else autochunk.parse_chunk(chunk, 'chunk')
    self.memory_budget = (autochunk.parse_memory(memory_budget)
                          if memory_budget is not None else None)
    self.cache_root = use_compile_cache(compilation_cache)
    base = inference.Predictor(config, params, mesh=mesh, report_progress=report_progress)
    self._base = base.with_plan(self.chunk) if isinstance(self.chunk, ChunkPlan) else base
    self._buckets: dict[tuple, tuple[inference.Predictor, dict]] = {}
    self.config, self.name, self.kind, self.mesh = config, base.name, base.kind, mesh

  def bucket(self, batch: Mapping) -> tuple[inference.Predictor, dict]:
    """The bucket-level Predictor that runs `batch`'s shapes (with their chunk plan),
    and the plan's record (as ranking_debug.json's `chunk_plan`)."""
    shapes = self._base.feature_shapes(batch)
    key = tuple((k, v.shape, str(v.dtype)) for k, v in sorted(shapes.items()))
    if key not in self._buckets:
      if isinstance(self.chunk, ChunkPlan):
        found = self._base, {'plan': autochunk.plan_summary(self.chunk)}
      else:
        found = autochunk.bucket_predictor(self._base, shapes, self.chunk,
                                           self.memory_budget)[:2]
        logging.info('%s: chunk plan %s', self._base.label(shapes), found[1]['plan'])
      self._buckets[key] = found
    return self._buckets[key]

  def plan(self, batch: Mapping) -> ChunkPlan:
    """The ChunkPlan `batch`'s shapes run with."""
    return self.bucket(batch)[0].plan

  def compile(self, batch: Mapping):
    """Plan and compile (or load) `batch`'s executable; its compile_cache.CompileResult."""
    if not self.kind.owns(batch):
      raise InputError(self.kind.mismatch(self.name))
    return self.bucket(batch)[0].compile(batch)

  def predict_processed(self, batch: Mapping, *, random_seed: int = 0) -> dict:
    """Predict from AlphaFold's processed features (`af_jax.process_features`, or AlphaFold's
    `RunModel.process_features`; leading axis: one slice per recycle).

    Returns AlphaFold's outputs as numpy arrays (`structure_module.final_atom_positions`,
    `plddt`, `ptm`, ...), at the batch's padded size. A complex's batch takes
    `random_seed` for its in-model MSA sampling; a monomer's ignores it.
    """
    if not self.kind.owns(batch):
      raise InputError(self.kind.mismatch(self.name))
    return self.bucket(batch)[0].predict_processed(batch, random_seed=random_seed)

  def flat_params(self) -> dict[str, np.ndarray]:
    """The parameters as AlphaFold flat arrays (`scope//name`)."""
    return self._base.flat_params()
