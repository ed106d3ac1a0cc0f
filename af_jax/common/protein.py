"""Protein structures as atom37 arrays, read from and written to PDB and mmCIF.

Readers go through biopython, as AlphaFold's do, so that altloc choice and atom
naming agree with it; writers emit the text themselves. A Protein holds one chain
or several (a complex), each residue tagged with its chain as in AlphaFold's
protein.Protein; the readers return one chain, join_chains puts chains together.
"""

from __future__ import annotations

import dataclasses
import io
import re
from collections.abc import Sequence

import numpy as np
from Bio.PDB import MMCIFParser, PDBParser

from af_jax.common import mmcif_metadata as mm
from af_jax.common import residue_constants as rc
from af_jax.errors import InputError

# AlphaFold's PDB chain-id alphabet (protein.PDB_CHAIN_IDS): one character per chain.
PDB_CHAIN_IDS = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789'
PDB_MAX_CHAINS = len(PDB_CHAIN_IDS)  # 62


def pdb_chain_ids(num_chains: int) -> tuple[str, ...]:
  """'A', 'B', ... for `num_chains` chains, in AlphaFold's PDB alphabet (at most 62)."""
  if num_chains > PDB_MAX_CHAINS:
    raise InputError(f'{num_chains} chains: the PDB format names at most {PDB_MAX_CHAINS} '
                     f'({PDB_CHAIN_IDS}); fold at most {PDB_MAX_CHAINS} chains, or pass '
                     'chain_ids= and write mmCIF only')
  return tuple(PDB_CHAIN_IDS[:num_chains])


@dataclasses.dataclass(frozen=True)
class Protein:
  """Chains in atom37 form; one chain unless `chain_index` says otherwise.

  Attributes:
    atom_positions: [N_res, 37, 3] in Å.
    atom_mask: [N_res, 37], 1 where the atom exists (and was predicted/observed).
    aatype: [N_res] residue type indices (restypes order, 20 = X).
    residue_index: [N_res] residue numbers as written to the file (per chain).
    b_factors: [N_res, 37] (pLDDT for predictions).
    chain_id: the chain's name for one chain; for several, the first chain's name
      (always chain_ids[0] after construction).
    chain_index: [N_res] 0-based index into chain_ids of each residue's chain, as
      AlphaFold's Protein.chain_index; None (the default) puts every residue in
      chain 0. Each chain's residues are one contiguous run; files list the chains
      in the order they appear.
    chain_ids: the chains' names, indexed by chain_index; None (the default) is
      (chain_id,) for one chain and 'A', 'B', ... (PDB_CHAIN_IDS) for several.
  """

  atom_positions: np.ndarray
  atom_mask: np.ndarray
  aatype: np.ndarray
  residue_index: np.ndarray
  b_factors: np.ndarray
  chain_id: str | None = None
  chain_index: np.ndarray | None = None
  chain_ids: tuple[str, ...] | None = None

  def __post_init__(self):
    num_res = len(self.aatype)
    if self.chain_index is None:
      index = np.zeros(num_res, np.int32)
    else:
      index = np.asarray(self.chain_index).astype(np.int32)
    if index.shape != (num_res,):
      raise InputError(f'chain_index has shape {index.shape}; pass one index per residue '
                       f'({num_res})')
    num_chains = int(index.max()) + 1 if num_res else 1
    if self.chain_ids is None:
      if num_chains > 1 and self.chain_id is not None:
        raise InputError(f'chain_id={self.chain_id!r} names one chain of {num_chains}; pass '
                         'chain_ids= (one name per chain) instead')
      ids = (self.chain_id or 'A',) if num_chains == 1 else pdb_chain_ids(num_chains)
    else:
      ids = tuple(self.chain_ids)
    if not ids or len(set(ids)) != len(ids) or not all(ids):
      raise InputError(f'chain_ids={ids} must be distinct, non-empty names')
    if self.chain_id is not None and self.chain_id != ids[0]:
      raise InputError(f'chain_id={self.chain_id!r} differs from chain_ids[0]={ids[0]!r}; '
                       'pass one of them')
    if num_res and (index.min() < 0 or index.max() >= len(ids)):
      raise InputError(f'chain_index runs over {sorted(set(index.tolist()))}; each must index '
                       f'chain_ids={ids}')
    starts = index[np.r_[0, np.flatnonzero(np.diff(index)) + 1]] if num_res else index
    if len(set(starts.tolist())) != len(starts):
      raise InputError(f'chain_index visits a chain twice ({starts.tolist()} by run); put '
                       'each chain\'s residues together')
    object.__setattr__(self, 'chain_index', index)
    object.__setattr__(self, 'chain_ids', ids)
    object.__setattr__(self, 'chain_id', ids[0])


