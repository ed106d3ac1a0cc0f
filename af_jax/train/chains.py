"""Training chains: found in OpenFold's directory layout, filtered, and read into raw features.

`<alignment_dir>/<pdb_id>_<chain_id>/` holds a chain's MSAs (`*.a3m`, `*.sto`, optionally
gzipped, and `*.hhr` template hits); `<mmcif_dir>/<pdb_id>.cif[.gz]` holds its structure.
OpenFold's chain caches stand in for parsing every mmCIF when filtering. Each chain
becomes the inference pipeline's raw features (SEQRES sequence features, its MSAs merged
and de-duplicated, optional templates) plus labels (atom37 positions and mask,
resolution), uncropped; `af_jax.train.data` makes training examples of them.

This module is numpy-only (it runs in loader workers, see af_jax.train.loader).
"""

from __future__ import annotations

import dataclasses
import datetime
import functools
import json
import os
import pathlib
from collections.abc import Sequence

import ml_collections
import numpy as np

from af_jax.data import features, mmcif, msa_search, parsers, pipeline
from af_jax.errors import InputError

_CIF_SUFFIXES = ('.cif', '.cif.gz')
_NOT_MONOMER_MSAS = ('uniprot_hits', 'hmm_output')


@dataclasses.dataclass(frozen=True)
class ChainEntry:
  """One training chain: where its files are and what filtering needs to know.

  Attributes:
    name: `<pdb_id>_<chain_id>`, its alignment directory's name.
    mmcif_path: its structure, `<mmcif_dir>/<pdb_id>.cif[.gz]`.
    alignment_dir: its MSAs (and template hits).
    sequence: SEQRES, one-letter (from the chain cache or the mmCIF).
    resolution: Å; 0.0 or None when the entry states none (NMR).
    release_date: 'YYYY-MM-DD' or None.
    cluster_size: size of its sequence cluster when the chain cache gives it.
  """

  name: str
  mmcif_path: str
  alignment_dir: str
  sequence: str
  resolution: float | None
  release_date: str | None
  cluster_size: int | None = None

  @property
  def pdb_id(self) -> str:
    return self.name.rsplit('_', 1)[0]

  @property
  def chain_id(self) -> str:
    return self.name.rsplit('_', 1)[1]


@dataclasses.dataclass
class FilterReport:
  """How many chains were found, and which were skipped for what reason."""

  total: int = 0
  skipped: dict[str, list[str]] = dataclasses.field(default_factory=dict)

  def skip(self, name: str, reason: str) -> None:
    self.skipped.setdefault(reason, []).append(name)

  @property
  def kept(self) -> int:
    return self.total - sum(len(names) for names in self.skipped.values())

  def __str__(self) -> str:
    text = f'kept {self.kept} of {self.total} chains'
    for reason, names in sorted(self.skipped.items()):
      shown = ', '.join(names[:3]) + (', ...' if len(names) > 3 else '')
      text += f'; skipped {len(names)} ({shown}): {reason}'
    return text


# ---------------------------------------------------------------------------
# Discovery and filtering.


def read_chain_cache(path: str | os.PathLike) -> dict[str, dict]:
  """`<pdb_id>_<chain_id>` -> {seq, resolution, release_date, cluster_size} from OpenFold's caches.

  Accepts both of OpenFold's files: `chain_data_cache.json` (keyed by chain, with `seq`)
  and `mmcif_cache.json` (keyed by entry, with `chain_ids` and `seqs`).
  """
  path = os.fspath(path)
  try:
    with open(path) as f:
      cache = json.load(f)
  except FileNotFoundError:
    raise InputError(f'chain cache {path} not found; check --chain_data_cache_path') from None
  except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
    raise InputError(f'chain cache {path} is not readable JSON ({e}); regenerate it') from None
  if not isinstance(cache, dict):
    raise InputError(f'chain cache {path} holds a {type(cache).__name__}, not an object '
                     'keyed by chain or entry; pass chain_data_cache.json or mmcif_cache.json')
  chains = {}
  for key, info in cache.items():
    if isinstance(info, dict) and 'seq' in info:
      chains[key] = {'seq': info['seq'], 'resolution': info.get('resolution'),
                     'release_date': info.get('release_date'),
                     'cluster_size': info.get('cluster_size')}
    elif isinstance(info, dict) and 'chain_ids' in info and 'seqs' in info:
      for chain_id, seq in zip(info['chain_ids'], info['seqs']):
        chains[f'{key}_{chain_id}'] = {'seq': seq, 'resolution': info.get('resolution'),
                                       'release_date': info.get('release_date'),
                                       'cluster_size': None}
    else:
      raise InputError(f'entry {key!r} of chain cache {path} has neither "seq" (OpenFold '
                       'chain_data_cache.json) nor "chain_ids" and "seqs" (mmcif_cache.json); '
                       'regenerate the cache with OpenFold\'s scripts')
  return chains


