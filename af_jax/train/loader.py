"""Batches prepared ahead of the train step by a pool of workers, handed out in step order.

Reading mmCIFs and MSAs and processing features is host work that should overlap
the device's step. Workers compute `TrainingData.batch(step)` for the next
`prefetch` steps; the consumer receives them in order, so the stream is the same
whatever the number of workers or which worker finished first. Threads are the
default (cheap to start, share the chain list); processes (spawned, never forked:
a forked JAX process can deadlock) avoid contention on Python's GIL when parsing
deep MSAs keeps several cores busy.
"""

from __future__ import annotations

import collections
import concurrent.futures
import math
import multiprocessing
import signal
from collections.abc import Mapping

import numpy as np

from af_jax.errors import ConfigError
from af_jax.train.data import TrainingData

WORKER_TYPES = ('thread', 'process')

_worker_dataset: TrainingData | None = None  # set in each process worker


def _init_process_worker(dataset: TrainingData) -> None:
  global _worker_dataset
  _worker_dataset = dataset
  # Ctrl-C reaches the whole process group: the trainer decides what stops and shuts the
  # pool down; a worker would only print a KeyboardInterrupt traceback of its own.
  signal.signal(signal.SIGINT, signal.SIG_IGN)


def _process_batch(step: int) -> dict[str, np.ndarray]:
  return _worker_dataset.batch(step)


class BatchLoader:
  """An iterator over a TrainingData's batches from `start_step` on: endless, or up to
  `num_steps` batches in all (or `num_epochs` passes over the chains) and then it stops.

  A worker's exception (naming the failing chain) is raised from `next()` for the
  batch it was preparing, and the loader stops. `state_dict()` is the position
  before the next batch: a loader made with `state=` that dict yields the same
  batches as this one would have. Close it (or use it as a context manager) to stop
  the workers.
  """

  def __init__(self, dataset: TrainingData, *, state: Mapping | None = None,
               start_step: int = 0, num_steps: int | None = None,
               num_epochs: float | None = None, num_workers: int | None = None,
               prefetch: int | None = None, worker_type: str | None = None):
    """Starts the workers and submits the first batches.

    Args:
      dataset: the batches' source.
      state: a `state_dict()` to resume from (overrides start_step); ConfigError if it
        was saved for another seed, batch size or chain list.
      start_step: the first batch when starting fresh.
      num_steps: the batches of the whole run, counted from step 0 as run_train.py's
        --num_steps (a resumed loader stops at the same batch); None: no limit.
      num_epochs: the run's length in passes over the dataset's chains instead (the
        batch that completes the last pass is the last one); at most one of the two.
      num_workers, prefetch, worker_type: default to
        data.data_module.data_loaders' values; prefetch is how many batches are
        prepared ahead of the one last returned.
    """
    options = dataset.data.data_module.data_loaders
    num_workers = int(options.num_workers if num_workers is None else num_workers)
    prefetch = int(options.prefetch if prefetch is None else prefetch)
    worker_type = options.worker_type if worker_type is None else worker_type
    if num_workers < 1 or prefetch < 1:
      raise ConfigError(f'num_workers={num_workers} and prefetch={prefetch} must be >= 1; set '
                        'data.data_module.data_loaders')
    if worker_type not in WORKER_TYPES:
      raise ConfigError(f'worker_type={worker_type!r} is not one of {WORKER_TYPES}; set '
                        'data.data_module.data_loaders.worker_type')
    if num_steps is not None and num_epochs is not None:
      raise ConfigError(f'num_steps={num_steps} and num_epochs={num_epochs} both given; '
                        'give the run\'s length one way')
    if num_epochs is not None:
      if not num_epochs > 0:
        raise ConfigError(f'num_epochs={num_epochs} must be > 0')
      num_steps = math.ceil(num_epochs * len(dataset) / dataset.global_batch_size)
    if num_steps is not None and int(num_steps) < 0:
      raise ConfigError(f'num_steps={num_steps} must be >= 0')
    self.dataset = dataset
    self.stop_step = None if num_steps is None else int(num_steps)
    self._step = dataset.check_position(state) if state is not None else int(start_step)
    self._next_submit = self._step
    self._prefetch = prefetch
    self._pending: collections.deque[concurrent.futures.Future] = collections.deque()
    if worker_type == 'thread':
      self._pool = concurrent.futures.ThreadPoolExecutor(
          num_workers, thread_name_prefix='af_jax-data')
      self._submit = lambda step: self._pool.submit(dataset.batch, step)
    else:
      self._pool = concurrent.futures.ProcessPoolExecutor(
          num_workers, mp_context=multiprocessing.get_context('spawn'),
          initializer=_init_process_worker, initargs=(dataset,))
      self._submit = lambda step: self._pool.submit(_process_batch, step)
    self._closed = False
    self._fill()

  @property
  def step(self) -> int:
    """The step of the batch `next()` returns."""
    return self._step

  def state_dict(self) -> dict:
    """The data position before the next batch (plain ints and strings, for a checkpoint)."""
    return self.dataset.position(self._step)

  def _fill(self) -> None:
    while len(self._pending) < self._prefetch and (
        self.stop_step is None or self._next_submit < self.stop_step):
      self._pending.append(self._submit(self._next_submit))
      self._next_submit += 1

  def __iter__(self) -> BatchLoader:
    return self

  def __next__(self) -> dict[str, np.ndarray]:
    if self._closed:
      raise StopIteration
    if not self._pending:  # the last batch is behind us
      self.close()
      raise StopIteration
    future = self._pending.popleft()
    try:
      batch = future.result()
    except BaseException:
      self.close()
      raise
    self._step += 1
    self._fill()
    return batch

  def close(self) -> None:
    """Cancels batches not started and lets running ones finish in the background."""
    if not self._closed:
      self._closed = True
      for future in self._pending:
        future.cancel()
      self._pending.clear()
      self._pool.shutdown(wait=False, cancel_futures=True)

  def __del__(self) -> None:
    # Queued batches would otherwise still be computed when the interpreter exits.
    if getattr(self, '_pool', None) is not None:
      self.close()

  def __enter__(self) -> BatchLoader:
    return self

  def __exit__(self, *exc) -> None:
    self.close()
