"""mmCIF files as AlphaFold reads them: header, SEQRES per chain, atom37 coordinates.

Templates and training labels both need, per protein chain, the full deposited
sequence (SEQRES, from `_entity_poly_seq`) and the observed atoms placed on it,
with unobserved residues masked. AlphaFold reads these through biopython; so do
we (`MMCIF2Dict`), and we place the atoms with biopython's own rules so that
coordinates agree with AlphaFold's atom for atom:
- only the first model is read;
- residues are matched to SEQRES by `label_seq_id`; author numbering and
  insertion codes only identify the residue;
- alternative locations: the highest occupancy wins, the first listed on ties;
- point mutations (two residue names at one position): the one listed last;
- MSE's selenium fills MET's SD slot; ARG's NH1/NH2 are swapped where NH2 is the
  one closer to CD (a common naming error).
"""

from __future__ import annotations

import collections
import dataclasses
import gzip
import io
import os
from collections.abc import Mapping, Sequence

import numpy as np
from Bio.Data import PDBData
from Bio.PDB.MMCIF2Dict import MMCIF2Dict

from af_jax.common import residue_constants as rc
from af_jax.errors import InputError

# AlphaFold ran on biopython 1.79, whose `protein_letters_3to1` was this extended
# table (modified residues to their parent, MSE -> M); biopython >= 1.80 renamed
# it, and its plain table knows only the 20 standard residues.
_THREE_TO_ONE = PDBData.protein_letters_3to1_extended

_UNSET = ('.', '?')
_ATOM_SITE_COLUMNS = (
    'group_PDB', 'label_atom_id', 'label_alt_id', 'label_comp_id', 'label_asym_id',
    'label_seq_id', 'auth_asym_id', 'auth_seq_id', 'pdbx_PDB_ins_code', 'Cartn_x',
    'Cartn_y', 'Cartn_z', 'occupancy', 'pdbx_PDB_model_num')
# Resolution keys in the order AlphaFold reads them; the last one present wins.
_RESOLUTION_KEYS = ('_refine.ls_d_res_high', '_em_3d_reconstruction.resolution',
                    '_reflns.d_resolution_high')


@dataclasses.dataclass(frozen=True)
class MmcifHeader:
  """What template filtering and training sampling need from an entry.

  Attributes:
    release_date: 'YYYY-MM-DD', the earliest `_pdbx_audit_revision_history`
      date (AlphaFold's choice: the first public release, not the deposition);
      None if the file has no revision history.
    resolution: in Å; 0.0 when the file states none (NMR, models).
    structure_method: lower-case `_exptl.method` values joined by ','.
  """

  release_date: str | None
  resolution: float
  structure_method: str


@dataclasses.dataclass(frozen=True)
class ChainStructure:
  """One protein chain's observed atoms, placed on its SEQRES.

  Attributes:
    seqres: one-letter SEQRES (modified residues as their parent, others X).
    residue_names: [N_res] three-letter names; the observed one where resolved.
    atom_positions: [N_res, 37, 3] float32, in Å; zero where unobserved.
    atom_mask: [N_res, 37] float32, 1 where the atom was observed.
  """

  seqres: str
  residue_names: tuple[str, ...]
  atom_positions: np.ndarray
  atom_mask: np.ndarray


@dataclasses.dataclass(frozen=True)
class MmcifStructure:
  """The protein chains of one mmCIF entry, keyed by author chain id.

  Attributes:
    file_id: the entry's name, e.g. the lower-case PDB id.
    header: release date, resolution, method.
    chain_to_seqres: author chain id -> one-letter SEQRES, in entity order.
    chains: author chain id -> ChainStructure, same keys and order.
  """

  file_id: str
  header: MmcifHeader
  chain_to_seqres: Mapping[str, str]
  chains: Mapping[str, ChainStructure]


