"""Shared command-line plumbing: the compilation-cache and multi-host flags, short log
lines, one-line errors, SIGINT and SIGTERM as one line and exit status 128 + the signal's
number. (`--config.*` overrides: configs.overrides.)"""

from __future__ import annotations

import logging as std_logging
import os
import select
import signal
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Sequence

from absl import flags, logging

from af_jax.common import files
from af_jax.data.names import shown
from af_jax.errors import AfJaxError


def define_compile_cache_flags() -> None:
  """The persistent-cache and XLA flags every af_jax command line accepts
  (COMPILE_CACHE_FLAGS)."""
  flags.DEFINE_string('compilation_cache_dir', None, 'Persistent XLA cache directory (default: '
                      '$COMPILE_CACHE_DIR, else $XDG_CACHE_HOME or ~/.cache, /af_jax/xla). Each '
                      'shape compiles once, ever; later runs load it.')
  flags.DEFINE_bool('compilation_cache', True, 'Use the persistent cache '
                    '(--nocompilation_cache: compile in memory only).')
  flags.DEFINE_string('compilation_cache_max_size', None, 'Evict least recently used entries '
                      'beyond this size (e.g. 20GB).')
  flags.DEFINE_string('autotune_profile', 'default', 'XLA GPU flag preset, part of the cache '
                      'key: default, fast_compile, max_autotune, multi_device (see python -m '
                      'compile_cache --help). Harmless on CPU.')
  flags.DEFINE_string('xla_flags', '', 'Extra XLA flags (space separated), added after the '
                      'profile\'s and part of the cache key.')


DISTRIBUTED_FLAGS = ('coordinator_address', 'num_processes', 'process_id', 'distributed')


def define_distributed_flags() -> None:
  """The multi-host flags every af_jax command line accepts (DISTRIBUTED_FLAGS), for
  `af_jax.parallel.distributed.initialize` (`initialize_distributed`)."""
  flags.DEFINE_string('coordinator_address', None,
                      'host:port of process 0, which coordinates a multi-host run '
                      '(also JAX_COORDINATOR_ADDRESS).')
  flags.DEFINE_integer('num_processes', None, 'Processes in a multi-host run '
                       '(also JAX_NUM_PROCESSES).')
  flags.DEFINE_integer('process_id', None, 'This process in a multi-host run, 0-based '
                       '(also JAX_PROCESS_ID).')
  flags.DEFINE_boolean('distributed', False, 'Join a multi-host run described by the '
                       "cluster's environment (Slurm, Open MPI, Kubernetes, Cloud TPU).")


def initialize_distributed(flag_values: flags.FlagValues) -> bool:
  """Join the multi-host run the flags (or the JAX_* variables) describe, if any; returns
  whether one was joined. Before anything touches a device."""
  from af_jax.parallel import distributed  # imports JAX: not before the signal handlers
  return distributed.initialize(flag_values.coordinator_address, flag_values.num_processes,
                                flag_values.process_id, auto=flag_values.distributed)


# Libraries whose INFO lines are their own business (JAX's "Resetting cache", "Unable to
# initialize backend 'tpu'"): shown from --verbosity=1 (DEBUG) on.
CHATTY_LOGGERS = ('jax', 'jaxlib', 'orbax')


class ShortFormatter(std_logging.Formatter):
  """`I1207 00:46:19 fold.py] message`: absl's prefix without microseconds, thread id or
  line number, so a line is mostly its message."""

  def __init__(self):
    super().__init__('%(levelname).1s%(asctime)s %(filename)s] %(message)s',
                     datefmt='%m%d %H:%M:%S')


def configure_logging() -> None:
  """Short log lines on stderr, and other libraries' INFO lines only at --verbosity >= 1.

  Call first in a command line's main(), after absl has parsed the flags.
  """
  logging.get_absl_handler().setFormatter(ShortFormatter())
  level = std_logging.NOTSET if logging.get_verbosity() >= logging.DEBUG else std_logging.WARNING
  for name in CHATTY_LOGGERS:
    std_logging.getLogger(name).setLevel(level)


# What asks for the short help; absl's --helpfull (every module's flags) is left to absl.
HELP_ARGS = ('--help', '-help', '-h', '--h', '-?', '--helpshort', '-helpshort')


def help_text(doc: str, groups: Sequence[tuple[str, Sequence[str]]],
              values: flags.FlagValues = flags.FLAGS, width: int = 100) -> str:
  """A command line's --help: its docstring, then its flags under headings, in order.

  Args:
    doc: the script's docstring (usage and examples).
    groups: (heading, flag names) pairs; each flag is listed where it is named.
    values: where the flags are defined.
    width: the column lines wrap at.

  Raises:
    KeyError: a group names a flag that is not defined.
  """
  lines = [doc.strip(), '']
  for heading, names in groups:
    lines += [f'{heading}:']
    for name in names:
      lines += _flag_lines(values[name], width)
    lines += ['']
  lines += ['--config.<key>=<value> overrides any config value; --helpfull lists every flag, '
            "absl's and JAX's too."]
  return '\n'.join(lines)


def _flag_lines(flag: flags.Flag, width: int) -> list[str]:
  """`  --name: help (default: ...)`, wrapped with a hanging indent (absl puts an enum's
  choices at the start of its help)."""
  name = f'--[no]{flag.name}' if flag.boolean else f'--{flag.name}'
  text = f'{name}: {" ".join(flag.help.split())}'
  if flag.default_as_str not in (None, "''"):
    text += f' (default:\N{NO-BREAK SPACE}{flag.default_as_str})'  # kept on one line
  lines = textwrap.wrap(text, width, initial_indent='  ', subsequent_indent='      ',
                        break_on_hyphens=False)
  return [line.replace('\N{NO-BREAK SPACE}', ' ') for line in lines]


