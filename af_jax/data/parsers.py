"""Text formats of the data pipeline: FASTA targets, a3m/Stockholm MSAs, hhr template hits.

Parsed results carry AlphaFold's meaning (an `Msa` row is the aligned sequence with the
query's insert columns removed and their residues counted in `deletion_matrix`), so the
feature builders downstream give AlphaFold's features. Every malformed input raises
`InputError` with one line naming the file, the record and the fix.
"""

from __future__ import annotations

import dataclasses
import gzip
import io
import re
import zlib

import numpy as np
from Bio.SeqIO.FastaIO import SimpleFastaParser

from af_jax.common import residue_constants as rc
from af_jax.data import names
from af_jax.errors import InputError

_FASTA_LETTERS = frozenset(rc.restypes_with_x)
_BOM = '\ufeff'  # a UTF-8 byte-order mark, which some editors put first; not text
_MAX_LISTED = 5  # bad letters listed in an error before '... and N more'
_ROW_BLOCK = 1024  # Stockholm rows converted at once


def _clip(text: str, width: int = 12) -> str:
  """A sequence shortened for one-line messages."""
  return text if len(text) <= width else f'{text[:width]}...'


# ---------------------------------------------------------------------------
# FASTA.


@dataclasses.dataclass(frozen=True)
class FastaRecord:
  """One target: `name` (first word of the header) names its output directory.

  Attributes:
    name: first whitespace-separated word of the header, safe as a file name.
    description: the whole header line without '>' (AlphaFold's `domain_name`).
    sequence: upper-case one-letter residues, 20 amino acids and X.
  """

  name: str
  description: str
  sequence: str


def _check_name(name: str, description: str, index: int, source: str) -> None:
  """Rejects record names that cannot be one path component of an output directory."""
  names.check_path_name(
      name, f'record {index + 1} (>{names.shown(_clip(description, 40))}) of '
      f'{names.shown(source)}',
      'write the name right after ">" in the header line, e.g. ">t1"' if not name
      else "rename the record in its header line (the first word after '>')")


def _clean_sequence(raw: str, name: str, source: str) -> str:
  """Upper-cased residues without whitespace or a trailing stop; bad letters raise."""
  seq = ''.join(raw.split()).upper()
  if seq.endswith('*'):
    seq = seq[:-1]
  if not seq:
    raise InputError(f"record {name!r} of {source} has an empty sequence: add its residues "
                     'below the header or remove the record')
  bad = [(i + 1, c) for i, c in enumerate(seq) if c not in _FASTA_LETTERS]
  if bad:
    listed = ', '.join(f'{c!r} at {pos}' for pos, c in bad[:_MAX_LISTED])
    more = f' and {len(bad) - _MAX_LISTED} more' if len(bad) > _MAX_LISTED else ''
    raise InputError(f"record {name!r} of {source} has residue letters outside the 20 amino "
                     f'acids and X: {listed}{more}: replace them with X or the intended residue')
  return seq


def parse_fasta(text: str, source: str = '<string>') -> list[FastaRecord]:
  """Target records of a FASTA text, checked so that each can be folded.

  Args:
    text: FASTA text; lower-case residues are upper-cased, whitespace and a
      trailing '*' are ignored.
    source: the file the text came from, for error messages.

  Returns:
    The records in file order.

  Raises:
    InputError: empty input, text before the first '>', an empty sequence, a
      duplicate or unsafe name, or letters outside the 20 amino acids and X.
  """
  stripped = text.lstrip(_BOM).lstrip()
  if not stripped:
    raise InputError(f'{source} is empty: give at least one record such as ">t1" followed by '
                     'its sequence')
  if not stripped.startswith('>'):
    first = stripped.splitlines()[0]
    raise InputError(f'{source} has text before the first ">" ({_clip(first, 30)!r}): '
                     'FASTA records start with a ">name" header line')
  records = []
  seen: dict[str, int] = {}
  for index, (header, raw) in enumerate(SimpleFastaParser(io.StringIO(stripped))):
    description = header.strip()
    name = description.split()[0] if description.split() else ''
    _check_name(name, description, index, source)
    if name in seen:
      raise InputError(f'record name {name!r} appears twice in {source} (records '
                       f'{seen[name] + 1} and {index + 1}): give each record a unique name')
    seen[name] = index
    records.append(FastaRecord(name, description, _clean_sequence(raw, name, source)))
  return records


