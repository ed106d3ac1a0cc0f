"""Protein readers agree with AlphaFold's; PDB/mmCIF text reads back in biopython and gemmi."""

import dataclasses
import gzip
import io

import gemmi
import numpy as np
import pytest
from alphafold.common import protein as ref_protein
import modelcif.reader
from Bio.PDB import MMCIFParser, PDBParser
from Bio.PDB.MMCIF2Dict import MMCIF2Dict

from af_jax.common import mmcif_metadata, protein
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


def test_waters_are_dropped_where_alphafold_reads_them_as_unk():
  text = (_PDBS / '2rbg.pdb').read_text()
  ours = protein.from_pdb_string(text, 'A')
  ref = ref_protein.from_pdb_string(text, 'A')
  waters = len(ref.aatype) - len(ours.aatype)
  assert waters > 0
  _assert_same_protein(ours, ref_protein.from_pdb_string(_without_waters(text), 'A'))
  # AlphaFold's extra residues are the waters: UNK, each with an O alone.
  assert set(ref.aatype[-waters:].tolist()) == {rc.unk_restype_index}
  assert ref.atom_mask[-waters:].sum(1).tolist() == [1] * waters
  assert ref.atom_mask[-waters:, rc.atom_order['O']].all()


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


# ---------------------------------------------------------------------------
# Several chains: chain letters, TER per chain, per-chain numbering, entities.

def _complex(lengths=(5, 7, 5), same=(0, 2), first_numbers=(1, 1, 4), seed=2):
  """Random chains (standard atoms of random residues); chains `same` share a sequence."""
  rng = np.random.default_rng(seed)
  aatypes = [rng.integers(0, 20, n) for n in lengths]
  aatypes[same[1]] = aatypes[same[0]].copy()
  aatype = np.concatenate(aatypes)
  mask = rc.STANDARD_ATOM_MASK[aatype].astype(np.float32)
  n = len(aatype)
  plddt = rng.uniform(10, 99, n)
  return protein.Protein(
      atom_positions=(rng.normal(size=(n, 37, 3)) * 15 * mask[..., None]).astype(np.float32),
      atom_mask=mask,
      aatype=aatype,
      residue_index=np.concatenate([np.arange(f, f + k) for f, k in zip(first_numbers, lengths)]),
      b_factors=plddt[:, None] * mask,
      chain_index=np.repeat(np.arange(len(lengths)), lengths))


def test_protein_chain_defaults_and_checks():
  one = _protein_of(3)
  assert one.chain_id == 'A' and one.chain_ids == ('A',)
  np.testing.assert_array_equal(one.chain_index, [0, 0, 0])
  named = _protein_of(3, chain_id='B')
  assert named.chain_ids == ('B',) and named.chain_id == 'B'
  cplx = _complex()
  assert cplx.chain_ids == ('A', 'B', 'C') and cplx.chain_id == 'A'
  assert protein.pdb_chain_ids(62)[-1] == '9'
  with pytest.raises(InputError, match='at most 62'):
    protein.pdb_chain_ids(63)
  with pytest.raises(InputError, match='at most 62'):
    _protein_of(63, chain_index=np.arange(63))
  with pytest.raises(InputError, match='visits a chain twice'):
    _protein_of(3, chain_index=[0, 1, 0])
  with pytest.raises(InputError, match='chain_ids'):
    _protein_of(3, chain_index=[0, 1, 1], chain_id='B')
  with pytest.raises(InputError, match='index'):
    _protein_of(3, chain_index=[0, 1, 2], chain_ids=('A', 'B'))
  with pytest.raises(InputError, match='distinct'):
    _protein_of(2, chain_index=[0, 1], chain_ids=('A', 'A'))


def _protein_of(n, **chains):
  rng = np.random.default_rng(n)
  aatype = rng.integers(0, 20, n)
  mask = rc.STANDARD_ATOM_MASK[aatype].astype(np.float32)
  return protein.Protein(atom_positions=rng.normal(size=(n, 37, 3)).astype(np.float32),
                         atom_mask=mask, aatype=aatype, residue_index=np.arange(1, n + 1),
                         b_factors=rng.uniform(0, 100, (n, 37)) * mask, **chains)


