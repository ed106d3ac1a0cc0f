"""Issue 25 item 3: `python -m compile_cache` deletes only in its own marked root, only its files.

Every command runs as a user runs it, `python -m compile_cache ...` in a child process; caches
are real (warm compiles of tests/compile_cache/warm_specs in a child, or a tiny fold of
run_inference.py), damaged by truncating a real entry.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
import shutil

import pytest

from compile_cache import store
from tests.cli_runner import run_script
from tests.compile_cache import child
from tests.model.tiny import TINY

HEX = 'ab' * 32  # a sha256 in hex, as JAX ends its keys
# Names that match the cache's own patterns, as an unmarked directory might hold them.
LOOKALIKES = (f'jit_f-{HEX}-cache', f'jit_f-{HEX}-atime', f'jit_f-{HEX}-meta.json', '.lock',
              'profile.json', 'notes-cache', f'.jit_f-{HEX}-cache.12.0123abcd.tmp')


def snapshot(root: Path) -> dict[str, tuple]:
  """Every path under `root` (symlinks not followed): its kind, bytes or target, mode, mtime."""
  seen = {}
  for parent, dirs, files in os.walk(root):
    for name in dirs + files:
      path = Path(parent) / name
      info = path.lstat()
      if path.is_symlink():
        what = ('link', os.readlink(path))
      elif path.is_dir():
        what = ('dir',)
      else:
        what = ('file', hashlib.sha256(path.read_bytes()).hexdigest())
      seen[str(path.relative_to(root))] = (*what, info.st_mode, info.st_mtime_ns)
  return seen


def one_error_line(proc) -> str:
  """The refusal: exit 2, nothing on stdout, one `compile_cache: error:` line on stderr."""
  assert proc.returncode == 2, (proc.stdout, proc.stderr)
  assert proc.stdout == ''
  lines = proc.stderr.splitlines()
  assert len(lines) == 1 and lines[0].startswith('compile_cache: error: '), proc.stderr
  return lines[0]


def warm_cache(root: Path, count: int = 2) -> list[store.Entry]:
  """A real cache: `count` functions compiled through configure() in a child process."""
  child.run_code(f'''
      compile_cache.configure({str(root)!r})
      for label, fn, args in warm_specs.specs(count={count}):
        compile_cache.compile_with_cache(label, fn.lower(*args))
      result()
      ''')
  return store.list_entries(root)


@pytest.fixture(scope='module')
def real_cache(tmp_path_factory) -> Path:
  """One warm cache for the module; tests take copies (verify decodes, it needs no key)."""
  root = tmp_path_factory.mktemp('warm') / 'cache'
  assert len(warm_cache(root)) == 2
  return root


def copy_of(real_cache: Path, where: Path) -> Path:
  shutil.copytree(real_cache, where, symlinks=True)
  return where


@pytest.mark.parametrize('command', [['clear'], ['prune', '--max_size=0'], ['verify'],
                                     ['verify', '--keep_broken']])
def test_unmarked_directory_is_refused_and_left_untouched(tmp_path, command):
  victim = tmp_path / 'data'
  for directory in (victim, victim / 'default'):
    directory.mkdir(parents=True)
    for name in LOOKALIKES:
      (directory / name).write_bytes(b'a user file')
  (victim / 'default' / 'profile.json').write_text('{"name": "default", "flags": []}')
  (victim / 'empty').mkdir()
  before = snapshot(victim)

  line = one_error_line(child.run_cli(*command, '--cache_dir', str(victim), check=False))
  assert 'is not marked as a compile cache' in line
  assert f'python -m compile_cache mark --cache_dir {victim}' in line
  assert snapshot(victim) == before


def test_missing_directory_and_forged_mark_are_refused(tmp_path, real_cache):
  missing = tmp_path / 'no' / 'such'
  line = one_error_line(child.run_cli('clear', '--cache_dir', str(missing), check=False))
  assert 'does not exist' in line and not missing.parent.exists()

  # A mark that is a symlink to a real one is not followed: the directory is not marked.
  forged = tmp_path / 'forged'
  forged.mkdir()
  (forged / f'jit_f-{HEX}-cache').write_bytes(b'data')
  (forged / store.ROOT_MARK).symlink_to(real_cache / store.ROOT_MARK)
  # A file of the mark's name with other content is no mark either.
  other = tmp_path / 'other'
  other.mkdir()
  (other / f'jit_f-{HEX}-cache').write_bytes(b'data')
  (other / store.ROOT_MARK).write_text('{"written_by": "someone else", "format": 1}')
  for directory in (forged, other):
    before = snapshot(directory)
    line = one_error_line(child.run_cli('clear', '--cache_dir', str(directory), check=False))
    assert 'is not marked' in line
    assert snapshot(directory) == before
  # ...and `mark` will not overwrite it.
  line = one_error_line(child.run_cli('mark', '--cache_dir', str(other), check=False))
  assert 'is not a mark compile_cache wrote' in line


def test_marked_cache_keeps_foreign_files(tmp_path, real_cache):
  root = copy_of(real_cache, tmp_path / 'cache')
  profile = root / 'default'
  foreign = {
      root / 'notes.txt': b'my notes',
      root / 'notes-cache': b'not a key',  # the suffix, but no JAX key before it
      root / 'mydata' / f'jit_x-{HEX}-cache': b'a key name, outside any profile directory',
      root / 'mydata' / 'profile.json': b'not json',  # no profile: bad JSON
      root / 'Default' / f'jit_x-{HEX}-cache': b'not a profile name',
      profile / 'notes.txt': b'in a profile directory',
      profile / 'notes-atime': b'not a key',
      profile / 'sub' / f'jit_x-{HEX}-cache': b'below a profile directory',
  }
  for path, data in foreign.items():
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
  pruned = child.run_cli('prune', '--cache_dir', str(root), '--max_size=0')
  assert 'pruned 2 entries; 0 B left' in pruned.stdout
  (profile / store.AUTOTUNE_DIRNAME).mkdir()
  (profile / store.AUTOTUNE_DIRNAME / 'fusion.textproto').write_text('autotune results')
  cleared = child.run_cli('clear', '--cache_dir', str(root))
  assert 'removed 0 entries' in cleared.stdout

  assert {path: path.read_bytes() for path in foreign} == foreign
  assert store.list_entries(root) == []
  # Only the cache's own files went: no entry, lock, profile record or autotune result.
  left = {str(p.relative_to(root)) for p in root.rglob('*') if p.is_file()}
  assert left == {str(p.relative_to(root)) for p in foreign} | {store.ROOT_MARK}


def test_symlinks_are_not_followed(tmp_path, real_cache):
  outside = tmp_path / 'outside'  # someone else's files, shaped like a cache
  outside.mkdir()
  for name in LOOKALIKES:
    (outside / name).write_bytes(b'theirs')
  (outside / 'profile.json').write_text('{"name": "fast_compile", "flags": []}')
  (outside / 'sub').mkdir()
  (outside / 'sub' / f'jit_s-{HEX}-cache').write_bytes(b'theirs too')
  before = snapshot(outside)

  root = copy_of(real_cache, tmp_path / 'cache')
  profile = root / 'default'
  links = {
      root / 'fast_compile': outside,  # named like a profile, holds a profile.json
      root / f'jit_l-{HEX}-cache': outside / f'jit_f-{HEX}-cache',
      profile / f'jit_l-{HEX}-cache': outside / f'jit_f-{HEX}-cache',
      profile / f'jit_l-{HEX}-atime': outside / f'jit_f-{HEX}-atime',
      profile / store.AUTOTUNE_DIRNAME: outside / 'sub',
  }
  # A real entry whose metadata and use time are links out: the entry goes, the links stay.
  [entry, *_] = store.list_entries(root)
  for suffix in (store.META_SUFFIX, store.ATIME_SUFFIX):
    path = entry.directory / (entry.key + suffix)
    path.unlink()
    links[path] = outside / f'jit_f-{HEX}{suffix}'
  for link, target in links.items():
    link.symlink_to(target)

  listed = child.run_cli('list', '--cache_dir', str(root)).stdout
  assert 'jit_l' not in listed and len(listed.splitlines()) == 3  # header + the 2 real entries
  verified = child.run_cli('verify', '--cache_dir', str(root))
  assert 'verified 2 entries' in verified.stdout and '0 broken' in verified.stdout
  child.run_cli('prune', '--cache_dir', str(root), '--max_size=0')
  child.run_cli('clear', '--cache_dir', str(root))

  assert snapshot(outside) == before
  assert all(link.is_symlink() and os.readlink(link) == str(target)
             for link, target in links.items())
  assert store.list_entries(root) == []


def test_verify_exit_status_follows_broken_entries(tmp_path, real_cache):
  root = copy_of(real_cache, tmp_path / 'cache')
  clean = child.run_cli('verify', '--cache_dir', str(root))
  assert clean.returncode == 0 and 'verified 2 entries: 2 loaded' in clean.stdout

  broken = store.list_entries(root)[1]
  data = broken.path.read_bytes()
  broken.path.write_bytes(data[:len(data) // 2])
  kept = child.run_cli('verify', '--keep_broken', '--cache_dir', str(root), check=False)
  assert kept.returncode == 1, kept.stderr
  assert f'broken   {broken.function} {broken.key}: does not decode' in kept.stdout
  assert '1 broken (kept)' in kept.stdout and broken.path.exists()

  removed = child.run_cli('verify', '--cache_dir', str(root), check=False)
  assert removed.returncode == 1 and '1 broken (removed)' in removed.stdout
  assert not broken.path.exists()
  again = child.run_cli('verify', '--cache_dir', str(root))  # what is left is all fine
  assert again.returncode == 0 and 'verified 1 entries: 1 loaded, 0 decoded only, 0 broken' \
      in again.stdout


def test_configure_marks_new_and_old_caches_not_shared_directories(tmp_path, real_cache):
  new = tmp_path / 'new' / 'xla'  # does not exist yet
  old = copy_of(real_cache, tmp_path / 'old')  # made before the mark existed
  (old / store.ROOT_MARK).unlink()
  shared = tmp_path / 'shared'  # someone's directory, given as the cache by mistake
  shared.mkdir()
  (shared / 'notes.txt').write_text('mine')
  out = child.run_code(f'''
      import logging
      logged = []
      class Handler(logging.Handler):
        def emit(self, record):
          logged.append(record.getMessage())
      logging.getLogger().addHandler(Handler(level=logging.WARNING))
      for d in ({str(new)!r}, {str(old)!r}, {str(shared)!r}):
        compile_cache.configure(d)
      label, fn, args = warm_specs.specs(count=1)[0]
      status = compile_cache.compile_with_cache(label, fn.lower(*args)).status
      result(status=status, logged=logged)
      ''')
  mark = json.loads((new / store.ROOT_MARK).read_text())
  assert mark['written_by'] == 'compile_cache' and mark['format'] == store.MARK_FORMAT
  assert store.read_mark(old) is not None  # adopted: it held only the cache's own files
  child.run_cli('verify', '--cache_dir', str(old))

  # The shared directory is used (the entry is stored) but not marked, with one warning.
  assert out['status'] == 'compiled' and len(store.list_entries(shared)) == 1
  assert store.read_mark(shared) is None
  [warning] = out['logged']
  assert f"{str(shared)!r} also holds files that are not the cache's ('notes.txt')" in warning
  assert f'mark --cache_dir {shared}' in warning
  one_error_line(child.run_cli('clear', '--cache_dir', str(shared), check=False))
  # A person decides: marked, its entries can be cleared; the notes stay.
  marked = child.run_cli('mark', '--cache_dir', str(shared)).stdout
  assert 'marked' in marked and '1 entries' in marked and 'never the 1 other names' in marked
  assert 'removed 1 entries' in child.run_cli('clear', '--cache_dir', str(shared)).stdout
  assert sorted(p.name for p in shared.iterdir()) == [store.ROOT_MARK, 'notes.txt']


def test_a_fold_marks_its_cache_and_the_commands_maintain_it(tmp_path):
  cache = tmp_path / 'xla'
  fasta = tmp_path / 't.fasta'
  fasta.write_text('>t1\nMKTAYIAKQRQISFVK\n')
  small = [f'--config.{k}={v}' for k, v in TINY.items()] + [
      '--config.model.embeddings_and_evoformer.evoformer_num_block=1', '--num_recycle=0',
      '--buckets=16', '--random_params', '--model_names=model_3_ptm',
      '--msa_mode=single_sequence', '--chunk=none']
  run_script('run_inference.py', [f'--fasta_paths={fasta}', f'--output_dir={tmp_path / "out"}',
                                  *small], cache_dir=str(cache))
  assert store.read_mark(cache) is not None
  entries = store.list_entries(cache)
  assert any(e.function.startswith('model_3_ptm/L16') for e in entries)
  verified = child.run_cli('verify', '--cache_dir', str(cache))
  assert f'verified {len(entries)} entries' in verified.stdout and '0 broken' in verified.stdout
  cleared = child.run_cli('clear', '--cache_dir', str(cache))
  assert f'removed {len(entries)} entries' in cleared.stdout
  assert [p.name for p in cache.iterdir()] == [store.ROOT_MARK]