def _read_text(path: str, what: str) -> str:
  """File text, UTF-8 with or without a byte-order mark (gzip-compressed when the name ends
  in .gz); problems raise InputError."""
  path = str(path)
  try:
    if path.endswith('.gz'):
      with gzip.open(path, 'rt', encoding='utf-8-sig') as f:
        return f.read()
    with open(path, encoding='utf-8-sig') as f:
      return f.read()
  except FileNotFoundError:
    raise InputError(f'{what} {names.shown(path)} does not exist: check the path') from None
  except (OSError, UnicodeDecodeError, EOFError, zlib.error) as e:
    raise InputError(f'cannot read {what} {names.shown(path)} ({type(e).__name__}: '
                     f'{names.shown(str(e))}): pass a readable UTF-8 text file') from None


def read_fasta(path: str) -> list[FastaRecord]:
  """The records of a FASTA file (see `parse_fasta`); missing/unreadable file -> InputError."""
  return parse_fasta(_read_text(path, 'FASTA file'), source=str(path))


# AlphaFold-Multimer names chains with the PDB format's one-character ids (A-Z, a-z, 0-9).
MAX_COMPLEX_CHAINS = 62
CHAIN_SEPARATOR = ':'  # ColabFold's 'SEQ1:SEQ2': several chains in one record


def parse_complex_fasta(text: str, source: str = '<string>',
                        max_chains: int = MAX_COMPLEX_CHAINS) -> list[FastaRecord]:
  """The chains of one complex: every record is a chain, and ':' splits a record into several.

  AlphaFold-Multimer reads a FASTA with several records as one complex; ColabFold writes
  a complex as one record 'SEQ1:SEQ2'. Both are accepted, also mixed. Names may repeat:
  chains are identified by their position (chain A is the first).

  Args:
    text: FASTA text; lower-case residues are upper-cased, whitespace and a trailing '*'
      of a chain are ignored.
    source: the file the text came from, for error messages.
    max_chains: the most chains accepted.

  Returns:
    One record per chain, in order; the chains of a ':' record share its name and
    description.

  Raises:
    InputError: empty input, text before the first '>', an empty chain ('A::B', a
      trailing ':'), letters outside the 20 amino acids and X, an unsafe name, or more
      than `max_chains` chains.
  """
  stripped = text.lstrip(_BOM).lstrip()
  if not stripped:
    raise InputError(f'{source} is empty: give the chains of the complex as FASTA records, '
                     'e.g. ">complex" followed by "SEQ1:SEQ2"')
  if not stripped.startswith('>'):
    first = stripped.splitlines()[0]
    raise InputError(f'{source} has text before the first ">" ({_clip(first, 30)!r}): '
                     'FASTA records start with a ">name" header line')
  chains = []
  for index, (header, raw) in enumerate(SimpleFastaParser(io.StringIO(stripped))):
    description = header.strip()
    name = description.split()[0] if description.split() else ''
    _check_name(name, description, index, source)
    parts = raw.split(CHAIN_SEPARATOR)
    for k, part in enumerate(parts):
      label = name if len(parts) == 1 else f'{name} chain {k + 1}'
      if not ''.join(part.split()).rstrip('*'):
        where = '' if len(parts) == 1 else f' (part {k + 1} of {len(parts)} between ":")'
        raise InputError(f'record {name!r} of {source} has an empty chain{where}: remove the '
                         'extra ":" or the empty record, or add its residues')
      chains.append(FastaRecord(name, description, _clean_sequence(part, label, source)))
  if len(chains) > max_chains:
    raise InputError(f'{source} has {len(chains)} chains, more than the {max_chains} that '
                     'AlphaFold-Multimer can name: fold a sub-complex of at most '
                     f'{max_chains} chains')
  return chains


def read_complex_fasta(path: str) -> list[FastaRecord]:
  """The chains of the complex in a FASTA file (see `parse_complex_fasta`)."""
  return parse_complex_fasta(_read_text(path, 'FASTA file'), source=str(path))