def read(path: str | os.PathLike, *, file_id: str | None = None) -> MmcifStructure:
  """Reads an mmCIF file, plain or gzipped (`.gz`).

  Args:
    path: the file.
    file_id: name for the entry; defaults to the lower-case file name without
      `.cif`/`.gz`.

  Returns:
    The parsed entry.

  Raises:
    InputError: if the file is missing, unreadable or not a valid mmCIF.
  """
  path = os.fspath(path)
  if file_id is None:
    file_id = os.path.basename(path).lower().removesuffix('.gz').removesuffix('.cif')
  try:
    with open(path, 'rb') as f:
      data = f.read()
    if data[:2] == b'\x1f\x8b':
      data = gzip.decompress(data)
    text = data.decode('utf-8')
  except FileNotFoundError:
    raise InputError(f'mmCIF file {path} not found; check the path') from None
  except (OSError, EOFError, UnicodeDecodeError) as e:
    raise InputError(f'mmCIF file {path} is unreadable ({e}); replace it with an intact '
                     'copy') from None
  return parse(text, file_id=file_id, source=path)


def parse(text: str, *, file_id: str, source: str | None = None) -> MmcifStructure:
  """Parses mmCIF text.

  Args:
    text: the whole file.
    file_id: name for the entry, e.g. the PDB id.
    source: where the text came from, for error messages (default: file_id).

  Returns:
    The parsed entry; `chains` is empty if it holds no protein chain.

  Raises:
    InputError: if the text is not an mmCIF with coordinates.
  """
  source = source or file_id
  try:
    info = MMCIF2Dict(io.StringIO(text))
  except ValueError as e:
    raise InputError(f'{source} is not a valid mmCIF ({e}); pass an mmCIF file') from None
  # MMCIF2Dict gives a list per loop column but a plain string for scalars.
  info = {k: v if isinstance(v, list) else [v] for k, v in info.items()}
  for column in _ATOM_SITE_COLUMNS:
    if f'_atom_site.{column}' not in info:
      raise InputError(f'_atom_site.{column} missing from {source}; pass an mmCIF file '
                       'with coordinates')
  header = _header(info)
  polymers = _protein_chains(info)
  try:
    chains = _place_atoms(info, polymers)
  except ValueError as e:  # a number that does not parse
    raise InputError(f'bad _atom_site value in {source} ({e}); fix or replace the file') \
        from None
  return MmcifStructure(file_id=file_id, header=header,
                        chain_to_seqres={k: c.seqres for k, c in chains.items()},
                        chains=chains)


def _loop(info: Mapping[str, list[str]], prefix: str) -> list[dict[str, str]]:
  """Rows of the loop whose items start with `prefix` (e.g. '_exptl.')."""
  keys = [k for k in info if k.startswith(prefix)]
  return [dict(zip(keys, values)) for values in zip(*(info[k] for k in keys))]


def _header(info: Mapping[str, list[str]]) -> MmcifHeader:
  methods = [row['_exptl.method'].lower() for row in _loop(info, '_exptl.')
             if '_exptl.method' in row]
  dates = info.get('_pdbx_audit_revision_history.revision_date')
  resolution = 0.0
  for key in _RESOLUTION_KEYS:
    try:
      resolution = float(info[key][0]) if key in info else resolution
    except ValueError:  # '?' or '.'
      pass
  return MmcifHeader(release_date=min(dates) if dates else None, resolution=resolution,
                     structure_method=','.join(methods))


def _protein_chains(info: Mapping[str, list[str]]) -> dict[str, list[tuple[int, str]]]:
  """label_asym_id -> [(seq num, monomer)] for chains with any peptide monomer."""
  entities: dict[str, list[tuple[int, str]]] = collections.defaultdict(list)
  for row in _loop(info, '_entity_poly_seq.'):
    entities[row['_entity_poly_seq.entity_id']].append(
        (int(row['_entity_poly_seq.num']), row['_entity_poly_seq.mon_id']))
  chem_type = {row['_chem_comp.id']: row.get('_chem_comp.type', '').lower()
               for row in _loop(info, '_chem_comp.')}
  asyms = collections.defaultdict(list)
  for row in _loop(info, '_struct_asym.'):
    asyms[row['_struct_asym.entity_id']].append(row['_struct_asym.id'])
  chains = {}
  for entity_id, monomers in entities.items():
    # DNA/RNA polymers have no peptide-like monomer.
    if any('peptide' in chem_type.get(name, '') for _, name in monomers):
      for asym_id in asyms[entity_id]:
        chains[asym_id] = monomers
  return chains


def _one_letter(monomers: Sequence[tuple[int, str]]) -> str:
  codes = (_THREE_TO_ONE.get(name, 'X') for _, name in monomers)
  return ''.join(c if len(c) == 1 else 'X' for c in codes)


