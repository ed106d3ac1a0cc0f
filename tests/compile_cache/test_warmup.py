"""Warm-up from the command line compiles, then skips; a program's own process then loads."""

from compile_cache import store
from compile_cache import warm
from compile_cache.errors import CompileCacheError
from tests.compile_cache import child

import pytest

FLAGS = '--xla_gpu_autotune_level=2'


def test_warmup_compiles_then_skips_then_a_program_loads(tmp_path):
  args = ('warmup', '--cache_dir', str(tmp_path), '--specs',
          'tests.compile_cache.warm_specs:specs', '--arg', 'n=16', '--arg', 'count=2',
          f'--xla_flags={FLAGS}')
  first = child.run_cli(*args).stdout
  assert 'mm0/n16: compiled in' in first and 'mm1/n16: compiled in' in first
  assert 'warm-up: 2 specs, 2 compiled' in first
  second = child.run_cli(*args).stdout
  assert 'mm0/n16: already cached, skipped' in second and 'mm1/n16: already cached' in second
  assert 'warm-up: 2 specs, 0 compiled' in second
  entries = store.list_entries(tmp_path)
  assert len(entries) == 2 and entries[0].profile.startswith('default+')

  # Same flags given to configure() in a program: JAX's key matches the warm-up's (the CLI
  # removed its own --xla_flags argument from sys.argv, which JAX would have hashed).
  out = child.run_code(f'''
      compile_cache.configure({str(tmp_path)!r}, xla_flags={FLAGS!r})
      label, fn, args = warm_specs.specs(n=16)[1]
      res = compile_cache.compile_with_cache(label, fn.lower(*args))
      result(status=res.status, misses=count('cache_misses'))
      ''')
  assert out == {'status': 'loaded', 'misses': 0}


def test_provider_errors_are_one_line(tmp_path):
  proc = child.run_cli('warmup', '--cache_dir', str(tmp_path), '--specs', 'no_such_mod:specs',
                       check=False)
  assert proc.returncode == 2
  assert proc.stderr.strip().startswith("compile_cache: error: --specs 'no_such_mod:specs'")
  assert len(proc.stderr.strip().splitlines()) == 1


def test_parse_arg_and_spec_checks():
  assert warm.parse_arg('buckets=[64, 128]') == ('buckets', [64, 128])
  assert warm.parse_arg('preset=model_1_ptm') == ('preset', 'model_1_ptm')
  with pytest.raises(CompileCacheError, match='name=value'):
    warm.parse_arg('64')
  with pytest.raises(CompileCacheError, match='jax.jit'):
    warm.as_spec(('f', lambda x: x, ()))