def write_chain_cache(entries: Sequence[ChainEntry], path: str | os.PathLike) -> None:
  """Writes OpenFold's `chain_data_cache.json` for `entries`, so later runs skip parsing."""
  cache = {e.name: {'release_date': e.release_date, 'seq': e.sequence,
                    'resolution': e.resolution, 'cluster_size': e.cluster_size}
           for e in entries}
  tmp = f'{os.fspath(path)}.tmp'
  with open(tmp, 'w') as f:
    json.dump(cache, f, indent=1, allow_nan=False)
  os.replace(tmp, path)


def _mmcif_files(mmcif_dir: str) -> dict[str, str]:
  """Lower-case PDB id -> its mmCIF path (`.cif` preferred over `.cif.gz`)."""
  files = {}
  for name in sorted(os.listdir(mmcif_dir), reverse=True):  # '.cif' after '.cif.gz' wins
    for suffix in _CIF_SUFFIXES:
      if name.lower().endswith(suffix):
        files[name[:-len(suffix)].lower()] = os.path.join(mmcif_dir, name)
  return files


@functools.lru_cache(maxsize=8)
def _read_mmcif(path: str, file_id: str) -> mmcif.MmcifStructure:
  # An entry's chains, and the chains of a small fine-tuning set, come back often; parsing
  # is most of the cost of an example. Callers must not modify the arrays.
  return mmcif.read(path, file_id=file_id)


def _chain_not_found(chain_id: str, structure: mmcif.MmcifStructure, path: str,
                     alignment_dir: str) -> InputError:
  chains = ', '.join(structure.chains) or 'none'
  return InputError(f'chain {chain_id} is not a protein chain with atoms in {path} (protein '
                    f'chains: {chains}); rename or remove the alignment dir {alignment_dir}')


def discover_chains(alignment_dir: str | os.PathLike, mmcif_dir: str | os.PathLike,
                    chain_cache_path: str | os.PathLike | None = None
                    ) -> tuple[list[ChainEntry], FilterReport]:
  """The chains of `alignment_dir` matched to their mmCIF files, sorted by name.

  Without a chain cache every mmCIF is parsed here for its sequence, resolution and
  release date (PERF: for a PDB-sized set, write a cache once with
  `write_chain_cache`); with one, only the file's existence is checked.

  Raises:
    InputError: a directory is missing, a chain has no mmCIF, or (without a cache) a
      chain is not in its mmCIF.
  """
  alignment_dir, mmcif_dir = os.fspath(alignment_dir), os.fspath(mmcif_dir)
  for flag, path in (('--alignment_dir', alignment_dir), ('--mmcif_dir', mmcif_dir)):
    if not os.path.isdir(path):
      raise InputError(f'{flag} {path} is not a directory; pass the directory holding '
                       + ('<pdb_id>_<chain_id>/ MSA folders' if 'align' in flag
                          else '<pdb_id>.cif files'))
  cache = read_chain_cache(chain_cache_path) if chain_cache_path else None
  cifs = _mmcif_files(mmcif_dir)
  report = FilterReport()
  entries = []
  for name in sorted(os.listdir(alignment_dir)):
    chain_dir = os.path.join(alignment_dir, name)
    if not os.path.isdir(chain_dir):
      continue
    report.total += 1
    pdb_id, sep, chain_id = name.rpartition('_')
    if not (sep and pdb_id and chain_id):
      report.skip(name, 'directory name is not <pdb_id>_<chain_id>')
      continue
    info = None
    if cache is not None:
      info = cache.get(name) or cache.get(f'{pdb_id.lower()}_{chain_id}')
      if info is None:
        report.skip(name, f'not in the chain cache {chain_cache_path}')
        continue
    cif = cifs.get(pdb_id.lower())
    if cif is None:
      raise InputError(f'no mmCIF for chain {name}: neither {pdb_id}.cif nor {pdb_id}.cif.gz '
                       f'is in --mmcif_dir {mmcif_dir}; add it or remove {chain_dir}')
    if info is not None:
      entries.append(ChainEntry(name, cif, chain_dir, info['seq'], info['resolution'],
                                info['release_date'], info['cluster_size']))
      continue
    structure = _read_mmcif(cif, pdb_id.lower())
    if chain_id not in structure.chains:
      raise _chain_not_found(chain_id, structure, cif, chain_dir)
    header = structure.header
    entries.append(ChainEntry(name, cif, chain_dir, structure.chains[chain_id].seqres,
                              header.resolution, header.release_date))
  return entries, report


def filter_chains(entries: Sequence[ChainEntry], filters: ml_collections.ConfigDict,
                  report: FilterReport) -> list[ChainEntry]:
  """The chains passing `data.filters`; the others are recorded in `report` with the reason.

  AlphaFold's training filters (Jumper et al. (2021) Suppl. 1.2.5): resolution below
  9 Å (entries stating none, such as NMR, pass) and no residue type over 80 % of the
  sequence; plus length and release-date limits.
  """
  max_length = filters.max_length
  kept = []
  for entry in entries:
    seq = entry.sequence
    top = max(seq.count(aa) for aa in set(seq)) / len(seq) if seq else 1.0
    resolution = entry.resolution
    if resolution is not None and resolution > filters.max_resolution:
      reason = f'resolution above max_resolution {filters.max_resolution} Å'
    elif resolution is not None and resolution < filters.min_resolution:
      reason = f'resolution below min_resolution {filters.min_resolution} Å'
    elif len(seq) < filters.min_length:
      reason = f'shorter than min_length {filters.min_length}'
    elif max_length is not None and len(seq) > max_length:
      reason = f'longer than max_length {max_length}'
    elif top > filters.max_single_aa_prop:
      reason = f'one residue type over max_single_aa_prop {filters.max_single_aa_prop}'
    elif entry.release_date and entry.release_date > filters.max_release_date:
      reason = f'released after max_release_date {filters.max_release_date}'
    else:
      kept.append(entry)
      continue
    report.skip(entry.name, reason)
  return kept


