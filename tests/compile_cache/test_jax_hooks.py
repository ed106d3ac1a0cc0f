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


# A loop that calls the host every iteration (io_callback), compiled through the cache; with
# PLAIN, the same program through JAX's own persistent cache on the same directory instead.
CALLBACK = '''
import numpy as np
from jax.experimental import io_callback
SEEN = []
def loop(x):
  def body(carry):
    i, x = carry
    x = jnp.tanh(x @ x.T)
    io_callback(lambda i, v: SEEN.append([int(i), float(v)]), None, i, jnp.sum(x))
    return i + 1, x
  return jax.lax.while_loop(lambda c: c[0] < 3, body, (0, x))[1]
x = jnp.arange(16.0).reshape(4, 4) / 16
if PLAIN:
  jax.config.update('jax_compilation_cache_dir', CACHE_DIR + '/default')
  jax.config.update('jax_persistent_cache_min_compile_time_secs', 0)
  out = jax.jit(loop)(x)
  status = None
else:
  compile_cache.configure(CACHE_DIR)
  compiled = compile_cache.compile_with_cache('loop', jax.jit(loop).lower(x))
  status, out = compiled.status, compiled.compiled(x)
result(status=status, seen=SEEN, out=float(jnp.sum(out)), hits=count('cache_hits'))
'''


def _callback_run(cache_dir, plain=False):
  return child.run_code(f'CACHE_DIR = {str(cache_dir)!r}\nPLAIN = {plain}\n' + CALLBACK)


def test_executable_with_host_callbacks_is_stored_and_loads_with_them(tmp_path):
  first = _callback_run(tmp_path)
  assert first['status'] == 'compiled' and [i for i, _ in first['seen']] == [0, 1, 2]
  entries = [k for k in _keys(tmp_path) if k.startswith('jit_loop-')]
  assert len(entries) == 1  # JAX alone would not store it
  # A fresh process loads it, and the loaded executable calls this process's callback.
  again = _callback_run(tmp_path)
  assert again['status'] == 'loaded'
  assert again['seen'] == first['seen'] and again['out'] == first['out']
  # Plain JAX on the same directory looks under another key: it compiles (and does not store)
  # rather than load the entry without its callback, which would crash the process.
  plain = _callback_run(tmp_path, plain=True)
  assert plain['hits'] == 0 and plain['seen'] == first['seen']
  assert [k for k in _keys(tmp_path) if k.startswith('jit_loop-')] == entries
