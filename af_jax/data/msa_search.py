"""MSA and template searches for one sequence, written in AlphaFold's file layout.

`search_msas` fills an MSA directory the way AlphaFold's data pipeline does
(uniref90_hits.sto, mgnify_hits.sto, bfd_uniref_hits.a3m or small_bfd_hits.sto,
pdb_hits.hhr), so AlphaFold's own output directories can be reused and ours read by
AlphaFold tools. A file already there is reused, never searched again, as with
AlphaFold's --use_precomputed_msas; each tool writes to a temporary name and renames
it when complete, so an interrupted run leaves no half-written file to reuse.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import shutil
import tempfile
from collections.abc import Callable, Sequence

from absl import logging

from af_jax.common import files
from af_jax.data import parsers
from af_jax.data.tools import hhblits
from af_jax.data.tools import hhsearch
from af_jax.data.tools import jackhmmer
from af_jax.data.tools import mmseqs2
from af_jax.data.tools import runner
from af_jax.errors import ConfigError, InputError

MODES = ('single_sequence', 'precomputed', 'jackhmmer', 'hhblits', 'mmseqs2')

# AlphaFold's output names. MSA_ORDER is the order AlphaFold stacks them in
# (uniref90, bfd, mgnify); MMseqs2's file is ours.
UNIREF90_STO = 'uniref90_hits.sto'
MGNIFY_STO = 'mgnify_hits.sto'
BFD_A3M = 'bfd_uniref_hits.a3m'
SMALL_BFD_STO = 'small_bfd_hits.sto'
MMSEQS_A3M = 'mmseqs_hits.a3m'
TEMPLATES_HHR = 'pdb_hits.hhr'
MSA_ORDER = (UNIREF90_STO, BFD_A3M, 'bfd_uniclust_hits.a3m', SMALL_BFD_STO, MGNIFY_STO,
             MMSEQS_A3M)

# AlphaFold's uniref_max_hits and mgnify_max_hits: Stockholm results are cut to these.
MAX_HITS = {UNIREF90_STO: 10000, MGNIFY_STO: 501}

_MSA_SUFFIXES = ('.a3m', '.sto')


@dataclasses.dataclass(frozen=True)
class Databases:
  """Sequence databases to search; None means not available.

  Attributes:
    uniref90: UniRef90 FASTA (jackhmmer).
    mgnify: MGnify clusters FASTA (jackhmmer).
    bfd: BFD HH-suite database prefix (hhblits).
    uniref30: UniRef30 HH-suite database prefix (hhblits).
    small_bfd: small BFD FASTA (jackhmmer, AlphaFold's reduced_dbs).
    mmseqs_db: FASTA file or MMseqs2 database prefix (mmseqs2 mode).
    pdb70: PDB70 HH-suite database prefix (hhsearch templates).
    jackhmmer_binary, hhblits_binary, hhsearch_binary, mmseqs_binary: paths that
      override finding each tool on PATH (--<tool>_binary_path).
  """

  uniref90: str | None = None
  mgnify: str | None = None
  bfd: str | None = None
  uniref30: str | None = None
  small_bfd: str | None = None
  mmseqs_db: str | None = None
  pdb70: str | None = None
  jackhmmer_binary: str | None = None
  hhblits_binary: str | None = None
  hhsearch_binary: str | None = None
  mmseqs_binary: str | None = None


# The command-line flag for each Databases field (AlphaFold's names where it has one).
DATABASE_FLAGS = {
    'uniref90': '--uniref90_database_path',
    'mgnify': '--mgnify_database_path',
    'bfd': '--bfd_database_path',
    'uniref30': '--uniref30_database_path',
    'small_bfd': '--small_bfd_database_path',
    'mmseqs_db': '--mmseqs_database_path',
    'pdb70': '--pdb70_database_path',
}


@dataclasses.dataclass(frozen=True)
class _Job:
  """One search that produces one file of the layout.

  `make` builds the tool (finding its binary) only when the file is not there yet, so a
  rerun that reuses every file needs none of the binaries.
  """

  name: str
  make: Callable[[], object]
  run: Callable[[object, pathlib.Path], object]


def _search_jobs(sequence: str, target_name: str, mode: str, databases: Databases,
                 query: pathlib.Path, n_cpu: int,
                 timeout: float) -> list[_Job]:
  """The searches `mode` runs with the databases given, in AlphaFold's order."""

  def jackhmmer_job(name: str, field: str) -> _Job:
    make = lambda: jackhmmer.Jackhmmer(
        binary_path=runner.find_binary('jackhmmer', databases.jackhmmer_binary),
        database_path=getattr(databases, field), flag=DATABASE_FLAGS[field], n_cpu=n_cpu,
        timeout=timeout)
    return _Job(name, make, lambda tool, out: tool.search(query, out, MAX_HITS.get(name)))

  jobs = []
  jackhmmer_dbs = [(UNIREF90_STO, 'uniref90'), (MGNIFY_STO, 'mgnify')]
  if mode == 'jackhmmer':
    jackhmmer_dbs.append((SMALL_BFD_STO, 'small_bfd'))
  for name, field in jackhmmer_dbs:
    if mode in ('jackhmmer', 'hhblits') and getattr(databases, field):
      jobs.append(jackhmmer_job(name, field))
  if mode == 'jackhmmer' and not jobs:
    raise ConfigError('msa mode jackhmmer needs a database: pass --uniref90_database_path, '
                      '--mgnify_database_path and/or --small_bfd_database_path')
  if mode == 'hhblits':
    fields = [f for f in ('bfd', 'uniref30') if getattr(databases, f)]
    if not fields:
      raise ConfigError('msa mode hhblits needs --bfd_database_path and/or '
                        '--uniref30_database_path')
    make = lambda: hhblits.HHBlits(
        binary_path=runner.find_binary('hhblits', databases.hhblits_binary),
        databases=tuple(getattr(databases, f) for f in fields),
        flags=tuple(DATABASE_FLAGS[f] for f in fields), n_cpu=n_cpu, timeout=timeout)
    # AlphaFold stacks uniref90, bfd, mgnify: keep that order.
    jobs.insert(1 if databases.uniref90 else 0,
                _Job(BFD_A3M, make, lambda tool, out: tool.search(query, out)))
  if mode == 'mmseqs2':
    if not databases.mmseqs_db:
      raise ConfigError('msa mode mmseqs2 needs --mmseqs_database_path (a FASTA file or an '
                        'MMseqs2 database)')
    make = lambda: mmseqs2.MMseqs2(
        binary_path=runner.find_binary('mmseqs', databases.mmseqs_binary),
        database_path=databases.mmseqs_db, n_cpu=n_cpu, timeout=timeout)
    jobs.append(_Job(MMSEQS_A3M, make,
                     lambda tool, out: tool.search(sequence, target_name, out)))
  return jobs


def _reuse(paths: Sequence[pathlib.Path]) -> None:
  """Logs in one line that `paths` (files of one directory) are reused, and cuts each
  Stockholm file to AlphaFold's hit limit."""
  if not paths:
    return
  logging.info('Reusing %d file(s) in %s (delete one to search it again)', len(paths),
               files.short_path(paths[0].parent, 2))
  for path in paths:
    logging.debug('Reusing %s', path)
    if path.name in MAX_HITS:
      # AlphaFold also cuts precomputed Stockholm files to its limits when it reads them.
      kept = jackhmmer.truncate_stockholm(path, path, MAX_HITS[path.name])
      logging.debug('%s: %d sequences (limit %d)', path.name, kept, MAX_HITS[path.name])


def _order(paths: Sequence[pathlib.Path]) -> list[pathlib.Path]:
  """AlphaFold's names first in AlphaFold's order, then the others as given."""
  rank = {name: i for i, name in enumerate(MSA_ORDER)}
  return sorted(paths, key=lambda p: rank.get(p.name, len(rank)))


def _precomputed(msa_dir: pathlib.Path, msa_paths: Sequence[str], sequence: str,
                 target_name: str) -> list[pathlib.Path]:
  """Copies the given MSA/hhr files into msa_dir, or lists the ones already there.

  Every given file is checked (parsed; an MSA's first row must be `sequence`) before any
  is copied: msa_dir is where later precomputed runs look, so nothing bad may land there.
  """
  if not msa_paths:
    found = sorted(p for p in msa_dir.iterdir()
                   if p.is_file() and (p.suffix in _MSA_SUFFIXES or p.name == TEMPLATES_HHR))
    if not any(p.suffix in _MSA_SUFFIXES for p in found):
      raise InputError(f'msa mode precomputed found no MSA (*.a3m, *.sto) in {msa_dir} and no '
                       '--msa_paths were given: pass --msa_paths or put the files there')
    _reuse(found)
    return found
  copies = {}
  for given in msa_paths:
    src = pathlib.Path(given)
    if src.suffix not in _MSA_SUFFIXES + ('.hhr',):
      raise InputError(f'--msa_paths entry {given!r} is not an .a3m, .sto or .hhr file: rename '
                       'it to its format or leave it out')
    if not src.is_file():
      raise InputError(f'--msa_paths entry {given!r} does not exist: fix the path')
    # Template hits take AlphaFold's name, where the template featurizer looks for them.
    dst = msa_dir / (TEMPLATES_HHR if src.suffix == '.hhr' else src.name)
    if dst in copies.values():
      raise InputError(f'--msa_paths has two files named {dst.name!r}: give each MSA a '
                       'distinct file name and at most one .hhr')
    if src.suffix == '.hhr':
      parsers.parse_hhr(src.read_text(errors='replace'), source=str(src))
    else:
      parsers.check_msa_query(parsers.read_msa(src), sequence, str(src), target=target_name)
    copies[src] = dst
  if not any(p.suffix in _MSA_SUFFIXES for p in copies.values()):
    raise InputError(f'--msa_paths={",".join(msa_paths)} holds no MSA (*.a3m, *.sto): add '
                     'at least one')
  copied = []
  for src, dst in copies.items():
    if not (dst.exists() and os.path.samefile(src, dst)):
      with files.writing(dst) as tmp:
        shutil.copyfile(src, tmp)
      logging.debug('Copied %s to %s', src, dst)
    if dst.name in MAX_HITS:
      jackhmmer.truncate_stockholm(dst, dst, MAX_HITS[dst.name])
    copied.append(dst)
  return copied


def _template_query(msas: Sequence[pathlib.Path], sequence: str, target_name: str,
                    work: pathlib.Path) -> pathlib.Path:
  """The a3m hhsearch is given: AlphaFold's UniRef90 MSA, else the first MSA, else the query."""
  by_name = {p.name: p for p in msas}
  source = by_name.get(UNIREF90_STO) or (msas[0] if msas else None)
  if source is not None and source.suffix == '.a3m':
    return source
  if source is None:
    text = f'>{target_name}\n{sequence}\n'
  else:
    text = hhsearch.a3m_from_stockholm(source.read_text(), str(source))
  query = work / 'template_query.a3m'
  query.write_text(text)
  return query


def _has_template_hits(mode: str, msa_dir: pathlib.Path, msa_paths: Sequence[str]) -> bool:
  """Whether template hits exist: pdb_hits.hhr, or an .hhr in precomputed mode's msa_paths."""
  if mode == 'precomputed' and any(pathlib.Path(p).suffix == '.hhr' for p in msa_paths):
    return True
  return (msa_dir / TEMPLATES_HHR).exists()


def _check_sequence(sequence: str, target_name: str) -> None:
  if not sequence or not sequence.isalpha() or not sequence.isascii():
    raise InputError(f'sequence {sequence[:20]!r} of {target_name!r} is not a protein '
                     'sequence: give one-letter amino-acid codes only')
  if not target_name or any(c.isspace() for c in target_name):
    raise InputError(f'target name {target_name!r} must be one word: use the FASTA name '
                     'without spaces')


def search_msas(sequence: str, target_name: str, msa_dir: pathlib.Path, mode: str,
                databases: Databases, *, n_cpu: int = 2, timeout: float = 3600,
                msa_paths: Sequence[str] = (),
                search_templates: bool = False) -> list[pathlib.Path]:
  """Searches (or collects) the MSAs and template hits of one sequence.

  Args:
    sequence: the query, one-letter amino-acid codes.
    target_name: the query's name (one word), used as its header in the files.
    msa_dir: directory for the files in AlphaFold's layout; created if missing.
    mode: one of MODES. single_sequence: no MSA. precomputed: the files in `msa_paths`,
      or those already in `msa_dir`. jackhmmer: UniRef90, MGnify (and small BFD) with
      jackhmmer, AlphaFold's reduced_dbs. hhblits: BFD + UniRef30 with hhblits, and
      UniRef90/MGnify with jackhmmer when given, AlphaFold's full_dbs. mmseqs2: MMseqs2
      against `databases.mmseqs_db`.
    databases: database paths (a mode uses the ones it needs) and binary overrides.
    n_cpu: threads per tool.
    timeout: seconds allowed for each tool run.
    msa_paths: a3m/sto (and optionally one .hhr, copied as pdb_hits.hhr) files for
      precomputed mode.
    search_templates: also write pdb_hits.hhr (hhsearch against `databases.pdb70`), from
      the UniRef90 MSA as AlphaFold does, else the first MSA, else the query alone.

  Returns:
    The MSA files in msa_dir in AlphaFold's order (uniref90, bfd, mgnify, then others),
    then pdb_hits.hhr when search_templates. Empty for single_sequence without templates
    (the query alone is then the MSA).

  Raises:
    ConfigError: for an unknown mode or a mode without the databases it needs.
    InputError: for a bad sequence or missing precomputed files.
    ToolError: if a binary or database is missing, or a tool fails or times out.
  """
  if mode not in MODES:
    raise ConfigError(f'msa mode {mode!r} is unknown: use one of {", ".join(MODES)}')
  if msa_paths and mode != 'precomputed':
    raise ConfigError(f'--msa_paths is only read in msa mode precomputed, not {mode!r}: drop '
                      'it or use --msa_mode=precomputed')
  _check_sequence(sequence, target_name)
  msa_dir = pathlib.Path(msa_dir)
  msa_dir.mkdir(parents=True, exist_ok=True)

  template_tool = None
  hhr = msa_dir / TEMPLATES_HHR
  if search_templates and not _has_template_hits(mode, msa_dir, msa_paths):
    if not databases.pdb70:
      raise ConfigError('template search needs --pdb70_database_path (or a pdb_hits.hhr in '
                        f'{msa_dir}): pass it or turn template search off')
    template_tool = hhsearch.HHSearch(
        binary_path=runner.find_binary('hhsearch', databases.hhsearch_binary),
        databases=(databases.pdb70,), flags=(DATABASE_FLAGS['pdb70'],), n_cpu=n_cpu,
        timeout=timeout)

  with tempfile.TemporaryDirectory(prefix=files.temp_dir_prefix('search'), dir=msa_dir) as tmp:
    work = pathlib.Path(tmp)
    query = work / 'query.fasta'
    query.write_text(f'>{target_name}\n{sequence}\n')

    if mode == 'precomputed':
      given = _precomputed(msa_dir, msa_paths, sequence, target_name)
      msas = _order([p for p in given if p.suffix in _MSA_SUFFIXES])
      jobs = []
    elif mode == 'single_sequence':
      msas, jobs = [], []
    else:
      jobs = _search_jobs(sequence, target_name, mode, databases, query, n_cpu, timeout)
      msas = [msa_dir / job.name for job in jobs]
    tools = {job.name: job.make() for job in jobs if not (msa_dir / job.name).exists()}
    # Every binary and database is checked before hours are spent on the first search.
    for tool in tools.values():
      tool.check()
    if template_tool is not None:
      template_tool.check()

    _reuse([msa_dir / job.name for job in jobs if job.name not in tools])
    for job in jobs:
      if job.name in tools:
        job.run(tools[job.name], msa_dir / job.name)
    if not search_templates:
      return msas
    if template_tool is None:
      # DIFFERS FROM AF2: AlphaFold reruns hhsearch even with --use_precomputed_msas;
      # like the MSAs, existing template hits are reused.
      logging.info('Reusing %s (delete it to search again)', files.short_path(hhr))
    else:
      template_tool.search(_template_query(msas, sequence, target_name, work), hhr)
    return msas + [hhr]
