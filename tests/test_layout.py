"""Imports point one way (DESIGN.md): common <- model <- inference; compile_cache is standalone."""

import ast
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[1]

# package -> af_jax packages it must not import
FORBIDDEN = {
    'af_jax/common': ('af_jax.model', 'af_jax.chunking', 'af_jax.inference', 'af_jax.data', 'flax'),
    # The data pipeline is numpy: it runs in worker processes and never compiles anything.
    'af_jax/data': ('af_jax.model', 'af_jax.chunking', 'af_jax.inference', 'jax', 'flax'),
    'af_jax/model': ('af_jax.inference',),
    'af_jax/chunking': ('af_jax.model', 'af_jax.inference'),
    'compile_cache': ('af_jax', 'configs'),
}


def _imports(path: pathlib.Path):
  tree = ast.parse(path.read_text())
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      yield from (a.name for a in node.names)
    elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
      yield node.module


def test_import_arrows_follow_design():
  bad = []
  for package, forbidden in FORBIDDEN.items():
    for path in (ROOT / package).rglob('*.py'):
      for name in _imports(path):
        if any(name == f or name.startswith(f + '.') for f in forbidden):
          bad.append(f'{path.relative_to(ROOT)} imports {name}')
  assert bad == []
