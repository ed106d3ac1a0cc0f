"""The house plan (ARCHITECTURE.md), read from the source: no module is imported or run.

Every .py file under af_jax/, configs/ and compile_cache/ (and the two entry scripts) is
parsed with ast, and its imports, function-level ones included, are the arrows checked:
- each arrow points down LAYERS (or stays within its own group);
- no import circle between modules;
- no file under af_jax/ is longer than MAX_LINES;
- every module under af_jax/ is imported by another module of the library or by an
  entry script (code only tests import is dead).
An import of `a.b.c` counts as an arrow to module a.b.c, or to package a.b when c is a
name defined there.
"""

import ast
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[1]
SOURCE_DIRS = ('af_jax', 'configs', 'compile_cache')
ENTRY_SCRIPTS = ('run_inference.py', 'run_train.py')

# Lowest first. A module may import its own group and the groups of lower layers; two
# groups of one layer do not import each other. A group is a package or a module, named
# as it is imported; `af_jax` alone is the package's public API (af_jax/__init__.py).
LAYERS = (
    ('af_jax.errors', 'af_jax.xla_flags', 'compile_cache'),
    ('configs', 'af_jax.common'),
    ('af_jax.data', 'af_jax.parallel', 'af_jax.chunking', 'af_jax.params', 'af_jax.relax'),
    ('af_jax.model',),
    ('af_jax.inference',),
    ('af_jax.autochunk',),
    ('af_jax.predictor',),
    ('af_jax',),
    ('af_jax.train',),
    ('af_jax.run',),
    ('run_inference', 'run_train'),
)

# The public API's lazy attributes (a module `__getattr__` in af_jax/__init__.py) that name
# a higher layer: `import af_jax` never imports them, only the first use of the attribute
# does, so they are doors upward, not arrows. Each is listed; nothing else may point up.
LAZY_ATTRIBUTES = {('af_jax', 'af_jax.run.api')}

# Outside af_jax, what each group must not import at all.
FORBIDDEN = {
    # A generic JAX tool: it knows nothing of AlphaFold.
    'compile_cache': ('af_jax', 'configs'),
    # The data pipeline is numpy: it runs in worker processes and never compiles anything.
    'af_jax.data': ('jax', 'flax'),
    'af_jax.common': ('flax',),
}

MAX_LINES = 500


def _module_name(path: pathlib.Path) -> str:
  parts = list(path.relative_to(ROOT).with_suffix('').parts)
  if parts[-1] == '__init__':
    parts.pop()
  return '.'.join(parts)


def _sources() -> dict[str, pathlib.Path]:
  paths = [p for d in SOURCE_DIRS for p in sorted((ROOT / d).rglob('*.py'))]
  paths += [ROOT / s for s in ENTRY_SCRIPTS]
  return {_module_name(p): p for p in paths}


SOURCES = _sources()


def _imports(module: str, path: pathlib.Path) -> set[str]:
  """The modules `module` imports: library modules where they exist, else the names given."""
  package = module if path.name == '__init__.py' else module.rpartition('.')[0]
  found = set()
  for node in ast.walk(ast.parse(path.read_text())):
    if isinstance(node, ast.Import):
      found.update(a.name for a in node.names)
    elif isinstance(node, ast.ImportFrom):
      base = node.module or ''
      if node.level:
        parent = package.split('.')[:len(package.split('.')) - node.level + 1]
        base = '.'.join(parent + ([node.module] if node.module else []))
      for alias in node.names:
        sub = f'{base}.{alias.name}'
        found.add(sub if sub in SOURCES else base)
  return found


IMPORTS = {m: _imports(m, p) for m, p in SOURCES.items()}


def _group(module: str) -> str | None:
  """The LAYERS group a module belongs to (its longest matching name)."""
  if module == 'af_jax':
    return 'af_jax'
  names = [g for layer in LAYERS for g in layer if g != 'af_jax']
  matches = [g for g in names if module == g or module.startswith(g + '.')]
  return max(matches, key=len) if matches else None


LAYER_OF = {g: i for i, layer in enumerate(LAYERS) for g in layer}


def test_every_module_has_a_place_in_the_plan():
  assert [m for m in SOURCES if _group(m) is None] == []


def test_imports_point_down_the_layers():
  bad = []
  for module, imported in IMPORTS.items():
    group = _group(module)
    for name in imported:
      target = _group(name)
      if group is None or target is None or target == group or (module, name) in LAZY_ATTRIBUTES:
        continue  # outside the library (numpy, jax, ...), within one group, unplaced, lazy
      if LAYER_OF[target] >= LAYER_OF[group]:
        bad.append(f'{module} ({group}) imports {name} ({target})')
  assert bad == [], 'arrows against ARCHITECTURE.md:\n' + '\n'.join(sorted(bad))


def test_forbidden_imports():
  bad = [f'{module} imports {name}'
         for module, imported in IMPORTS.items()
         for group, forbidden in FORBIDDEN.items()
         if module == group or module.startswith(group + '.')
         for name in imported
         if any(name == f or name.startswith(f + '.') for f in forbidden)]
  assert bad == []


def test_no_import_circles():
  graph = {m: sorted(n for n in imported
                     if n in SOURCES and n != m and (m, n) not in LAZY_ATTRIBUTES)
           for m, imported in IMPORTS.items()}
  circles, done = [], set()

  def visit(module, stack):
    if module in stack:
      circles.append(' -> '.join(stack[stack.index(module):] + [module]))
      return
    if module in done:
      return
    for name in graph[module]:
      visit(name, stack + [module])
    done.add(module)

  for module in graph:
    visit(module, [])
  assert circles == []


def test_no_file_over_the_line_limit():
  lengths = {p.relative_to(ROOT).as_posix(): len(p.read_text().splitlines())
             for p in (ROOT / 'af_jax').rglob('*.py')}
  over = sorted(f'{path}: {n} lines' for path, n in lengths.items() if n > MAX_LINES)
  assert over == [], f'split these files (at most {MAX_LINES} lines):\n' + '\n'.join(over)


def test_every_library_module_is_imported():
  imported = {n for m, names in IMPORTS.items() for n in names if n != m}
  dead = sorted(m for m, p in SOURCES.items()
                if m.startswith('af_jax.') and p.name != '__init__.py' and m not in imported)
  assert dead == [], 'modules nothing imports (only tests?):\n' + '\n'.join(dead)


def test_lazy_attributes_are_only_in_module_getattr():
  # A door upward is imported inside af_jax/__init__.py's `__getattr__` and nowhere else in
  # that module, so `import af_jax` stays below the layers it names.
  for module, name in LAZY_ATTRIBUTES:
    tree = ast.parse(SOURCES[module].read_text())
    getattr_fn = [n for n in tree.body
                  if isinstance(n, ast.FunctionDef) and n.name == '__getattr__']
    assert getattr_fn, f'{module} has no __getattr__ for {name}'
    inside = {id(n) for n in ast.walk(getattr_fn[0])}
    where = [n for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module == name]
    assert where and all(id(n) in inside for n in where), f'{module} imports {name} eagerly'


def test_the_checks_see_real_arrows():
  # Guards against a parser change that would make every check above pass vacuously.
  assert 'af_jax.model.build' in IMPORTS['af_jax.inference']
  assert 'af_jax.run.options' in IMPORTS['af_jax.run.fold']
  assert 'af_jax.errors' in IMPORTS['configs.model']  # a function-level import
  assert _group('af_jax.run.fold') == 'af_jax.run' and _group('af_jax') == 'af_jax'
