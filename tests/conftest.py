"""Test-wide settings: 8 fake CPU devices, float32 matmuls at full precision, repo on sys.path."""

import atexit
import os
import shutil
import sys
import tempfile

# Sharding tests run on 8 fake CPU devices; single-device code runs on the first one.
# PERF: LLVM at -O0 for the tests: compiling is most of a test's time on its small shapes,
# and -O0 halves it (the train-step gradient: 60 -> 32 s) without changing the HLO the
# tests check. Set before jax is imported anywhere (subprocesses inherit it).
for _flag in ('--xla_force_host_platform_device_count=8', '--xla_backend_optimization_level=0'):
  if _flag.split('=')[0] not in os.environ.get('XLA_FLAGS', ''):
    os.environ['XLA_FLAGS'] = (os.environ.get('XLA_FLAGS', '') + ' ' + _flag).strip()

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# The compilation cache's default root, for what a test leaves at its default (af_jax.Predictor
# and af_jax.fold turn the persistent cache on; AutoChunk keeps its measured peaks under that
# root even when no cache is configured): a scratch directory, never the user's ~/.cache.
# Tests that start command lines give each its own cache_dir (tests/cli_runner.py).
_CACHE = tempfile.mkdtemp(prefix='af_jax_test_default_cache_')
atexit.register(shutil.rmtree, _CACHE, ignore_errors=True)
os.environ['COMPILE_CACHE_DIR'] = _CACHE

import af_jax  # noqa: E402,F401  (adds its XLA_FLAGS defaults before the backend starts)
import jax  # noqa: E402

jax.config.update('jax_default_matmul_precision', 'highest')


def pytest_configure(config):
  # The controller (or a run without xdist) makes the session's shared directory; xdist
  # workers, started after this, inherit the variable (tests/cli_runner.session_dir).
  if not hasattr(config, 'workerinput') and 'AF_JAX_TEST_SESSION_DIR' not in os.environ:
    os.environ['AF_JAX_TEST_SESSION_DIR'] = tempfile.mkdtemp(prefix='af_jax_tests_')
    config._af_jax_session_dir = os.environ['AF_JAX_TEST_SESSION_DIR']


def pytest_unconfigure(config):
  root = getattr(config, '_af_jax_session_dir', None)
  if root:
    shutil.rmtree(root, ignore_errors=True)
