"""Atom37 chains to an OpenMM topology with every heavy atom and hydrogen, and back.

pdbfixer adds what Amber needs and a prediction (or a partial experimental model)
lacks: missing heavy atoms, terminal OXT and hydrogens at pH 7. Existing atoms keep
their coordinates. Only this module and amber.py import OpenMM.
"""

from __future__ import annotations

import dataclasses
import io
import random
from collections.abc import Sequence

import numpy as np
import openmm
import pdbfixer
from openmm import app, unit

from af_jax.common import protein
from af_jax.common import residue_constants as rc
from af_jax.errors import RelaxError


@dataclasses.dataclass(frozen=True)
class Fixed:
  """A structure ready for Amber.

  Attributes:
    topology: OpenMM topology; one OpenMM chain per input chain segment, residues in
      input order (residue.index is the index over all chains).
    positions: [N_atoms, 3] in Å, hydrogens included.
    added_heavy_atoms: heavy atoms pdbfixer built (OXT included).
  """

  topology: app.Topology
  positions: np.ndarray
  added_heavy_atoms: int


def check_chains(chains: Sequence[protein.Protein]) -> None:
  """Reject what Amber cannot template, naming the residue, before any OpenMM work.

  Raises:
    RelaxError: no chains, repeated chain ids, a residue without atoms, an unknown
      residue (UNK), or a one-residue chain segment.
  """
  if not chains:
    raise RelaxError('nothing to relax: pass at least one chain')
  ids = [c.chain_id for c in chains]
  if len(set(ids)) != len(ids) or any(len(i) != 1 for i in ids):
    raise RelaxError(f'chain ids {ids} must be distinct single characters (they name the '
                     'chains of the relaxed PDB file)')
  for chain in chains:
    mask = np.asarray(chain.atom_mask) > 0.5
    for i, aatype in enumerate(np.asarray(chain.aatype)):
      where = f'chain {chain.chain_id} residue {int(chain.residue_index[i])}'
      if not mask[i].any():
        raise RelaxError(f'{where} has no atoms; Amber relaxation needs every residue to '
                         'have at least its backbone (drop the residue or model it)')
      if int(aatype) >= rc.restype_num:
        raise RelaxError(f'{where} is an unknown residue (UNK); Amber has no template for '
                         'it: relax only chains of the 20 standard amino acids')
    for start, end in segments(chain.residue_index):
      if end - start == 1:
        raise RelaxError(f'chain {chain.chain_id} residue {int(chain.residue_index[start])} '
                         'is a one-residue segment (numbering gaps on both sides); Amber has '
                         'no template for a residue that is both N- and C-terminal')


def segments(residue_index: np.ndarray) -> list[tuple[int, int]]:
  """[start, end) runs of consecutive residue numbers: a numbering gap is a chain break."""
  breaks = np.flatnonzero(np.diff(np.asarray(residue_index)) != 1) + 1
  bounds = [0, *breaks.tolist(), len(residue_index)]
  return list(zip(bounds[:-1], bounds[1:]))


def chains_to_pdb(chains: Sequence[protein.Protein]) -> str:
  """PDB text of the chains' present atoms, for pdbfixer.

  Each chain ends with TER, and so does each segment before a numbering gap, so
  that OpenMM makes no peptide bond across a chain break.
  """
  # DIFFERS FROM AF2: AlphaFold writes one TER per chain, so OpenMM bonds residues on both
  # sides of a numbering gap and pulls them together; a prediction has no gaps, a partial
  # experimental model may.
  lines, serial = [], 1
  for chain in chains:
    for start, end in segments(chain.residue_index):
      for i in range(start, end):
        name = rc.resnames[int(chain.aatype[i])]
        number = int(chain.residue_index[i])
        for j, atom in enumerate(rc.atom_types):
          if chain.atom_mask[i, j] < 0.5:
            continue
          x, y, z = (float(v) for v in chain.atom_positions[i, j])
          lines.append(f'ATOM  {serial:>5} {atom if len(atom) == 4 else " " + atom:<4} '
                       f'{name:>3} {chain.chain_id}{number:>4}    {x:>8.3f}{y:>8.3f}{z:>8.3f}'
                       f'{1.0:>6.2f}{0.0:>6.2f}          {atom[0]:>2}')
          serial += 1
      lines.append(f'TER   {serial:>5}      {name:>3} {chain.chain_id}{number:>4}')
      serial += 1
  return '\n'.join(lines + ['END']) + '\n'


