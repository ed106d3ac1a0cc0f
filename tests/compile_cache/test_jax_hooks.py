"""The cache key does not name the cache directory: a copied or moved cache hits every entry."""

import shutil

from jax._src.lib import xla_client

from compile_cache import jax_hooks
from compile_cache import store
from tests.compile_cache import child

# Compiles two labelled functions through the cache, plus the small op-by-op executables eager
# jnp calls make, counting XLA compilations with a spy on the one function JAX compiles through.
RUN = '''
from jax._src import compiler
COMPILED = []
real_compile = compiler.backend_compile_and_load
def spy(backend, computation, devices, options, *rest):
  COMPILED.append(options.executable_build_options.debug_options
                  .xla_gpu_per_fusion_autotune_cache_dir)
  return real_compile(backend, computation, devices, options, *rest)
compiler.backend_compile_and_load = spy
compile_cache.configure(CACHE_DIR)
statuses = [compile_cache.compile_with_cache(label, fn.lower(*args)).status
            for label, fn, args in warm_specs.specs()]
jnp.stack([jnp.ones(3), jnp.zeros(3)]).block_until_ready()
result(statuses=statuses, compiled=COMPILED, hits=count('cache_hits'),
       misses=count('cache_misses'), requests=count('compile_requests_use_cache'))
'''


def _run(cache_dir):
  return child.run_code(f'CACHE_DIR = {str(cache_dir)!r}\n' + RUN)


def _keys(root):
  return sorted(e.key for e in store.list_entries(root))


def test_copied_and_moved_cache_hits_every_entry(tmp_path):
  first = tmp_path / 'first'
  filled = _run(first)
  assert filled['statuses'] == ['compiled', 'compiled'] and filled['hits'] == 0
  keys = _keys(first)
  assert len(keys) == filled['misses'] == len(filled['compiled']) > 2  # + eager helpers
  # The compiler still gets the autotune directory beside the entries (used on GPU).
  assert set(filled['compiled']) == {str(first / 'default' / store.AUTOTUNE_DIRNAME)}

  copy = shutil.copytree(first, tmp_path / 'elsewhere' / 'copy')
  moved = tmp_path / 'moved'
  first.rename(moved)
  for root in (copy, moved):
    again = _run(root)
    assert again['statuses'] == ['loaded', 'loaded']
    assert again['compiled'] == [] and again['misses'] == 0
    assert again['hits'] == again['requests'] == len(keys)
    assert _keys(root) == keys  # nothing new written beside the old entries


def test_key_options_are_cleared_on_a_copy_only():
  options = xla_client.CompileOptions()
  debug = options.executable_build_options.debug_options
  assert jax_hooks._location_free(options) is options  # nothing to clear: no copy
  debug.xla_gpu_per_fusion_autotune_cache_dir = '/cache/a/default/autotune'
  debug.xla_gpu_kernel_cache_file = '/cache/a/default/kernels'
  free = jax_hooks._location_free(options)
  free_debug = free.executable_build_options.debug_options
  assert free_debug.xla_gpu_per_fusion_autotune_cache_dir == ''
  assert free_debug.xla_gpu_kernel_cache_file == ''
  assert debug.xla_gpu_per_fusion_autotune_cache_dir == '/cache/a/default/autotune'
  assert debug.xla_gpu_kernel_cache_file == '/cache/a/default/kernels'
