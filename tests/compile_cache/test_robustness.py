"""A damaged, read-only or contended cache never crashes a program or changes its results.

Every process that configures the cache is a child (JAX's config is process-global): it
compiles warm_specs' first function through the cache, runs it on fixed inputs and reports
its status, its output's bytes and every warning (Python warnings and logged warnings).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
import shutil
import subprocess
import sys
import time
import zlib

import pytest

from compile_cache import store
from compile_cache import verify
from tests.compile_cache import child

# CACHE_DIR and RELOAD are set before this runs.
COMPILE = '''
import logging, warnings
import numpy as np
logged = []
class Handler(logging.Handler):
  def emit(self, record):
    logged.append(record.getMessage())
logging.getLogger().addHandler(Handler(level=logging.WARNING))
with warnings.catch_warnings(record=True) as caught:
  warnings.simplefilter('always')
  compile_cache.configure(CACHE_DIR)
  label, fn, args = warm_specs.specs()[0]
  res = compile_cache.compile_with_cache(label, fn.lower(*args))
  x = np.arange(32 * 32, dtype=np.float32).reshape(32, 32) / 1024  # numpy: no other jit
  out = np.asarray(res.compiled(x, x + 1)).tobytes().hex()
  hits, misses = count('cache_hits'), count('cache_misses')  # of the first compile
  reload = None
  if RELOAD:  # drop the in-memory executable: the next compile reads the disk again
    jax.clear_caches()
    reload = compile_cache.compile_with_cache(label, fn.lower(*args)).status
result(status=res.status, out=out, reload=reload, hits=hits, misses=misses,
       warnings=[str(w.message) for w in caught] + logged)
'''


def _compile(cache_dir: Path, *, reload: bool = False, prefix: tuple[str, ...] = ()) -> dict:
  code = f'CACHE_DIR = {str(cache_dir)!r}\nRELOAD = {reload}\n' + COMPILE
  return child._run([*prefix, sys.executable, '-c', child.PRELUDE + code], check=True)


def _only_entry(root: Path) -> store.Entry:
  [entry] = store.list_entries(root)
  return entry


def _assert_valid(root: Path) -> None:
  """One entry, recorded with the digest of its bytes, that loads in this process."""
  entry = _only_entry(root)
  assert entry.meta['sha256'] == store.digest(entry.path.read_bytes())
  assert not list(root.rglob('*.tmp'))
  [check] = verify.verify(root, remove_broken=False)
  assert check.status == 'ok', check.detail


def _truncate(path: Path) -> None:
  data = path.read_bytes()
  path.write_bytes(data[:len(data) // 2])


def _flip_byte(path: Path) -> None:
  data = bytearray(path.read_bytes())
  data[len(data) // 2] ^= 0xFF
  path.write_bytes(bytes(data))


def _corrupt_executable(path: Path) -> None:
  """A flipped byte inside the executable, re-compressed so that the codec accepts it.

  What a codec without a checksum (zstd, which JAX uses when it is installed) hands back
  for a flipped bit on disk. Plain JAX 0.10.2 loads such an entry: depending on the byte it
  runs wrong code (other numbers) or aborts the process.
  """
  from jax._src import compilation_cache as jax_cache  # the entry codec, as JAX writes it
  raw = bytearray(jax_cache.decompress_executable(path.read_bytes()))
  raw[len(raw) // 2] ^= 0xFF
  path.write_bytes(jax_cache.compress_executable(bytes(raw)))


def _truncate_without_digest(path: Path) -> None:
  """A truncated entry whose metadata has no digest (as plain JAX writes them)."""
  meta_path = path.with_name(path.name[:-len(store.CACHE_SUFFIX)] + store.META_SUFFIX)
  meta = json.loads(meta_path.read_text())
  del meta['sha256']
  meta_path.write_text(json.dumps(meta))
  _truncate(path)


def test_corrupted_entry_is_recompiled_and_replaced(tmp_path):
  first = _compile(tmp_path)
  assert first['status'] == 'compiled' and first['warnings'] == []
  _assert_valid(tmp_path)
  for corrupt in (_truncate, _flip_byte, _corrupt_executable, _truncate_without_digest):
    corrupt(_only_entry(tmp_path).path)
    again = _compile(tmp_path, reload=True)
    name = corrupt.__name__
    assert again['status'] == 'compiled', name  # XLA compiled it again: not a hit
    assert again['misses'] == 1 and again['hits'] == 0, name
    assert again['out'] == first['out'], name  # bit-identical results
    assert len(again['warnings']) == 1, (name, again['warnings'])
    if corrupt is _truncate_without_digest:  # JAX's codec notices, warns and recompiles
      assert 'Error reading persistent compilation cache entry' in again['warnings'][0]
    else:
      assert 'is corrupted' in again['warnings'][0], name
    assert again['reload'] == 'loaded', name  # the replacement reads back in that process
    _assert_valid(tmp_path)
  third = _compile(tmp_path)  # a new process loads the replacement
  assert third['status'] == 'loaded' and third['hits'] == 1 and third['misses'] == 0
  assert third['out'] == first['out'] and third['warnings'] == []


def _unprivileged() -> tuple[str, ...]:
  """A command prefix under which file permissions bind (root ignores them).

  Root keeps its uid but loses every capability (CAP_DAC_OVERRIDE among them), so the kernel
  applies the mode bits: a 0555 directory refuses its owner's writes as for anyone.
  """
  if os.geteuid() != 0:
    return ()
  prefix = ('setpriv', '--bounding-set=-all', '--inh-caps=-all')
  if shutil.which('setpriv') is None or subprocess.run(
      [*prefix, 'true'], capture_output=True).returncode != 0:
    pytest.skip('running as root without a working setpriv: cannot make a directory '
                'read-only to this process (run as a non-root user)')
  return prefix


def _snapshot(root: Path) -> dict[str, tuple[int, int, int]]:
  return {str(p.relative_to(root)): (p.stat().st_mode, p.stat().st_mtime_ns,
                                     zlib.crc32(p.read_bytes()) if p.is_file() else 0)
          for p in sorted(root.rglob('*'))}


def _set_writable(root: Path, writable: bool) -> None:
  for path in [root, *root.rglob('*')]:
    mode = path.stat().st_mode
    path.chmod(mode | 0o200 if writable else mode & ~0o222)


def test_read_only_cache_runs_with_one_warning_and_no_writes(tmp_path):
  prefix = _unprivileged()
  stored, empty = tmp_path / 'stored', tmp_path / 'empty'
  first = _compile(stored)
  empty.mkdir()
  for root in (stored, empty):
    _set_writable(root, False)
  before = {root: _snapshot(root) for root in (stored, empty)}
  try:
    loads = _compile(stored, prefix=prefix)
    compiles = _compile(empty, prefix=prefix)
    after = {root: _snapshot(root) for root in (stored, empty)}
  finally:
    for root in (stored, empty):
      _set_writable(root, True)
  assert loads['status'] == 'loaded' and loads['out'] == first['out']
  assert compiles['status'] == 'compiled' and compiles['out'] == first['out']
  for out in (loads, compiles):
    assert len(out['warnings']) == 1 and 'is not writable' in out['warnings'][0], out
  # Nothing written: no new file, no changed byte, mode or modification time (not even -atime).
  assert after == before


# Waits for the other writer at a barrier, then warms the same four functions as it does.
RACE = '''
import time
compile_cache.configure(CACHE_DIR)
specs = warm_specs.specs(count=4)
open(os.path.join(BARRIER, str(os.getpid())), 'w').close()
deadline = time.monotonic() + 60
while len(os.listdir(BARRIER)) < 2 and time.monotonic() < deadline:
  time.sleep(0.005)
results = compile_cache.warmup(specs, echo=None)
result(statuses=[r.status for r in results])
'''

LOAD_ALL = '''
compile_cache.configure(CACHE_DIR)
statuses = [compile_cache.compile_with_cache(label, fn.lower(*args)).status
            for label, fn, args in warm_specs.specs(count=4)]
result(statuses=statuses, hits=count('cache_hits'), misses=count('cache_misses'))
'''


def test_two_processes_warming_the_same_buckets_leave_one_valid_entry_each(tmp_path):
  cache, barrier = tmp_path / 'cache', tmp_path / 'barrier'
  barrier.mkdir()
  code = f'CACHE_DIR = {str(cache)!r}\nBARRIER = {str(barrier)!r}\n' + RACE
  env = dict(os.environ, PYTHONPATH=str(child.ROOT), JAX_PLATFORMS='cpu')
  procs = [subprocess.Popen([sys.executable, '-c', child.PRELUDE + code], cwd=child.ROOT,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
           for _ in range(2)]
  start = time.monotonic()
  outs = [p.communicate(timeout=120) for p in procs]
  assert all(p.returncode == 0 for p in procs), outs
  assert time.monotonic() - start < 120
  statuses = [json.loads(line[len('RESULT '):])['statuses'] for out, _ in outs
              for line in out.splitlines() if line.startswith('RESULT ')]
  assert len(statuses) == 2 and 'compiled' in statuses[0] + statuses[1]

  entries = store.list_entries(cache)
  assert sorted(e.function for e in entries) == [f'mm{i}/n32' for i in range(4)]
  for entry in entries:  # the executable beside its own digest, whichever writer won
    assert entry.meta['sha256'] == store.digest(entry.path.read_bytes()), entry.key
    assert entry.meta.get('fingerprint') and entry.meta.get('num_devices') == 1
  assert not list(cache.rglob('*.tmp'))
  loads = child.run_code(f'CACHE_DIR = {str(cache)!r}\n' + LOAD_ALL)
  assert loads == {'statuses': ['loaded'] * 4, 'hits': 4, 'misses': 0}
  assert [c.status for c in verify.verify(cache)] == ['ok'] * 4