def _place_atoms(info: Mapping[str, list[str]],
                 polymers: Mapping[str, list[tuple[int, str]]]) -> dict[str, ChainStructure]:
  """Author chain id -> atoms of the first model placed on SEQRES."""
  col = {c: info[f'_atom_site.{c}'] for c in _ATOM_SITE_COLUMNS}
  first_model = col['pdbx_PDB_model_num'][0] if col['pdbx_PDB_model_num'] else None
  start = {asym: min(num for num, _ in monomers) for asym, monomers in polymers.items()}
  author_chain = {}  # label_asym_id -> auth_asym_id
  seq_to_residue = collections.defaultdict(dict)  # auth chain -> seq idx -> residue key
  # residue key -> residue name -> atom name -> (occupancy, xyz) of the chosen altloc.
  residues = collections.defaultdict(lambda: collections.defaultdict(dict))
  last_name = {}  # residue key -> the residue name listed last (point mutations)
  for i, asym in enumerate(col['label_asym_id']):
    if col['pdbx_PDB_model_num'][i] != first_model or asym not in polymers:
      continue
    chain, name = col['auth_asym_id'][i], col['label_comp_id'][i]
    author_chain[asym] = chain
    icode = col['pdbx_PDB_ins_code'][i]
    het = ' '
    if col['group_PDB'][i] == 'HETATM':
      het = 'W' if name in ('HOH', 'WAT') else f'H_{name}'
    key = (chain, het, int(col['auth_seq_id'][i]), ' ' if icode in _UNSET else icode)
    seq_to_residue[chain][int(col['label_seq_id'][i]) - start[asym]] = key
    last_name[key] = name
    atoms = residues[key][name]
    atom = col['label_atom_id'][i]
    blank = col['label_alt_id'][i] in _UNSET
    occupancy = float(col['occupancy'][i])
    previous = atoms.get(atom)
    if previous is not None:
      # biopython drops a repeated atom without altloc; an altloc atom replaces
      # a blank one unless less occupied, and another altloc only if more.
      if blank or occupancy < previous[0] or (occupancy == previous[0] and not previous[2]):
        continue
    xyz = (float(col['Cartn_x'][i]), float(col['Cartn_y'][i]), float(col['Cartn_z'][i]))
    atoms[atom] = (occupancy, xyz, blank)

  chains = {}
  for asym, monomers in polymers.items():
    if asym not in author_chain:
      # DIFFERS FROM AF2: a protein chain without any atom is left out; AlphaFold
      # fails the whole file.
      continue
    chain = author_chain[asym]
    num_res = len(monomers)
    positions = np.zeros((num_res, rc.atom_type_num, 3), np.float32)
    mask = np.zeros((num_res, rc.atom_type_num), np.float32)
    names = [name for _, name in monomers]
    for idx, key in seq_to_residue[chain].items():
      if not 0 <= idx < num_res:
        continue
      names[idx] = last_name[key]
      _fill_atom37(names[idx], residues[key][names[idx]], positions[idx], mask[idx])
    chains[chain] = ChainStructure(seqres=_one_letter(monomers), residue_names=tuple(names),
                                   atom_positions=positions, atom_mask=mask)
  return chains


def _fill_atom37(res_name: str, atoms: Mapping[str, tuple], pos: np.ndarray,
                 mask: np.ndarray) -> None:
  """Writes one residue's atoms into its atom37 rows `pos` [37, 3] and `mask` [37]."""
  for atom, (_, xyz, _) in atoms.items():
    if atom in rc.atom_order:
      slot = rc.atom_order[atom]
    elif atom.upper() == 'SE' and res_name == 'MSE':
      slot = rc.atom_order['SD']
    else:
      continue
    pos[slot] = xyz
    mask[slot] = 1.0
  cd, nh1, nh2 = (rc.atom_order[a] for a in ('CD', 'NH1', 'NH2'))
  if (res_name == 'ARG' and mask[cd] and mask[nh1] and mask[nh2] and
      np.linalg.norm(pos[nh1] - pos[cd]) > np.linalg.norm(pos[nh2] - pos[cd])):
    pos[[nh1, nh2]] = pos[[nh2, nh1]]
