"""Autotuning profiles: named presets of XLA GPU flags, and how they join XLA_FLAGS.

Every flag below exists in the XLA shipped with jaxlib 0.10.2: each was passed in XLA_FLAGS to a
CPU process, which parses the whole GPU flag set too (an unknown name aborts the process at
backend start with `Unknown flag in XLA_FLAGS`). `--xla_gpu_enable_async_collectives` and the
`--xla_gpu_enable_async_all_*` family no longer exist there: collectives are asynchronous by
default, so `multi_device` only turns on the scheduler that overlaps them with compute.

On a CPU the GPU flags are parsed and ignored: a profile is recorded there (it names the cache
subdirectory and enters the cache key) and changes nothing else.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re

from compile_cache.errors import CompileCacheError

# name -> XLA flags. XLA's own default autotune level is 4 (autotune and check results).
PROFILES: dict[str, tuple[str, ...]] = {
    'default': (),
    # PERF: no autotuning and cuBLAS instead of Triton GEMMs: the shortest compile, slower
    # kernels. For trying things out, not for a cache that serves many runs.
    'fast_compile': (
        '--xla_gpu_autotune_level=0',
        '--xla_gpu_enable_triton_gemm=false',
    ),
    # PERF: full autotuning plus the exhaustive Triton tiling search: the longest compile,
    # paid once per bucket when a warm-up fills the cache.
    'max_autotune': (
        '--xla_gpu_autotune_level=4',
        '--xla_gpu_exhaustive_tiling_search=true',
    ),
    # PERF: overlap collectives (DAP all-to-all/all-gather, data-parallel all-reduce) with
    # compute, and give them the highest-priority stream.
    'multi_device': (
        '--xla_gpu_enable_latency_hiding_scheduler=true',
        '--xla_gpu_enable_highest_priority_async_stream=true',
    ),
}

_FLAG_RE = re.compile(r'^--xla_[a-z0-9_]+(=\S*)?$')


@dataclasses.dataclass(frozen=True)
class Profile:
  """An autotuning profile resolved with any free flags.

  Attributes:
    name: the preset's name (a key of PROFILES).
    flags: the preset's flags followed by the free ones; later names win.
    dirname: the cache subdirectory for this profile: the name, plus a hash of the free flags
      when there are any, so each combination keeps its own entries and autotune results.
  """
  name: str
  flags: tuple[str, ...]
  dirname: str


def parse_flags(xla_flags: str | None) -> tuple[str, ...]:
  """Splits `'--xla_a=1 --xla_b'` into flags, checking each is one `--xla_name[=value]`."""
  flags = tuple((xla_flags or '').split())
  for flag in flags:
    if not _FLAG_RE.match(flag):
      raise CompileCacheError(
          f'xla flag {flag!r} is not of the form --xla_name=value; pass XLA flags separated by '
          "spaces, e.g. xla_flags='--xla_gpu_autotune_level=2'")
  return flags


def flag_name(flag: str) -> str:
  """`'--xla_gpu_autotune_level=2'` -> `'--xla_gpu_autotune_level'`."""
  return flag.split('=', 1)[0]


def resolve(name: str, xla_flags: str | None = '') -> Profile:
  """Looks up a profile and appends free flags.

  Args:
    name: a key of PROFILES.
    xla_flags: extra XLA flags separated by spaces; they override the preset's.

  Returns:
    The resolved profile.

  Raises:
    CompileCacheError: unknown profile or malformed flag.
  """
  if name not in PROFILES:
    raise CompileCacheError(
        f'autotune_profile={name!r} is unknown; choose one of {", ".join(PROFILES)}')
  extra = parse_flags(xla_flags)
  dirname = name
  if extra:
    digest = hashlib.sha256(' '.join(sorted(extra)).encode()).hexdigest()[:10]
    dirname = f'{name}+{digest}'
  return Profile(name=name, flags=merge_flags(PROFILES[name], extra), dirname=dirname)


def merge_flags(base: tuple[str, ...] | list[str], override: tuple[str, ...] | list[str]
                ) -> tuple[str, ...]:
  """Joins two flag lists; a flag in `override` replaces the one of the same name in `base`."""
  names = {flag_name(f) for f in override}
  return tuple(f for f in base if flag_name(f) not in names) + tuple(override)
