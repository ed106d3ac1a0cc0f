"""Predictor: AlphaFold parameters + a processed feature batch -> outputs.

The model is split once into a graph and a parameter state; a pure function
`(state, batch) -> outputs` is jitted, so each input shape compiles once and
later calls with the same shapes reuse the executable.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping

import jax
import numpy as np
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from af_jax import params as af_params
from af_jax.chunking import ChunkPlan
from af_jax.errors import InputError
from af_jax.model import kind as model_kind
from af_jax.model.build import build_model
from af_jax.parallel.mesh import dap_size, replicate


def select_features(batch: Mapping, use_templates: bool) -> dict[str, np.ndarray]:
  """The model's inputs from a processed batch (a complex's: with asym_id), with checked
  names and dtypes."""
  return model_kind.of_batch(batch).select(batch, use_templates)


def feature_shapes(batch: Mapping, use_templates: bool) -> dict[str, jax.ShapeDtypeStruct]:
  """The model inputs' shapes and dtypes from a batch of arrays or of shape structs."""
  return _shape_structs(model_kind.of_batch(batch), batch, use_templates)


def _shape_structs(kind: model_kind.ModelKind, batch: Mapping,
                   use_templates: bool) -> dict[str, jax.ShapeDtypeStruct]:
  shapes = kind.input_shapes(batch, use_templates)
  return {k: jax.ShapeDtypeStruct(shape, dt) for k, (shape, dt) in shapes.items()}


def bucket_label(model_name: str, shapes: Mapping[str, jax.ShapeDtypeStruct]) -> str:
  """`model_1_ptm/L128/msa512x1024/t4/r4` (multimer: `.../L128/msa2048/t4`): what a
  compiled executable is for."""
  return model_kind.of_batch(shapes).bucket_label(model_name, shapes)


