"""`stats` and `list` on a cache a child process filled: labelled executables first, by label,
the helpers JAX compiles for eager calls folded into one line; --all shows each."""

import pytest

from compile_cache import store
from tests.compile_cache import child

HEADER = ['LAST', 'USED', 'SIZE', 'COMPILE_S', 'PROFILE', 'FUNCTION', 'KEY']


@pytest.fixture(scope='module')
def cache(tmp_path_factory):
  """Two labelled executables (L112 compiled before L96) and the eager helpers around them."""
  root = tmp_path_factory.mktemp('report') / 'cache'
  child.run_code(f'''
      compile_cache.configure({str(root)!r})
      for n in (112, 96):
        [(label, fn, args)] = warm_specs.specs(n=n, count=1)
        x = jnp.stack([jnp.ones((n, n)), jnp.zeros((n, n))])  # eager: helper executables
        compile_cache.compile_with_cache(label, fn.lower(*args)).compiled(x[0], x[1])
      result()
      ''')
  return root


def _helpers(root):
  return [e for e in store.list_entries(root) if not e.meta.get('label')]


def test_list_shows_labels_in_order_and_folds_helpers(cache):
  helpers = _helpers(cache)
  assert len(helpers) >= 2 and 'jit_stack' in {e.function for e in helpers}
  lines = child.run_cli('list', '--cache_dir', str(cache)).stdout.splitlines()
  assert lines[0].split() == HEADER
  assert [line.split()[-2] for line in lines[1:3]] == ['mm0/n96', 'mm0/n112']  # 96 < 112
  [summary] = lines[3:]
  assert summary.startswith(f'+ {len(helpers)} helper executables without a label, ')
  assert 'jit_stack (' in summary and summary.endswith('; --all lists each')

  every = child.run_cli('list', '--all', '--cache_dir', str(cache)).stdout.splitlines()
  assert every[0].split() == HEADER
  entries = store.list_entries(cache)  # least recently used first, as --all lists them
  assert [line.split()[-2] for line in every[1:]] == [e.function for e in entries]
  assert len(entries) == 2 + len(helpers)


def test_stats_shows_labels_then_one_helper_line(cache):
  helpers = _helpers(cache)
  lines = child.run_cli('stats', '--cache_dir', str(cache)).stdout.splitlines()
  start = lines.index(next(line for line in lines if line.startswith('labelled executables')))
  assert lines[start].startswith('labelled executables: 2, ')
  assert [line.split()[0] for line in lines[start + 1:start + 3]] == ['mm0/n96', 'mm0/n112']
  assert all(' compile ' in line and 'profile default' in line
             for line in lines[start + 1:start + 3])
  assert lines[start + 3].startswith(f'+ {len(helpers)} helper executables without a label')
  assert lines[start + 4].startswith(f'profile default: {2 + len(helpers)} entries')

  every = child.run_cli('stats', '--all', '--cache_dir', str(cache)).stdout.splitlines()
  start = every.index(next(line for line in every if line.startswith('helper executables')))
  assert every[start].startswith(f'helper executables without a label: {len(helpers)}, ')
  groups = every[start + 1:every.index(next(line for line in every
                                             if line.startswith('profile default')))]
  assert {line.split()[0] for line in groups} == {e.function for e in helpers}
  assert sum(int(line.split()[1]) for line in groups) == len(helpers)
