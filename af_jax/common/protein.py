"""Protein structures as atom37 arrays, read from and written to PDB and mmCIF.

Readers go through biopython, as AlphaFold's do, so that altloc choice and atom
naming agree with it; writers emit the text themselves. One Protein is one chain.
"""

from __future__ import annotations

import dataclasses
import io
import re

import numpy as np
from Bio.PDB import MMCIFParser, PDBParser

from af_jax.common import residue_constants as rc
from af_jax.errors import InputError


@dataclasses.dataclass(frozen=True)
class Protein:
  """One chain in atom37 form.

  Attributes:
    atom_positions: [N_res, 37, 3] in Å.
    atom_mask: [N_res, 37], 1 where the atom exists (and was predicted/observed).
    aatype: [N_res] residue type indices (restypes order, 20 = X).
    residue_index: [N_res] residue numbers as written to the file.
    b_factors: [N_res, 37] (pLDDT for predictions).
    chain_id: one-letter chain name.
  """

  atom_positions: np.ndarray
  atom_mask: np.ndarray
  aatype: np.ndarray
  residue_index: np.ndarray
  b_factors: np.ndarray
  chain_id: str = 'A'


def to_pdb(prot: Protein) -> str:
  """PDB-format text (ATOM records, TER, END), pLDDT/B-factor in its column."""
  lines = []
  serial = 1
  res_name = 'UNK'
  last_res = 0
  for i, restype in enumerate(np.asarray(prot.aatype)):
    res_name = rc.resnames[int(restype)] if int(restype) < len(rc.resnames) else 'UNK'
    last_res = int(prot.residue_index[i])
    for j, atom in enumerate(rc.atom_types):
      if prot.atom_mask[i, j] < 0.5:
        continue
      x, y, z = (float(v) for v in prot.atom_positions[i, j])
      # Atom names of 1-3 characters start in column 14, as PDB files do.
      name = atom if len(atom) == 4 else f' {atom}'
      lines.append(
          f'ATOM  {serial:>5} {name:<4} {res_name:>3} {prot.chain_id:>1}{last_res:>4}    '
          f'{x:>8.3f}{y:>8.3f}{z:>8.3f}{1.00:>6.2f}{float(prot.b_factors[i, j]):>6.2f}'
          f'          {atom[0]:>2}  ')
      serial += 1
  lines.append(f'TER   {serial:>5}      {res_name:>3} {prot.chain_id:>1}{last_res:>4}')
  lines.append('END')
  return '\n'.join(line.ljust(80) if line.startswith('ATOM') else line for line in lines) + '\n'


def from_pdb_string(text: str, chain_id: str | None = None) -> Protein:
  """Reads one chain from PDB text.

  Non-standard residues become UNK (aatype 20) and keep only their atom37-named
  atoms; atoms outside atom37 are dropped, as in AlphaFold.

  Args:
    text: PDB file contents (one model).
    chain_id: the chain to read; may be omitted when the file has one chain.

  Returns:
    The chain's residues that have at least one atom37 atom.

  Raises:
    InputError: for several models, several chains and no chain_id, an unknown
      chain_id, insertion codes, or no atoms.
  """
  structure = PDBParser(QUIET=True).get_structure('none', io.StringIO(text))
  return _from_structure(structure, chain_id, 'PDB text')


def from_mmcif_string(text: str, chain_id: str | None = None) -> Protein:
  """Reads one chain from mmCIF text; author chain ids and residue numbers.

  Args:
    text: mmCIF file contents (one model).
    chain_id: the author chain id to read; may be omitted for one chain.

  Returns:
    As from_pdb_string.

  Raises:
    InputError: as from_pdb_string, or if the text is not mmCIF.
  """
  try:
    structure = MMCIFParser(QUIET=True).get_structure('none', io.StringIO(text))
  except (ValueError, KeyError) as e:
    raise InputError(f'mmCIF text does not parse ({e!r}); pass a valid mmCIF file') from None
  return _from_structure(structure, chain_id, 'mmCIF text')