# ---------------------------------------------------------------------------
# One chain: raw features and labels.


@dataclasses.dataclass(frozen=True)
class TemplateOptions:
  """Where template structures are, and how late a template may be released."""

  mmcif_dir: str
  max_hits: int
  max_template_date: str = '9999-12-31'
  release_gap_days: int = 60
  kalign_binary_path: str | None = None
  obsolete_pdbs_path: str | None = None

  def cutoff(self, release_date: str | None) -> str:
    """Latest template date for a chain released on `release_date`."""
    if not release_date:
      return self.max_template_date
    # A template must predate the chain, so that the chain's own entry (or its
    # re-depositions) cannot be its template. AlphaFold 3 uses the same 60-day gap.
    latest = datetime.date.fromisoformat(release_date) - datetime.timedelta(
        days=self.release_gap_days)
    return min(self.max_template_date, latest.isoformat())


def _msa_paths(alignment_dir: str) -> list[pathlib.Path]:
  """The MSA files of a chain, in AlphaFold's stacking order (uniref90, bfd, mgnify, ...).

  As OpenFold, leaves out the Stockholm files of AlphaFold-Multimer's alignment dirs
  that are not monomer MSAs: uniprot_hits (for cross-chain pairing) and hmm_output
  (template hits).
  """
  found = [p for p in pathlib.Path(alignment_dir).iterdir()
           if p.is_file() and p.name.endswith(pipeline.MSA_SUFFIXES)
           and p.name.removesuffix('.gz').removesuffix('.sto') not in _NOT_MONOMER_MSAS]
  rank = {name: i for i, name in enumerate(msa_search.MSA_ORDER)}
  return sorted(found, key=lambda p: (rank.get(p.name, len(rank)), p.name))


def load_chain(entry: ChainEntry,
               templates: TemplateOptions | None = None) -> dict[str, np.ndarray]:
  """Uncropped raw features (AlphaFold names) and labels of one chain.

  Returns:
    make_sequence_features + make_msa_features (+ template features) of the SEQRES,
    and the labels all_atom_positions [N_res, 37, 3] float32 (Å, zero where unobserved),
    all_atom_mask [N_res, 37] float32, resolution () float32.

  Raises:
    InputError: chain not in its mmCIF, SEQRES differing from the chain cache, no MSA,
      or an MSA built for another sequence (each message names the file).
  """
  structure = _read_mmcif(entry.mmcif_path, entry.pdb_id.lower())
  chain = structure.chains.get(entry.chain_id)
  if chain is None:
    raise _chain_not_found(entry.chain_id, structure, entry.mmcif_path, entry.alignment_dir)
  if entry.sequence and chain.seqres != entry.sequence:
    raise InputError(f'SEQRES of chain {entry.chain_id} in {entry.mmcif_path} '
                     f'({len(chain.seqres)} residues) differs from the chain cache\'s '
                     f'({len(entry.sequence)}); regenerate the cache for this mmCIF mirror')
  record = parsers.FastaRecord(name=entry.name, description=entry.name, sequence=chain.seqres)
  paths = _msa_paths(entry.alignment_dir)
  if not paths:
    raise InputError(f'no MSA (*.a3m, *.sto) in {entry.alignment_dir}; add the chain\'s '
                     'alignments or remove the directory')
  msas = pipeline.read_msas(paths, record, log=False)
  # As the inference pipeline, which cuts jackhmmer's files to AlphaFold's limits on reuse.
  msas = [msa.truncate(msa_search.MAX_HITS.get(path.name, len(msa)))
          for path, msa in zip(paths, msas)]
  num_res = len(chain.seqres)
  raw = {**features.make_sequence_features(chain.seqres, entry.name, num_res),
         **features.make_msa_features([pipeline.query_msa(record)] + msas)}
  if templates is not None:
    options = pipeline.PipelineOptions(
        use_templates=True, template_mmcif_dir=templates.mmcif_dir,
        max_template_date=templates.cutoff(structure.header.release_date),
        max_templates=templates.max_hits, kalign_binary_path=templates.kalign_binary_path,
        obsolete_pdbs_path=templates.obsolete_pdbs_path)
    raw.update(pipeline.template_features(record, pathlib.Path(entry.alignment_dir), options))
  raw['all_atom_positions'] = chain.atom_positions.copy()
  raw['all_atom_mask'] = chain.atom_mask.copy()
  raw['resolution'] = np.float32(structure.header.resolution)
  return raw
