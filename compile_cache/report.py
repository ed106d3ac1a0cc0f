"""Reports on a cache directory: the summary (`stats`) and the entry table (`list`)."""

from __future__ import annotations

import collections
import datetime
import json
from pathlib import Path

from compile_cache import store
from compile_cache import units


def format_time(timestamp: float) -> str:
  """Seconds since the epoch -> local `YYYY-MM-DD HH:MM:SS`."""
  return datetime.datetime.fromtimestamp(timestamp).strftime('%Y-%m-%d %H:%M:%S')


def _seconds(value: float | None) -> str:
  return '-' if value is None else f'{value:.2f}'


def _profile_flags(root: Path, profile: str) -> str:
  try:
    flags = json.loads((root / profile / store.PROFILE_FILE).read_text()).get('flags', [])
  except (OSError, ValueError, AttributeError):
    return ''
  return ' '.join(flags)


def stats(root: Path) -> str:
  """Entry count, total size, compile seconds saved per load, per profile and in all."""
  entries = store.list_entries(root)
  lines = [f'cache: {root}']
  if root.is_dir() and store.read_mark(root) is None:
    lines.append(f'not marked as a cache root ({store.ROOT_MARK}): prune, clear and verify '
                 'refuse it; python -m compile_cache mark adopts it')
  if not entries:
    lines.append('no entries')
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


def table(entries: list[store.Entry]) -> str:
  """One line per entry: last use, size, compile seconds, profile, function, key."""
  header = ('LAST USED', 'SIZE', 'COMPILE_S', 'PROFILE', 'FUNCTION', 'KEY')
  rows = [(format_time(e.last_used), units.format_size(e.size), _seconds(e.compile_seconds),
           e.profile or '(root)', e.function, e.key.rsplit('-', 1)[-1][:12])
          for e in entries]
  widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
  return '\n'.join('  '.join(c.ljust(w) for c, w in zip(row, widths)).rstrip()
                   for row in [header, *rows])
