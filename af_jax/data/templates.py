"""Template features from HHsearch hits: AlphaFold's template featurizer.

Each hit says which residues of a PDB chain align to which query residues. We
read that chain's mmCIF, place its atoms on the query, and keep the best
`max_hits` hits by summed probability that pass AlphaFold's filters (Jumper et
al. (2021) Suppl. 1.2.3):
- released after `max_template_date`: dropped (from a release-dates file if one
  is given, else from the mmCIF's first revision date);
- aligned to at most 10 % of the query, shorter than 10 residues, or an exact
  copy of more than 95 % of the query (a PDB duplicate of the target): dropped;
- obsolete PDB ids are replaced by their successor, or dropped if withdrawn;
- when the hit's sequence is not found in the mmCIF's SEQRES (the PDB70 build
  saw another version of the entry), the hit is realigned to the SEQRES with
  kalign and kept if at least 90 % identical.
"""

from __future__ import annotations

import dataclasses
import datetime
import functools
import glob
import os
import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from af_jax.common import residue_constants as rc
from af_jax.data import features, mmcif, schema
from af_jax.data.parsers import TemplateHit
from af_jax.data.tools import kalign, runner
from af_jax.errors import InputError, ToolError


_MAX_SUBSEQUENCE_RATIO = 0.95
_MIN_ALIGN_RATIO = 0.1
_MIN_TEMPLATE_LENGTH = 10
_MIN_REALIGN_IDENTITY = 0.9
_MIN_KALIGN_LENGTH = 6  # kalign 2, which AlphaFold called, refused shorter sequences.
# Consecutive CA atoms further apart than this mean broken coordinates. AlphaFold
# sets it this high on purpose: it rejects only hopeless templates.
_MAX_CA_CA_DISTANCE = 150.0
_MIN_TEMPLATE_ATOMS = 5  # alanine's heavy atoms: fewer means nothing usable


@dataclasses.dataclass(frozen=True)
class TemplateSearchResult:
  """Template features of the kept hits, and why the others were not kept.

  Attributes:
    features: AlphaFold's template features, T = number of kept hits:
      template_aatype [T, N_res, 22] (HHblits alphabet one-hot), template_all_atom_positions
      [T, N_res, 37, 3], template_all_atom_masks [T, N_res, 37], template_domain_names [T]
      (b'1abc_A'), template_sequence [T] (bytes, '-' where unaligned),
      template_sum_probs [T, 1].
    errors: one line per hit that failed for a reason worth fixing.
    warnings: one line per other skipped hit, and per realigned hit.
  """

  features: dict[str, np.ndarray]
  errors: list[str]
  warnings: list[str]


class _Skip(Exception):
  """A hit that gives no template; `is_error` says in which list it is reported."""

  def __init__(self, message: str, is_error: bool):
    super().__init__(message)
    self.is_error = is_error


