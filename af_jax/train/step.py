"""The jitted train and eval steps, data-parallel over a mesh's `data` axis, DAP over `dap`.

One step: a dropout key per example; AlphaFold's training forward
(`AlphaFold.forward_train`: recycles without gradients, the last iteration
differentiable) and loss (`losses.alphafold_loss`) for each example under
`jax.vmap`; each example's gradient clipped to the global norm (Suppl. 1.11.3)
and averaged; Adam with AlphaFold's schedule; the parameter EMA. The examples'
gradients and the update (clipping, mean, Adam, EMA) are two executables (see
`TrainStep`: they compile faster apart).

Data parallelism is the vmap with the batch, and the examples' gradients, sharded
along `data` and the state replicated: XLA splits the examples over the data
groups, and the update program's clipped mean adds up across them. Inside each
example the model's trunk runs with Dynamic Axial Parallelism over the `dap` axis
(its shard_map sits inside the vmap).

A step whose loss or gradients are not finite (read from the gradients' norms: an
infinite or NaN element, or a norm beyond float32) changes nothing but `step`,
`rng` and `num_skipped`: parameters, optimiser state and EMA are selected
unchanged (`jnp.where` over the update), so one bad example cannot poison a run.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import time
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from af_jax.chunking import ChunkPlan
from af_jax.errors import ConfigError, InputError
from af_jax.data import schema
from af_jax.parallel.mesh import DATA_AXIS, dap_size
from af_jax.train import losses
from af_jax.train.optimizer import (clip_scale, ema_update, global_norm,
                                    learning_rate_schedule, make_optimizer, weighted_sum)
from af_jax.train.state import TrainState, check_batch_size, training_model_config

# What the step reads besides the model's inputs: masked-MSA targets ([B, R, ...]) and
# per-example labels and flags ([B, ...]).
TARGET_FEATURES = schema.TRAIN_TARGETS.dtypes
EXAMPLE_KEYS = schema.TRAIN_EXAMPLE.dtypes


def training_plan(cfg: ml_collections.ConfigDict) -> ChunkPlan:
  """The chunk plan of `cfg.chunk_size` (one size for every axial op; None: unchunked)."""
  size = cfg.get('chunk_size', None)
  if size is not None and int(size) < 1:
    raise ConfigError(f'chunk_size={size} must be >= 1 (or None: unchunked); fix the '
                      'training config')
  return ChunkPlan.uniform(None if size is None else int(size))


def batch_keys(model_cfg: ml_collections.ConfigDict) -> dict[str, type]:
  """The batch entries a step reads, with their dtypes."""
  keys = {**schema.MONOMER.dtypes, **TARGET_FEATURES, **EXAMPLE_KEYS}
  if model_cfg.embeddings_and_evoformer.template.enabled:
    keys.update(schema.MONOMER_TEMPLATES.dtypes)
  return keys


def _no_templates(aatype: np.ndarray) -> dict[str, np.ndarray]:
  """One fully masked template per slice: the template embedding then adds exactly zero."""
  *batch, n_slices, n_res = aatype.shape  # [B, R, N_res]
  shapes = schema.MONOMER_TEMPLATES.shapes(num_slices=n_slices, num_templates=1, num_res=n_res)
  return {k: np.zeros((*batch, *shape), schema.MONOMER_TEMPLATES[k].dtype)
          for k, shape in shapes.items()}


def select_batch(batch: Mapping, model_cfg: ml_collections.ConfigDict) -> dict[str, np.ndarray]:
  """The entries of a TrainingData batch the step reads, cast; InputError naming a missing one.

  A model with templates trained on data without them (data.common.use_templates
  False) gets one masked template per example, so the template weights (of
  model_1/2 parameters) stay in the model and in the exported file, untouched.
  """
  keys = batch_keys(model_cfg)
  if 'template_mask' in keys and not any(k in batch for k in schema.MONOMER_TEMPLATES.names):
    batch = {**batch, **_no_templates(np.asarray(batch['aatype']))}
  missing = [k for k in keys if k not in batch]
  if missing:
    raise InputError(f'training batch lacks {missing}; pass af_jax.train.data.TrainingData '
                     'batches (with data.common.use_templates matching the model preset)')
  return {k: np.asarray(batch[k]).astype(dt) for k, dt in keys.items()}


def _split(batch: dict) -> tuple[dict, dict, jax.Array]:
  """(features [B, R, ...], labels [B, ...], num_recycles ()) of a selected batch."""
  labels = {k: batch[k] for k in EXAMPLE_KEYS if k != 'num_recycles'}
  features = {k: v for k, v in batch.items() if k not in EXAMPLE_KEYS}
  # The data pipeline draws one recycle count per batch.
  return features, labels, batch['num_recycles'][0]


def _lddt_ca(outputs: dict, labels: dict, seq_mask: jax.Array) -> jax.Array:
  ca = 1  # residue_constants.atom_order['CA']
  pred = outputs['structure_module']['final_atom_positions'][:, ca]
  return losses.lddt(pred, labels['all_atom_positions'][:, ca],
                     labels['all_atom_mask'][:, ca] * seq_mask)


class _Loss:
  """One example's loss as a function of the parameters (the body every step vmaps)."""

  def __init__(self, graphdef: nnx.GraphDef, model_cfg: ml_collections.ConfigDict,
               plan: ChunkPlan, mesh: Mesh | None):
    self.graphdef, self.model_cfg, self.plan = graphdef, model_cfg, plan
    # The model only needs the mesh to split its trunk; data parallelism is the vmap's.
    self.model_mesh = mesh if dap_size(mesh) > 1 else None

  def __call__(self, params: nnx.State, features: dict, labels: dict, num_recycles: jax.Array,
               key: jax.Array | None) -> tuple[jax.Array, dict]:
    model = nnx.merge(self.graphdef, params)
    outputs = model.forward_train(features, num_recycles, self.plan, key, self.model_mesh)
    batch = {**losses.final_recycle_features(features, outputs), **labels}
    total, terms = losses.alphafold_loss(outputs, batch, self.model_cfg)
    terms = dict(terms, lddt_ca=jax.lax.stop_gradient(
        _lddt_ca(outputs, labels, batch['seq_mask'])))
    return total, terms