class Predictor:
  """Folds processed feature batches with one preset's parameters and one chunk plan.

  The bucket-level Predictor: `af_jax.Predictor` (af_jax/predictor.py) wraps it with
  AutoChunk's plan per bucket and the persistent cache, as the command line runs it.
  Each input shape is compiled once (ahead of time, through the persistent
  compilation cache when `compile_cache.configure()` was called, which logs a
  hit or a miss per executable) and the executable is kept for later calls.

  Args:
    config: a preset ConfigDict (`af_jax.model_config(name)`), overrides applied.
    params: AlphaFold flat parameters (`af_jax.load_params(path)`), or None for
      an abstract Predictor that can only compile (warm-up from shapes alone).
    plan: chunk sizes per op (None: unchunked).
    mesh: a (data, dap) mesh (`parallel.make_mesh`): the weights, features and
      outputs are replicated over its devices and the trunk runs with Dynamic
      Axial Parallelism over its `dap` axis. None: one device.
    report_progress: every recycle reports its confidence and CA change to the host while
      the prediction runs (`af_jax.model.progress.listen` receives them); the outputs are
      the same, the executables are others.
  """

  def __init__(self, config, params: Mapping[str, np.ndarray] | None, *,
               plan: ChunkPlan | None = None, mesh: Mesh | None = None,
               report_progress: bool = False):
    self.config = config
    self.plan = plan or ChunkPlan()
    self.mesh = mesh
    self.report_progress = report_progress
    self.name = config.get('model_name') or 'model'
    self.kind = model_kind.for_config(config.model)
    # Everything outside the sharded stacks is replicated over the mesh.
    self._replicated = NamedSharding(mesh, PartitionSpec()) if mesh is not None else None
    if params is None:
      model = nnx.eval_shape(lambda: build_model(config.model))
      self._graphdef, self._state = nnx.split(model)
    else:
      model = build_model(config.model, params, preset=config.get('model_name'))
      self._graphdef, self._state = nnx.split(model)
      # device_put, not jnp.asarray: no small executable compiled per weight shape.
      self._state = replicate(self._state, mesh)
    self._forward = self._jit()
    self._executables: dict[tuple, object] = {}
    self.last_compile = None  # compile_cache.CompileResult of the latest compile() call

  def _jit(self):
    return jax.jit(self._apply, out_shardings=self._replicated)

  def _apply(self, state, batch):
    return self.kind.apply(nnx.merge(self._graphdef, state), batch, self.plan, self.mesh,
                           report_progress=self.report_progress)

  @property
  def dap(self) -> int:
    return dap_size(self.mesh)

  def label(self, shapes: Mapping[str, jax.ShapeDtypeStruct]) -> str:
    """The executable's name in the cache (`python -m compile_cache list`): `/dap4` when
    split over 4 devices, `/progress` when it reports every recycle, so that executables
    that differ only in those show apart."""
    label = self.kind.label(self.name, shapes, self.config.model)
    if self.mesh is not None:
      label += f'/dap{self.dap}'
    return f'{label}/progress' if self.report_progress else label

  def with_plan(self, plan: ChunkPlan) -> Predictor:
    """The same weights run with another chunk plan (its own executables)."""
    return self._with(plan=plan)

  def with_progress(self, report_progress: bool) -> Predictor:
    """The same weights and plan, reporting every recycle or not (its own executables)."""
    return self._with(report_progress=report_progress)

  def _with(self, **changes) -> Predictor:
    """A copy with `changes` (attributes that key the executables), sharing the weights."""
    if all(getattr(self, k) == v for k, v in changes.items()):
      return self
    other = copy.copy(self)
    for k, v in changes.items():
      setattr(other, k, v)
    other._forward = other._jit()
    other._executables = {}
    other.last_compile = None
    return other

  @property
  def use_templates(self) -> bool:
    return bool(self.config.model.embeddings_and_evoformer.template.enabled)

  def flat_params(self) -> dict[str, np.ndarray]:
    """The parameters as AlphaFold flat arrays (`scope//name`)."""
    return af_params.module_to_flat(nnx.merge(self._graphdef, self._state))

  def lower(self, batch: Mapping):
    """The jitted forward lowered for `batch`'s shapes (arrays or ShapeDtypeStructs)."""
    state = jax.tree_util.tree_map(self.abstract, self._state)
    shapes = jax.tree_util.tree_map(self.abstract, self.feature_shapes(batch))
    return self._forward.lower(state, shapes)

  def feature_shapes(self, batch: Mapping) -> dict[str, jax.ShapeDtypeStruct]:
    """This model's inputs' shapes and dtypes from a batch of arrays or of shape structs."""
    return _shape_structs(self.kind, batch, self.use_templates)

  def abstract(self, x) -> jax.ShapeDtypeStruct:
    """`x`'s shape and dtype placed as this Predictor places its inputs (for lowering)."""
    return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=self._replicated)

  def compile(self, batch: Mapping):
    """Compile (or load from the cache) the executable for `batch`'s shapes.

    Returns:
      The compile_cache.CompileResult (status 'compiled', 'loaded', 'in_process'
      or 'uncached', and seconds).
    """
    import compile_cache
    shapes = self.feature_shapes(batch)
    key = tuple((k, v.shape) for k, v in sorted(shapes.items()))
    if key in self._executables:
      self.last_compile = compile_cache.CompileResult(
          self.label(shapes), self._executables[key], 'in_process', 0.0)
      return self.last_compile
    result = compile_cache.compile_with_cache(self.label(shapes), self.lower(shapes))
    self._executables[key] = result.compiled
    self.last_compile = result
    return result

  def predict_processed(self, batch: Mapping, *, random_seed: int = 0) -> dict:
    """Predict from AlphaFold's processed features (leading axis: one slice per recycle).

    For a multimer batch (transforms_multimer.make_batch) `random_seed` seeds
    the in-model MSA sampling; a monomer's inference is deterministic given its
    processed features and ignores it.
    """
    if not self.kind.owns(batch):
      raise InputError(self.kind.mismatch(self.name))
    feats = self.kind.select(self.kind.with_seed(batch, random_seed), self.use_templates)
    executable = self.compile(feats).compiled
    if self.mesh is not None:
      feats = replicate(feats, self.mesh)
    out = executable(self._state, feats)
    out = jax.tree_util.tree_map(np.asarray, out)
    out['num_recycles'] = int(out['num_recycles'])
    return out