# ---------------------------------------------------------------------------
# MSAs.


@dataclasses.dataclass(frozen=True)
class Msa:
  """An MSA aligned to its first row (the query), as AlphaFold's `parsers.Msa`.

  Attributes:
    sequences: rows with the query's insert columns removed, each as long as the query.
    deletion_matrix: deletion_matrix[i][j] residues of row i were deleted before column j.
    descriptions: header of each row.
  """

  sequences: list[str]
  deletion_matrix: list[list[int]]
  descriptions: list[str]

  def __post_init__(self):
    if not len(self.sequences) == len(self.deletion_matrix) == len(self.descriptions):
      raise InputError(f'Msa fields differ in length: {len(self.sequences)} sequences, '
                       f'{len(self.deletion_matrix)} deletion rows, {len(self.descriptions)} '
                       'descriptions: give one of each per row')

  def __len__(self) -> int:
    return len(self.sequences)

  def truncate(self, max_seqs: int) -> Msa:
    """The first `max_seqs` rows."""
    return Msa(self.sequences[:max_seqs], self.deletion_matrix[:max_seqs],
               self.descriptions[:max_seqs])


def _check_rows(sequences: list[str], descriptions: list[str], source: str) -> None:
  """Every aligned row must be as long as the query."""
  if not sequences:
    raise InputError(f'{source} holds no sequences: pass an MSA whose first row is the query')
  width = len(sequences[0])
  if not width:
    raise InputError(f'the query of {source} ({_clip(descriptions[0], 40)!r}) is empty: '
                     'pass an MSA whose first row is the query sequence')
  for seq, desc in zip(sequences, descriptions):
    if len(seq) != width:
      raise InputError(f'row {_clip(desc, 40)!r} of {source} has {len(seq)} aligned columns, '
                       f'the query has {width}: pass a well-formed alignment')


_LOWER = re.compile('[a-z]+')
_NOT_LOWER = re.compile('[^a-z]')


def parse_a3m(text: str, source: str = '<string>') -> Msa:
  """An a3m MSA (hhblits, ColabFold/MMseqs2) as an `Msa`.

  Lower-case letters are insertions relative to the query: they are removed and counted in
  the deletion matrix against the next aligned column. ColabFold's files are accepted too:
  null bytes between chunks and '#' comment lines are skipped; tab-separated score fields
  stay in the description.

  Args:
    text: a3m text; the first record is the query.
    source: where the text came from, for error messages.

  Returns:
    The parsed MSA.
  """
  names: list[str] = []
  chunks: list[list[str]] = []
  for line in text.replace('\0', '').splitlines():
    line = line.strip()
    if not line or line.startswith('#'):
      continue
    if line.startswith('>'):
      names.append(line[1:])
      chunks.append([])
    elif not chunks:
      raise InputError(f'{source} has sequence text before the first ">" header '
                       f'({_clip(line, 30)!r}): pass an a3m file')
    else:
      chunks[-1].append(line)
  sequences = []
  deletion_matrix = []
  for chunk in chunks:
    # DIFFERS FROM AF2: '.' (a gap in an insert column, optional in a3m) is dropped; AF2
    # would keep it as an aligned column and make the row longer than the query.
    raw = ''.join(chunk).replace('.', '')
    sequences.append(_LOWER.sub('', raw))
    # Runs of insertions before each aligned column; a trailing run belongs to no column.
    deletion_matrix.append([len(run) for run in _NOT_LOWER.split(raw)[:-1]])
  _check_rows(sequences, names, source)
  return Msa(sequences, deletion_matrix, names)


