"""Protein readers agree with AlphaFold's; PDB/mmCIF text reads back in biopython and gemmi."""

import gzip
import io

import gemmi
import numpy as np
import pytest
from alphafold.common import protein as ref_protein
from Bio.PDB import MMCIFParser, PDBParser

from af_jax.common import protein
from af_jax.common import residue_constants as rc
from af_jax.errors import InputError
from tests.data.shared_data import CHAIN_2Q2K, SHARED_DATA, TEMPLATE_FIXTURE


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


# ---------------------------------------------------------------------------
# Readers against AlphaFold's, writers read back by biopython and gemmi.

_PDBS = SHARED_DATA / 'structures_only' / 'alphafold2_testdata'


def _without_waters(text):
  # AlphaFold keeps waters as UNK residues; af_jax drops them. Compare the rest.
  return '\n'.join(line for line in text.splitlines()
                   if not (line.startswith('HETATM') and ' HOH ' in line))


def _assert_same_protein(ours, ref):
  np.testing.assert_array_equal(ours.aatype, ref.aatype)
  np.testing.assert_array_equal(ours.residue_index, ref.residue_index)
  np.testing.assert_array_equal(ours.atom_mask, ref.atom_mask)
  np.testing.assert_array_equal(ours.atom_positions, ref.atom_positions.astype(np.float32))
  np.testing.assert_allclose(ours.b_factors, ref.b_factors, atol=1e-4)


@pytest.mark.parametrize('name,chain', [('2rbg', 'A'), ('2rbg', 'B'), ('5nmu', 'C'),
                                        ('glucagon', None)])
def test_from_pdb_string_matches_alphafold(name, chain):
  text = (_PDBS / f'{name}.pdb').read_text()
  ours = protein.from_pdb_string(text, chain)
  ref = ref_protein.from_pdb_string(_without_waters(text), chain)
  _assert_same_protein(ours, ref)
  assert ours.chain_id == (chain or 'A')


@pytest.mark.parametrize('path,chain', [(CHAIN_2Q2K / '2q2k.cif', 'B'),
                                        (TEMPLATE_FIXTURE / 'template_mmcifs' / '3u8v.cif', 'A'),
                                        (TEMPLATE_FIXTURE / 'template_mmcifs' / '4zey.cif', None)])
def test_from_mmcif_string_matches_alphafold(path, chain):
  text = path.read_text()
  ours = protein.from_mmcif_string(text, chain)
  ref = ref_protein.from_mmcif_string(_without_waters(text), chain)
  _assert_same_protein(ours, ref)


def test_reader_errors_name_the_problem():
  with pytest.raises(InputError, match=r"chains \['A', 'B'\]; pass chain_id"):
    protein.from_pdb_string((_PDBS / '2rbg.pdb').read_text())
  with pytest.raises(InputError, match=r"chain_id='Z'.*\['A'\]"):
    protein.from_pdb_string((_PDBS / 'glucagon.pdb').read_text(), chain_id='Z')
  with pytest.raises(InputError, match='insertion code'):
    text = (_PDBS / 'glucagon.pdb').read_text().splitlines()
    text = [line[:26] + 'A' + line[27:] if line.startswith('ATOM') and line[22:26] == '   5'
            else line for line in text]
    protein.from_pdb_string('\n'.join(text))
  with gzip.open(TEMPLATE_FIXTURE / 'template_mmcifs' / '1psm.cif.gz', 'rt') as f:
    nmr = f.read()
  with pytest.raises(InputError, match='20 models'):
    protein.from_mmcif_string(nmr)
  with pytest.raises(InputError, match='mmCIF'):
    protein.from_mmcif_string('not a cif')


@pytest.fixture(scope='module')
def predicted():
  """A real chain with pLDDT-like B-factors that differ per residue."""
  prot = protein.from_pdb_string((_PDBS / '5nmu.pdb').read_text(), 'B')
  plddt = np.linspace(20.0, 95.5, len(prot.aatype))
  return protein.Protein(atom_positions=prot.atom_positions, atom_mask=prot.atom_mask,
                         aatype=prot.aatype, residue_index=prot.residue_index,
                         b_factors=np.repeat(plddt[:, None], 37, 1) * prot.atom_mask,
                         chain_id='B')


def _atoms_biopython(structure):
  return {(r.get_parent().id, r.id[1], r.get_resname(), a.get_id()):
          (np.round(a.coord.astype(np.float64), 3), round(float(a.bfactor), 2))
          for r in structure.get_residues() for a in r}


def _atoms_gemmi(structure):
  return {(ch.name, r.seqid.num, r.name, a.name):
          (np.round(np.array([a.pos.x, a.pos.y, a.pos.z]), 3), round(a.b_iso, 2))
          for ch in structure[0] for r in ch for a in r}


def _expected_atoms(prot):
  atoms = {}
  for i, a in enumerate(prot.aatype):
    for j, name in enumerate(rc.atom_types):
      if prot.atom_mask[i, j]:
        atoms[(prot.chain_id, int(prot.residue_index[i]), rc.resnames[a], name)] = (
            np.round(prot.atom_positions[i, j].astype(np.float64), 3),
            round(float(prot.b_factors[i, j]), 2))
  return atoms


@pytest.mark.parametrize('writer', ['pdb', 'mmcif'])
def test_writers_read_back_by_biopython_and_gemmi(predicted, writer):
  if writer == 'pdb':
    text = protein.to_pdb(predicted)
    bio = PDBParser(QUIET=True).get_structure('x', io.StringIO(text))
    gem = gemmi.read_pdb_string(text)
  else:
    text = protein.to_mmcif(predicted, model_name='5nmu B model')
    bio = MMCIFParser(QUIET=True).get_structure('x', io.StringIO(text))
    gem = gemmi.make_structure_from_block(gemmi.cif.read_string(text).sole_block())
    assert gemmi.cif.read_string(text).sole_block().name == '5nmu_B_model'
  expected = _expected_atoms(predicted)
  for atoms in (_atoms_biopython(bio), _atoms_gemmi(gem)):
    assert atoms.keys() == expected.keys()
    for key, (xyz, b) in expected.items():
      np.testing.assert_allclose(atoms[key][0], xyz, atol=1.1e-3, err_msg=str(key))
      assert abs(atoms[key][1] - b) <= 0.011, key
  if writer == 'mmcif':
    back = protein.from_mmcif_string(text)
    np.testing.assert_allclose(back.atom_positions, predicted.atom_positions, atol=5e-4)
    np.testing.assert_array_equal(back.aatype, predicted.aatype)
    np.testing.assert_array_equal(back.residue_index, predicted.residue_index)
    seq = gemmi.make_structure_from_block(gemmi.cif.read_string(text).sole_block())
    assert [e.full_sequence for e in seq.entities][0] == [rc.resnames[a] for a in
                                                           predicted.aatype]
