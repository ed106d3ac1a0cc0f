"""configure() in fresh processes: entries, hits across processes, profiles, LRU, call order."""

from compile_cache import store
from tests.compile_cache import child

# Compiles spec `i` of warm_specs through the cache and reports what happened.
COMPILE = '''
compile_cache.configure(CACHE_DIR, autotune_profile=PROFILE)
label, fn, args = warm_specs.specs()[0]
res = compile_cache.compile_with_cache(label, fn.lower(*args))
result(status=res.status, key=res.key, hits=count('cache_hits'), misses=count('cache_misses'),
       xla_flags=os.environ.get('XLA_FLAGS', ''), size=res.size_bytes)
'''


def _compile(cache_dir, profile='default'):
  code = f'CACHE_DIR = {str(cache_dir)!r}\nPROFILE = {profile!r}\n' + COMPILE
  return child.run_code(code)


def test_second_process_hits_and_profile_changes_the_key(tmp_path):
  first = _compile(tmp_path)
  assert first['status'] == 'compiled' and first['misses'] == 1 and first['hits'] == 0
  [entry] = store.list_entries(tmp_path)
  assert entry.key == first['key'] and entry.profile == 'default'
  assert entry.function == 'mm0/n32' and entry.size == first['size'] > 0
  assert entry.compile_seconds > 0 and entry.meta['num_devices'] == 1

  second = _compile(tmp_path)  # a new process: no XLA compilation, loaded from disk
  assert second['status'] == 'loaded' and second['hits'] == 1 and second['misses'] == 0
  assert second['key'] == first['key']

  other = _compile(tmp_path, 'fast_compile')
  assert other['status'] == 'compiled' and other['misses'] == 1
  assert other['key'] != first['key']
  assert '--xla_gpu_autotune_level=0' in other['xla_flags']
  assert {e.profile for e in store.list_entries(tmp_path)} == {'default', 'fast_compile'}


def test_profile_after_backend_start_is_refused(tmp_path):
  out = child.run_code(f'''
      jax.devices()
      try:
        compile_cache.configure({str(tmp_path)!r}, autotune_profile='max_autotune')
        refused = ''
      except compile_cache.CompileCacheError as e:
        refused = str(e)
      compile_cache.configure({str(tmp_path)!r})  # no flags to change: fine
      result(refused=refused)
      ''')
  assert "autotune_profile='max_autotune'" in out['refused']
  assert 'before the first jax.devices()' in out['refused']


def test_size_limit_evicts_least_recently_used(tmp_path):
  out = child.run_code(f'''
      d = {str(tmp_path)!r}
      compile_cache.configure(d)
      specs = warm_specs.specs(count=3)
      def comp(i):
        label, fn, args = specs[i]
        return compile_cache.compile_with_cache(label, fn.lower(*args))
      sizes = [comp(0).size_bytes, comp(1).size_bytes]
      jax.clear_caches()
      again = comp(0).status  # a load: entry 0 is now more recently used than entry 1
      compile_cache.configure(d, max_size_bytes=sizes[0] + sizes[1] + 100)
      comp(2)
      result(again=again)
      ''')
  assert out['again'] == 'loaded'
  assert sorted(e.function for e in store.list_entries(tmp_path)) == ['mm0/n32', 'mm2/n32']
