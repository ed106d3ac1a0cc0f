"""hhblits (HH-suite 3) searches of BFD/UniRef30-style databases, with AlphaFold's settings.

AlphaFold's full_dbs preset searches BFD and UniRef30 together in one hhblits run and
keeps the a3m of the hits; its first row is the query.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
from collections.abc import Sequence

from af_jax.data.tools import runner
from af_jax.errors import ToolError

# hhblits and hhsearch open these for each database prefix (checked with HH-suite 3.3:
# without the a3m files they crash, without cs219 they exit with an error; _hhm is optional).
HHSUITE_DB_SUFFIXES = ('_a3m.ffindex', '_a3m.ffdata', '_cs219.ffindex', '_cs219.ffdata')


def check_hhsuite_databases(databases: Sequence[str], flags: Sequence[str]) -> None:
  """Raises ToolError unless each database prefix has the ffindex files HH-suite needs.

  Args:
    databases: prefixes such as `/db/uniref30/UniRef30_2021_03`.
    flags: the command-line flag that gave each prefix, for the message.
  """
  for prefix, flag in zip(databases, flags, strict=True):
    missing = [s for s in HHSUITE_DB_SUFFIXES if not os.path.exists(f'{prefix}{s}')]
    if missing:
      raise ToolError(f'HH-suite database {prefix!r} given by {flag} lacks {prefix}{missing[0]}: '
                      f'{flag} takes the prefix of the <prefix>_a3m/_cs219/_hhm.ffindex files')


@dataclasses.dataclass(frozen=True)
class HHBlits:
  """One hhblits run over one or more databases, with AlphaFold's settings.

  Attributes:
    binary_path: the hhblits executable (see `runner.find_binary`).
    databases: database prefixes, searched together (BFD then UniRef30 in AlphaFold).
    flags: the command-line flag that gave each database, for error messages.
    n_cpu: worker threads (-cpu).
    timeout: seconds before the search is killed.
    n_iter: search iterations (-n).
    e_value: E-value cutoff for inclusion (-e).
    maxseq, realign_max, maxfilt, min_prefilter_hits: AlphaFold's raised limits, so deep
      families are not cut short.
  """

  binary_path: str
  databases: tuple[str, ...]
  flags: tuple[str, ...] = ()
  n_cpu: int = 4
  timeout: float = 3600.0
  n_iter: int = 3
  e_value: float = 0.001
  maxseq: int = 1_000_000
  realign_max: int = 100_000
  maxfilt: int = 100_000
  min_prefilter_hits: int = 1000

  def check(self) -> None:
    """Raises ToolError if a database is missing, before any time is spent searching."""
    if not self.databases:
      raise ToolError('hhblits was given no database: pass --bfd_database_path and/or '
                      '--uniref30_database_path')
    flags = self.flags or ('--database_path',) * len(self.databases)
    check_hhsuite_databases(self.databases, flags)

  def command(self, query_fasta: str | os.PathLike, out_a3m: str | os.PathLike) -> list[str]:
    """The hhblits command line that writes the a3m of `query_fasta`'s hits to `out_a3m`."""
    cmd = [
        self.binary_path,
        '-i', os.path.abspath(query_fasta),
        '-cpu', str(self.n_cpu),
        '-oa3m', os.path.abspath(out_a3m),
        '-o', os.devnull,  # The hhr report is not used from this search.
        '-n', str(self.n_iter),
        '-e', str(self.e_value),
        '-maxseq', str(self.maxseq),
        '-realign_max', str(self.realign_max),
        '-maxfilt', str(self.maxfilt),
        '-min_prefilter_hits', str(self.min_prefilter_hits),
    ]
    for db in self.databases:
      cmd += ['-d', os.path.abspath(db)]
    return cmd

  def search(self, query_fasta: str | os.PathLike,
             out_a3m: str | os.PathLike) -> pathlib.Path:
    """Searches the databases and writes the a3m of the hits (query first).

    Args:
      query_fasta: a FASTA file with one sequence.
      out_a3m: where the a3m goes.

    Returns:
      `out_a3m` as a path.

    Raises:
      ToolError: if a database is missing or hhblits fails or times out.
    """
    self.check()
    return runner.run_to_file(
        'hhblits', lambda raw: self.command(query_fasta, raw), out_a3m, timeout=self.timeout,
        what='a3m',
        query=query_fasta, hint=f'check its databases {", ".join(self.databases)}')