def _from_structure(structure, chain_id: str | None, source: str) -> Protein:
  """One chain of a biopython Structure in atom37 form."""
  models = list(structure)
  if len(models) != 1:
    raise InputError(f'{source} has {len(models)} models; pass a file with exactly one '
                     '(e.g. extract the first with gemmi or PyMOL)')
  chains = {}  # chain id -> list of residue rows
  for chain in models[0]:
    rows = []
    for res in chain:
      het, number, icode = res.id
      if het == 'W':
        # DIFFERS FROM AF2: AlphaFold keeps waters as UNK residues (their O is an
        # atom37 name); a water is not part of the chain.
        continue
      pos = np.zeros((rc.atom_type_num, 3), np.float32)
      mask = np.zeros(rc.atom_type_num, np.float32)
      b_factors = np.zeros(rc.atom_type_num, np.float32)
      for atom in res:
        if atom.name in rc.atom_order:
          j = rc.atom_order[atom.name]
          pos[j], mask[j], b_factors[j] = atom.coord, 1.0, atom.bfactor
      if not mask.any():
        continue  # ligands, nucleotides: no atom37 atom
      if icode != ' ':
        raise InputError(f'{source} has insertion code {icode!r} at chain {chain.id} residue '
                         f'{number}; renumber the residues without insertion codes')
      aatype = rc.restype_order.get(rc.restype_3to1.get(res.get_resname(), 'X'),
                                    rc.unk_restype_index)
      rows.append((pos, mask, aatype, number, b_factors))
    if rows:
      chains[chain.id] = chains.get(chain.id, []) + rows
  if not chains:
    raise InputError(f'{source} has no protein atoms; pass a protein structure')
  if chain_id is None:
    if len(chains) > 1:
      raise InputError(f'{source} has chains {sorted(chains)}; pass chain_id= one of them')
    chain_id = next(iter(chains))
  if chain_id not in chains:
    raise InputError(f'chain_id={chain_id!r} is not a protein chain of {source}; its '
                     f'chains are {sorted(chains)}')
  pos, mask, aatype, number, b_factors = zip(*chains[chain_id])
  return Protein(atom_positions=np.stack(pos), atom_mask=np.stack(mask),
                 aatype=np.array(aatype, np.int32), residue_index=np.array(number, np.int32),
                 b_factors=np.stack(b_factors), chain_id=chain_id)


_ATOM_SITE_COLUMNS = (
    'group_PDB', 'id', 'type_symbol', 'label_atom_id', 'label_alt_id', 'label_comp_id',
    'label_asym_id', 'label_entity_id', 'label_seq_id', 'pdbx_PDB_ins_code', 'Cartn_x',
    'Cartn_y', 'Cartn_z', 'occupancy', 'B_iso_or_equiv', 'auth_seq_id', 'auth_comp_id',
    'auth_asym_id', 'auth_atom_id', 'pdbx_PDB_model_num')


def to_mmcif(prot: Protein, *, model_name: str = 'af_jax') -> str:
  """mmCIF text of one chain: entity, sequence and atom records, pLDDT/B-factor in
  B_iso_or_equiv.

  SEQRES (`_entity_poly_seq`) lists the chain's residues in order, numbered from
  1 (`label_seq_id`); `residue_index` becomes the author numbering (`auth_seq_id`).

  Args:
    prot: the chain.
    model_name: data block and entry name (whitespace becomes '_').

  Returns:
    The file's text.
  """
  name = re.sub(r'\s+', '_', model_name.strip()) or 'af_jax'
  chain = prot.chain_id or 'A'
  res_names = [rc.resnames[int(a)] if 0 <= int(a) < len(rc.resnames) else rc.unk_restype
               for a in np.asarray(prot.aatype)]
  lines = [f'data_{name}', '#', f'_entry.id {name}', '#',
           '_entity.id 1', '_entity.type polymer', '#',
           '_entity_poly.entity_id 1', '_entity_poly.type polypeptide(L)',
           f'_entity_poly.pdbx_strand_id {chain}', '#',
           'loop_', '_entity_poly_seq.entity_id', '_entity_poly_seq.num',
           '_entity_poly_seq.mon_id', '_entity_poly_seq.hetero']
  lines += [f'1 {i + 1} {r} n' for i, r in enumerate(res_names)]
  lines += ['#', 'loop_', '_chem_comp.id', '_chem_comp.type']
  lines += [f"{r} 'L-peptide linking'" for r in sorted(set(res_names))]
  lines += ['#', 'loop_', '_struct_asym.id', '_struct_asym.entity_id', f'{chain} 1', '#',
            'loop_'] + [f'_atom_site.{c}' for c in _ATOM_SITE_COLUMNS]
  serial = 1
  for i, res_name in enumerate(res_names):
    number = int(prot.residue_index[i])
    for j, atom in enumerate(rc.atom_types):
      if prot.atom_mask[i, j] < 0.5:
        continue
      x, y, z = (float(v) for v in prot.atom_positions[i, j])
      lines.append(f'ATOM {serial} {atom[0]} {atom} . {res_name} {chain} 1 {i + 1} ? '
                   f'{x:.3f} {y:.3f} {z:.3f} 1.00 {float(prot.b_factors[i, j]):.2f} '
                   f'{number} {res_name} {chain} {atom} 1')
      serial += 1
  lines.append('#')
  return '\n'.join(lines) + '\n'
