"""The cache directory on disk, and the stats/list/prune/clear commands, on hand-made entries."""

import json

import pytest

from compile_cache import __main__ as cli
from compile_cache import store

KEYS = [f'jit_f{i}-{i:064x}' for i in range(4)]


def _fake_entry(directory, key, size, used_ns, meta=None):
  directory.mkdir(parents=True, exist_ok=True)
  (directory / (key + store.CACHE_SUFFIX)).write_bytes(b'x' * size)
  (directory / (key + store.ATIME_SUFFIX)).write_bytes(used_ns.to_bytes(8, 'little'))
  if meta is not None:
    (directory / (key + store.META_SUFFIX)).write_text(json.dumps(meta))


@pytest.fixture
def cache(tmp_path):
  """A marked root with four 1000-byte entries used in the order 2, 0, 3, 1 (oldest first)."""
  _fake_entry(tmp_path / 'default', KEYS[0], 1000, 2_000_000_000_000_000_000,
              {'label': 'model/L64', 'compile_seconds': 12.5})
  _fake_entry(tmp_path / 'default', KEYS[1], 1000, 4_000_000_000_000_000_000)
  store.write_profile_marker(tmp_path / 'default', 'default', [])
  _fake_entry(tmp_path / 'max_autotune', KEYS[2], 1000, 1_000_000_000_000_000_000,
              {'label': 'model/L128', 'compile_seconds': 30.0})
  store.write_profile_marker(tmp_path / 'max_autotune', 'max_autotune',
                             ['--xla_gpu_autotune_level=4'])
  _fake_entry(tmp_path, KEYS[3], 1000, 3_000_000_000_000_000_000)  # plain JAX, no metadata
  autotune = tmp_path / 'default' / store.AUTOTUNE_DIRNAME
  autotune.mkdir()
  (autotune / 'fusion.textproto').write_text('results')
  assert store.adopt_root(tmp_path) == []  # nothing but the cache's files: marked
  return tmp_path


def test_list_entries_least_recently_used_first(cache):
  entries = store.list_entries(cache)
  assert [e.key for e in entries] == [KEYS[2], KEYS[0], KEYS[3], KEYS[1]]
  assert [e.function for e in entries] == ['model/L128', 'model/L64', 'jit_f3', 'jit_f1']
  assert [e.profile for e in entries] == ['max_autotune', 'default', '', 'default']
  assert entries[0].compile_seconds == 30.0 and entries[2].compile_seconds is None


def test_stats_and_list_commands(cache, capsys):
  cli.run(['stats', '--cache_dir', str(cache)])
  out = capsys.readouterr().out
  assert 'profile default: 2 entries, 2.0 kB' in out
  assert 'profile max_autotune: 1 entries, 1.0 kB; flags --xla_gpu_autotune_level=4' in out
  assert 'profile (root): 1 entries' in out
  assert 'total: 4 entries, 4.0 kB; compile seconds saved per full load: 42.50' in out
  assert 'autotune results: 7 B' in out
  assert 'labelled executables: 2, 2.0 kB' in out
  assert ('+ 2 helper executables without a label, 2.0 kB: 1 jit_f1 (1.0 kB), 1 jit_f3 '
          '(1.0 kB); --all lists each') in out
  cli.run(['list', '--cache_dir', str(cache)])
  lines = capsys.readouterr().out.splitlines()
  header = ['LAST', 'USED', 'SIZE', 'COMPILE_S', 'PROFILE', 'FUNCTION', 'KEY']
  assert lines[0].split() == header
  assert [line.split()[-2] for line in lines[1:3]] == ['model/L64', 'model/L128']  # by label
  assert lines[3].startswith('+ 2 helper executables') and len(lines) == 4
  cli.run(['list', '--all', '--cache_dir', str(cache)])
  lines = capsys.readouterr().out.splitlines()
  assert lines[0].split() == header
  assert [line.split()[-2] for line in lines[1:]] == ['model/L128', 'model/L64', 'jit_f3',
                                                      'jit_f1']  # least recently used first
  assert '30.00' in lines[1] and 'max_autotune' in lines[1]


def test_prune_removes_oldest_first_to_under_the_limit(cache, capsys):
  cli.run(['prune', '--cache_dir', str(cache), '--max_size=2.5kB'])
  out = capsys.readouterr().out
  assert out.count('removed ') == 2 and 'pruned 2 entries; 2.0 kB left (limit 2.5 kB)' in out
  assert [e.key for e in store.list_entries(cache)] == [KEYS[3], KEYS[1]]
  assert not (cache / 'max_autotune' / (KEYS[2] + store.META_SUFFIX)).exists()


def test_evict_never_removes_a_protected_entry(cache):
  removed = store.evict_to_size(cache, 0, protect=[KEYS[2]])
  assert {e.key for e in removed} == {KEYS[0], KEYS[1], KEYS[3]}
  assert [e.key for e in store.list_entries(cache)] == [KEYS[2]]


def test_clear_removes_entries_and_autotune_results(cache, capsys):
  cli.run(['clear', '--cache_dir', str(cache)])
  assert 'removed 4 entries' in capsys.readouterr().out
  assert store.list_entries(cache) == []
  assert store.autotune_bytes(cache) == 0
  assert list(cache.iterdir()) == [cache / store.ROOT_MARK]  # still a (now empty) cache


def test_find_by_fingerprint_needs_the_executable(cache):
  store.update_meta(cache / 'default', KEYS[1], fingerprint='abc')
  assert store.find_by_fingerprint(cache / 'default', 'abc').key == KEYS[1]
  (cache / 'default' / (KEYS[1] + store.CACHE_SUFFIX)).unlink()
  assert store.find_by_fingerprint(cache / 'default', 'abc') is None


def test_bad_size_is_one_line_and_exit_2(cache, capsys):
  assert cli.main(['prune', '--cache_dir', str(cache), '--max_size=lots']) == 2
  err = capsys.readouterr().err
  assert err.startswith("compile_cache: error: size 'lots'") and err.count('\n') == 1