def chain_runs(prot: Protein) -> list[tuple[int, int, int]]:
  """(chain index, start, end) of each chain's residues [start, end), in file order."""
  index = np.asarray(prot.chain_index)
  bounds = [0, *(np.flatnonzero(np.diff(index)) + 1).tolist(), len(index)]
  return [(int(index[a]), a, b) for a, b in zip(bounds[:-1], bounds[1:]) if b > a]


def split_chains(prot: Protein) -> list[Protein]:
  """One single-chain Protein per chain, in file order (e.g. for relax.relax)."""
  return [Protein(atom_positions=prot.atom_positions[a:b], atom_mask=prot.atom_mask[a:b],
                  aatype=prot.aatype[a:b], residue_index=prot.residue_index[a:b],
                  b_factors=prot.b_factors[a:b], chain_id=prot.chain_ids[c])
          for c, a, b in chain_runs(prot)]


def join_chains(chains: Sequence[Protein]) -> Protein:
  """The chains as one Protein, in the given order, keeping their names."""
  if not chains:
    raise InputError('join_chains needs at least one chain')
  index, ids = [], []
  for chain in chains:
    index.append(np.asarray(chain.chain_index) + len(ids))
    ids += chain.chain_ids
  cat = lambda name: np.concatenate([np.asarray(getattr(c, name)) for c in chains])
  return Protein(atom_positions=cat('atom_positions'), atom_mask=cat('atom_mask'),
                 aatype=cat('aatype'), residue_index=cat('residue_index'),
                 b_factors=cat('b_factors'), chain_index=np.concatenate(index),
                 chain_ids=tuple(ids))


def to_pdb(prot: Protein) -> str:
  """PDB-format text as AlphaFold's protein.to_pdb writes it: MODEL 1, ATOM records,
  TER after each chain, ENDMDL, END, every record padded to 80 columns; pLDDT/B-factor
  in its column. Chains are named by chain_ids, which must be single characters.

  Raises:
    InputError: more than PDB_MAX_CHAINS chains, or a chain name longer than one
      character (mmCIF has neither limit).
  """
  runs = chain_runs(prot)
  if len(runs) > PDB_MAX_CHAINS or any(len(prot.chain_ids[c]) != 1 for c, _, _ in runs):
    raise InputError(f'{len(runs)} chains named {list(prot.chain_ids)}: PDB files hold at '
                     f'most {PDB_MAX_CHAINS} chains with one-character names; write mmCIF '
                     'instead')
  lines = ['MODEL     1']
  serial = 1
  for c, start, end in runs or [(0, 0, 0)]:
    chain_id = prot.chain_ids[c]
    res_name = 'UNK'
    last_res = 0
    for i in range(start, end):
      restype = int(prot.aatype[i])
      res_name = rc.resnames[restype] if restype < len(rc.resnames) else 'UNK'
      last_res = int(prot.residue_index[i])
      for j, atom in enumerate(rc.atom_types):
        if prot.atom_mask[i, j] < 0.5:
          continue
        x, y, z = (float(v) for v in prot.atom_positions[i, j])
        # Atom names of 1-3 characters start in column 14, as PDB files do.
        name = atom if len(atom) == 4 else f' {atom}'
        lines.append(
            f'ATOM  {serial:>5} {name:<4} {res_name:>3} {chain_id:>1}{last_res:>4}    '
            f'{x:>8.3f}{y:>8.3f}{z:>8.3f}{1.00:>6.2f}{float(prot.b_factors[i, j]):>6.2f}'
            f'          {atom[0]:>2}  ')
        serial += 1
    lines.append(f'TER   {serial:>5}      {res_name:>3} {chain_id:>1}{last_res:>4}')
    serial += 1  # TER takes a serial number, as in AlphaFold's files.
  lines += ['ENDMDL', 'END']
  return '\n'.join(line.ljust(80) for line in lines) + '\n'


