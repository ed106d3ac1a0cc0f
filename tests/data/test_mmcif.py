"""mmCIF parsing agrees with AlphaFold's mmcif_parsing and _get_atom_positions."""

import gzip

import numpy as np
import pytest
from alphafold.data import mmcif_parsing
from alphafold.data import templates as ref_templates

from af_jax.common import protein
from af_jax.data import mmcif
from af_jax.errors import InputError
from tests.data.shared_data import CHAIN_2Q2K, TEMPLATE_FIXTURE

_CIFS = TEMPLATE_FIXTURE / 'template_mmcifs'
# 2q2k: DNA chains beside protein; 3u8v, 4zey: altlocs; 4zey: MSE; 3zee: EM;
# 1psm: gzipped, NMR with 20 models.
FILES = [CHAIN_2Q2K / '2q2k.cif', _CIFS / '3u8v.cif', _CIFS / '4zey.cif', _CIFS / '3zee.cif',
         _CIFS / '1psm.cif.gz']


@pytest.fixture
def ref_parse(monkeypatch):
  """AlphaFold's parser as DeepMind ran it: biopython 1.79, whose protein_letters_3to1
  was today's protein_letters_3to1_extended (MSE -> M). The lru cache is bypassed."""
  table = mmcif_parsing.PDBData.protein_letters_3to1_extended
  monkeypatch.setattr(mmcif_parsing.PDBData, 'protein_letters_3to1', table)

  def parse(text):
    result = mmcif_parsing.parse.__wrapped__(file_id='x', mmcif_string=text,
                                             catch_all_errors=False)
    return result.mmcif_object
  return parse


def _text(path):
  opener = gzip.open if str(path).endswith('.gz') else open
  with opener(path, 'rt') as f:
    return f.read()


@pytest.mark.parametrize('path', FILES, ids=lambda p: p.name)
def test_matches_alphafold(path, ref_parse):
  ours = mmcif.read(path)
  ref = ref_parse(_text(path))
  assert ours.file_id == path.name.split('.')[0]
  assert ref.header == {'release_date': ours.header.release_date,
                        'resolution': ours.header.resolution,
                        'structure_method': ours.header.structure_method}
  assert list(ours.chain_to_seqres.items()) == list(ref.chain_to_seqres.items())
  assert list(ours.chains) == list(ours.chain_to_seqres)
  for chain_id, chain in ours.chains.items():
    positions, mask = ref_templates._get_atom_positions(ref, chain_id, max_ca_ca_distance=1e9)
    assert chain.atom_positions.dtype == np.float32 and chain.atom_mask.dtype == np.float32
    np.testing.assert_array_equal(chain.atom_positions, positions.astype(np.float32))
    np.testing.assert_array_equal(chain.atom_mask, mask)
    assert len(chain.residue_names) == len(chain.seqres)


def test_modified_residues_and_selenium():
  """4ZEY's selenomethionines read as M, their Se in MET's SD slot (independent of AF)."""
  structure = mmcif.read(_CIFS / '4zey.cif')
  chain = structure.chains['A']
  mse = [i for i, name in enumerate(chain.residue_names) if name == 'MSE']
  assert mse and all(chain.seqres[i] == 'M' for i in mse)
  sd = protein.rc.atom_order['SD']
  observed = [i for i in mse if chain.atom_mask[i, protein.rc.atom_order['CA']]]
  assert observed and all(chain.atom_mask[i, sd] == 1 for i in observed)
  assert structure.header.release_date == '2015-05-06'  # from the file's revision history


def test_gzip_and_text_agree(tmp_path):
  text = _text(CHAIN_2Q2K / '2q2k.cif')
  gz = tmp_path / '2Q2K.cif.gz'
  gz.write_bytes(gzip.compress(text.encode()))
  from_gz = mmcif.read(gz)
  from_text = mmcif.parse(text, file_id='2q2k')
  assert from_gz.file_id == '2q2k'
  assert from_gz.chain_to_seqres == from_text.chain_to_seqres
  for chain_id in from_text.chains:
    np.testing.assert_array_equal(from_gz.chains[chain_id].atom_positions,
                                  from_text.chains[chain_id].atom_positions)


def test_to_mmcif_reads_back_in_alphafold_and_af_jax(ref_parse):
  prot = protein.from_mmcif_string(
      _text(CHAIN_2Q2K / '2q2k.cif').replace('\nHETATM', '\n#HETATM'), chain_id='A')
  text = protein.to_mmcif(prot, model_name='2q2k A')
  ours = mmcif.parse(text, file_id='out')
  ref = ref_parse(text)
  seq = ''.join(protein.rc.restypes_with_x[a] for a in prot.aatype)
  assert ours.chain_to_seqres == ref.chain_to_seqres == {'A': seq}
  np.testing.assert_allclose(ours.chains['A'].atom_positions, prot.atom_positions, atol=5e-4)
  np.testing.assert_array_equal(ours.chains['A'].atom_mask, prot.atom_mask)


def test_bad_files_name_the_file(tmp_path):
  missing = tmp_path / 'nope.cif'
  with pytest.raises(InputError, match='nope.cif'):
    mmcif.read(missing)
  garbage = tmp_path / 'garbage.cif'
  garbage.write_text('this is not a cif\n')
  with pytest.raises(InputError, match='garbage.cif'):
    mmcif.read(garbage)
  truncated = tmp_path / 'cut.cif.gz'
  truncated.write_bytes(gzip.compress(b'data_x\n' * 1000)[:50])
  with pytest.raises(InputError, match='cut.cif.gz'):
    mmcif.read(truncated)
  no_atoms = tmp_path / 'empty.cif'
  no_atoms.write_text('data_x\n_entry.id x\n')
  with pytest.raises(InputError, match=r'_atom_site\..* missing from .*empty.cif'):
    mmcif.read(no_atoms)
  bad_number = _text(_CIFS / '3zee.cif').replace(' 1.00 ', ' one ', 1)
  with pytest.raises(InputError, match='bad.cif'):
    mmcif.parse(bad_number, file_id='3zee', source='bad.cif')
