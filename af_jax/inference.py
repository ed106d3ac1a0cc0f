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
from af_jax.data import schema
from af_jax.model.build import build_model, is_multimer
from af_jax.parallel.mesh import dap_size, replicate

# A multimer batch carries its MSA-sampling key (raw uint32 key data) as an input,
# so one executable serves every seed.
SAMPLING_KEY = schema.SAMPLING_KEY.name


def _model_inputs(batch: Mapping, use_templates: bool) -> dict[str, type]:
  """The feature names (and dtypes) the model reads; InputError if `batch` lacks any.

  A batch with `asym_id` is a complex's (transforms_multimer.make_batch plus
  SAMPLING_KEY); any other is a monomer's processed batch.
  """
  if 'asym_id' in batch:
    missing = schema.MULTIMER.missing(batch)
    if missing:
      raise InputError(f'multimer batch lacks {missing}; build it with '
                       'af_jax.data.transforms_multimer.make_batch')
    return {**schema.MULTIMER.dtypes, SAMPLING_KEY: schema.SAMPLING_KEY.dtype}
  wanted = schema.MONOMER.dtypes
  if use_templates:
    wanted.update(schema.MONOMER_TEMPLATES.dtypes)
  missing = [k for k in wanted if k not in batch]
  if missing:
    raise InputError(f'processed batch lacks {missing}; pass the output of AlphaFold\'s '
                     'RunModel.process_features (or af_jax.data processing)')
  return wanted


def select_features(batch: Mapping, use_templates: bool) -> dict[str, np.ndarray]:
  """The model's inputs from a processed batch, with checked names and dtypes."""
  wanted = _model_inputs(batch, use_templates)
  if SAMPLING_KEY in wanted and SAMPLING_KEY not in batch:
    raise InputError('multimer batch lacks its sampling key; predict it with '
                     'Predictor.predict_processed(batch, random_seed=...)')
  out = {k: np.asarray(batch[k]).astype(dt) for k, dt in wanted.items()}
  if 'asym_id' in out:
    if out['aatype'].ndim != 1:
      raise InputError(f"multimer batch['aatype'] has shape {out['aatype'].shape}; expected "
                       '[N_res] (the multimer samples its MSA per recycle in the model)')
    return out
  if out['aatype'].ndim != 2:
    raise InputError(f"batch['aatype'] has shape {out['aatype'].shape}; expected "
                     '[num_recycle + 1, N_res] (one slice per recycle)')
  return out


def feature_shapes(batch: Mapping, use_templates: bool) -> dict[str, jax.ShapeDtypeStruct]:
  """The model inputs' shapes and dtypes from a batch of arrays or of shape structs."""
  def shape(k):  # the sampling key is added at prediction time
    return schema.SAMPLING_KEY.shape({}) if k == SAMPLING_KEY else tuple(np.shape(batch[k]))
  return {k: jax.ShapeDtypeStruct(shape(k), dt)
          for k, dt in _model_inputs(batch, use_templates).items()}


def bucket_label(model_name: str, shapes: Mapping[str, jax.ShapeDtypeStruct]) -> str:
  """`model_1_ptm/L128/msa512x1024/t4/r4` (multimer: `.../L128/msa2048/t4`): what a
  compiled executable is for."""
  if 'asym_id' in shapes:
    return (f'{model_name}/L{shapes["aatype"].shape[0]}/msa{shapes["msa"].shape[0]}'
            f'/t{shapes["template_aatype"].shape[0]}')
  n_slices, n_res = shapes['aatype'].shape
  label = (f'{model_name}/L{n_res}/msa{shapes["msa_feat"].shape[1]}'
           f'x{shapes["extra_msa"].shape[1]}')
  if 'template_aatype' in shapes:
    label += f'/t{shapes["template_aatype"].shape[1]}'
  return f'{label}/r{n_slices}'


class Predictor:
  """Folds processed feature batches with one preset's parameters.

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
  """

  def __init__(self, config, params: Mapping[str, np.ndarray] | None, *,
               plan: ChunkPlan | None = None, mesh: Mesh | None = None):
    self.config = config
    self.plan = plan or ChunkPlan()
    self.mesh = mesh
    self.name = config.get('model_name') or 'model'
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
    model = nnx.merge(self._graphdef, state)
    if self.multimer:
      batch = dict(batch)
      return model(batch, batch.pop(SAMPLING_KEY), self.plan, mesh=self.mesh)
    return model(batch, self.plan, mesh=self.mesh)

  @property
  def multimer(self) -> bool:
    return is_multimer(self.config.model)

  @property
  def dap(self) -> int:
    return dap_size(self.mesh)

  def label(self, shapes: Mapping[str, jax.ShapeDtypeStruct]) -> str:
    """The executable's name in the cache; `/dap4` when split over 4 devices."""
    label = bucket_label(self.name, shapes)
    if 'asym_id' in shapes:  # the recycle count is the loop's bound, not an input shape
      label += f'/r{int(self.config.model.num_recycle) + 1}'
    return label if self.mesh is None else f'{label}/dap{self.dap}'

  def with_plan(self, plan: ChunkPlan) -> Predictor:
    """The same weights run with another chunk plan (its own executables)."""
    if plan == self.plan:
      return self
    other = copy.copy(self)
    other.plan = plan
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
    shapes = jax.tree_util.tree_map(self.abstract, feature_shapes(batch, self.use_templates))
    return self._forward.lower(state, shapes)

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
    shapes = feature_shapes(batch, self.use_templates)
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
    if self.multimer:
      if 'asym_id' not in batch:
        raise InputError(f'{self.name} is a multimer preset: pass complex features '
                         '(af_jax.data.pipeline_multimer), not a monomer batch')
      batch = {**batch, SAMPLING_KEY: np.asarray(jax.random.key_data(
          jax.random.PRNGKey(random_seed)), np.uint32)}
    elif 'asym_id' in batch:
      raise InputError(f'{self.name} is a monomer preset; fold complexes with a multimer '
                       'preset (--model_preset=multimer)')
    feats = select_features(batch, self.use_templates)
    executable = self.compile(feats).compiled
    if self.mesh is not None:
      feats = replicate(feats, self.mesh)
    out = executable(self._state, feats)
    out = jax.tree_util.tree_map(np.asarray, out)
    out['num_recycles'] = int(out['num_recycles'])
    return out