def _dropout(model_cfg) -> bool:
  return not model_cfg.global_config.get('deterministic', False)


def make_example_gradients(cfg: ml_collections.ConfigDict, graphdef: nnx.GraphDef, *,
                           mesh: Mesh | None = None, plan: ChunkPlan | None = None) -> Callable:
  """`grads(params, batch, key) -> (gradients, metrics)`, not jitted: the model's part of a step.

  With `optimizer.clip_per_example`, each example's gradient (every leaf
  `[B, ...]`, to be clipped and averaged by `make_gradient_mean`); otherwise the
  gradient of the batch's mean loss. Metrics: `loss` and every loss term (batch
  means), `finite` (every example's loss finite).
  """
  model_cfg = training_model_config(cfg)
  plan = training_plan(cfg) if plan is None else plan
  loss_fn = _Loss(graphdef, model_cfg, plan, mesh)
  per_example = bool(cfg.optimizer.clip_per_example)
  dropout = _dropout(model_cfg)

  def grads_fn(params, batch, key):
    features, labels, num_recycles = _split(batch)
    n = batch['aatype'].shape[0]
    keys = jax.random.split(key, n) if dropout else None
    key_axis = 0 if dropout else None
    if per_example:
      def one(p, f, lab, k):
        (loss, terms), g = jax.value_and_grad(loss_fn, has_aux=True)(p, f, lab, num_recycles, k)
        return loss, terms, g
      loss, terms, grads = jax.vmap(one, in_axes=(None, 0, 0, key_axis))(
          params, features, labels, keys)
    else:
      def mean_loss(p):
        loss, terms = jax.vmap(loss_fn, in_axes=(None, 0, 0, None, key_axis))(
            p, features, labels, num_recycles, keys)
        return jnp.mean(loss), (loss, terms)
      (_, (loss, terms)), grads = jax.value_and_grad(mean_loss, has_aux=True)(params)
    metrics = {'loss': jnp.mean(loss), **{k: jnp.mean(v) for k, v in terms.items()},
               'finite': jnp.all(jnp.isfinite(loss))}
    return grads, metrics

  return grads_fn


def make_gradient_mean(cfg: ml_collections.ConfigDict) -> Callable:
  """`mean(gradients, finite) -> (gradient, metrics)`: the batch's gradient from
  `make_example_gradients`' output.

  Per example (`optimizer.clip_per_example`): each example's gradient clipped to
  `optimizer.clip_global_norm` (Suppl. 1.11.3), then averaged; `grad_norm` is the
  mean of the examples' norms before clipping. Otherwise the batch gradient as it
  is (the optimiser clips it) and its norm. `finite` is the input's and-ed with
  finite norms: a gradient with an infinite or NaN element has a non-finite norm,
  so the norms say whether the step is finite without a check kernel per leaf
  shape (a norm that overflows float32 also counts as non-finite).
  """
  per_example = bool(cfg.optimizer.clip_per_example)
  clip = float(cfg.optimizer.clip_global_norm)

  def mean(grads, finite):
    if per_example:
      norms = jax.vmap(global_norm)(grads)
      grads = weighted_sum(grads, clip_scale(norms, clip) / norms.shape[0])
      grad_norm = jnp.mean(norms)
      norms_finite = jnp.all(jnp.isfinite(norms))
    else:
      grad_norm = global_norm(grads)
      norms_finite = jnp.isfinite(grad_norm)
    return grads, {'grad_norm': grad_norm, 'finite': finite & norms_finite}

  return mean