class TemplateFeaturizer:
  """Turns HHsearch hits against PDB70 into AlphaFold's template features."""

  def __init__(self, mmcif_dir: str, max_template_date: str, max_hits: int = 4,
               kalign_binary_path: str | None = None, release_dates_path: str | None = None,
               obsolete_pdbs_path: str | None = None, strict_error_check: bool = False):
    """Checks the inputs that every hit will need.

    Args:
      mmcif_dir: directory of `<pdb_id>.cif` or `<pdb_id>.cif.gz` files.
      max_template_date: YYYY-MM-DD; templates released later are not used.
      max_hits: the most templates to return.
      kalign_binary_path: kalign for realignment; default `kalign` on PATH
        (looked up only when a hit needs it; ToolError if missing then).
      release_dates_path: optional `pdb_id: YYYY-MM-DD` lines, to drop late hits
        before reading their mmCIF.
      obsolete_pdbs_path: optional PDB `obsolete.dat` (OBSLTE records).
      strict_error_check: report late templates, duplicates of the query and
        missing atom data as errors rather than warnings.

    Raises:
      InputError: if a path or the date is unusable.
    """
    if not os.path.isdir(mmcif_dir):
      raise InputError(f'template mmCIF directory {mmcif_dir} does not exist; pass '
                       '--template_mmcif_dir pointing at the PDB mmCIF files')
    if not (glob.glob(os.path.join(mmcif_dir, '*.cif'))
            or glob.glob(os.path.join(mmcif_dir, '*.cif.gz'))):
      raise InputError(f'no *.cif or *.cif.gz files in template mmCIF directory {mmcif_dir}; '
                       'pass --template_mmcif_dir pointing at the PDB mmCIF files')
    self._max_template_date = _parse_date(max_template_date, '--max_template_date')
    if max_hits < 0:
      raise InputError(f'max_hits={max_hits} must be >= 0')
    self._mmcif_dir = mmcif_dir
    self._max_hits = max_hits
    self._kalign_binary_path = kalign_binary_path
    self._strict = strict_error_check
    self._release_dates = read_release_dates(release_dates_path) if release_dates_path else {}
    self._obsolete = read_obsolete_pdbs(obsolete_pdbs_path) if obsolete_pdbs_path else {}

  def get_templates(self, query_sequence: str,
                    hits: Sequence[TemplateHit]) -> TemplateSearchResult:
    """Features of the best `max_hits` usable hits, best summed probability first.

    Args:
      query_sequence: the query, one-letter.
      hits: HHsearch hits (e.g. from parsers.parse_hhr), any order.

    Returns:
      Features, errors and warnings; see TemplateSearchResult.
    """
    if not query_sequence:
      raise InputError('query_sequence is empty; pass the sequence the hits were searched with')
    kept: list[dict[str, Any]] = []
    errors, warnings = [], []
    # Python's sort is stable: equal scores keep the file's order, as in AlphaFold.
    for hit in sorted(hits, key=lambda h: -(h.sum_probs or 0.0)):
      if len(kept) >= self._max_hits:
        break
      label = f'hit {hit.index} ({hit.name.split()[0] if hit.name.strip() else "?"})'
      try:
        features, warning = self._featurize_hit(query_sequence, hit)
      except _Skip as skip:
        (errors if skip.is_error else warnings).append(f'{label}: {skip}')
        continue
      if warning:
        warnings.append(f'{label}: {warning}')
      kept.append(features)
    return TemplateSearchResult(features=_stack(kept, len(query_sequence)), errors=errors,
                                warnings=warnings)

  def _featurize_hit(self, query: str, hit: TemplateHit) -> tuple[dict[str, Any], str | None]:
    """One hit's features and an optional warning; raises _Skip if it gives none."""
    pdb_id, chain_id = _pdb_id_and_chain(hit.name)
    if pdb_id in self._obsolete:
      if self._obsolete[pdb_id] is None:
        raise _Skip(f'{pdb_id} is obsolete (withdrawn from the PDB)', is_error=False)
      if pdb_id not in self._release_dates:
        pdb_id = self._obsolete[pdb_id]
    self._prefilter(query, hit, pdb_id)

    structure = self._read_structure(pdb_id)
    released = structure.header.release_date
    if released is None:
      # DIFFERS FROM AF2: AlphaFold stops with a KeyError on such a file.
      raise _Skip(f'{pdb_id} has no release date (_pdbx_audit_revision_history)',
                  is_error=self._strict)
    if datetime.date.fromisoformat(released) > self._max_template_date:
      raise _Skip(f'{pdb_id} released {released}, after max_template_date '
                  f'{self._max_template_date}', is_error=self._strict)
    if not structure.chains:
      raise _Skip(f'{pdb_id} has no protein chain', is_error=self._strict)

    mapping = query_to_hit_mapping(hit, query)
    hit_sequence = hit.hit_sequence.replace('-', '')
    warning = None
    found = _find_chain(structure, chain_id, hit_sequence)
    if found is not None:
      chain_id, offset = found
      template_sequence = hit_sequence
    else:
      warning = (f'{hit_sequence} is not in the SEQRES of {pdb_id}_{chain_id}; realigned to '
                 'it with kalign')
      template_sequence, mapping = self._realign(structure, chain_id, hit_sequence, mapping)
      offset = 0
    if chain_id not in structure.chains:
      raise _Skip(f'no atoms for chain {chain_id} in {pdb_id}', is_error=self._strict)
    chain = structure.chains[chain_id]
    if _has_chain_break(chain.atom_positions, chain.atom_mask):
      raise _Skip(f'{pdb_id}_{chain_id} has consecutive CA atoms over '
                  f'{_MAX_CA_CA_DISTANCE} Å apart', is_error=self._strict)

    num_res = len(query)
    positions = np.zeros((num_res, rc.atom_type_num, 3), np.float32)
    masks = np.zeros((num_res, rc.atom_type_num), np.float32)
    sequence = ['-'] * num_res
    for q, t in mapping.items():
      # A query residue whose template residue has no SEQRES counterpart after
      # realignment maps to -1, which picks the chain's last residue. That is
      # AlphaFold's behaviour; kept so that features stay identical.
      if t + offset >= len(chain.seqres):
        raise _Skip(f'alignment reaches residue {t + offset} of the '
                    f'{len(chain.seqres)}-residue chain {pdb_id}_{chain_id}', is_error=True)
      positions[q] = chain.atom_positions[t + offset]
      masks[q] = chain.atom_mask[t + offset]
      sequence[q] = template_sequence[t]
    if masks.sum() < _MIN_TEMPLATE_ATOMS:
      raise _Skip(f'{pdb_id}_{chain_id} has no observed atoms at the aligned residues',
                  is_error=self._strict)
    sequence = ''.join(sequence)
    return {
        'template_aatype': rc.sequence_to_onehot(sequence, rc.HHBLITS_AA_TO_ID),
        'template_all_atom_positions': positions,
        'template_all_atom_masks': masks,
        'template_domain_names': f'{pdb_id}_{chain_id}'.encode(),
        'template_sequence': sequence.encode(),
        'template_sum_probs': [hit.sum_probs or 0.0],
    }, warning

  def _prefilter(self, query: str, hit: TemplateHit, pdb_id: str) -> None:
    """AlphaFold's checks that need no mmCIF; raises _Skip."""
    hit_sequence = hit.hit_sequence.replace('-', '')
    released = self._release_dates.get(pdb_id)
    if released is not None and released > self._max_template_date:
      raise _Skip(f'{pdb_id} released {released}, after max_template_date '
                  f'{self._max_template_date}', is_error=self._strict)
    # DIFFERS FROM AF2: AlphaFold drops hits failing the three checks below
    # silently; we list them in the warnings. (ColabFold's fork, the parity
    # reference package, applies only the date check.)
    align_ratio = hit.aligned_cols / len(query)
    if align_ratio <= _MIN_ALIGN_RATIO:
      raise _Skip(f'aligned to only {align_ratio:.1%} of the query', is_error=False)
    length_ratio = len(hit_sequence) / len(query)
    if hit_sequence in query and length_ratio > _MAX_SUBSEQUENCE_RATIO:
      raise _Skip(f'an exact copy of {length_ratio:.0%} of the query (a PDB duplicate)',
                  is_error=self._strict)
    if len(hit_sequence) < _MIN_TEMPLATE_LENGTH:
      raise _Skip(f'only {len(hit_sequence)} residues long', is_error=False)

  def _read_structure(self, pdb_id: str) -> mmcif.MmcifStructure:
    for name in (f'{pdb_id}.cif', f'{pdb_id}.cif.gz'):
      path = os.path.join(self._mmcif_dir, name)
      if os.path.exists(path):
        try:
          return _read_mmcif_cached(path)
        except InputError as e:
          raise _Skip(f'unreadable mmCIF: {e}', is_error=self._strict) from None
    # DIFFERS FROM AF2: AlphaFold stops with FileNotFoundError.
    raise _Skip(f'{pdb_id}.cif(.gz) not found in {self._mmcif_dir}; add it to the mmCIF mirror',
                is_error=True)

  def _realign(self, structure: mmcif.MmcifStructure, chain_id: str, hit_sequence: str,
               mapping: Mapping[int, int]) -> tuple[str, dict[int, int]]:
    """Re-maps `mapping` onto the chain's SEQRES by aligning hit sequence and SEQRES."""
    seqres = structure.chain_to_seqres.get(chain_id, '')
    if not seqres:
      if len(structure.chain_to_seqres) != 1:
        raise _Skip(f'no protein chain {chain_id} in {structure.file_id} to realign to',
                    is_error=True)
      # An unknown chain id in a file of one chain can only mean that chain.
      seqres = next(iter(structure.chain_to_seqres.values()))
    if min(len(hit_sequence), len(seqres)) < _MIN_KALIGN_LENGTH:
      raise _Skip(f'too short to realign ({len(hit_sequence)} and {len(seqres)} residues)',
                  is_error=True)
    # A missing kalign binary raises ToolError out of here: every realignment
    # would fail, so the user should fix --kalign_binary_path rather than read
    # one error per hit. A kalign run that fails is that hit's error.
    binary = runner.find_binary('kalign', self._kalign_binary_path)
    try:
      old_row, new_row = kalign.align_pair(hit_sequence, seqres, binary_path=binary)
    except (InputError, ToolError) as e:
      raise _Skip(f'realignment failed: {e}', is_error=True) from None
    old_to_new, same = {}, 0
    old_i = new_i = -1
    for a, b in zip(old_row, new_row):
      old_i += a != '-'
      new_i += b != '-'
      if a != '-' and b != '-':
        old_to_new[old_i] = new_i
        same += a == b
    identity = same / min(len(hit_sequence), len(seqres))
    if identity < _MIN_REALIGN_IDENTITY:
      raise _Skip(f'hit sequence only {identity:.0%} identical to the SEQRES of '
                  f'{structure.file_id}_{chain_id} (90 % needed)', is_error=True)
    return seqres, {q: old_to_new.get(t, -1) for q, t in mapping.items()}


