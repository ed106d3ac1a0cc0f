"""jackhmmer (HMMER 3) searches of a FASTA database, with AlphaFold's settings.

AlphaFold searches UniRef90, MGnify and (reduced_dbs) small BFD this way and keeps
the Stockholm alignment of the included hits; the first row is the query.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib

from af_jax.common import files
from af_jax.data.tools import runner


@dataclasses.dataclass(frozen=True)
class Jackhmmer:
  """One jackhmmer database with AlphaFold's search settings.

  Attributes:
    binary_path: the jackhmmer executable (see `runner.find_binary`).
    database_path: a FASTA file of sequences.
    flag: the command-line flag that gave `database_path`, for error messages.
    n_cpu: worker threads (--cpu).
    timeout: seconds before the search is killed.
    n_iter: search rounds (-N); AlphaFold uses 1.
    e_value: reporting and inclusion E-value (-E, --incE).
    filter_f1, filter_f2, filter_f3: the MSV, Viterbi and Forward filter thresholds.
    z_value: effective database size (-Z) if set, for E-values comparable across chunks.
  """

  binary_path: str
  database_path: str
  flag: str = '--database_path'
  n_cpu: int = 8
  timeout: float = 3600.0
  n_iter: int = 1
  e_value: float = 0.0001
  filter_f1: float = 0.0005
  filter_f2: float = 0.00005
  filter_f3: float = 0.0000005
  z_value: int | None = None

  def check(self) -> None:
    """Raises ToolError if the database is missing, before any time is spent searching."""
    runner.check_paths([self.database_path], self.flag, 'jackhmmer database')

  def command(self, query_fasta: str | os.PathLike, out_sto: str | os.PathLike) -> list[str]:
    """The jackhmmer command line that writes the hits of `query_fasta` to `out_sto`."""
    cmd = [
        self.binary_path,
        '-o', os.devnull,  # The human-readable report is large and unused.
        '-A', os.path.abspath(out_sto),
        '--noali',
        '--F1', str(self.filter_f1),
        '--F2', str(self.filter_f2),
        '--F3', str(self.filter_f3),
        '--incE', str(self.e_value),
        '-E', str(self.e_value),
        '--cpu', str(self.n_cpu),
        '-N', str(self.n_iter),
    ]
    if self.z_value is not None:
      cmd += ['-Z', str(self.z_value)]
    return cmd + [os.path.abspath(query_fasta), os.path.abspath(self.database_path)]

  def search(self, query_fasta: str | os.PathLike, out_sto: str | os.PathLike,
             max_sequences: int | None = None) -> pathlib.Path:
    """Searches the database and writes the Stockholm alignment of the hits.

    Args:
      query_fasta: a FASTA file with one sequence.
      out_sto: where the Stockholm alignment goes.
      max_sequences: keep only the first this many sequences (query included), as
        AlphaFold does (uniref_max_hits=10000, mgnify_max_hits=501); None keeps all.

    Returns:
      `out_sto` as a path.

    Raises:
      ToolError: if the database is missing or jackhmmer fails or times out.
    """
    self.check()

    def finish(raw: pathlib.Path, out: pathlib.Path) -> None:
      if max_sequences is None:
        os.replace(raw, out)
      else:
        truncate_stockholm(raw, out, max_sequences)
    return runner.run_to_file(
        'jackhmmer', lambda raw: self.command(query_fasta, raw), out_sto, timeout=self.timeout,
        what='alignment', query=query_fasta,
        hint=f'check that {self.database_path} is a protein FASTA file', finish=finish)


def _sequence_name(line: str) -> str | None:
  """The sequence name of an alignment line; None for markup, blank and `//` lines."""
  if not line.strip() or line.startswith(('#', '//')):
    return None
  return line.split(maxsplit=1)[0]


def _keep(line: str, kept: set[str]) -> bool:
  """Whether a line of a truncated Stockholm file stays (AlphaFold's rule)."""
  if not line.strip() or line.strip() == '//' or line.startswith(('# STOCKHOLM', '#=GC RF')):
    return True
  if line.startswith('#=GS'):
    return line.split(maxsplit=2)[1] in kept
  if line.startswith('#'):
    return False
  return line.partition(' ')[0] in kept


def truncate_stockholm(src: str | os.PathLike, dst: str | os.PathLike,
                       max_sequences: int) -> int:
  """Copies a Stockholm file keeping its first `max_sequences` sequences.

  Works line by line without parsing the alignment, since an untruncated UniRef90
  result can be gigabytes. Like AlphaFold, it keeps only the header, `#=GC RF`, and the
  `#=GS` and alignment lines of kept sequences, so its output matches AlphaFold's file.
  `src` and `dst` may be the same file, which is then left untouched if it is short
  enough.

  Args:
    src: the Stockholm file to read.
    dst: where the truncated copy is written.
    max_sequences: how many sequences to keep, counted in order of first appearance.

  Returns:
    The number of sequences kept.
  """
  kept: set[str] = set()
  dropped = False
  with open(src) as f:
    for line in f:
      name = _sequence_name(line)
      if name is not None and name not in kept:
        if len(kept) == max_sequences:
          dropped = True
          break
        kept.add(name)
  dst = pathlib.Path(dst)
  if not dropped and dst.exists() and os.path.samefile(src, dst):
    return len(kept)  # Nothing to drop: leave the file as it is.
  with files.writing(dst) as tmp, open(src) as f_in, open(tmp, 'w') as f_out:
    for line in f_in:
      if _keep(line, kept):
        f_out.write(line)
  return len(kept)
