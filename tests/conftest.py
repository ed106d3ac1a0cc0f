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

# One scratch directory per test session, shared by every pytest-xdist worker: the first
# process (the controller, or a run without xdist) makes it before the workers start, they
# inherit the variable, and the first process removes it when the session ends, however the
# workers exit (tests/cli_runner.session_dir).
_SESSION_VARIABLE = 'AF_JAX_TEST_SESSION_DIR'
_OWN_SESSION_DIR = _SESSION_VARIABLE not in os.environ
if _OWN_SESSION_DIR:
  os.environ[_SESSION_VARIABLE] = tempfile.mkdtemp(prefix='af_jax_tests_')
  atexit.register(shutil.rmtree, os.environ[_SESSION_VARIABLE], ignore_errors=True)

# The compilation cache's default root, for what a test leaves at its default (af_jax.Predictor
# and af_jax.fold turn the persistent cache on; AutoChunk keeps its measured peaks under that
# root even when no cache is configured): a scratch directory, never the user's ~/.cache.
# Tests that start command lines give each its own cache_dir (tests/cli_runner.py).
os.environ['COMPILE_CACHE_DIR'] = tempfile.mkdtemp(prefix='default_cache_',
                                                   dir=os.environ[_SESSION_VARIABLE])

import af_jax  # noqa: E402,F401  (adds its XLA_FLAGS defaults before the backend starts)
import jax  # noqa: E402

jax.config.update('jax_default_matmul_precision', 'highest')


def pytest_unconfigure(config):
  del config
  if _OWN_SESSION_DIR:
    shutil.rmtree(os.environ[_SESSION_VARIABLE], ignore_errors=True)


# PERF: with one test file per worker (--dist loadfile), these files start first, heaviest
# first, so that short files fill the end of the run instead of one long file running alone
# on one core while the other idles (pytest-xdist's default order puts one-test files last;
# .ci/run turns it off with --no-loadscope-reorder). Each takes over a minute on 2 cores;
# measured costs are in the CI log (--durations).
HEAVY_FILES = (
    'tests/parity/test_template_paths.py',
    'tests/faults/test_train_faults.py',
    'tests/faults/test_stale.py',
    'tests/train/test_run_train.py',
    'tests/train/test_step.py',
    'tests/test_run_inference.py',
    'tests/train/test_gradients.py',
    'tests/parallel/test_train_dap.py',
    'tests/chunking/test_chunk_parity.py',
    'tests/parity/test_end_to_end.py',
    'tests/parity/test_multimer_end_to_end.py',
    'tests/test_readme.py',
)


def pytest_collection_modifyitems(session, config, items):
  """Puts HEAVY_FILES' tests first, in that order; the rest keep their collection order."""
  del session, config
  rank = {path: i for i, path in enumerate(HEAVY_FILES)}
  first = len(HEAVY_FILES)
  items.sort(key=lambda item: rank.get(item.nodeid.split('::', 1)[0], first))  # stable
