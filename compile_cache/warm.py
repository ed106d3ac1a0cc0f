"""Warm-up: compile a list of (label, jitted function, shape structs) ahead of time.

Nothing runs and no data is needed: each spec is `fn.lower(*shape_structs).compile()`. A spec
whose entry is already in the cache (found by `cached_compile.fingerprint`) is skipped, so a
warm-up can be re-run after adding buckets and pays only for the new ones.

Programs plug in through a provider, `module:function`, returning specs; compile_cache imports
it by name and so depends on no program.
"""

from __future__ import annotations

import ast
import importlib
import time
from typing import Any, Callable, Iterable, Mapping, NamedTuple

from compile_cache import cached_compile
from compile_cache import config
from compile_cache import store
from compile_cache import units
from compile_cache.errors import CompileCacheError


class Spec(NamedTuple):
  """One executable to compile ahead of time.

  Attributes:
    label: the name shown in the output and in `python -m compile_cache list`.
    fn: a `jax.jit`-wrapped function (anything with `.lower`).
    args: positional arguments: pytrees of `jax.ShapeDtypeStruct` (or arrays).
    kwargs: keyword arguments, likewise.
  """
  label: str
  fn: Any
  args: tuple = ()
  kwargs: Mapping[str, Any] | None = None


def as_spec(item: Any) -> Spec:
  """Accepts a Spec or a `(label, fn, args[, kwargs])` tuple."""
  if not isinstance(item, Spec):
    if not isinstance(item, tuple) or not 2 <= len(item) <= 4:
      raise CompileCacheError(f'warm-up spec {item!r} is not (label, jitted_fn, args[, kwargs]); '
                              'return compile_cache.Spec(...) items from the provider')
    item = Spec(*item)
  if not hasattr(item.fn, 'lower'):
    raise CompileCacheError(f'warm-up spec {item.label!r} has fn={item.fn!r} without .lower; '
                            'wrap it with jax.jit')
  return item._replace(args=tuple(item.args))


def _describe(result: cached_compile.CompileResult, lower_seconds: float) -> str:
  saved = (f'{result.compile_seconds:.2f} s' if result.compile_seconds is not None
           else 'unknown')
  what = {
      'compiled': f'compiled in {result.seconds:.2f} s',
      'loaded': f'loaded from cache in {result.seconds:.2f} s (saves {saved})',
      'skipped': f'already cached, skipped (saves {saved})',
      'in_process': f'already compiled in this process ({result.seconds:.2f} s)',
      'uncached': f'compiled in {result.seconds:.2f} s, not stored',
  }[result.status]
  return (f'{result.label}: {what}; entry {units.format_size(result.size_bytes)}; '
          f'lowering {lower_seconds:.2f} s')


def warmup(specs: Iterable[Any], *, echo: Callable[[str], None] | None = print
           ) -> list[cached_compile.CompileResult]:
  """Compiles each spec into the persistent cache, skipping those already there.

  Args:
    specs: `Spec`s or `(label, jitted_fn, args[, kwargs])` tuples.
    echo: called with one line per spec and a summary (None: silent).

  Returns:
    One result per spec, in order.

  Raises:
    CompileCacheError: no cache configured, or a malformed spec.
  """
  settings = config.current()
  if settings is None:
    raise CompileCacheError('warm-up needs the persistent cache; call compile_cache.configure() '
                            'first')
  echo = echo or (lambda line: None)
  results = []
  for item in specs:
    spec = as_spec(item)
    start = time.monotonic()
    lowered = spec.fn.lower(*spec.args, **dict(spec.kwargs or {}))
    lower_seconds = time.monotonic() - start
    fingerprint = cached_compile.fingerprint(lowered)
    entry = store.find_by_fingerprint(settings.directory, fingerprint)
    if entry is not None:
      if settings.writable:
        store.touch(entry.directory, entry.key)  # a warm bucket is in use: keep it from LRU
      result = cached_compile.CompileResult(
          spec.label, None, 'skipped', 0.0, key=entry.key, size_bytes=entry.size,
          compile_seconds=entry.compile_seconds)
    else:
      result = cached_compile.compile_with_cache(spec.label, lowered,
                                                 known_fingerprint=fingerprint)
    echo(_describe(result, lower_seconds))
    results.append(result)
  compiled = [r for r in results if r.status == 'compiled']
  echo(f'warm-up: {len(results)} specs, {len(compiled)} compiled '
       f'({sum(r.seconds for r in compiled):.2f} s), '
       f'{sum(r.hit for r in results)} already cached; cache {settings.directory}')
  return results


def parse_arg(text: str) -> tuple[str, Any]:
  """`'k=v'` -> `('k', v)`, where v is a Python literal when it parses as one, else the text."""
  key, sep, value = text.partition('=')
  if not sep or not key.isidentifier():
    raise CompileCacheError(f'--arg {text!r} is not name=value; e.g. --arg buckets=[128,256]')
  try:
    return key, ast.literal_eval(value)
  except (ValueError, SyntaxError):
    return key, value


def load_provider(name: str) -> Callable[..., Iterable[Any]]:
  """Imports `module:function`, a function returning warm-up specs."""
  module_name, sep, attr = name.partition(':')
  if not sep or not module_name or not attr:
    raise CompileCacheError(f'--specs {name!r} is not module:function; e.g. '
                            '--specs my_pkg.warm:specs')
  try:
    module = importlib.import_module(module_name)
  except ImportError as e:
    raise CompileCacheError(f'--specs {name!r}: cannot import {module_name!r} ({e}); check '
                            'the name and that it is on PYTHONPATH') from e
  provider = getattr(module, attr, None)
  if not callable(provider):
    raise CompileCacheError(f'--specs {name!r}: {module_name} has no function {attr!r}')
  return provider
