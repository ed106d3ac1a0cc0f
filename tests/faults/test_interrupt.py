"""Issue 25 items 7 (run_inference.py) and 9: SIGINT and SIGTERM end a fold with one line and
exit status 130 or 143, removing temporary files and stopping the search tools it started.

Real signals sent to a real child process at a known point of its run: after its features
(the model then compiles), inside a search tool (a stand-in jackhmmer that sleeps), and
inside a long XLA computation, where Python signal handlers cannot run.
"""

import os
import pathlib
import select
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from tests.data.shared_data import MINI_DATABASES
from tests.faults.names_support import ROOT, command, env, fasta, temporary_files

NOTE = 'targets without ranking_debug.json are folded again by the next run'


def _as_in_a_terminal():
  # A job started in the background by a non-interactive shell (as CI may start the tests)
  # inherits SIGINT ignored, and af_jax leaves an ignored signal ignored; a command typed in
  # a terminal has both signals at their defaults.
  signal.signal(signal.SIGINT, signal.SIG_DFL)
  signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _start(args, **extra_env):
  return subprocess.Popen(command(args), cwd=ROOT, env=env(**extra_env), text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          preexec_fn=_as_in_a_terminal)


def _wait_for(proc, needle: str, timeout: float = 300) -> list[str]:
  """stderr lines of `proc` up to the first one holding `needle`."""
  lines, deadline = [], time.monotonic() + timeout
  while time.monotonic() < deadline:
    ready, _, _ = select.select([proc.stderr], [], [], 1)
    if ready:
      line = proc.stderr.readline()
      if not line:
        break
      lines.append(line)
      if needle in line:
        return lines
  proc.kill()
  raise AssertionError(f'{needle!r} never came:\n{"".join(lines)[-3000:]}')


def _finish(proc, seen, timeout=120):
  """Exit status, seconds it took, all of stderr. A child still running at the timeout is
  killed (some never end by themselves) and the test fails."""
  start = time.monotonic()
  try:
    _, rest = proc.communicate(timeout=timeout)
  except subprocess.TimeoutExpired:
    proc.kill()
    _, rest = proc.communicate()
    pytest.fail(f'still running {timeout} s after the signal; stderr: '
                f'{(("".join(seen)) + rest)[-2000:]}')
  return proc.returncode, time.monotonic() - start, ''.join(seen) + rest


def _assert_one_line(code, stderr, signum):
  assert code == 128 + signum, stderr[-3000:]
  assert 'Traceback' not in stderr and 'KeyboardInterrupt' not in stderr, stderr[-3000:]
  lines = stderr.strip().splitlines()
  assert lines[-1] == f'error: stopped by {signal.Signals(signum).name}; {NOTE}', lines[-3:]
  assert sum(line.startswith('error: ') for line in lines) == 1


@pytest.mark.parametrize('signum', [signal.SIGINT, signal.SIGTERM])
def test_signal_during_a_fold(tmp_path, signum):
  out = tmp_path / 'out'
  proc = _start([f'--fasta_paths={fasta(tmp_path / "in.fasta")}', f'--output_dir={out}',
                 '--nocompilation_cache'])
  seen = _wait_for(proc, 'features in')  # then the model compiles and runs
  proc.send_signal(signum)
  code, _, stderr = _finish(proc, seen)
  _assert_one_line(code, stderr, signum)
  assert (out / 't1' / 'features.pkl').is_file()
  assert not (out / 't1' / 'ranking_debug.json').exists()
  assert not temporary_files(out)


FAKE_JACKHMMER = """\
#!/bin/sh
# Stands in for a long jackhmmer search: says where it is, then sleeps.
echo $$ > "$FAKE_TOOL_PID"
exec sleep 600
"""


def test_signal_during_a_search_stops_the_tool(tmp_path):
  tool = tmp_path / 'bin' / 'jackhmmer'
  tool.parent.mkdir()
  tool.write_text(FAKE_JACKHMMER)
  tool.chmod(0o755)
  pid_file = tmp_path / 'tool.pid'
  out = tmp_path / 'out'
  proc = _start([f'--fasta_paths={fasta(tmp_path / "in.fasta")}', f'--output_dir={out}',
                 '--msa_mode=jackhmmer', f'--jackhmmer_binary_path={tool}',
                 f'--uniref90_database_path={MINI_DATABASES}/uniref90__subsampled_1000.fasta'],
                FAKE_TOOL_PID=str(pid_file))
  seen = _wait_for(proc, 'Running')
  deadline = time.monotonic() + 60
  while not (pid_file.exists() and pid_file.read_text().strip()):
    assert time.monotonic() < deadline, 'the stand-in jackhmmer never started'
    time.sleep(0.1)
  tool_pid = int(pid_file.read_text())
  proc.send_signal(signal.SIGINT)
  code, seconds, stderr = _finish(proc, seen)
  _assert_one_line(code, stderr, signal.SIGINT)
  assert seconds < 60  # not the tool's 600 s
  with pytest.raises(ProcessLookupError):  # its own session did not get Ctrl-C: we stopped it
    os.kill(tool_pid, 0)
  assert not temporary_files(out)


