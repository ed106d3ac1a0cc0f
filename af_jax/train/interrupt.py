"""SIGINT and SIGTERM in training: finish the step in flight, save it, then stop.

A cluster preempts a job with SIGTERM (and SIGKILL after a grace period); a person
stops one with Ctrl-C (SIGINT). Inside the training loop (`deferred_signals`) the
first of either only records a request: the loop finishes its step, saves a
checkpoint of it and raises `Interrupted`, and the same command resumes from that
checkpoint. A second signal, or one outside the loop (`raise_on_signals`), raises
`Interrupted` at once. run_train.py turns `Interrupted` into one line on stderr and
exit status 128 + the signal's number: 130 for SIGINT, 143 for SIGTERM.

Standard library only: run_train.py installs the handlers before JAX is imported.
"""

from __future__ import annotations

import contextlib
import dataclasses
import signal
import threading
from collections.abc import Callable, Iterator

from absl import logging

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(KeyboardInterrupt):
  """The process was asked to stop by a signal.

  A KeyboardInterrupt, so code that cleans up after Ctrl-C treats SIGTERM alike and
  `except Exception` does not swallow it.

  Attributes:
    signum: the signal's number.
    exit_status: 128 + signum, a shell's status for a process ended by that signal.
  """

  def __init__(self, signum: int, message: str | None = None):
    self.signum = int(signum)
    self.exit_status = 128 + self.signum
    super().__init__(message or f'stopped by {signal_name(signum)}')


def signal_name(signum: int) -> str:
  try:
    return signal.Signals(signum).name
  except ValueError:
    return f'signal {signum}'


@contextlib.contextmanager
def _handlers(handler: Callable) -> Iterator[bool]:
  """Install `handler` for SIGINT and SIGTERM, restoring the previous ones after.

  A signal that is ignored stays ignored (a shell starts `cmd &` with SIGINT ignored,
  nohup-like wrappers do the same, on purpose). Yields whether any handler was
  installed: only the main thread of the main interpreter may set handlers, and
  elsewhere the caller's signals stay as they were.
  """
  if threading.current_thread() is not threading.main_thread():
    yield False
    return
  previous = {s: signal.getsignal(s) for s in SIGNALS
              if signal.getsignal(s) is not signal.SIG_IGN}
  try:
    for s in previous:
      signal.signal(s, handler)
  except ValueError:  # not the main interpreter
    for s, h in previous.items():
      signal.signal(s, h)
    yield False
    return
  try:
    yield bool(previous)
  finally:
    for s, h in previous.items():
      signal.signal(s, h if h is not None else signal.SIG_DFL)


def _raise(signum: int, frame) -> None:
  del frame
  raise Interrupted(signum)


@contextlib.contextmanager
def raise_on_signals() -> Iterator[None]:
  """SIGINT and SIGTERM raise `Interrupted` in the main thread while this is active."""
  with _handlers(_raise):
    yield


@dataclasses.dataclass
class StopRequest:
  """What `deferred_signals` recorded.

  Attributes:
    signum: the first SIGINT or SIGTERM received, or None.
  """

  signum: int | None = None

  def _handle(self, signum: int, frame) -> None:
    del frame
    if self.signum is not None:
      raise Interrupted(signum, f'stopped by a second {signal_name(signum)} before the '
                        'checkpoint was saved; the same command resumes from the newest '
                        'complete one')
    self.signum = signum
    # A compile or a long step can keep the loop busy for minutes: say at once that the
    # signal was heard.
    logging.warning('%s: saving a checkpoint after this step, then stopping (send it again '
                    'to stop at once, without saving)', signal_name(signum))


@contextlib.contextmanager
def deferred_signals() -> Iterator[StopRequest]:
  """While active, the first SIGINT or SIGTERM sets `request.signum`; the next raises."""
  request = StopRequest()
  with _handlers(request._handle):
    yield request