def make_gradient_fn(cfg: ml_collections.ConfigDict, graphdef: nnx.GraphDef, *,
                     mesh: Mesh | None = None, plan: ChunkPlan | None = None) -> Callable:
  """`grads(params, batch, key) -> (mean gradient, metrics)`, not jitted.

  `make_example_gradients` then `make_gradient_mean` in one function: the mean
  over the batch of each example's gradient, each clipped to
  `optimizer.clip_global_norm` when `optimizer.clip_per_example` (otherwise the
  gradient of the mean loss, clipped by the optimiser). Metrics: `loss` and every
  loss term (batch means), `grad_norm` (the mean of the examples' norms before
  clipping, or the batch gradient's norm), `finite`.
  """
  example_grads = make_example_gradients(cfg, graphdef, mesh=mesh, plan=plan)
  mean = make_gradient_mean(cfg)

  def grads_fn(params, batch, key):
    grads, metrics = example_grads(params, batch, key)
    grads, more = mean(grads, metrics['finite'])
    return grads, {**metrics, **more}

  return grads_fn


_REPLICATED, _SPLIT = PartitionSpec(), PartitionSpec(DATA_AXIS)


def _jit_on_mesh(fn: Callable, mesh: Mesh | None, inputs: tuple, outputs: Any = _REPLICATED, *,
                 donate: bool = False) -> Callable:
  """`fn(state, ...)` jitted: on a mesh, each input and output placed by its
  PartitionSpec (pytree prefixes: `_REPLICATED`, or `_SPLIT` along `data`);
  otherwise on the default device. `donate`: the first input's buffers."""
  donate_argnums = (0,) if donate else ()
  if mesh is None:
    return jax.jit(fn, donate_argnums=donate_argnums)
  sharding = lambda spec: NamedSharding(mesh, spec)  # noqa: E731
  is_spec = lambda x: isinstance(x, PartitionSpec)  # noqa: E731
  return jax.jit(fn, in_shardings=jax.tree_util.tree_map(sharding, inputs, is_leaf=is_spec),
                 out_shardings=jax.tree_util.tree_map(sharding, outputs, is_leaf=is_spec),
                 donate_argnums=donate_argnums)


def _place(batch: Mapping, model_cfg: ml_collections.ConfigDict, mesh: Mesh | None) -> dict:
  """The entries a step reads, cast; on a mesh, this process's examples as global arrays
  split along `data`."""
  selected = select_batch(batch, model_cfg)
  if mesh is None:
    return selected
  check_batch_size(selected['aatype'].shape[0] * jax.process_count(), mesh)
  sharding = NamedSharding(mesh, PartitionSpec(DATA_AXIS))
  return {k: jax.make_array_from_process_local_data(sharding, v) for k, v in selected.items()}


def _shape_key(placed: Mapping) -> tuple:
  """What a batch's executables are looked up by: its entries' shapes."""
  return tuple((k, v.shape) for k, v in sorted(placed.items()))


def _combined_status(statuses: tuple[str, ...]) -> str:
  """One status for a step made of several executables: the least cached of theirs."""
  for status in ('uncached', 'compiled', 'loaded', 'skipped', 'in_process'):
    if status in statuses:
      return status
  raise ValueError(f'no status in {statuses}')


