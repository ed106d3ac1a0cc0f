"""`python -m compile_cache stats|list|prune|clear|verify|mark|warmup`: inspect and fill the cache.

Examples:
  python -m compile_cache stats
  python -m compile_cache list --cache_dir /shared/xla_cache
  python -m compile_cache list --all
  python -m compile_cache prune --max_size=1.5GB
  python -m compile_cache verify
  python -m compile_cache warmup --specs my_pkg.warm:specs --arg buckets=[128,256] \\
      --autotune_profile max_autotune

prune, clear and verify delete only in a directory marked as a cache root (it holds
compile_cache_root.json, written when a program's configure() creates the cache), and there
only the cache's own files: entries and their metadata, in the root or in a profile
subdirectory; symlinks are never followed. A directory without the mark is refused (exit 2)
and left as it is. A cache made by plain JAX or by a compile_cache older than the mark, which
no program has used since, is adopted with `python -m compile_cache mark --cache_dir DIR`.

Exit status: 0 done; 1 verify found broken entries; 2 bad input (one line on stderr).
"""

from __future__ import annotations

import argparse
from pathlib import Path
import sys

from compile_cache import config
from compile_cache import report
from compile_cache import store
from compile_cache import units
from compile_cache import verify
from compile_cache import warm
from compile_cache.errors import CompileCacheError


def _parser() -> argparse.ArgumentParser:
  common = argparse.ArgumentParser(add_help=False)
  common.add_argument('--cache_dir', default=None,
                      help=f'cache root (default: ${config.ENV_VAR}, else '
                           '$XDG_CACHE_HOME/af_jax/xla, else ~/.cache/af_jax/xla)')
  parser = argparse.ArgumentParser(prog='python -m compile_cache', description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  sub = parser.add_subparsers(dest='command', required=True)
  every = argparse.ArgumentParser(add_help=False)
  every.add_argument('--all', action='store_true', dest='all_entries',
                     help='show every entry, the helpers without a label too (list: least '
                          'recently used first)')
  sub.add_parser('stats', parents=[common, every],
                 help='the labelled executables, the helpers in one line, entry count and '
                      'size per profile and in all')
  sub.add_parser('list', parents=[common, every],
                 help='one line per labelled executable, by label; the helpers (entries '
                      'without a label, e.g. jit_stack) in one line')
  prune_cmd = sub.add_parser('prune', parents=[common],
                         help='remove least recently used entries down to a size')
  prune_cmd.add_argument('--max_size', required=True,
                     help='size to keep under, e.g. 800MB, 1.5GB, 2GiB')
  sub.add_parser('clear', parents=[common], help='remove every entry and autotune result')
  verify_cmd = sub.add_parser('verify', parents=[common],
                          help='check every entry decodes and loads; remove broken ones; '
                               'exit 1 when any was broken')
  verify_cmd.add_argument('--keep_broken', action='store_true',
                      help='report broken entries without removing them')
  sub.add_parser('mark', parents=[common],
                 help='mark an existing cache directory as a cache root, so that prune, '
                      'clear and verify act on it (they refuse one without the mark)')
  warm_cmd = sub.add_parser('warmup', parents=[common],
                        help='compile the specs a provider returns, skipping cached ones')
  warm_cmd.add_argument('--specs', required=True,
                    help='module:function returning (label, jitted_fn, shape structs) specs')
  warm_cmd.add_argument('--arg', action='append', default=[], metavar='NAME=VALUE',
                    help='keyword argument for the provider; VALUE is a Python literal or text '
                         '(repeatable)')
  warm_cmd.add_argument('--autotune_profile', default='default',
                    help='XLA flag preset: default, fast_compile, max_autotune, multi_device; '
                         'part of the cache key, so use the same one when running')
  warm_cmd.add_argument('--xla_flags', default='',
                    help='extra XLA flags (space separated); part of the cache key, so pass the '
                         'same ones when running')
  warm_cmd.add_argument('--max_size', default=None,
                    help='keep the cache under this size while writing (LRU eviction)')
  return parser


def _root(args: argparse.Namespace) -> Path:
  return config.default_dir() if args.cache_dir is None else Path(args.cache_dir).expanduser()


def _warmup(args: argparse.Namespace) -> None:
  # JAX hashes sys.argv's --xla* entries into every key: ours would make keys that a program
  # given the same flags through configure() never reproduces.
  config.strip_xla_argv()
  # configure() before the provider: XLA_FLAGS must be set before its first JAX call.
  config.configure(args.cache_dir, autotune_profile=args.autotune_profile,
                   xla_flags=args.xla_flags, max_size_bytes=args.max_size)
  provider = warm.load_provider(args.specs)
  kwargs = dict(warm.parse_arg(a) for a in args.arg)
  warm.warmup(provider(**kwargs))


def _mark(root: Path) -> None:
  try:
    added = store.mark_root(root)
  except OSError as e:
    raise CompileCacheError(f'cannot write the mark into cache_dir={str(root)!r} ({e}); run '
                            'mark as a user who may write there') from e
  entries = store.list_entries(root)
  others = store.foreign_names(root)
  print(f'{"marked" if added else "already marked"} {str(root)!r} as a compile cache root: '
        f'{len(entries)} entries; prune, clear and verify delete only the cache\'s own files'
        + (f', never the {len(others)} other names in it' if others else ''))


def run(argv: list[str]) -> int:
  """Runs one command; `argv` excludes the program name. Returns the exit status."""
  args = _parser().parse_args(argv)
  root = _root(args)
  if args.command in ('prune', 'clear', 'verify'):
    store.require_root(root, args.command)
  if args.command == 'stats':
    print(report.stats(root, all_entries=args.all_entries))
  elif args.command == 'list':
    print(report.table(store.list_entries(root), all_entries=args.all_entries))
  elif args.command == 'prune':
    limit = units.parse_size(args.max_size)
    removed = store.evict_to_size(root, limit)
    for entry in removed:
      print(f'removed {entry.function} ({units.format_size(entry.size)}, last used '
            f'{report.format_time(entry.last_used)}) {entry.key}')
    total = sum(e.size for e in store.list_entries(root))
    print(f'pruned {len(removed)} entries; {units.format_size(total)} left '
          f'(limit {units.format_size(limit)})')
  elif args.command == 'clear':
    print(f'removed {store.clear(root)} entries from {str(root)!r}')
  elif args.command == 'verify':
    checks = verify.verify(root, remove_broken=not args.keep_broken)
    for check in checks:
      print(f'{check.status:8s} {check.entry.function} {check.entry.key}: {check.detail}')
    broken = sum(c.status == 'broken' for c in checks)
    action = 'kept' if args.keep_broken else 'removed'
    print(f'verified {len(checks)} entries: {sum(c.status == "ok" for c in checks)} loaded, '
          f'{sum(c.status == "decoded" for c in checks)} decoded only, {broken} broken '
          f'({action})')
    return 1 if broken else 0
  elif args.command == 'mark':
    _mark(root)
  elif args.command == 'warmup':
    _warmup(args)
  return 0


def main(argv: list[str] | None = None) -> int:
  """Command-line entry: bad input is one line on stderr and exit status 2; verify's broken
  entries exit 1."""
  try:
    return run(sys.argv[1:] if argv is None else argv)
  except CompileCacheError as e:
    print(f'compile_cache: error: {e}', file=sys.stderr)
    return 2


if __name__ == '__main__':
  sys.exit(main())