def fix(chains: Sequence[protein.Protein], platform: str = 'CPU') -> Fixed:
  """Add missing heavy atoms and hydrogens (pH 7) with pdbfixer, as AlphaFold does.

  Args:
    chains: the structure, as checked by check_chains.
    platform: OpenMM platform for pdbfixer's small minimisations (otherwise OpenMM picks
      the fastest, a GPU even when the relaxation was asked to run on the CPU).

  Raises:
    RelaxError: pdbfixer could not build the residues.
  """
  try:
    fixer = pdbfixer.PDBFixer(pdbfile=io.StringIO(chains_to_pdb(chains)),
                              platform=openmm.Platform.getPlatformByName(platform))
    # No SEQRES is written, so no residue is found missing: the residue set is kept.
    fixer.findMissingResidues()
    fixer.findMissingAtoms()
    added = sum(len(a) for a in fixer.missingAtoms.values())
    added += sum(len(a) for a in fixer.missingTerminals.values())
    # DIFFERS FROM AF2: AlphaFold passes seed=0, which OpenMM reads as "pick a new seed": the
    # atoms pdbfixer builds (by Langevin dynamics when they crowd) then vary from run to run.
    fixer.addMissingAtoms(seed=1)
    # OpenMM's Modeller starts hydrogens at positions from Python's global `random`, then
    # minimises: seed it (and put its state back) so the same input gives the same output.
    state = random.getstate()
    random.seed(0)
    try:
      fixer.addMissingHydrogens(pH=7.0)
    finally:
      random.setstate(state)
  except Exception as e:  # pdbfixer raises bare Exception as well as ValueError and others
    raise RelaxError(f'pdbfixer could not complete the structure: {e}') from None
  positions = np.asarray(fixer.positions.value_in_unit(unit.angstroms), np.float64)
  return Fixed(topology=fixer.topology, positions=positions, added_heavy_atoms=added)


def to_chains(topology: app.Topology, positions: np.ndarray,
              like: Sequence[protein.Protein]) -> tuple[protein.Protein, ...]:
  """Heavy atoms (OXT included) of an OpenMM structure as atom37 chains shaped like `like`.

  Args:
    topology: the structure's topology (segments of one chain share its id).
    positions: [N_atoms, 3] in Å.
    like: the input chains; residue types, numbers and B-factors come from them.

  Returns:
    One Protein per input chain; atom_mask marks the atoms the topology has.
  """
  residues = list(topology.residues())
  total = sum(len(c.aatype) for c in like)
  if len(residues) != total:
    raise RelaxError(f'the relaxed structure has {len(residues)} residues, the input {total}')
  out, k = [], 0
  for chain in like:
    n = len(chain.aatype)
    pos = np.zeros((n, rc.atom_type_num, 3), np.float32)
    mask = np.zeros((n, rc.atom_type_num), np.float32)
    for i in range(n):
      res = residues[k + i]
      expected = rc.resnames[int(chain.aatype[i])]
      if res.name != expected or res.chain.id != chain.chain_id:
        raise RelaxError(f'relaxed residue {res.chain.id}{res.name}{res.id} does not match '
                         f'input residue {chain.chain_id}{expected}'
                         f'{int(chain.residue_index[i])}')
      for atom in res.atoms():
        j = rc.atom_order.get(atom.name)
        if j is not None and atom.element is not None and atom.element.symbol != 'H':
          pos[i, j], mask[i, j] = positions[atom.index], 1.0
    k += n
    b = residue_b_factors(chain)
    out.append(protein.Protein(atom_positions=pos, atom_mask=mask,
                               aatype=np.asarray(chain.aatype),
                               residue_index=np.asarray(chain.residue_index),
                               b_factors=b[:, None] * mask, chain_id=chain.chain_id))
  return tuple(out)


def residue_b_factors(chain: protein.Protein) -> np.ndarray:
  """One B-factor per residue (pLDDT for predictions): CA's, else the residue's largest."""
  b = np.asarray(chain.b_factors, np.float32)
  ca = rc.atom_order['CA']
  has_ca = np.asarray(chain.atom_mask)[:, ca] > 0.5
  return np.where(has_ca, b[:, ca], b.max(axis=-1))


def to_pdb_with_hydrogens(topology: app.Topology, positions: np.ndarray,
                          b_factors: np.ndarray) -> str:
  """OpenMM's PDB text of the structure (hydrogens too), one B-factor per residue.

  Args:
    topology: the structure's topology.
    positions: [N_atoms, 3] in Å.
    b_factors: [N_res] over all chains in topology order (pLDDT, as AlphaFold writes it).
  """
  with io.StringIO() as f:
    app.PDBFile.writeFile(topology, positions * unit.angstroms, f, keepIds=True)
    text = f.getvalue()
  atoms = iter(topology.atoms())
  lines = []
  for line in text.splitlines():
    if line.startswith('REMARK'):
      continue  # OpenMM's version-and-date line: the same structure gives the same file
    if line.startswith(('ATOM  ', 'HETATM')):
      # writeFile writes one record per atom, in topology order.
      b = float(b_factors[next(atoms).residue.index])
      line = f'{line[:60]}{b:>6.2f}{line[66:]}'
    lines.append(line)
  return '\n'.join(lines) + '\n'
