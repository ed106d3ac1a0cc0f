"""Protein structures as atom37 arrays, and their PDB text.

The data-pipeline issue extends this with mmCIF and readers; the PDB writer is
here now so that predictions can be written and inspected.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from af_jax.common import residue_constants as rc


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
