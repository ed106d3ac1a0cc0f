"""Reports on a cache directory: the summary (`stats`) and the entry table (`list`).

Both put the program's executables first, by the label it compiled them under
(`compile_with_cache`, e.g. `model_1_ptm/L128/msa512x1024/t4/r3`), and fold the helpers into
one line: the entries without a label, mostly the small op-by-op executables JAX compiles for
eager calls (`jit_stack`, `jit_broadcast_in_dim`, ...), which otherwise far outnumber and
bury the model's. `all_entries=True` (the commands' --all) shows every entry.
"""

from __future__ import annotations

import collections
import datetime
import json
from pathlib import Path
import re

from compile_cache import store
from compile_cache import units


def format_time(timestamp: float) -> str:
  """Seconds since the epoch -> local `YYYY-MM-DD HH:MM:SS`."""
  return datetime.datetime.fromtimestamp(timestamp).strftime('%Y-%m-%d %H:%M:%S')


def _seconds(value: float | None) -> str:
  return '-' if value is None else f'{value:.2f}'


def _compile_time(value: float | None) -> str:
  return 'compile time unknown' if value is None else f'compile {value:.2f} s'


def _profile_flags(root: Path, profile: str) -> str:
  try:
    flags = json.loads((root / profile / store.PROFILE_FILE).read_text()).get('flags', [])
  except (OSError, ValueError, AttributeError):
    return ''
  return ' '.join(flags)


def is_helper(entry: store.Entry) -> bool:
  """An entry compiled without a label: JAX's op-by-op executables and any function a program
  jitted and called directly rather than through `compile_with_cache`."""
  return not entry.meta.get('label')


def _natural_key(text: str) -> list[str | int]:
  """Sorts `L96` before `L112`: digit runs compare as numbers."""
  # re.split with a group alternates text and digit runs, so equal positions hold equal types.
  return [int(part) if i % 2 else part for i, part in enumerate(re.split(r'(\d+)', text))]


def _by_label(entries: list[store.Entry]) -> list[store.Entry]:
  return sorted(entries, key=lambda e: (_natural_key(e.function), e.profile, e.last_used))


def _helper_groups(helpers: list[store.Entry]) -> list[tuple[str, int, int]]:
  """(function, count, bytes) of the helpers per function name, largest total first."""
  groups = collections.defaultdict(list)
  for entry in helpers:
    groups[entry.function].append(entry.size)
  return sorted(((name, len(sizes), sum(sizes)) for name, sizes in groups.items()),
                key=lambda g: (-g[2], g[0]))


def helper_line(helpers: list[store.Entry], *, names: int = 3) -> str:
  """One line for the entries without a label: count, size, the largest function names."""
  groups = _helper_groups(helpers)
  shown = ', '.join(f'{count} {name} ({units.format_size(size)})'
                    for name, count, size in groups[:names])
  more = len(groups) - names
  return (f'+ {len(helpers)} helper executables without a label, '
          f'{units.format_size(sum(e.size for e in helpers))}: {shown}'
          + (f', {more} more {"name" if more == 1 else "names"}' if more > 0 else '')
          + '; --all lists each')


def _columns(rows: list[tuple[str, ...]], indent: str = '') -> list[str]:
  widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
  return [indent + '  '.join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows]


def stats(root: Path, *, all_entries: bool = False) -> str:
  """The labelled executables, the helpers in one line, then count, size and compile seconds
  saved per load, per profile and in all.

  Args:
    root: the cache root.
    all_entries: list the helpers per function name instead of in one line.
  """
  entries = store.list_entries(root)
  lines = [f'cache: {root}']
  if root.is_dir() and store.read_mark(root) is None:
    lines.append(f'not marked as a cache root ({store.ROOT_MARK}): prune, clear and verify '
                 'refuse it; python -m compile_cache mark adopts it')
  if not entries:
    lines.append('no entries')
  labelled = _by_label([e for e in entries if not is_helper(e)])
  helpers = [e for e in entries if is_helper(e)]
  if labelled:
    lines.append(f'labelled executables: {len(labelled)}, '
                 f'{units.format_size(sum(e.size for e in labelled))}')
    lines += _columns([(e.function, units.format_size(e.size),
                        _compile_time(e.compile_seconds), f'profile {e.profile or "(root)"}')
                       for e in labelled], indent='  ')
  if helpers and all_entries:
    lines.append(f'helper executables without a label: {len(helpers)}, '
                 f'{units.format_size(sum(e.size for e in helpers))}')
    lines += _columns([(name, f'{count} entries', units.format_size(size))
                       for name, count, size in _helper_groups(helpers)], indent='  ')
  elif helpers:
    lines.append(helper_line(helpers))
  by_profile = collections.defaultdict(list)
  for entry in entries:
    by_profile[entry.profile].append(entry)
  for profile, group in sorted(by_profile.items()):
    flags = _profile_flags(root, profile) if profile else ''
    name = profile or '(root)'
    lines.append(f'profile {name}: {len(group)} entries, '
                 f'{units.format_size(sum(e.size for e in group))}' +
                 (f'; flags {flags}' if flags else ''))
  known = [e.compile_seconds for e in entries if e.compile_seconds is not None]
  lines.append(f'total: {len(entries)} entries, {units.format_size(sum(e.size for e in entries))}'
               f'; compile seconds saved per full load: {sum(known):.2f}'
               + (f' ({len(entries) - len(known)} entries without a record)'
                  if len(known) < len(entries) else ''))
  lines.append(f'autotune results: {units.format_size(store.autotune_bytes(root))}')
  if entries:
    lines.append(f'oldest use: {format_time(entries[0].last_used)}; '
                 f'newest use: {format_time(entries[-1].last_used)}')
  return '\n'.join(lines)


def table(entries: list[store.Entry], *, all_entries: bool = False) -> str:
  """One line per entry: last use, size, compile seconds, profile, function, key.

  Args:
    entries: `store.list_entries(root)` (least recently used first).
    all_entries: every entry in that order; otherwise the labelled ones by label, then one
      line for the helpers.
  """
  header = ('LAST USED', 'SIZE', 'COMPILE_S', 'PROFILE', 'FUNCTION', 'KEY')
  shown = entries if all_entries else _by_label([e for e in entries if not is_helper(e)])
  rows = [(format_time(e.last_used), units.format_size(e.size), _seconds(e.compile_seconds),
           e.profile or '(root)', e.function, e.key.rsplit('-', 1)[-1][:12])
          for e in shown]
  lines = _columns([header, *rows])
  helpers = [e for e in entries if is_helper(e)]
  if helpers and not all_entries:
    lines.append(helper_line(helpers))
  return '\n'.join(lines)