def query_to_hit_mapping(hit: TemplateHit, query: str) -> dict[int, int]:
  """Query residue index -> hit residue index (counting from the hit's first aligned residue).

  The hhr alignment covers only part of the query and its indices count from
  where the alignment starts; the aligned query fragment is located in the full
  query to shift them back.
  """
  if not hit.query:
    return {}
  offset = query.find(hit.query.replace('-', ''))
  hit_length = len(hit.hit_sequence.replace('-', ''))
  q_min = min(i for i in hit.indices_query if i > -1)
  t_min = min(i for i in hit.indices_hit if i > -1)
  mapping = {}
  for q, t in zip(hit.indices_query, hit.indices_hit):
    if q == -1 or t == -1:
      continue
    q, t = q - q_min + offset, t - t_min
    if t < hit_length and q < len(query):
      mapping[q] = t
  return mapping


def _find_chain(structure: mmcif.MmcifStructure, chain_id: str,
                hit_sequence: str) -> tuple[str, int] | None:
  """(chain id, offset of the hit in its SEQRES), trying the hit's chain, then any
  chain, then any chain with X matching anything; None if none holds it."""
  seqres = structure.chain_to_seqres.get(chain_id)
  if seqres and hit_sequence in seqres:
    return chain_id, seqres.find(hit_sequence)
  for other, seqres in structure.chain_to_seqres.items():
    if seqres and hit_sequence in seqres:
      return other, seqres.find(hit_sequence)
  pattern = re.compile(''.join('.' if aa == 'X' else f'(?:{re.escape(aa)}|X)'
                               for aa in hit_sequence))
  for other, seqres in structure.chain_to_seqres.items():
    match = pattern.search(seqres)
    if match:
      return other, match.start()
  return None