class TrainStep:
  """`step(state, batch) -> (state, metrics)`: one sharded update, as two executables.

  The gradient program (the model's forward and backward for every example) and
  the update program (the per-example clipping and the batch's mean gradient, with
  the data-parallel all-reduce; Adam, the parameter EMA, the skip of a non-finite
  step) compile separately: XLA compiles the two apart faster than one program
  holding both (bench/RESULTS.md, `bench/train.py --mode=compile`). The update's
  inputs have the state's shapes (and the batch size), so it lowers and compiles on
  a second thread while the gradient program is traced and runs XLA's single-threaded
  passes: the clipping's per-leaf kernels compile on a core that would otherwise
  idle. The examples' gradients pass from one to the other once per step
  (`[B, ...]` per leaf, split along `data` like the batch).

  Args (of the constructor):
    cfg: the training config (its optimizer, loss and model sections).
    graphdef: `state.graphdef` of the states it will be called with.
    mesh: a (data, dap) mesh: the state is replicated, the batch split along
      `data`, the trunk split over `dap`. None: the default device.
    plan: chunk sizes of the model's axial ops (default: `cfg.chunk_size` for all).
    donate: let the step reuse the input state's buffers (the caller must not use
      the state it passed in afterwards).

  Calling it with a TrainingData batch (numpy, this process's examples) selects
  and casts the entries the step reads and places them on the mesh. Metrics
  (device scalars): loss and each loss term, learning_rate (of this update),
  grad_norm, finite, skipped (1 if this step's update was dropped), num_skipped,
  num_recycles.
  """

  def __init__(self, cfg: ml_collections.ConfigDict, graphdef: nnx.GraphDef, *,
               mesh: Mesh | None = None, plan: ChunkPlan | None = None, donate: bool = True):
    plan = training_plan(cfg) if plan is None else plan
    self.cfg, self.mesh, self.plan = cfg, mesh, plan
    self.model_cfg = training_model_config(cfg)
    self._per_example = bool(cfg.optimizer.clip_per_example)
    example_grads = make_example_gradients(cfg, graphdef, mesh=mesh, plan=plan)
    mean = make_gradient_mean(cfg)
    tx = make_optimizer(cfg.optimizer)
    schedule = learning_rate_schedule(cfg.optimizer)
    decay = float(cfg.optimizer.ema_decay)

    def gradients(state: TrainState, batch: dict) -> tuple[Any, dict]:
      _, key = jax.random.split(state.rng)
      grads, metrics = example_grads(state.params, batch, key)
      metrics['num_recycles'] = batch['num_recycles'][0]
      return grads, metrics

    def update(state: TrainState, grads: Any, finite: jax.Array) -> tuple[TrainState, dict]:
      grads, grad_metrics = mean(grads, finite)
      finite = grad_metrics['finite']
      rng, _ = jax.random.split(state.rng)  # the split `gradients` drew its key from
      updates, opt_state = tx.update(grads, state.opt_state, state.params)

      def keep(new, old):
        return jax.tree_util.tree_map(lambda a, b: jnp.where(finite, a, b), new, old)

      params = keep(optax.apply_updates(state.params, updates), state.params)
      # The EMA reads the kept parameters (equal to the new ones when the step is
      # finite): the update itself then has one reader and is not stored per leaf.
      ema = keep(ema_update(state.ema_params, params, decay), state.ema_params)
      skipped = (~finite).astype(jnp.int32)
      new = state.replace(
          step=state.step + 1, rng=rng, num_skipped=state.num_skipped + skipped,
          params=params, opt_state=keep(opt_state, state.opt_state), ema_params=ema)
      return new, {**grad_metrics, 'learning_rate': schedule(state.step - state.num_skipped),
                   'skipped': skipped, 'num_skipped': new.num_skipped}

    # Per batch shapes: (step, gradient executable, update executable).
    self._compiled: dict[tuple, tuple] = {}
    # The update's shapes are the state's, with the examples' axis on the gradients
    # when clipping per example: keyed by that axis, one executable serves every crop
    # and MSA depth.
    self._updates: dict[tuple, Any] = {}
    grads_spec = _SPLIT if self._per_example else _REPLICATED
    self._gradients = _jit_on_mesh(gradients, mesh, (_REPLICATED, _SPLIT),
                                   (grads_spec, _REPLICATED))
    self._update = _jit_on_mesh(update, mesh, (_REPLICATED, grads_spec, _REPLICATED),
                                donate=donate)

  def place(self, batch: Mapping) -> dict:
    """This process's examples as the step's input (global arrays split along `data`)."""
    return _place(batch, self.model_cfg, self.mesh)

  def label(self, placed: Mapping) -> str:
    """`train_step/model_1_ptm/L256/msa128x1024/r4/b8[/dap2]`: the executables' name (the
    update's has `/update` added)."""
    b, r, n = placed['aatype'].shape
    label = (f'train_step/{self.cfg.model_preset}/L{n}/msa{placed["msa_feat"].shape[2]}x'
             f'{placed["extra_msa"].shape[2]}/r{r}/b{b}')
    return label + (f'/dap{dap_size(self.mesh)}' if dap_size(self.mesh) > 1 else '')

  def lower(self, state: TrainState, batch: Mapping):
    """The gradient program lowered for these shapes (memory analysis: it holds the
    activations, the step's peak; the update holds the state and the gradients)."""
    return self._gradients.lower(state, self.place(batch))

  def compile_placed(self, state: TrainState, placed: dict):
    """`compile` for a batch already through `place` (a loop places each batch once)."""
    import compile_cache
    key = _shape_key(placed)
    label = self.label(placed)
    if key in self._compiled:
      return compile_cache.CompileResult(label, self._compiled[key][0], 'in_process', 0.0)
    start = time.monotonic()
    lead = (placed['aatype'].shape[0],) if self._per_example else ()
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
      # The update's inputs are known before the model is traced (the gradients have
      # the parameters' shapes after `lead`), so it lowers and compiles on a second
      # thread meanwhile.
      pending = (pool.submit(self._compile_update, state, lead, label + '/update')
                 if lead not in self._updates else None)
      grads = compile_cache.compile_with_cache(label, self._gradients.lower(state, placed))
      if pending is not None:
        update = self._updates[lead] = pending.result()
      else:
        update = dataclasses.replace(self._updates[lead], status='in_process', seconds=0.0)
    g, u = grads.compiled, update.compiled

    def step(state, placed):
      grads, metrics = g(state, placed)
      state, update_metrics = u(state, grads, metrics['finite'])
      return state, {**metrics, **update_metrics}

    self._compiled[key] = (step, g, u)
    return compile_cache.CompileResult(label, step,
                                       _combined_status((grads.status, update.status)),
                                       time.monotonic() - start)

  def _compile_update(self, state: TrainState, lead: tuple, label: str):
    import compile_cache
    grad_shapes = jax.tree_util.tree_map(
        lambda p: jax.ShapeDtypeStruct((*lead, *p.shape), p.dtype), state.params)
    finite_shape = jax.ShapeDtypeStruct((), jnp.bool_)
    return compile_cache.compile_with_cache(
        label, self._update.lower(state, grad_shapes, finite_shape))

  def programs(self, placed: Mapping) -> tuple:
    """(gradient, update) executables compiled for `placed`'s shapes (after `compile`)."""
    return self._compiled[_shape_key(placed)][1:]

  def compile(self, state: TrainState, batch: Mapping):
    """Compile (or load from the persistent cache, when configured) the step for `batch`'s
    shapes; returns a compile_cache.CompileResult (the least cached status of the two
    executables; seconds from lowering to both ready) whose `compiled` runs the step."""
    return self.compile_placed(state, self.place(batch))

  def __call__(self, state: TrainState, batch: Mapping) -> tuple[TrainState, dict]:
    placed = self.place(batch)
    return self.compile_placed(state, placed).compiled(state, placed)


