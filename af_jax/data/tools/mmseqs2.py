"""MMseqs2 search of a local FASTA file or MMseqs2 database, written as an a3m.

A fast alternative to jackhmmer/hhblits for users with their own sequence sets:
createdb, search, then result2msa with a3m output, whose first row is the query.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import tempfile

from absl import logging

from af_jax.common import files
from af_jax.data.tools import runner
from af_jax.errors import ToolError


def is_mmseqs_database(path: str | os.PathLike) -> bool:
  """True if `path` is an MMseqs2 database prefix (made by `mmseqs createdb`)."""
  return os.path.exists(f'{path}.dbtype')


# DIFFERS FROM AF2: AlphaFold 2 has no MMseqs2 search. The defaults follow ColabFold's
# search step (-s 8, 3 profile iterations, E-value 0.1, 10000 hits per query) without
# its expandaln/filter steps, since a user's database has no cluster profiles.
@dataclasses.dataclass(frozen=True)
class MMseqs2:
  """One MMseqs2 search of a sequence database.

  Attributes:
    binary_path: the mmseqs executable (see `runner.find_binary`).
    database_path: a FASTA file (plain or .gz) or the prefix of an MMseqs2 database.
      A FASTA file is converted with `mmseqs createdb` on every search, so for repeated
      searches convert it once (`mmseqs createdb`, and `mmseqs createindex` for speed).
    flag: the command-line flag that gave `database_path`, for error messages.
    n_cpu: worker threads (--threads).
    timeout: seconds allowed for each mmseqs step.
    sensitivity: -s (1 fast ... 7.5 sensitive; ColabFold uses 8).
    num_iterations: profile search iterations.
    e_value: E-value cutoff (-e).
    max_seqs: hits kept per query after the prefilter (--max-seqs).
  """

  binary_path: str
  database_path: str
  flag: str = '--mmseqs_database_path'
  n_cpu: int = 8
  timeout: float = 3600.0
  sensitivity: float = 8.0
  num_iterations: int = 3
  e_value: float = 0.1
  max_seqs: int = 10000

  def check(self) -> None:
    """Raises ToolError if the database is missing, before any time is spent searching."""
    if not (is_mmseqs_database(self.database_path) or os.path.isfile(self.database_path)):
      raise ToolError(f'MMseqs2 database {str(self.database_path)!r} given by {self.flag} is '
                      f'neither a FASTA file nor an MMseqs2 database (no '
                      f'{self.database_path}.dbtype): fix {self.flag}')

  def _run(self, *args: str | os.PathLike, cwd: str) -> None:
    runner.run_tool([self.binary_path, *args], timeout=self.timeout, cwd=cwd)

  def search(self, sequence: str, target_name: str,
             out_a3m: str | os.PathLike) -> pathlib.Path:
    """Searches the database with one sequence and writes the hits as a3m.

    Args:
      sequence: the query, one-letter codes.
      target_name: the query's name, used as the a3m's first header.
      out_a3m: where the a3m goes.

    Returns:
      `out_a3m` as a path.

    Raises:
      ToolError: if the database is missing, a step fails or times out, or the result
        does not start with the query.
    """
    self.check()
    out_a3m = pathlib.Path(out_a3m)
    threads = ('--threads', str(self.n_cpu))
    with tempfile.TemporaryDirectory(prefix=files.temp_dir_prefix('mmseqs'),
                                     dir=out_a3m.parent) as tmp:
      work = pathlib.Path(tmp)
      (work / 'query.fasta').write_text(f'>{target_name}\n{sequence}\n')
      self._run('createdb', work / 'query.fasta', work / 'qdb', '-v', '1', cwd=tmp)
      if is_mmseqs_database(self.database_path):
        target = os.path.abspath(self.database_path)
      else:
        logging.info('Converting %s to an MMseqs2 database for this search; convert it once '
                     'with `mmseqs createdb` to skip this', self.database_path)
        target = work / 'tdb'
        self._run('createdb', os.path.abspath(self.database_path), target, '-v', '1', cwd=tmp)
      self._run('search', work / 'qdb', target, work / 'res', work / 'tmp',
                '-a',  # Keep the alignment backtraces that result2msa needs.
                '-s', str(self.sensitivity), '--num-iterations', str(self.num_iterations),
                '-e', str(self.e_value), '--max-seqs', str(self.max_seqs),
                *threads, '-v', '1', cwd=tmp)
      # Format mode 5 is a3m; the query row is included by default (--skip-query 0).
      self._run('result2msa', work / 'qdb', target, work / 'res', work / 'msa',
                '--msa-format-mode', '5', *threads, '-v', '1', cwd=tmp)
      # The result is a one-entry MMseqs2 database: the a3m text ended by a NUL byte.
      a3m = (work / 'msa').read_text().replace('\0', '')
      _check_query_first(a3m, sequence, self.database_path)
      (work / 'hits.a3m').write_text(a3m)
      os.replace(work / 'hits.a3m', out_a3m)
    return out_a3m


def _check_query_first(a3m: str, sequence: str, database_path: str) -> None:
  """Raises ToolError unless the a3m's first row is the query without changes."""
  lines = a3m.splitlines()
  first = lines[1].strip() if len(lines) > 1 and lines[0].startswith('>') else ''
  if first.upper() != sequence.upper():
    raise ToolError(f'mmseqs result2msa for {database_path} did not start with the query '
                    f'(got {first[:20]!r}...): check that mmseqs is version 13 or later')
