"""The training loop behind run_train.py: data, mesh, state, steps, metrics, checkpoints.

`train(cfg, options)` starts from the newest checkpoint in
`<output_dir>/checkpoints` when there is one (resuming parameters, optimiser,
EMA, step, RNG and data position exactly), else from `options.init_params` or a
random initialisation; runs until `options.num_steps` batches have been
consumed; logs a progress line per step and appends one JSON object per step to
`<output_dir>/metrics.jsonl`; saves checkpoints every `checkpoint.every_steps`
and after the last step; and exports the EMA parameters to
`<output_dir>/params/params_<model_preset>.npz`, which run_inference.py
(`--params_dir=<output_dir>`) and AlphaFold read.

A checkpoint that no longer restores is set aside for the newest one that does
(see checkpoint.py). SIGINT or SIGTERM during the steps saves a checkpoint of
the step in flight and raises `interrupt.Interrupted` (see interrupt.py).
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import time

import jax
import ml_collections
import numpy as np
from absl import logging

from af_jax.chunking import ChunkPlan
from af_jax.common.files import write_atomic
from af_jax.errors import ConfigError
from af_jax.parallel.mesh import DATA_AXIS, make_mesh
from af_jax.train import interrupt
from af_jax.train.checkpoint import Checkpointer, config_json
from af_jax.train.data import TrainingData
from af_jax.train.loader import BatchLoader
from af_jax.train.state import (TrainState, abstract_train_state, check_batch_size,
                                export_params, init_train_state)
from af_jax.train.step import TrainStep

METRICS_FILE = 'metrics.jsonl'
CHECKPOINT_DIR = 'checkpoints'


@dataclasses.dataclass(frozen=True)
class TrainOptions:
  """Where the data and outputs are, how long to train, on which devices.

  Attributes:
    alignment_dir: `<pdb_id>_<chain_id>/` MSA folders (OpenFold's layout).
    mmcif_dir: `<pdb_id>.cif[.gz]` structures.
    output_dir: checkpoints/, metrics.jsonl, params/ and config.json go here.
    num_steps: train until this many batches have been consumed (a resumed run
      continues to the same total).
    init_params: AlphaFold `.npz` or params directory to start from (ignored when
      resuming from a checkpoint); None: random initialisation.
    dap: devices sharing each example (Dynamic Axial Parallelism).
    data_parallel: DAP groups working on different examples (default: every
      remaining device).
    chain_data_cache_path, template_mmcif_dir, kalign_binary_path,
    obsolete_pdbs_path: passed to TrainingData.
    export: write the EMA parameters as `.npz` at the end.
    plan: chunk sizes of the model's axial ops (default: the config's `chunk_size`).
  """

  alignment_dir: str
  mmcif_dir: str
  output_dir: str
  num_steps: int
  init_params: str | None = None
  dap: int = 1
  data_parallel: int | None = None
  chain_data_cache_path: str | None = None
  template_mmcif_dir: str | None = None
  kalign_binary_path: str | None = None
  obsolete_pdbs_path: str | None = None
  export: bool = True
  plan: ChunkPlan | None = None


def _format_seconds(s: float) -> str:
  s = int(round(s))
  h, rest = divmod(s, 3600)
  m, sec = divmod(rest, 60)
  return f'{h}h{m:02d}m' if h else (f'{m}m{sec:02d}s' if m else f'{sec}s')


def _to_json(metrics: dict) -> dict:
  out = {}
  for k, v in metrics.items():
    v = np.asarray(v)
    out[k] = int(v) if v.dtype.kind in 'iub' else float(v)
  return out


def _finite_or_null(record: dict) -> dict:
  """A metrics record with NaN and inf (a diverged step) as null: JSON has neither."""
  return {k: None if isinstance(v, float) and not np.isfinite(v) else v
          for k, v in record.items()}


def _truncate_metrics(path: pathlib.Path, consumed: int) -> None:
  """Drop the lines of steps after `consumed` (written after the checkpoint a run resumes
  from; a line's `step` counts the batches consumed, so the checkpoint's own is kept)."""
  if not path.exists():
    return
  kept = []
  for line in path.read_text().splitlines():
    try:
      if json.loads(line)['step'] <= consumed:
        kept.append(line)
    except (ValueError, KeyError, TypeError):
      continue  # a line cut short by the interruption
  write_atomic(path, ''.join(f'{line}\n' for line in kept))


def _batch_sizes(cfg: ml_collections.ConfigDict, mesh) -> tuple[int, int]:
  """(global batch, this process's share): batch_size examples per data-parallel group."""
  per_group = int(cfg.data.data_module.data_loaders.batch_size)
  global_batch = per_group * int(mesh.shape[DATA_AXIS])
  check_batch_size(global_batch, mesh)
  if global_batch % jax.process_count():
    raise ConfigError(f'a batch of {global_batch} examples does not split over '
                      f'{jax.process_count()} processes; change batch_size or the mesh')
  return global_batch, global_batch // jax.process_count()


def _stop_signal(request: interrupt.StopRequest) -> int | None:
  """The stop request's signal, agreed by every process (all save the same step or none)."""
  if jax.process_count() == 1:
    return request.signum
  from jax.experimental import multihost_utils
  signum = int(np.max(multihost_utils.process_allgather(np.int32(request.signum or 0))))
  return signum or None


def train(cfg: ml_collections.ConfigDict, options: TrainOptions) -> TrainState:
  """Train (or resume training) to `options.num_steps`; returns the final state.

  Raises:
    ConfigError: bad options, or `num_steps` below the newest checkpoint's step.
    interrupt.Interrupted: SIGINT or SIGTERM during the steps, after the checkpoint
      of the step in flight is saved.
  """
  if options.num_steps < 0:
    raise ConfigError(f'--num_steps={options.num_steps} must be >= 0')
  output_dir = pathlib.Path(options.output_dir)
  output_dir.mkdir(parents=True, exist_ok=True)
  mesh = make_mesh(options.dap, options.data_parallel)
  global_batch, local_batch = _batch_sizes(cfg, mesh)
  logging.info('mesh: data=%d x dap=%d; batch of %d (%d on this process)',
               mesh.shape[DATA_AXIS], mesh.shape['dap'], global_batch, local_batch)
  dataset = TrainingData(
      options.alignment_dir, options.mmcif_dir, cfg.data,
      chain_cache_path=options.chain_data_cache_path,
      template_mmcif_dir=options.template_mmcif_dir,
      kalign_binary_path=options.kalign_binary_path,
      obsolete_pdbs_path=options.obsolete_pdbs_path, batch_size=local_batch,
      shard_index=jax.process_index(), shard_count=jax.process_count())

  checkpoints = Checkpointer.from_config(output_dir / CHECKPOINT_DIR, cfg)
  # Closed on every way out: orbax's background threads (temporary-directory cleanup,
  # async saves) otherwise die at interpreter shutdown with a traceback after the error line.
  try:
    newest = checkpoints.latest_step()
    if newest is not None and options.num_steps < newest:
      # Training cannot go back: the state at num_steps is gone (and exporting the newest
      # checkpoint's weights as if they were num_steps' would be a wrong answer).
      raise ConfigError(f'--num_steps={options.num_steps} is below step {newest} of the newest '
                        f'checkpoint in {checkpoints.directory}; ask for --num_steps={newest} or '
                        'more to continue this run, or use another --output_dir')
    position = None
    if newest is not None:
      state, position, _ = checkpoints.restore(abstract_train_state(cfg, mesh=mesh))
      logging.info('resuming from %s/%d%s', checkpoints.directory, int(jax.device_get(state.step)),
                   ' (--init_params ignored)' if options.init_params else '')
    else:
      state = init_train_state(cfg, options.init_params, mesh=mesh)
      logging.info('starting from %s', options.init_params or f'random weights (seed {cfg.seed})')
    start = int(jax.device_get(state.step))
    if jax.process_index() == 0:
      write_atomic(output_dir / 'config.json',
                   json.dumps(config_json(cfg), indent=1, allow_nan=False) + '\n')
    metrics_path = output_dir / METRICS_FILE
    if jax.process_index() == 0:
      _truncate_metrics(metrics_path, start)

    step_fn = TrainStep(cfg, state.graphdef, mesh=mesh, plan=options.plan)
    times = []
    with (interrupt.deferred_signals() as stop,
          BatchLoader(dataset, state=position, start_step=start) as loader):
      for step in range(start, options.num_steps):
        batch = next(loader)
        t0 = time.perf_counter()
        placed = step_fn.place(batch)
        compiled = step_fn.compile_placed(state, placed)
        if compiled.status != 'in_process':
          logging.info('train step %s: %s in %.1f s', compiled.label, compiled.status,
                       compiled.seconds)
        t1 = time.perf_counter()
        state, metrics = compiled.compiled(state, placed)
        metrics = _to_json(jax.device_get(metrics))
        t2 = time.perf_counter()
        times.append(t2 - t1)
        record = {'step': step + 1, **metrics, 'step_time_s': round(t2 - t1, 4),
                  'compile_time_s': round(t1 - t0, 3), 'chains': dataset.names(step)}
        if jax.process_index() == 0:
          with open(metrics_path, 'a') as f:
            f.write(json.dumps(_finite_or_null(record), allow_nan=False) + '\n')
        recent = times[-20:] if len(times) > 1 else times
        eta = (options.num_steps - step - 1) * float(np.median(recent))
        logging.info('step %d/%d loss %.4f fape %.3f lr %.2e |g| %.3g %.2f s/step%s ETA %s',
                     step + 1, options.num_steps, metrics['loss'], metrics.get('fape', np.nan),
                     metrics['learning_rate'], metrics['grad_norm'], t2 - t1,
                     ' SKIPPED (non-finite gradients)' if metrics['skipped'] else '',
                     _format_seconds(eta))
        checkpoints.save(state, loader.state_dict(), config=cfg)
        signum = _stop_signal(stop)
        if signum is not None and step + 1 < options.num_steps:
          checkpoints.save(state, loader.state_dict(), config=cfg, force=True)
          checkpoints.close()
          raise interrupt.Interrupted(
              signum, f'stopped by {interrupt.signal_name(signum)} after step {step + 1} of '
              f'{options.num_steps}; checkpoint {checkpoints.directory}/{step + 1} saved: run '
              'the same command again to resume from it')
      checkpoints.save(state, loader.state_dict(), config=cfg, force=True)
      checkpoints.close()
  finally:
    checkpoints.close()
  if options.export and jax.process_index() == 0:
    path = output_dir / 'params' / f'params_{cfg.model_preset}.npz'
    path.parent.mkdir(exist_ok=True)
    export_params(state, path)
    logging.info('EMA parameters written to %s (run_inference.py --params_dir=%s)', path,
                 output_dir)
  return state


def load_config(spec: str, overrides: dict[str, str] | None = None) -> ml_collections.ConfigDict:
  """A training config from a preset name or `file.py[:arg]`, with `--config.*` overrides.

  `model_preset` is applied first (it rebuilds the `model` section), then the
  other overrides in order.

  Raises:
    ConfigError: unknown preset, unreadable file or bad override.
  """
  from configs.overrides import apply_overrides
  from configs.train import TRAIN_PRESETS, train_config
  overrides = dict(overrides or {})
  model_preset = overrides.pop('model_preset', None)
  path, _, arg = spec.partition(':')
  if path.endswith('.py'):
    cfg = _config_from_file(path, arg or None)
    if model_preset is not None:
      from configs.model import model_config
      cfg.model_preset = model_preset
      cfg.model = model_config(model_preset).model
  elif spec in TRAIN_PRESETS:
    cfg = train_config(spec, model_preset)
  else:
    raise ConfigError(f'--config={spec!r} is neither a training preset '
                      f'({", ".join(TRAIN_PRESETS)}) nor a .py file with get_config()')
  apply_overrides(cfg, overrides)
  return cfg


def _config_from_file(path: str, arg: str | None) -> ml_collections.ConfigDict:
  import importlib.util
  if not os.path.isfile(path):
    raise ConfigError(f'--config file {path} not found')
  module_spec = importlib.util.spec_from_file_location('_af_jax_train_config', path)
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  if not hasattr(module, 'get_config'):
    raise ConfigError(f'--config file {path} defines no get_config()')
  cfg = module.get_config(arg) if arg is not None else module.get_config()
  if not isinstance(cfg, ml_collections.ConfigDict) or 'optimizer' not in cfg:
    raise ConfigError(f'{path}: get_config() must return a training config '
                      '(configs.train.train_config(...) with changes)')
  return cfg
