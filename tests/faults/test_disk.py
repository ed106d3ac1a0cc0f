"""Issue 25 items 6 and 9: a full disk is one `error:` line, exit 2, and leaves nothing behind;
what a killed run left is removed by the next run that completes the target.

The disk fills for real: a small tmpfs where this process may mount one (root), and always a
file size limit (RLIMIT_FSIZE, the kernel's EFBIG) set on the child alone.
"""

import os
import resource
import signal
import subprocess

import pytest

from tests.faults.names_support import MODEL, assert_ok, assert_one_error_line, fasta, run


def _dead_pid() -> int:
  """The id of a process that has exited (as one killed in the middle of a write)."""
  child = subprocess.Popen(['true'])
  child.wait()
  return child.pid


def _plant_leftovers(target_dir):
  """What a run killed mid-write leaves (named as common.files names it), and user files."""
  pid = _dead_pid()
  target_dir.mkdir(parents=True)
  stale = [target_dir / f'.result_{MODEL}_pred_0.pkl.tmp-{pid}',
           target_dir / f'.features.npz.tmp-{pid}',
           target_dir / 'msas' / f'.search.tmp-{pid}-k3x_9q']
  stale[2].mkdir(parents=True)
  (stale[2] / 'query.fasta').write_text('>t1\nMKV\n')
  for path in stale[:2]:
    path.write_bytes(b'partial')
  # Not ours, though they look temporary: a live process's, and names without our pattern.
  mine = [target_dir / f'.notes.tmp-{os.getpid()}', target_dir / 'notes.tmp',
          target_dir / '.result.pkl.tmp-x1', target_dir / 'msas' / 'draft.tmp']
  for path in mine:
    path.write_text('keep me\n')
  return stale, mine


def _names(directory):
  return sorted(str(p.relative_to(directory)) for p in directory.rglob('*'))


@pytest.fixture
def tmpfs(tmp_path):
  """A 64 KiB tmpfs at tmp_path/disk (skipped where mounting is not allowed), and a way to
  make it larger."""
  disk = tmp_path / 'disk'
  disk.mkdir()
  mount = subprocess.run(['mount', '-t', 'tmpfs', '-o', 'size=64k', 'tmpfs', str(disk)],
                         capture_output=True, text=True)
  if mount.returncode != 0:
    pytest.skip(f'cannot mount a tmpfs here ({mount.stderr.strip()}); the file size limit '
                'test covers a full disk')

  def grow():
    subprocess.run(['mount', '-o', 'remount,size=16m', str(disk)], check=True)

  yield disk, grow
  subprocess.run(['umount', '-l', str(disk)], check=False)


def _limit_file_size():
  # In the child only: writes past 64 KiB fail with EFBIG (SIGXFSZ ignored, not fatal).
  resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, resource.RLIM_INFINITY))
  signal.signal(signal.SIGXFSZ, signal.SIG_IGN)


@pytest.mark.parametrize('mechanism', ['tmpfs', 'file size limit'])
def test_full_disk_is_one_line_and_leaves_nothing(request, tmp_path, mechanism):
  if mechanism == 'tmpfs':
    out, grow = request.getfixturevalue('tmpfs')
    limit, message, extra = None, 'No space left on device', []
  else:
    out, grow = tmp_path / 'out', None
    # No compilation cache: its entries are larger than the limit too.
    limit, message, extra = _limit_file_size, 'File too large', ['--nocompilation_cache']
  target_dir = out / 't1'
  stale, mine = _plant_leftovers(target_dir)
  before = _names(out)
  args = [f'--fasta_paths={fasta(tmp_path / "in.fasta")}', f'--output_dir={out}']

  proc = run([*args, *extra], preexec_fn=limit)
  # result_*.pkl is the first file larger than 64 KiB.
  assert_one_error_line(proc, 'target t1', message, f'result_{MODEL}_pred_0.pkl',
                        'run again')
  assert not (target_dir / 'ranking_debug.json').exists()
  left = set(_names(out)) - set(before)
  assert not [n for n in left if 'tmp' in n], left  # no temporary file of the failed run

  if grow:
    grow()
  assert_ok(run(args))
  assert (target_dir / 'ranking_debug.json').is_file()
  assert not [p for p in stale if os.path.lexists(p)]  # the killed run's leftovers
  assert all(p.read_text() == 'keep me\n' for p in mine)  # and nothing else