def _reference(prot):
  """The same arrays as AlphaFold's Protein (chains named by index there: A, B, ...)."""
  return ref_protein.Protein(atom_positions=prot.atom_positions, atom_mask=prot.atom_mask,
                             aatype=prot.aatype, residue_index=prot.residue_index,
                             chain_index=prot.chain_index, b_factors=prot.b_factors)


def _pdb_cases():
  rng = np.random.default_rng(5)
  aatype = np.array([7, 0, 20, 13, 4, 18, 7])
  mask = rc.STANDARD_ATOM_MASK[aatype].astype(np.float32)
  mask[2, :3] = 1  # UNK with its backbone
  mask[4, 4:] = 0  # a residue missing its side chain
  n = len(aatype)
  monomer = protein.Protein(
      atom_positions=(rng.normal(size=(n, 37, 3)) * 40).astype(np.float32), atom_mask=mask,
      aatype=aatype, residue_index=np.array([-2, -1, 3, 4, 9, 10, 1000]),  # gaps
      b_factors=rng.uniform(0, 100, (n, 37)).astype(np.float32) * mask)  # per-atom values
  one_atom = np.zeros((1, 37), np.float32)
  one_atom[0, 1] = 1
  single = protein.Protein(atom_positions=np.full((1, 37, 3), -999.9994, np.float32),
                           atom_mask=one_atom, aatype=np.array([7]), residue_index=np.array([1]),
                           b_factors=np.full((1, 37), 87.125))
  return {'monomer': monomer, 'one_atom': single,
          'complex': _complex(first_numbers=(1, 3, 10)),
          'complex_with_gaps': _complex(lengths=(4, 6), same=(0, 0), first_numbers=(5, 1),
                                        seed=7)}


@pytest.mark.parametrize('case', ['monomer', 'one_atom', 'complex', 'complex_with_gaps'])
def test_pdb_text_is_alphafolds(case):
  prot = _pdb_cases()[case]
  if case == 'complex_with_gaps':  # a numbering gap inside each chain
    index = np.asarray(prot.residue_index).copy()
    index[2:4] += 10
    index[7:] += 3
    prot = dataclasses.replace(prot, residue_index=index)
  text = protein.to_pdb(prot)
  assert text.splitlines() == ref_protein.to_pdb(_reference(prot)).splitlines()
  assert text == ref_protein.to_pdb(_reference(prot))
  lines = text.splitlines()
  assert lines[0].rstrip() == 'MODEL     1' and [x.rstrip() for x in lines[-2:]] == [
      'ENDMDL', 'END']
  assert {len(line) for line in lines} == {80}
  bio = PDBParser(QUIET=True).get_structure('x', io.StringIO(text))
  gem = gemmi.read_pdb_string(text)
  assert len(bio) == 1 and len(gem) == 1
  expected = _expected_complex_atoms(prot)
  for atoms in (_atoms_biopython(bio), _atoms_gemmi(gem)):
    assert atoms.keys() == expected.keys()
    for key, (xyz, b) in expected.items():
      np.testing.assert_allclose(atoms[key][0], xyz, atol=1.1e-3, err_msg=str(key))
      assert abs(atoms[key][1] - b) <= 0.011, key


def test_join_chains_of_one_writes_the_same_files():
  prot = _pdb_cases()['one_atom']
  joined = protein.join_chains([prot])
  assert protein.to_pdb(joined) == protein.to_pdb(prot)
  assert protein.to_mmcif(joined, model_name='x') == protein.to_mmcif(prot, model_name='x')


