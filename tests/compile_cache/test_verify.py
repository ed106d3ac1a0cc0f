"""verify: entries that load pass; a truncated one is reported and removed."""

from compile_cache import __main__ as cli
from compile_cache import store
from compile_cache import verify
from tests.compile_cache import child


def test_verify_removes_a_truncated_entry(tmp_path, capsys):
  child.run_code(f'''
      compile_cache.configure({str(tmp_path)!r})
      for label, fn, args in warm_specs.specs(count=2):
        compile_cache.compile_with_cache(label, fn.lower(*args))
      jax.jit(lambda x: x * 3).lower(jax.ShapeDtypeStruct((4,), jnp.float32)).compile()
      result()
      ''')
  entries = {e.function: e for e in store.list_entries(tmp_path)}
  assert set(entries) == {'mm0/n32', 'mm1/n32', 'jit__lambda'}
  broken = entries['mm1/n32']
  data = broken.path.read_bytes()
  broken.path.write_bytes(data[:len(data) // 2])

  checks = {c.entry.function: c for c in verify.verify(tmp_path, remove_broken=False)}
  assert checks['mm0/n32'].status == 'ok'
  assert checks['mm1/n32'].status == 'broken' and 'does not decode' in checks['mm1/n32'].detail
  # Plain jit through the configured cache still records the device count.
  assert checks['jit__lambda'].status in ('ok', 'decoded')
  assert broken.path.exists()

  assert cli.run(['verify', '--cache_dir', str(tmp_path)]) == 1  # found broken: not 0
  out = capsys.readouterr().out
  assert 'broken   mm1/n32' in out and '1 broken (removed)' in out
  assert sorted(e.function for e in store.list_entries(tmp_path)) == ['jit__lambda', 'mm0/n32']


def test_entry_without_device_count_is_decoded_not_loaded(tmp_path, capsys):
  child.run_code(f'''
      jax.config.update('jax_compilation_cache_dir', {str(tmp_path)!r})  # plain JAX, no metadata
      jax.config.update('jax_persistent_cache_min_compile_time_secs', 0.0)
      label, fn, args = warm_specs.specs(count=1)[0]
      fn.lower(*args).compile()
      result()
      ''')
  # Plain JAX writes no mark: verify refuses until a person adopts the directory.
  assert cli.main(['verify', '--cache_dir', str(tmp_path)]) == 2
  assert 'python -m compile_cache mark' in capsys.readouterr().err
  assert cli.main(['mark', '--cache_dir', str(tmp_path)]) == 0
  assert 'marked' in capsys.readouterr().out
  [check] = verify.verify(tmp_path)
  assert check.status == 'decoded' and 'device count' in check.detail
  assert check.entry.profile == '' and check.entry.function == 'jit_mm0'
