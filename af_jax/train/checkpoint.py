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
resumes from the previous one (orbax's temporary directory of the unfinished
save is removed when the next run opens the directory). A complete checkpoint
that no longer restores (a truncated or damaged file) is renamed aside to
`<step>.broken` once an older one restores, and training goes on from that
one. Every process of a multi-host run calls `save` and `restore`; orbax
coordinates them.
"""

from __future__ import annotations

import json
import logging as std_logging
import os
import sys
import traceback
from collections.abc import Mapping

import jax
import ml_collections
import orbax.checkpoint as ocp
from absl import logging
from etils import epath

from af_jax.errors import ConfigError
from af_jax.train.state import TrainState

_ITEMS = ('state', 'data', 'meta')
BROKEN_SUFFIX = '.broken'


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


class _StrayReads:
  """Silences the reports of reads left running by a restore that failed on damage.

  A damaged checkpoint fails in many of tensorstore's reads at once: orbax raises
  the first and closes its event loop while the others are still running. Each of
  those then reports, whenever it ends (possibly after the process has printed its
  one error line): asyncio logs "exception was never retrieved", and tensorstore's
  callbacks ("Event loop is closed") and the abandoned coroutines go to
  sys.unraisablehook, each a screenful. Installed once, after the first failed
  restore; every other report passes through unchanged.
  """

  installed = False

  @classmethod
  def install(cls) -> None:
    if cls.installed:
      return
    cls.installed = True
    std_logging.getLogger('asyncio').addFilter(cls._log_filter)
    previous_unraisablehook = sys.unraisablehook

    def unraisablehook(unraisable):
      if cls._is_closed_loop(unraisable.exc_value, unraisable.exc_traceback):
        return
      code = getattr(unraisable.object, 'cr_code', None)  # an abandoned coroutine's
      if code is None or f'{os.sep}orbax{os.sep}' not in code.co_filename:
        previous_unraisablehook(unraisable)

    sys.unraisablehook = unraisablehook

  @staticmethod
  def _is_closed_loop(exc, tb) -> bool:
    frames = traceback.extract_tb(tb)
    return (isinstance(exc, RuntimeError) and str(exc) == 'Event loop is closed' and
            bool(frames) and frames[0].name == 'call_soon_threadsafe')

  @staticmethod
  def _log_filter(record: std_logging.LogRecord) -> bool:
    text = record.getMessage()
    if 'never retrieved' not in text:
      return True
    if record.exc_info and record.exc_info[2] is not None:
      text += ' '.join(f.filename for f in traceback.extract_tb(record.exc_info[2]))
    return f'{os.sep}orbax{os.sep}' not in text


def _short(error: BaseException) -> str:
  """`Type: first line of the message`, cut to 200 characters (tensorstore's run to pages)."""
  text = str(error).strip().splitlines()
  return f'{type(error).__name__}: {text[0][:200] if text else ""}'.rstrip(': ')


class _Broken(Exception):
  """A checkpoint whose files do not read back (as opposed to one of another model)."""


def config_json(cfg: ml_collections.ConfigDict) -> dict:
  """The config as plain JSON values (what `meta` stores)."""
  return json.loads(cfg.to_json_best_effort())


def _leaf_name(path) -> str:
  """A state leaf's name as orbax writes it in the metadata (`opt_state.0.mu.evoformer...`)."""
  return '.'.join(str(getattr(k, 'key', getattr(k, 'idx', getattr(k, 'name', k))))
                  for k in path)


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
        enable_async_checkpointing=async_save, cleanup_tmp_directories=True)
    self._manager = ocp.CheckpointManager(self.directory, options=options, item_names=_ITEMS)
    self._closed = False

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
    """(state, data position, meta) of checkpoint `step`, or of the newest that restores.

    Without `step`, a checkpoint whose files do not read back is skipped for the
    next older one; once one restores, each skipped one is renamed aside to
    `<step>.broken` (kept for inspection, out of orbax's way) with a WARNING
    naming it.

    Args:
      target: a state of the same model and optimiser (`abstract_train_state` or a
        real one): its shapes, dtypes and shardings are those restored to; its graph
        definition is reused.
      step: restore exactly this checkpoint (no fallback).

    Raises:
      ConfigError: no checkpoint; one saved for another model or optimiser; `step`
        absent or unreadable; or none that restores.
    """
    steps = sorted(self.all_steps(), reverse=True)
    if not steps:
      raise ConfigError(f'no checkpoint in {self.directory}')
    if step is not None:
      if int(step) not in steps:
        raise ConfigError(f'no checkpoint of step {step} in {self.directory}; there are '
                          f'{sorted(steps)}')
      try:
        return self._restore_step(target, int(step))
      except _Broken as e:
        raise ConfigError(f'checkpoint {self._path(step)} does not restore ({e})') from None
    broken = []
    for candidate in steps:
      try:
        restored = self._restore_step(target, candidate)
      except _Broken as e:
        broken.append((candidate, str(e)))
        continue
      for bad, reason in broken:
        aside = self._move_aside(bad)
        logging.warning('checkpoint %s does not restore (%s); resuming from %s instead, the '
                        'broken one kept as %s', self._path(bad), reason,
                        self._path(candidate), aside)
      return restored
    raise ConfigError(
        f'no checkpoint in {self.directory} restores: ' + '; '.join(
            f'{self._path(s)}: {reason}' for s, reason in broken) + '. Restore them from a '
        'backup, or move them away to start this run from its beginning')

  def _path(self, step: int) -> str:
    return os.path.join(self.directory, str(step))

  def _check_fits(self, target: TrainState, step: int) -> None:
    """ConfigError unless checkpoint `step` holds exactly `target`'s arrays; _Broken when its
    metadata does not read."""
    try:
      metadata = ocp.StandardCheckpointHandler().metadata(
          epath.Path(self._path(step)) / 'state')
      saved = {leaf.name: (tuple(leaf.shape), str(leaf.dtype))
               for leaf in jax.tree_util.tree_leaves(metadata)}
    except Exception as e:  # noqa: BLE001  (any unreadable metadata is damage)
      raise _Broken(_short(e)) from None
    wanted = {_leaf_name(path): (tuple(x.shape), str(x.dtype))
              for path, x in jax.tree_util.tree_leaves_with_path(target.arrays)}
    if saved == wanted:
      return
    missing = sorted(set(wanted) - set(saved))
    extra = sorted(set(saved) - set(wanted))
    differ = sorted(k for k in set(saved) & set(wanted) if saved[k] != wanted[k])
    detail = '; '.join(part for part in (
        f'{len(missing)} arrays missing (e.g. {missing[0]})' if missing else '',
        f'{len(extra)} arrays not in this model (e.g. {extra[0]})' if extra else '',
        f'{len(differ)} of other shape or dtype (e.g. {differ[0]}: saved '
        f'{saved[differ[0]]}, here {wanted[differ[0]]})' if differ else '') if part)
    raise ConfigError(f'checkpoint {self._path(step)} does not fit this run\'s model and '
                      f'optimizer ({detail}); resume with the config it was saved with (its '
                      'meta/ item holds it) or use another --output_dir')

  def _restore_step(self, target: TrainState, step: int) -> tuple[TrainState, dict, dict]:
    self._check_fits(target, step)
    abstract = jax.tree_util.tree_map(ocp.utils.to_shape_dtype_struct, target.arrays)
    args = ocp.args.Composite(state=ocp.args.StandardRestore(abstract),
                              data=ocp.args.JsonRestore(), meta=ocp.args.JsonRestore())
    try:
      restored = self._manager.restore(step, args=args)
    except Exception as e:  # noqa: BLE001  (it fits, so a failing read is damage)
      _StrayReads.install()
      raise _Broken(_short(e)) from None
    return target.with_arrays(restored.state), dict(restored.data or {}), dict(
        restored.meta or {})

  def _move_aside(self, step: int) -> str:
    """Rename checkpoint `step` to `<step>.broken` (`.broken.2`, ... if taken); its new path.

    Process 0 renames; on several processes (a shared directory) every one picks the
    name before it does, and waits for the rename.
    """
    multihost = jax.process_count() > 1
    source = self._path(step)
    aside = source + BROKEN_SUFFIX
    n = 1
    while os.path.lexists(aside):
      n += 1
      aside = f'{source}{BROKEN_SUFFIX}.{n}'
    if multihost:
      from jax.experimental import multihost_utils
      multihost_utils.sync_global_devices(f'af_jax checkpoint {step}: named')
    if jax.process_index() == 0:
      os.rename(source, aside)
    if multihost:
      multihost_utils.sync_global_devices(f'af_jax checkpoint {step}: set aside')
    self._manager.reload()
    return aside

  def wait(self) -> None:
    """Block until every pending save is on disk."""
    self._manager.wait_until_finished()

  def close(self) -> None:
    """Finish pending saves and stop orbax's threads (safe to call more than once)."""
    if self._closed:
      return
    self._closed = True
    self._manager.wait_until_finished()
    # orbax (0.12.8) starts a thread at construction that removes unfinished temporary
    # directories, and its close() does not wait for it: a run that fails early would
    # print that thread's traceback at interpreter shutdown, after our error line.
    await_cleanup = getattr(self._manager, '_maybe_await_cleanup_tmp_directory', None)
    if await_cleanup is not None:
      await_cleanup()
    self._manager.close()

  def __enter__(self) -> Checkpointer:
    return self

  def __exit__(self, *exc) -> None:
    self.close()