CHILD = """\
import pathlib, sys
sys.path.insert(0, {root!r})
from af_jax.run import cli
from af_jax.common import files

def main(argv):
  import jax
  import jax.numpy as jnp
  with files.writing(pathlib.Path({out!r})) as tmp:
    tmp.write_bytes(b'half of a result')
    print('computing', file=sys.stderr, flush=True)
    # Days of XLA work: the main thread stays inside native code.
    step = lambda i, x: jax.lax.fori_loop(0, 2**20, lambda j, y: y * 3 + j, x)
    jax.lax.fori_loop(0, 2**30, step, jnp.uint32(1)).block_until_ready()

cli.UNWIND_SECONDS = {unwind}
cli.exit_on_signals({note!r})
cli.run_main(main)
"""


@pytest.mark.parametrize('signals', [[signal.SIGTERM], [signal.SIGINT, signal.SIGINT]])
def test_signal_inside_xla_ends_the_run_in_seconds(tmp_path, signals):
  out = tmp_path / 'result.pkl'
  script = tmp_path / 'child.py'
  # A second signal must not wait for the main thread: give it all the time in the world.
  unwind = 3 if len(signals) == 1 else 3600
  script.write_text(CHILD.format(root=str(ROOT), out=str(out), note=NOTE, unwind=unwind))
  proc = subprocess.Popen([sys.executable, str(script)], env=env(), text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          preexec_fn=_as_in_a_terminal)
  seen = _wait_for(proc, 'computing')
  time.sleep(1)  # inside the loop by now
  for k, signum in enumerate(signals):
    if k:
      # Two identical signals sent before the first is delivered merge into one (standard
      # signals are not queued): leave the first time to arrive, as a second Ctrl-C does.
      time.sleep(1)
    proc.send_signal(signum)
  code, seconds, stderr = _finish(proc, seen)
  _assert_one_line(code, stderr, signals[0])
  # The loop never returns, so a handler of the main thread would never run: the watcher
  # ends the process, UNWIND_SECONDS after one signal, at once after a second one.
  assert seconds < 30, seconds
  assert sorted(p.name for p in tmp_path.iterdir()) == ['child.py']  # no temporary file


def test_an_ignored_signal_stays_ignored(tmp_path):
  script = tmp_path / 'child.py'
  script.write_text(textwrap.dedent(f"""\
      import signal, sys, time
      sys.path.insert(0, {str(ROOT)!r})
      signal.signal(signal.SIGINT, signal.SIG_IGN)  # as nohup or a non-interactive shell's '&'
      from af_jax.run import cli
      cli.exit_on_signals('note')
      print('ready', file=sys.stderr, flush=True)
      time.sleep(3)
      print('not interrupted', file=sys.stderr, flush=True)
      """))
  proc = subprocess.Popen([sys.executable, str(script)], env=env(), text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE)
  seen = _wait_for(proc, 'ready')
  proc.send_signal(signal.SIGINT)
  code, _, stderr = _finish(proc, seen)
  assert code == 0 and 'not interrupted' in stderr, stderr


def test_first_run_after_an_interrupt_completes(tmp_path):
  out = tmp_path / 'out'
  args = [f'--fasta_paths={fasta(tmp_path / "in.fasta")}', f'--output_dir={out}']
  proc = _start(args)
  seen = _wait_for(proc, 'features in')
  proc.send_signal(signal.SIGTERM)
  code, _, stderr = _finish(proc, seen)
  _assert_one_line(code, stderr, signal.SIGTERM)
  proc = _start(args)
  code, _, stderr = _finish(proc, [], timeout=600)
  assert code == 0, stderr[-3000:]
  assert (out / 't1' / 'ranking_debug.json').is_file()
  assert not temporary_files(pathlib.Path(out))
