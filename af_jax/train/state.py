"""The train state: parameters, optimiser state, parameter EMA, step and RNG, as one pytree.

The model is split once (`nnx.split`) into a graph definition, kept as a static
field, and its parameters; everything else in `TrainState` is arrays, so the
state is what `train_step` takes and returns, what a checkpoint saves, and what
a mesh replicates. Parameters start from a random initialisation or from
AlphaFold's published `params_model_*.npz`, and leave as the same `.npz` layout
(`export_params`), readable by `af_jax.load_params` and by AlphaFold itself.
"""

from __future__ import annotations

import os
import pathlib
from collections.abc import Mapping

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax import nnx, struct
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from af_jax import params as af_params
from af_jax.errors import ConfigError, ParamsError
from af_jax.model.alphafold import AlphaFold
from af_jax.model.build import build_model
from af_jax.parallel.mesh import replicate
from af_jax.train.optimizer import make_optimizer


@struct.dataclass
class TrainState:
  """Everything a training run carries from one step to the next.

  Attributes:
    step: int32 (): batches consumed, skipped ones included (the data position).
    params: the model's nnx.Param state, float32.
    opt_state: the optax state of `make_optimizer(cfg.optimizer)` (its own count
      advances only with applied updates, so the schedule ignores skipped steps).
    ema_params: exponential moving average of `params`, what evaluation and the
      exported `.npz` use.
    rng: uint32 [2]: the dropout key of the next step.
    num_skipped: int32 (): steps whose gradients were not finite (never applied).
    graphdef: the model's structure (static: not saved, not traced).
  """

  step: jax.Array
  params: nnx.State
  opt_state: optax.OptState
  ema_params: nnx.State
  rng: jax.Array
  num_skipped: jax.Array
  graphdef: nnx.GraphDef = struct.field(pytree_node=False)

  def model(self, ema: bool = True) -> AlphaFold:
    """The model with the EMA parameters (or the raw ones), e.g. for inference."""
    return nnx.merge(self.graphdef, self.ema_params if ema else self.params)

  @property
  def arrays(self) -> dict:
    """The saved part: every field but the graph definition."""
    return {'step': self.step, 'params': self.params, 'opt_state': self.opt_state,
            'ema_params': self.ema_params, 'rng': self.rng, 'num_skipped': self.num_skipped}

  def with_arrays(self, arrays: Mapping) -> TrainState:
    return self.replace(**arrays)


def training_model_config(cfg: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """The model config a train step runs: the `model` section with the training switches.

  The loss section sets the heads' weights (the presets' inference values are the
  fine-tuning ones: violation 1.0, experimentally resolved 0.01), `remat` sets
  per-block rematerialisation and `bfloat16` the trunk's compute dtype.
  """
  model = cfg.model.copy_and_resolve_references()
  heads = model.heads
  heads.structure_module.structural_violation_loss_weight = float(cfg.loss.violation.weight)
  heads.experimentally_resolved.weight = float(cfg.loss.experimentally_resolved.weight)
  model.global_config.use_remat = bool(cfg.remat)
  model.global_config.bfloat16 = bool(cfg.bfloat16)
  return model


def load_init_params(path: str | os.PathLike, model_preset: str) -> dict[str, np.ndarray]:
  """AlphaFold flat parameters from an `.npz` file or a params directory.

  A directory is searched as run_inference.py's --params_dir is: for
  `params_<model_preset>.npz` in it or in its `params/`.
  """
  path = pathlib.Path(path)
  if path.is_dir():
    path = af_params.params_path(path, model_preset)
  return af_params.read_npz(path)


def init_train_state(cfg: ml_collections.ConfigDict,
                     params: Mapping[str, np.ndarray] | str | os.PathLike | None = None, *,
                     mesh: Mesh | None = None) -> TrainState:
  """A fresh train state: step 0, EMA equal to the parameters, Adam moments zero.

  Args:
    cfg: a training config (configs.train.train_config).
    params: AlphaFold flat parameters (`af_jax.load_params`), a path to an `.npz`
      or a params directory, or None for a random initialisation from `cfg.seed`
      (with `zero_init` as the preset sets it: AlphaFold's zero-initialised
      output layers).
    mesh: replicate the state over this (data, dap) mesh.

  Raises:
    ParamsError: the parameters do not fit `cfg.model` (naming the key).
  """
  model_cfg = training_model_config(cfg)
  if isinstance(params, (str, os.PathLike)):
    params = load_init_params(params, cfg.model_preset)
  model = build_model(model_cfg, params, preset=cfg.model_preset, seed=int(cfg.seed))
  graphdef, param_state, rest = nnx.split(model, nnx.Param, ...)
  if jax.tree_util.tree_leaves(rest):
    raise ParamsError(f'the model holds non-parameter variables {rest}; the train state '
                      'only carries nnx.Param')
  tx = make_optimizer(cfg.optimizer)
  arrays = {
      'step': jnp.int32(0),
      'params': param_state,
      # A copy: the two must not share buffers when the step donates its input.
      'opt_state': tx.init(param_state),
      'ema_params': jax.tree_util.tree_map(lambda x: np.array(x, copy=True), param_state),
      'rng': jax.random.fold_in(jax.random.PRNGKey(int(cfg.seed)), 1),
      'num_skipped': jnp.int32(0),
  }
  arrays = replicate(arrays, mesh)
  return TrainState(graphdef=graphdef, **arrays)


def abstract_train_state(cfg: ml_collections.ConfigDict, *,
                         mesh: Mesh | None = None) -> TrainState:
  """The shapes, dtypes and shardings of `init_train_state(cfg)`, without any array.

  A checkpoint restores into it; nothing is initialised.
  """
  model_cfg = training_model_config(cfg)
  model = nnx.eval_shape(lambda: AlphaFold(model_cfg, rngs=nnx.Rngs(0)))
  graphdef, param_state = nnx.split(model, nnx.Param)
  tx = make_optimizer(cfg.optimizer)
  sharding = (NamedSharding(mesh, PartitionSpec()) if mesh is not None
              else jax.sharding.SingleDeviceSharding(jax.devices()[0]))

  def spec(x):
    return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding)

  arrays = {'step': jnp.int32(0), 'params': param_state,
            'opt_state': jax.eval_shape(tx.init, param_state), 'ema_params': param_state,
            'rng': jax.eval_shape(lambda: jax.random.PRNGKey(0)), 'num_skipped': jnp.int32(0)}
  arrays = jax.tree_util.tree_map(spec, arrays)
  return TrainState(graphdef=graphdef, **arrays)


def export_params(state: TrainState, path: str | os.PathLike, *, ema: bool = True) -> None:
  """Write the (EMA) parameters as AlphaFold's `params_model_*.npz` (atomically).

  The file has the published keys and layout (`alphafold/alphafold_iteration/...//
  weights`, unfused triangle projections): `af_jax.load_params`, run_inference.py
  --params_dir and AlphaFold's own loader read it.
  """
  tree = state.ema_params if ema else state.params
  host = jax.tree_util.tree_map(lambda x: np.asarray(jax.device_get(x)), tree)
  model = nnx.merge(state.graphdef, host)
  af_params.write_npz(path, af_params.module_to_flat(model))


def check_batch_size(global_batch: int, mesh: Mesh | None) -> None:
  """ConfigError unless `global_batch` examples split evenly over the mesh's data axis."""
  data = 1 if mesh is None else int(mesh.shape['data'])
  if global_batch % data:
    raise ConfigError(f'a batch of {global_batch} examples does not split over {data} '
                      'data-parallel groups; set data.data_module.data_loaders.batch_size '
                      '(examples per group) or the mesh')