def parse_stockholm(text: str, source: str = '<string>') -> Msa:
  """A Stockholm MSA (jackhmmer -A) as an `Msa`.

  Columns where the query (first sequence) has a gap are removed; a row's residues in them
  are counted as deletions before its next kept column, as AlphaFold does.

  Args:
    text: Stockholm text; the first sequence is the query.
    source: where the text came from, for error messages.

  Returns:
    The parsed MSA; descriptions are the sequence names (with jackhmmer's /start-end).
  """
  rows: dict[str, list[str]] = {}
  for line in text.splitlines():
    line = line.strip()
    if not line or line.startswith(('#', '//')):
      continue
    fields = line.split()
    if len(fields) != 2:
      raise InputError(f'{source} has a line that is not "name aligned_sequence" '
                       f'({_clip(line, 40)!r}): pass a Stockholm file')
    rows.setdefault(fields[0], []).append(fields[1])
  if not rows:
    raise InputError(f'{source} holds no sequences: pass an MSA whose first row is the query')
  names = list(rows)
  full = [''.join(parts) for parts in rows.values()]
  width = len(full[0])
  for name, row in zip(names, full):
    if len(row) != width:
      raise InputError(f'row {name!r} of {source} has {len(row)} columns, the query has '
                       f'{width}: pass a well-formed Stockholm alignment')
  try:
    # DIFFERS FROM AF2: '.' (a gap in an insert column) is a gap like '-'; AF2 treats it as
    # a residue. jackhmmer's files as AlphaFold runs it hold no '.', so these agree there.
    grid = np.frombuffer(''.join(full).replace('.', '-').encode('ascii'), np.uint8)
  except UnicodeEncodeError:
    raise InputError(f'{source} holds non-ASCII letters: pass a Stockholm alignment of '
                     'one-letter residues') from None
  grid = grid.reshape(len(full), width)
  gap = ord('-')
  kept = np.flatnonzero(grid[0] != gap)  # the query's residues
  if not kept.size:
    raise InputError(f'the query {names[0]!r} of {source} is all gaps: pass an MSA whose '
                     'first row is the query sequence')
  sequences, deletion_matrix = [], []
  for start in range(0, len(full), _ROW_BLOCK):  # PERF: bounded memory for deep MSAs
    block = grid[start:start + _ROW_BLOCK]
    inserted = (block != gap) & (grid[0] == gap)
    # Residues in the query's gap columns, counted before the next query residue.
    seen = np.cumsum(inserted, axis=1, dtype=np.int32)[:, kept]
    deletion_matrix += np.diff(seen, axis=1, prepend=0).tolist()
    sequences += [r.tobytes().decode('ascii') for r in block[:, kept]]
  return Msa(sequences, deletion_matrix, names)


def check_msa_query(msa: Msa, sequence: str, source: str, target: str | None = None) -> None:
  """Refuses an MSA built for another sequence: its first row, gaps removed, must be it.

  Args:
    msa: the parsed MSA.
    sequence: the target sequence.
    source: the MSA's file, for the message.
    target: the target's name, for the message.

  Raises:
    InputError: the MSA is empty or its query differs from `sequence`.
  """
  of = f' of {target!r}' if target else ''
  if not len(msa):
    raise InputError(f'{source} holds no sequences: pass the MSA built for the target{of}')
  query = msa.sequences[0].replace('-', '')
  if query != sequence:
    at = next((i for i, (a, b) in enumerate(zip(query, sequence)) if a != b),
              min(len(query), len(sequence)))
    raise InputError(
        f'query of {source} ({_clip(query)}, {len(query)} residues) does not match the target '
        f'sequence{of} ({_clip(sequence)}, {len(sequence)} residues; first difference at '
        f'residue {at + 1}): pass the MSA built for this sequence')


_MSA_SUFFIXES = {'.a3m': parse_a3m, '.sto': parse_stockholm}


def read_msa(path: str) -> Msa:
  """An MSA file parsed by its suffix: .a3m, .sto, or either with .gz.

  Raises:
    InputError: unknown suffix, missing/unreadable file, or a malformed MSA.
  """
  path = str(path)
  stem = path[:-3] if path.endswith('.gz') else path
  for suffix, parse in _MSA_SUFFIXES.items():
    if stem.endswith(suffix):
      return parse(_read_text(path, 'MSA file'), source=path)
  accepted = ', '.join(f'{s}, {s}.gz' for s in _MSA_SUFFIXES)
  raise InputError(f'MSA file {path} has an unknown suffix: name it with one of {accepted}')


# ---------------------------------------------------------------------------
# HHsearch/HHblits template hits.


