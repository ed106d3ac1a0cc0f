"""The one error type compile_cache raises for bad input or bad settings."""

from __future__ import annotations


class CompileCacheError(ValueError):
  """A setting, size, spec or call order that compile_cache cannot use.

  The message is one line that names the value and how to fix it.
  """