class EvalStep:
  """`evaluate(state, batch) -> metrics`: the loss terms and CA lDDT, without dropout.

  Uses the EMA parameters (as AlphaFold evaluates) unless `ema=False`; the
  number of recycles is the batch's. Same placement as TrainStep.
  """

  def __init__(self, cfg: ml_collections.ConfigDict, graphdef: nnx.GraphDef, *,
               mesh: Mesh | None = None, plan: ChunkPlan | None = None, ema: bool = True):
    plan = training_plan(cfg) if plan is None else plan
    self.cfg, self.mesh = cfg, mesh
    self.model_cfg = training_model_config(cfg)
    loss_fn = _Loss(graphdef, self.model_cfg, plan, mesh)

    def evaluate(state: TrainState, batch: dict) -> dict:
      features, labels, num_recycles = _split(batch)
      params = state.ema_params if ema else state.params
      loss, terms = jax.vmap(loss_fn, in_axes=(None, 0, 0, None, None))(
          params, features, labels, num_recycles, None)
      return {'loss': jnp.mean(loss), **{k: jnp.mean(v) for k, v in terms.items()}}

    self._jitted = _jit_on_mesh(evaluate, mesh, (_REPLICATED, _SPLIT))

  def __call__(self, state: TrainState, batch: Mapping) -> dict:
    return self._jitted(state, _place(batch, self.model_cfg, self.mesh))


def make_train_step(cfg: ml_collections.ConfigDict, state: TrainState, **kwargs) -> TrainStep:
  """The jitted `train_step(state, batch) -> (state, metrics)` for states like `state`."""
  return TrainStep(cfg, state.graphdef, **kwargs)


def make_eval_step(cfg: ml_collections.ConfigDict, state: TrainState, **kwargs) -> EvalStep:
  """The jitted `eval_step(state, batch) -> metrics` for states like `state`."""
  return EvalStep(cfg, state.graphdef, **kwargs)