@dataclasses.dataclass(frozen=True)
class TemplateHit:
  """One hhr hit, as AlphaFold's `parsers.TemplateHit`.

  Attributes:
    index: hit number in the file (1-based).
    name: the hit's header line (PDB id_chain, then its description).
    aligned_cols: number of aligned columns.
    sum_probs: summed posterior probabilities (AlphaFold sorts hits by it).
    query: aligned query residues, '-' for gaps.
    hit_sequence: aligned template residues, '-' for gaps.
    indices_query: 0-based query residue of each alignment column, -1 at gaps.
    indices_hit: 0-based template residue of each alignment column, -1 at gaps.
  """

  index: int
  name: str
  aligned_cols: int
  sum_probs: float | None
  query: str
  hit_sequence: str
  indices_query: list[int]
  indices_hit: list[int]


# 'Q name  start ALIGNED  end (length)'; the name column is fixed-width but never has spaces.
_HHR_ALIGNMENT_LINE = re.compile(r'^[QT] (\S+)\s+(\d+) ([A-Za-z-]+)\s+(\d+) \((\d+)\)\s*$')
_HHR_ANNOTATION_ROWS = ('ss_dssp', 'ss_pred', 'ss_conf', 'Consensus')


def _residue_indices(aligned: str, start: int) -> list[int]:
  """0-based residue number of each column counting from `start`, -1 at gaps."""
  indices = []
  for c in aligned:
    if c == '-':
      indices.append(-1)
    else:
      indices.append(start)
      start += 1
  return indices


def _parse_hhr_hit(lines: list[str], source: str) -> TemplateHit:
  """One 'No <n>' section: header, summary line, then Q/T alignment blocks."""
  where = f'hit section {lines[0]!r} of {source}'
  if len(lines) < 3 or not lines[1].startswith('>'):
    raise InputError(f'{where} lacks its ">name" and summary lines: pass an hhr file')
  summary = dict(re.findall(r'(\w+)=(\S+)', lines[2]))
  try:
    index = int(lines[0].split()[1])
    aligned_cols = int(float(summary['Aligned_cols']))
    sum_probs = float(summary['Sum_probs'])
  except (KeyError, ValueError, IndexError):
    raise InputError(f'{where} has no hit number, Aligned_cols or Sum_probs in its summary '
                     f'({_clip(lines[2], 40)!r}): pass an hhr file from hhsearch/hhblits') from None
  parts = {'Q': [], 'T': []}
  indices = {'Q': [], 'T': []}
  for line in lines[3:]:
    if not line.startswith(('Q ', 'T ')) or line.split()[1] in _HHR_ANNOTATION_ROWS:
      continue
    match = _HHR_ALIGNMENT_LINE.match(line)
    if match is None:
      raise InputError(f'{where} has an alignment line that cannot be read '
                       f'({_clip(line, 40)!r}): pass an unmodified hhr file')
    kind, aligned = line[0], match.group(3).upper()
    parts[kind].append(aligned)
    indices[kind].extend(_residue_indices(aligned, int(match.group(2)) - 1))
  query, hit = ''.join(parts['Q']), ''.join(parts['T'])
  if len(query) != len(hit):
    raise InputError(f'{where} aligns {len(query)} query columns with {len(hit)} template '
                     'columns: pass an unmodified hhr file')
  return TemplateHit(index=index, name=lines[1][1:], aligned_cols=aligned_cols,
                     sum_probs=sum_probs, query=query, hit_sequence=hit,
                     indices_query=indices['Q'], indices_hit=indices['T'])


def parse_hhr(text: str, source: str = '<string>') -> list[TemplateHit]:
  """Template hits of an hhsearch/hhblits .hhr file, in file order.

  Args:
    text: hhr text (summary table, then one 'No <n>' section per hit).
    source: where the text came from, for error messages.

  Returns:
    One `TemplateHit` per section; [] when there are none.
  """
  lines = text.splitlines()
  starts = [i for i, line in enumerate(lines) if line.startswith('No ')]
  ends = starts[1:] + [len(lines)]
  return [_parse_hhr_hit(lines[s:e], source) for s, e in zip(starts, ends)]
