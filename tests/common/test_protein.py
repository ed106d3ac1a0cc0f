"""PDB text that biopython reads back to the same atoms and coordinates."""

import io

import numpy as np
from Bio.PDB import PDBParser

from af_jax.common import protein
from af_jax.common import residue_constants as rc


def test_pdb_round_trip_through_biopython():
  rng = np.random.default_rng(0)
  aatype = np.array([0, 7, 13, 20, 4])
  mask = rc.STANDARD_ATOM_MASK[aatype].astype(np.float32)
  mask[3, :3] = 1.0  # an unknown residue with its backbone
  pos = rng.normal(size=(5, 37, 3)).astype(np.float32) * 20
  plddt = rng.uniform(0, 100, 5)
  prot = protein.Protein(atom_positions=pos, atom_mask=mask, aatype=aatype,
                         residue_index=np.arange(1, 6), b_factors=np.repeat(plddt[:, None], 37, 1))
  text = protein.to_pdb(prot)
  structure = PDBParser(QUIET=True).get_structure('x', io.StringIO(text))
  residues = list(structure.get_residues())
  assert [r.get_resname() for r in residues] == [rc.resnames[a] for a in aatype]
  for i, res in enumerate(residues):
    names = [a for a, m in zip(rc.atom_types, mask[i]) if m]
    assert sorted(a.get_id() for a in res) == sorted(names)
    for atom in res:
      j = rc.atom_order[atom.get_id()]
      np.testing.assert_allclose(atom.coord, pos[i, j], atol=1e-3)
      assert abs(atom.bfactor - plddt[i]) < 0.01
