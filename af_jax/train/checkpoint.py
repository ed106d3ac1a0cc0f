"""Checkpoints with orbax: save every N steps, keep the newest K, resume exactly.

A checkpoint `<dir>/<step>/` holds three items:
- `state`: every array of the TrainState (parameters, Adam moments and count,
  EMA, step, dropout RNG key, skip counter), restored bit for bit with the
  shardings of the state it is restored into;
- `data`: the loader's position (`BatchLoader.state_dict()`: the next batch's
  step plus what identifies the data set), so the batches after a resume are
  the ones an uninterrupted run would have seen;
- `meta`: the training config as JSON, for people (and a check on resume).

Saving is asynchronous (the step goes on while the arrays are written); a
checkpoint becomes visible only once complete, so a run killed mid-save
resumes from the previous one. Every process of a multi-host run calls `save`
and `restore`; orbax coordinates them.
"""

from __future__ import annotations

import json
import logging as std_logging
import os
from collections.abc import Mapping

import jax
import ml_collections
import orbax.checkpoint as ocp
from absl import logging

from af_jax.errors import ConfigError
from af_jax.train.state import TrainState

_ITEMS = ('state', 'data', 'meta')


class _QuietOrbax(std_logging.Filter):
  """Drops orbax's INFO lines (a dozen per save) unless --v=1 or more asks for them."""

  def filter(self, record: std_logging.LogRecord) -> bool:
    return (record.levelno >= std_logging.WARNING or f'{os.sep}orbax{os.sep}' not in
            record.pathname or logging.vlog_is_on(1))


def _quiet_orbax_logs() -> None:
  # On the handler: orbax logs both through absl and through Python's root logger.
  handler = logging.get_absl_handler()
  if not any(isinstance(f, _QuietOrbax) for f in handler.filters):
    handler.addFilter(_QuietOrbax())


def config_json(cfg: ml_collections.ConfigDict) -> dict:
  """The config as plain JSON values (what `meta` stores)."""
  return json.loads(cfg.to_json_best_effort())


class Checkpointer:
  """Saves and restores TrainStates (and the data position) under one directory.

  Args:
    directory: where the step directories go (created if missing).
    every_steps: `save` writes only when the state's step is a multiple of this
      (or with force=True).
    keep: the newest checkpoints kept; older ones are deleted.
    async_save: write in a background thread (`wait()` blocks until done).
  """

  def __init__(self, directory: str | os.PathLike, *, every_steps: int = 1000, keep: int = 3,
               async_save: bool = True):
    if every_steps < 1 or keep < 1:
      raise ConfigError(f'checkpoint.every_steps={every_steps} and checkpoint.keep={keep} '
                        'must be >= 1')
    self.directory = os.path.abspath(os.fspath(directory))
    _quiet_orbax_logs()
    self.every_steps = int(every_steps)
    # The interval is applied here (orbax would also save the first step it sees).
    options = ocp.CheckpointManagerOptions(
        save_interval_steps=1, max_to_keep=int(keep), create=True,
        enable_async_checkpointing=async_save)
    self._manager = ocp.CheckpointManager(self.directory, options=options, item_names=_ITEMS)

  @classmethod
  def from_config(cls, directory: str | os.PathLike, cfg: ml_collections.ConfigDict,
                  **kwargs) -> Checkpointer:
    """A Checkpointer with the training config's `checkpoint` section."""
    return cls(directory, every_steps=int(cfg.checkpoint.every_steps),
               keep=int(cfg.checkpoint.keep), **kwargs)

  def save(self, state: TrainState, data_position: Mapping | None = None, *,
           config: ml_collections.ConfigDict | None = None, force: bool = False) -> bool:
    """Save `state` under its step if due (or `force`); returns whether it was saved.

    Args:
      state: the state after its last step.
      data_position: `BatchLoader.state_dict()` taken after that step's batch.
      config: the training config, stored for reference.
      force: save even when the step is not a multiple of every_steps.
    """
    step = int(jax.device_get(state.step))
    if (step % self.every_steps and not force) or step in self.all_steps():
      return False
    args = ocp.args.Composite(
        state=ocp.args.StandardSave(state.arrays),
        data=ocp.args.JsonSave(dict(data_position or {})),
        meta=ocp.args.JsonSave({'step': step,
                                'config': config_json(config) if config is not None else None}))
    return self._manager.save(step, args=args, force=True)

  def all_steps(self) -> list[int]:
    return list(self._manager.all_steps())

  def latest_step(self) -> int | None:
    """The newest complete checkpoint's step, or None."""
    return self._manager.latest_step()

  def restore(self, target: TrainState, step: int | None = None
              ) -> tuple[TrainState, dict, dict]:
    """(state, data position, meta) of checkpoint `step` (default: the newest).

    Args:
      target: a state of the same model and optimiser (`abstract_train_state` or a
        real one): its shapes, dtypes and shardings are those restored to; its graph
        definition is reused.

    Raises:
      ConfigError: no checkpoint, or one saved for another model or optimiser.
    """
    step = self.latest_step() if step is None else int(step)
    if step is None:
      raise ConfigError(f'no checkpoint in {self.directory}')
    if step not in self.all_steps():
      raise ConfigError(f'no checkpoint of step {step} in {self.directory}; there are '
                        f'{self.all_steps()}')
    abstract = jax.tree_util.tree_map(ocp.utils.to_shape_dtype_struct, target.arrays)
    args = ocp.args.Composite(state=ocp.args.StandardRestore(abstract),
                              data=ocp.args.JsonRestore(), meta=ocp.args.JsonRestore())
    try:
      restored = self._manager.restore(step, args=args)
    except (ValueError, KeyError) as e:
      raise ConfigError(f'checkpoint {self.directory}/{step} does not fit this run\'s model '
                        f'and optimizer ({type(e).__name__}: {str(e)[:300]}); resume with the '
                        'config it was saved with (its meta/ item holds it) or use another '
                        '--output_dir') from None
    return target.with_arrays(restored.state), dict(restored.data or {}), dict(
        restored.meta or {})

  def wait(self) -> None:
    """Block until every pending save is on disk."""
    self._manager.wait_until_finished()

  def close(self) -> None:
    self._manager.wait_until_finished()
    self._manager.close()

  def __enter__(self) -> Checkpointer:
    return self

  def __exit__(self, *exc) -> None:
    self.close()
