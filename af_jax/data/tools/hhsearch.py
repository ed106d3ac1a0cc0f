"""hhsearch (HH-suite 3) template search against PDB70, with AlphaFold's settings.

AlphaFold builds the template query from the UniRef90 jackhmmer alignment: duplicate
rows (ignoring insertions) and all-gap columns removed, converted to a3m. hhsearch
writes an .hhr file of PDB70 hits that the template featurizer reads.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib

from af_jax.data.tools import hhblits
from af_jax.data.tools import runner
from af_jax.errors import InputError, ToolError


@dataclasses.dataclass(frozen=True)
class HHSearch:
  """hhsearch over one or more HH-suite databases (PDB70 in AlphaFold).

  Attributes:
    binary_path: the hhsearch executable (see `runner.find_binary`).
    databases: database prefixes (`/db/pdb70/pdb70`).
    flags: the command-line flag that gave each database, for error messages.
    n_cpu: worker threads (-cpu).
    timeout: seconds before the search is killed.
    maxseq: AlphaFold's raised limit on query MSA rows (-maxseq).
  """

  binary_path: str
  databases: tuple[str, ...]
  flags: tuple[str, ...] = ()
  n_cpu: int = 2
  timeout: float = 3600.0
  maxseq: int = 1_000_000

  def check(self) -> None:
    """Raises ToolError if a database is missing, before any time is spent searching."""
    if not self.databases:
      raise ToolError('hhsearch was given no database: pass --pdb70_database_path')
    flags = self.flags or ('--database_path',) * len(self.databases)
    hhblits.check_hhsuite_databases(self.databases, flags)

  def command(self, query_a3m: str | os.PathLike, out_hhr: str | os.PathLike) -> list[str]:
    """The hhsearch command line that writes `query_a3m`'s template hits to `out_hhr`."""
    # DIFFERS FROM AF2: AlphaFold leaves -cpu at hhsearch's default (2); the thread count
    # changes speed only, not the hits.
    cmd = [
        self.binary_path,
        '-i', os.path.abspath(query_a3m),
        '-o', os.path.abspath(out_hhr),
        '-maxseq', str(self.maxseq),
        '-cpu', str(self.n_cpu),
    ]
    for db in self.databases:
      cmd += ['-d', os.path.abspath(db)]
    return cmd

  def search(self, query_a3m: str | os.PathLike, out_hhr: str | os.PathLike) -> pathlib.Path:
    """Searches the databases with an a3m MSA and writes the hhr report.

    Args:
      query_a3m: the query MSA in a3m (see `a3m_from_stockholm`), query first.
      out_hhr: where the hhr report goes.

    Returns:
      `out_hhr` as a path.

    Raises:
      ToolError: if a database is missing or hhsearch fails or times out.
    """
    self.check()
    return runner.run_to_file(
        'hhsearch', lambda raw: self.command(query_a3m, raw), out_hhr, timeout=self.timeout,
        what='hhr',
        query=query_a3m, hint=f'check its databases {", ".join(self.databases)}')


def _stockholm_rows(text: str) -> tuple[dict[str, str], dict[str, str]]:
  """Aligned rows (blocks joined, in order of first appearance) and `#=GS .. DE` texts."""
  rows: dict[str, str] = {}
  descriptions: dict[str, str] = {}
  for line in text.splitlines():
    if line.startswith('#=GS '):
      fields = line.split(maxsplit=3)
      if len(fields) >= 3 and fields[2] == 'DE':
        descriptions[fields[1]] = fields[3] if len(fields) == 4 else ''
    elif line.strip() and not line.startswith(('#', '//')):
      name, _, aligned = line.partition(' ')
      rows[name] = rows.get(name, '') + aligned.strip()
  return rows, descriptions


def a3m_from_stockholm(text: str, source: str = '<string>') -> str:
  """AlphaFold's template query: a Stockholm MSA deduplicated, trimmed and as a3m.

  Rows that are identical in the query's match columns are kept once (the first), then
  the query's gap columns become a3m insertions (lower case, gaps removed). AlphaFold
  also drops columns that are gaps in every row first; such a column is a gap in the
  query, so the a3m conversion removes it anyway.

  Args:
    text: Stockholm text whose first sequence is the query (jackhmmer -A).
    source: where the text came from, for the error message.

  Returns:
    a3m text, query first, each header `>name description`.

  Raises:
    InputError: if the text holds no sequences or its rows differ in length.
  """
  rows, descriptions = _stockholm_rows(text)
  if not rows:
    raise InputError(f'{source} has no aligned sequences: give a Stockholm MSA whose first '
                     'row is the query')
  query = next(iter(rows.values()))
  width = len(query)
  for name, aligned in rows.items():
    if len(aligned) != width:
      raise InputError(f'row {name!r} of {source} has {len(aligned)} columns but the query has '
                       f'{width}: the Stockholm file is truncated or malformed')
  match = [c not in '-.' for c in query]
  unique: dict[str, str] = {}
  seen: set[str] = set()
  for name, aligned in rows.items():
    key = ''.join(c for c, m in zip(aligned, match) if m)
    if key not in seen:
      seen.add(key)
      unique[name] = aligned
  chunks = []
  for name, aligned in unique.items():
    out = []
    for c, m in zip(aligned, match):
      if m:
        out.append('-' if c == '.' else c)
      elif c not in '-.':
        out.append(c.lower())
    chunks.append(f'>{name} {descriptions.get(name, "")}\n{"".join(out)}')
  return '\n'.join(chunks) + '\n'