def from_pdb_string(text: str, chain_id: str | None = None) -> Protein:
  """Reads one chain from PDB text.

  Non-standard residues become UNK (aatype 20) and keep only their atom37-named
  atoms; atoms outside atom37 are dropped, as in AlphaFold. Waters (HOH, WAT) are
  dropped, where AlphaFold keeps each as an UNK residue holding one O: solvent is not
  part of the chain, and as residues the waters would lengthen its sequence.

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

  Residues and waters are read as by from_pdb_string.

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
        # atom37 name), adding one UNK per water to the chain's sequence; a water is
        # not part of the chain.
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


def to_mmcif(prot: Protein, *, model_name: str = 'af_jax', target_name: str | None = None,
             model_type: str = 'Monomer') -> str:
  """mmCIF text of the chains with AlphaFold's ModelCIF metadata; pLDDT/B-factor in
  B_iso_or_equiv and as the model's quality metrics.

  Chains with the same sequence share one entity (a homomer's copies), as in PDB
  entries; entities are numbered from 1 in order of first appearance. SEQRES
  (`_entity_poly_seq`) lists each entity's residues in order, numbered from 1
  (`label_seq_id`); `residue_index` becomes the author numbering (`auth_seq_id`).
  Chain names are both `label_asym_id` and `auth_asym_id`.

  The file names the target (data block, `_entry.id`, `_struct.title`, each entity's
  `pdbx_description`) and the prediction (`_ma_model_list.model_name`). The B-factors
  are read as pLDDT: a residue's (`_ma_qa_metric_local`) is the mean over its atoms,
  the model's (`_ma_qa_metric_global`) the mean over residues.

  Args:
    prot: the chains.
    model_name: the prediction (e.g. model_1_ptm_pred_0); names the entry too when
      target_name is None.
    target_name: what was predicted (the input's name); whitespace becomes '_' in the
      entry's name.
    model_type: 'Monomer' or 'Multimer', as AlphaFold's model type.

  Returns:
    The file's text.
  """
  # DIFFERS FROM AF2: AlphaFold names the entry after the model's index ('0', '1', ...);
  # here the target names it, so that a file read on its own says what it models.
  target = (target_name or model_name).strip() or 'af_jax'
  entry = re.sub(r'\s+', '_', target)
  res_names = [rc.resnames[int(a)] if 0 <= int(a) < len(rc.resnames) else rc.unk_restype
               for a in np.asarray(prot.aatype)]
  runs = chain_runs(prot) or [(0, 0, 0)]
  # DIFFERS FROM AF2: AlphaFold gives each chain its own entity, numbered from 0; here the
  # copies of a sequence share one, numbered from 1, as in PDB entries. AlphaFold also
  # numbers label_seq_id as the author does and fills SEQRES from 1 with UNK over
  # numbering gaps; here SEQRES holds the chain's residues and label_seq_id counts them
  # from 1 (entity_poly_seq.num must be positive, and a homomer's copies keep one SEQRES
  # whatever their numbering). Predictions are numbered 1..N per chain: the same file.
  # Chains keep their names (AlphaFold's are A..Z, AA, BA, ... by chain index).
  entities: dict[tuple[str, ...], int] = {}  # sequence -> entity id
  chain_entity = []  # (chain name, entity id, start, end) in file order
  for c, start, end in runs:
    entity = entities.setdefault(tuple(res_names[start:end]), len(entities) + 1)
    chain_entity.append((prot.chain_ids[c], entity, start, end))
  strands = {e: ','.join(ch for ch, ce, _, _ in chain_entity if ce == e)
             for e in entities.values()}
  descriptions = {e: target if len(entities) == 1 else f'{target} (chains {strands[e]})'
                  for e in entities.values()}

  mask = np.asarray(prot.atom_mask) >= 0.5
  counts = mask.sum(axis=1)
  sums = np.where(mask, np.asarray(prot.b_factors, np.float64), 0.0).sum(axis=1)
  plddt = sums / np.maximum(counts, 1)
  local = [(chain, i - start + 1, res_names[i], float(plddt[i]))
           for chain, _, start, end in chain_entity for i in range(start, end) if counts[i]]
  # DIFFERS FROM AF2: AlphaFold's global pLDDT is the mean over atoms, which weighs a
  # residue by its size; here it is the mean over residues: the mean pLDDT that ranks
  # monomers (ranking_debug.json) and the mean of the per-residue values beside it.
  global_plddt = float(plddt[counts > 0].mean()) if counts.any() else None

  lines = [f'data_{entry}', '#']
  lines += mm.category('_entry', ('id',), [(entry,)])
  lines += mm.category('_struct', ('entry_id', 'title'), [
      (entry, f'AlphaFold {model_type} prediction for {target} ({model_name})')])
  lines += mm.category('_entity', ('id', 'type', 'pdbx_description'),
                       [(e, 'polymer', descriptions[e]) for e in entities.values()])
  lines += mm.category('_entity_poly', ('entity_id', 'type', 'pdbx_strand_id'),
                       [(e, 'polypeptide(L)', strands[e]) for e in entities.values()])
  lines += mm.category('_entity_poly_seq', ('entity_id', 'num', 'mon_id', 'hetero'),
                       [(e, i + 1, r, 'n') for seq, e in entities.items()
                        for i, r in enumerate(seq)])
  # DIFFERS FROM AF2: AlphaFold lists the 20 standard residues, used or not, and never UNK,
  # which its SEQRES may hold; here each residue the file uses, as in PDB entries.
  lines += mm.category('_chem_comp', ('id', 'type', 'name'),
                       [(r, mm.chem_comp_type(r), mm.CHEM_COMP_NAMES[r])
                        for r in sorted(set(res_names))])
  lines += mm.category('_struct_asym', ('id', 'entity_id'),
                       [(chain, entity) for chain, entity, _, _ in chain_entity])
  lines += mm.model_metadata(
      model_name=model_name, model_type=model_type, entity_ids=list(entities.values()),
      asym_entities=[(chain, entity) for chain, entity, _, _ in chain_entity],
      global_plddt=global_plddt, local_plddt=local,
      type_symbols=[atom[0] for j, atom in enumerate(rc.atom_types) if mask[:, j].any()])
  lines += ['loop_'] + [f'_atom_site.{c}' for c in _ATOM_SITE_COLUMNS]
  serial = 1
  for chain, entity, start, end in chain_entity:
    chain = mm.cif_value(chain)
    for i in range(start, end):
      res_name = res_names[i]
      number = int(prot.residue_index[i])
      for j, atom in enumerate(rc.atom_types):
        if not mask[i, j]:
          continue
        x, y, z = (float(v) for v in prot.atom_positions[i, j])
        lines.append(f'ATOM {serial} {atom[0]} {atom} . {res_name} {chain} {entity} '
                     f'{i - start + 1} . {x:.3f} {y:.3f} {z:.3f} 1.00 '
                     f'{float(prot.b_factors[i, j]):.2f} {number} {res_name} {chain} {atom} 1')
        serial += 1
  lines.append('#')
  return '\n'.join(lines) + '\n'