def test_complex_pdb_has_chains_ter_and_per_chain_numbers():
  cplx = _complex()
  text = protein.to_pdb(cplx)
  records = text.splitlines()
  ter = [line.rstrip() for line in records if line.startswith('TER')]
  resname = lambda i: rc.resnames[cplx.aatype[i]]  # noqa: E731
  assert ter == [f'TER   {s:>5}      {resname(e)} {c}{n:>4}' for s, e, c, n in
                 ((int(cplx.atom_mask[:5].sum()) + 1, 4, 'A', 5),
                  (int(cplx.atom_mask[:12].sum()) + 2, 11, 'B', 7),
                  (int(cplx.atom_mask.sum()) + 3, 16, 'C', 8))]
  # Serial numbers run on through the TER records, as in AlphaFold's files.
  serials = [int(line[6:11]) for line in records if line[:4] in ('ATOM', 'TER ')]
  assert serials == list(range(1, len(serials) + 1))
  assert [line[21] for line in records if line.startswith('ATOM')] == [
      'ABC'[c] for c, m in zip(cplx.chain_index, cplx.atom_mask.sum(1)) for _ in range(int(m))]
  structure = PDBParser(QUIET=True).get_structure('x', io.StringIO(text))
  assert [ch.id for ch in structure[0]] == ['A', 'B', 'C']
  assert [[r.id[1] for r in ch] for ch in structure[0]] == [
      list(range(1, 6)), list(range(1, 8)), list(range(4, 9))]
  for chain, expected in zip(structure[0], protein.split_chains(cplx)):
    assert [r.get_resname() for r in chain] == [rc.resnames[a] for a in expected.aatype]
  assert _atoms_biopython(structure).keys() == _expected_complex_atoms(cplx).keys()


def _expected_complex_atoms(cplx):
  atoms = {}
  for chain in protein.split_chains(cplx):
    atoms.update(_expected_atoms(chain))
  return atoms


@pytest.mark.parametrize('writer', ['pdb', 'mmcif'])
def test_complex_round_trips_per_chain(writer):
  cplx = _complex()
  if writer == 'pdb':
    text, read = protein.to_pdb(cplx), protein.from_pdb_string
    bio = PDBParser(QUIET=True).get_structure('x', io.StringIO(text))
  else:
    text, read = protein.to_mmcif(cplx, model_name='cplx'), protein.from_mmcif_string
    bio = MMCIFParser(QUIET=True).get_structure('x', io.StringIO(text))
  expected = _expected_complex_atoms(cplx)
  atoms = _atoms_biopython(bio)
  assert atoms.keys() == expected.keys()
  for key, (xyz, b) in expected.items():
    np.testing.assert_allclose(atoms[key][0], xyz, atol=1.1e-3, err_msg=str(key))
    assert abs(atoms[key][1] - b) <= 0.011, key
  chains = [read(text, c) for c in ('A', 'B', 'C')]
  for back, chain in zip(chains, protein.split_chains(cplx)):
    assert back.chain_id == chain.chain_id
    np.testing.assert_array_equal(back.aatype, chain.aatype)
    np.testing.assert_array_equal(back.residue_index, chain.residue_index)
    np.testing.assert_array_equal(back.atom_mask, chain.atom_mask)
    np.testing.assert_allclose(back.atom_positions, chain.atom_positions, atol=5e-4)
    np.testing.assert_allclose(back.b_factors, chain.b_factors, atol=5e-3)
  joined = protein.join_chains(chains)
  assert joined.chain_ids == cplx.chain_ids
  np.testing.assert_array_equal(joined.chain_index, cplx.chain_index)
  # Written again, the read-back complex gives the same text.
  assert (protein.to_pdb(joined) if writer == 'pdb'
          else protein.to_mmcif(joined, model_name='cplx')) == text
  with pytest.raises(InputError, match=r"chains \['A', 'B', 'C'\]"):
    read(text)


def test_complex_mmcif_entities_and_asym_ids():
  cplx = _complex()  # chains A and C share a sequence
  text = protein.to_mmcif(cplx, model_name='cplx')
  block = gemmi.cif.read_string(text).sole_block()
  assert list(block.find_loop('_struct_asym.id')) == ['A', 'B', 'C']
  assert list(block.find_loop('_struct_asym.entity_id')) == ['1', '2', '1']
  assert list(block.find_loop('_entity_poly.pdbx_strand_id')) == ['A,C', 'B']
  table = block.find('_atom_site.', ['label_asym_id', 'auth_asym_id', 'label_entity_id',
                                     'label_seq_id', 'auth_seq_id'])
  rows = {(r[0], r[1], r[2], int(r[3]), int(r[4])) for r in table}
  assert {(r[0], r[2], r[3]) for r in rows} == {
      (c, e, i) for c, e, n in (('A', '1', 5), ('B', '2', 7), ('C', '1', 5))
      for i in range(1, n + 1)}
  assert all(r[0] == r[1] for r in rows)
  assert {r[4] for r in rows if r[0] == 'C'} == set(range(4, 9))
  structure = gemmi.make_structure_from_block(block)
  entities = {e.name: e for e in structure.entities}
  assert list(entities['1'].subchains) == ['A', 'C']
  assert entities['1'].full_sequence == [rc.resnames[a] for a in cplx.aatype[:5]]
  assert entities['2'].full_sequence == [rc.resnames[a] for a in cplx.aatype[5:12]]
  assert [ch.name for ch in structure[0]] == ['A', 'B', 'C']