def _has_chain_break(positions: np.ndarray, mask: np.ndarray) -> bool:
  """Whether two consecutive observed CA atoms are implausibly far apart."""
  ca = rc.atom_order['CA']
  both = (mask[1:, ca] > 0) & (mask[:-1, ca] > 0)
  distance = np.linalg.norm(positions[1:, ca] - positions[:-1, ca], axis=-1)
  return bool(np.any(distance[both] > _MAX_CA_CA_DISTANCE))


def _stack(kept: Sequence[Mapping[str, Any]], num_res: int) -> dict[str, np.ndarray]:
  if kept:
    return {name: np.stack([np.asarray(f[name], dtype) for f in kept]).astype(dtype)
            for name, dtype in schema.RAW_TEMPLATES.dtypes.items()}
  # DIFFERS FROM AF2: with no template AlphaFold returns 1-D empty arrays; we keep
  # the feature ranks (T = 0) so that padding and batching need no special case.
  return features.empty_template_features(num_res)


def _pdb_id_and_chain(name: str) -> tuple[str, str]:
  """('1abc', 'A') from a PDB70 hit name '1ABC_A description'."""
  match = re.match(r'([a-zA-Z\d]{4})_([a-zA-Z0-9.]+)', name)
  if not match:
    raise InputError(f'template hit name {name[:40]!r} does not start with PDBID_chain; '
                     'search a PDB70-style database')
  return match.group(1).lower(), match.group(2)


@functools.lru_cache(maxsize=16)
def _read_mmcif_cached(path: str) -> mmcif.MmcifStructure:
  # Hits often repeat an entry (several chains of one file); read it once.
  return mmcif.read(path)


def _parse_date(text: str, what: str) -> datetime.date:
  try:
    return datetime.date.fromisoformat(text)
  except (TypeError, ValueError):
    raise InputError(f'{what}={text!r} is not a date; use YYYY-MM-DD') from None


def read_release_dates(path: str) -> dict[str, datetime.date]:
  """PDB id (lower case) -> release date, from lines `1abc: YYYY-MM-DD`."""
  dates = {}
  with open(path) as f:
    for line_no, line in enumerate(f, 1):
      if not line.strip():
        continue
      pdb_id, sep, date = line.partition(':')
      if not sep:
        raise InputError(f'line {line_no} of release dates file {path} is {line.strip()!r}; '
                         "expected 'pdb_id: YYYY-MM-DD'")
      dates[pdb_id.strip().lower()] = _parse_date(date.strip()[:10], f'{path}:{line_no}')
  return dates


def read_obsolete_pdbs(path: str) -> dict[str, str | None]:
  """Obsolete PDB id -> its first replacement, or None if withdrawn (PDB obsolete.dat)."""
  obsolete = {}
  with open(path) as f:
    for line in f:
      # 'OBSLTE    31-JUL-94 116L     216L' (replaced) or 'OBSLTE    06-NOV-19 6G9Y' (removed)
      fields = line.split()
      if len(fields) >= 3 and fields[0] == 'OBSLTE':
        obsolete[fields[2].lower()] = fields[3].lower() if len(fields) > 3 else None
  return obsolete