def exit_on_help(argv: Sequence[str], doc: str, groups: Sequence[tuple[str, Sequence[str]]],
                 values: flags.FlagValues = flags.FLAGS) -> None:
  """Print help_text and exit 0 when argv asks for help (HELP_ARGS); else return."""
  if any(arg in HELP_ARGS for arg in argv[1:]):
    print(help_text(doc, groups, values))
    sys.exit(0)


COMPILE_CACHE_FLAGS = ('compilation_cache_dir', 'compilation_cache', 'compilation_cache_max_size',
                       'autotune_profile', 'xla_flags')


def configure_compile_cache(values: flags.FlagValues) -> None:
  """Apply `define_compile_cache_flags`' values; call before anything touches JAX (the
  profile's XLA flags are read when the backend starts)."""
  if not values.compilation_cache:
    return
  import compile_cache
  path = compile_cache.configure(
      values.compilation_cache_dir, max_size_bytes=values.compilation_cache_max_size,
      autotune_profile=values.autotune_profile, xla_flags=values.xla_flags)
  compile_cache.strip_xla_argv()
  logging.debug('compilation cache: %s (profile %s)', path, values.autotune_profile)


def run_main(main: Callable[[list[str]], None], argv: Sequence[str] | None = None) -> None:
  """absl-style entry: AfJaxError (or CompileCacheError) becomes one line on stderr, exit 2.

  After exit_on_signals, SIGINT and SIGTERM become one line and exit 130 and 143. The
  line escapes unprintable characters, so no control sequence from an input reaches the
  terminal.
  """
  from compile_cache import CompileCacheError
  try:
    main(list(sys.argv if argv is None else argv))
  except (AfJaxError, CompileCacheError) as e:
    print(f'error: {shown(str(e))}', file=sys.stderr)
    sys.exit(2)
  except Interrupted as e:
    _report(e.signum)
    sys.exit(128 + e.signum)


class Interrupted(BaseException):
  """SIGINT or SIGTERM arrived after exit_on_signals: the run unwinds (finally blocks and
  common.files remove temporary files) to run_main, which exits 128 + signum."""

  def __init__(self, signum: int):
    super().__init__(signal.Signals(signum).name)
    self.signum = signum


# What the one line says after the signal's name (exit_on_signals), and whether it was said.
_SIGNAL_NOTE = ['']
_REPORTED = []
_REPORT_LOCK = threading.Lock()
# Seconds the main thread has to unwind after a signal before the process is ended without
# it: a signal handler runs only between Python bytecodes, so a long XLA compilation or
# computation would otherwise hold the exit back until it returns.
UNWIND_SECONDS = 3.0


def _report(signum: int) -> None:
  """The one line for a signal, once, even when the main thread and the watcher race."""
  with _REPORT_LOCK:
    if _REPORTED:
      return
    _REPORTED.append(signum)
    line = f'error: stopped by {signal.Signals(signum).name}; {_SIGNAL_NOTE[0]}\n'
    os.write(sys.stderr.fileno(), line.encode())


def exit_on_signals(note: str) -> None:
  """From now on SIGINT and SIGTERM (unless ignored) end the process with one line and
  128 + signum.

  The first signal raises Interrupted in the main thread, so the run unwinds and its
  temporary files are removed. If the main thread is still busy UNWIND_SECONDS later
  (inside XLA, where Python signal handlers cannot run), or a second signal arrives, a
  watcher thread removes the temporary files being written (common.files), prints the
  line and ends the process. Call it from the main thread of a command line, early.

  Args:
    note: what the line says after 'stopped by SIGINT; ', e.g. what a rerun does.
  """
  _SIGNAL_NOTE[0] = note
  read_fd, write_fd = os.pipe()
  os.set_blocking(write_fd, False)
  # Python's C-level handler writes each signal's number to this pipe at once, even while
  # the main thread is inside native code.
  signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
  caught = []

  def handler(signum, frame):
    del frame
    if not caught:  # later signals are the watcher's: raising again would cut the unwinding
      caught.append(signum)
      raise Interrupted(signum)

  for signum in (signal.SIGINT, signal.SIGTERM):
    # An ignored signal stays ignored (nohup, a background job of a non-interactive shell),
    # as Python leaves an ignored SIGINT.
    if signal.getsignal(signum) is not signal.SIG_IGN:
      signal.signal(signum, handler)
  threading.Thread(target=_watch, args=(read_fd,), name='exit_on_signals', daemon=True).start()


def _watch(read_fd: int) -> None:
  """Waits for a signal, then for the main thread to unwind; ends the process if it does not."""
  ours = (signal.SIGINT, signal.SIGTERM)
  first = None
  while first is None:
    number = os.read(read_fd, 1)[0]
    first = number if number in ours else None
  deadline = time.monotonic() + UNWIND_SECONDS
  while True:
    ready, _, _ = select.select([read_fd], [], [], max(deadline - time.monotonic(), 0))
    if not ready or os.read(read_fd, 1)[0] in ours:
      break  # the deadline passed, or a second SIGINT/SIGTERM asks to stop now
  files.remove_active()
  _report(first)
  os._exit(128 + first)