# ---------------------------------------------------------------------------
# mmCIF: AlphaFold's ModelCIF categories and values, read back by ModelCIF's reader.

# Keys whose values differ from AlphaFold's on purpose (see the DIFFERS notes in
# protein.to_mmcif and mmcif_metadata).
_ENTITY_KEYS = ('_entity.id', '_entity_poly.entity_id', '_entity_poly_seq.entity_id',
                '_struct_asym.entity_id', '_atom_site.label_entity_id',
                '_ma_target_entity.entity_id', '_ma_target_entity_instance.entity_id')
_OWN_KEYS = ('_software.name', '_software.version', '_ma_model_list.model_name',
             '_ma_model_list.model_group_name', '_ma_qa_metric_global.metric_value',
             '_chem_comp.id', '_chem_comp.type', '_chem_comp.name')
_NOT_WRITTEN = ('_audit_author', '_pdbx_data_usage')


def _heteromer():
  """Three chains of different sequences numbered from 1, an UNK among them, as predicted."""
  cplx = _complex(lengths=(5, 7, 4), same=(0, 0), first_numbers=(1, 1, 1), seed=3)
  aatype = np.asarray(cplx.aatype).copy()
  aatype[6] = rc.unk_restype_index
  mask = np.asarray(cplx.atom_mask).copy()
  mask[6] = 0
  mask[6, :3] = 1
  return dataclasses.replace(cplx, aatype=aatype, atom_mask=mask,
                             b_factors=np.asarray(cplx.b_factors)[:, :1] * mask)


@pytest.mark.parametrize('kind', ['Monomer', 'Multimer'])
def test_mmcif_has_alphafolds_categories_and_values(kind):
  prot = _heteromer()
  if kind == 'Monomer':  # chain B alone (with its UNK), named A as AlphaFold names it
    chain = protein.split_chains(prot)[1]
    prot = protein.Protein(atom_positions=chain.atom_positions, atom_mask=chain.atom_mask,
                           aatype=chain.aatype, residue_index=chain.residue_index,
                           b_factors=chain.b_factors)
  text = protein.to_mmcif(prot, model_name='model_1_pred_0', target_name='T1050',
                          model_type=kind)
  ours = MMCIF2Dict(io.StringIO(text))
  ref = MMCIF2Dict(io.StringIO(ref_protein.to_mmcif(_reference(prot), 'T1050', kind)))
  category = lambda key: key.split('.')[0]  # noqa: E731
  assert {category(k) for k in ours} - {category(k) for k in ref} == {
      '_struct', '_ma_qa_metric_local'}
  assert {category(k) for k in ref} - {category(k) for k in ours} == set(_NOT_WRITTEN)
  for key, values in ref.items():
    if category(key) in _NOT_WRITTEN or key in _OWN_KEYS:
      continue
    if key in _ENTITY_KEYS:  # AlphaFold numbers entities from 0
      assert ours[key] == [str(int(v) + 1) for v in values], key
    else:
      assert ours[key] == values, key
  # The residues used, with AlphaFold's names and types (it omits UNK, which we use).
  used = sorted({rc.resnames[a] for a in prot.aatype})
  assert ours['_chem_comp.id'] == used
  ref_rows = dict(zip(ref['_chem_comp.id'], zip(ref['_chem_comp.type'], ref['_chem_comp.name'])))
  ref_rows['UNK'] = ('L-peptide linking', 'UNKNOWN')
  assert list(zip(ours['_chem_comp.type'], ours['_chem_comp.name'])) == [ref_rows[r]
                                                                         for r in used]
  # pLDDT per residue and its mean over residues (AlphaFold's is over atoms).
  plddt = np.asarray(prot.b_factors)[:, 0]
  assert ours['_ma_qa_metric_global.metric_value'] == [f'{plddt.mean():.2f}']
  assert ours['_ma_qa_metric_local.metric_value'] == [f'{v:.2f}' for v in plddt]
  assert ours['_ma_qa_metric_local.label_asym_id'] == [
      prot.chain_ids[c] for c in prot.chain_index]
  assert ours['_ma_qa_metric_local.label_seq_id'] == [str(i) for i in prot.residue_index]
  assert ours['_ma_qa_metric_local.metric_id'] == ['2'] * len(plddt)
  assert ours['_software.name'] == ['af_jax']
  assert ours['_ma_model_list.model_name'] == ['model_1_pred_0']
  assert ours['_ma_model_list.model_group_name'] == [f'AlphaFold {kind} model (af_jax)']


def test_mmcif_names_the_target_and_reads_as_modelcif():
  prot = _heteromer()
  text = protein.to_mmcif(prot, model_name='model_2_multimer_v3_pred_1',
                          target_name="my target's complex", model_type='Multimer')
  block = gemmi.cif.read_string(text).sole_block()
  assert block.name == "my_target's_complex"
  (system,) = modelcif.reader.read(io.StringIO(text))
  assert system.id == "my_target's_complex"
  assert "my target's complex" in system.title and 'model_2_multimer_v3_pred_1' in system.title
  assert [e.description for e in system.entities] == [
      f"my target's complex (chains {c})" for c in 'ABC']
  assert [a.id for a in system.asym_units] == ['A', 'B', 'C']
  assert [(s.name, s.version) for s in system.software] == [
      ('af_jax', f'v{mmcif_metadata.software_version()}')]
  assert system.citations[0].doi == '10.1038/s41586-021-03819-2'
  (group,) = system.model_groups
  (model,) = group
  assert model.name == 'model_2_multimer_v3_pred_1'
  metrics = [(type(m).__name__, m.value) for m in model.qa_metrics]
  plddt = np.asarray(prot.b_factors)[:, 0]
  assert sorted(metrics) == sorted([('pLDDT', round(float(v), 2)) for v in plddt]
                                   + [('pLDDT', round(float(plddt.mean()), 2))])
  assert len(list(model.get_atoms())) == int(np.asarray(prot.atom_mask).sum())
  bio = MMCIFParser(QUIET=True).get_structure('x', io.StringIO(text))
  assert _atoms_biopython(bio).keys() == _expected_complex_atoms(prot).keys()
  gem = gemmi.make_structure_from_block(block)
  assert _atoms_gemmi(gem).keys() == _expected_complex_atoms(prot).keys()
  # One entity: the target alone names it; without a target the model does.
  mono = protein.to_mmcif(protein.split_chains(prot)[0], model_name='model_1_pred_0',
                          target_name='T1')
  assert MMCIF2Dict(io.StringIO(mono))['_entity.pdbx_description'] == ['T1']
  unnamed = protein.to_mmcif(prot, model_name='model_1_pred_0')
  assert gemmi.cif.read_string(unnamed).sole_block().find_value('_entry.id') == 'model_1_pred_0'


def test_chain_names_beyond_pdb():
  lengths = [2] * 63
  cplx = _protein_of(126, chain_index=np.repeat(np.arange(63), 2),
                     chain_ids=tuple(f'C{i}' for i in range(63)))
  with pytest.raises(InputError, match='write mmCIF'):
    protein.to_pdb(cplx)
  text = protein.to_mmcif(cplx)
  structure = MMCIFParser(QUIET=True).get_structure('x', io.StringIO(text))
  assert [len(ch) for ch in structure[0]] == lengths
  assert structure[0].child_list[-1].id == 'C62'
  most = _protein_of(62, chain_index=np.arange(62))
  pdb = PDBParser(QUIET=True).get_structure('x', io.StringIO(protein.to_pdb(most)))
  assert ''.join(ch.id for ch in pdb[0]) == protein.PDB_CHAIN_IDS
