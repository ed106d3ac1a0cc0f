"""Raw feature dicts: parity with AlphaFold's pipeline functions, and features.pkl files."""

import gzip
import os
import pickle

import numpy as np
import pytest
from alphafold.common import residue_constants as ref_rc
from alphafold.data import msa_identifiers as ref_ids
from alphafold.data import parsers as ref_parsers
from alphafold.data import pipeline as ref_pipeline
from alphafold.data import templates as ref_templates

from af_jax.data import features, parsers
from af_jax.errors import InputError
from tests.data.shared_data import CHAIN_2Q2K, SHARED_DATA, TEMPLATE_FIXTURE

ALIGN_2Q2K = CHAIN_2Q2K / 'alignments' / '2q2k_A'
MSA_NAMES = ('uniref90_hits.sto', 'uniprot_hits.sto', 'mgnify_hits.sto', 'bfd_uniclust_hits.a3m')
UNIFOLD_PKL = (SHARED_DATA / 'chains_with_msa' / 'unifold_8d27_features' / 'pdb_features' /
               '8d27_A.feature.pkl.gz')


def assert_same_features(ours: dict, theirs: dict) -> None:
  assert sorted(ours) == sorted(theirs)
  for name, value in theirs.items():
    assert ours[name].dtype == value.dtype, name
    assert ours[name].shape == value.shape, name
    np.testing.assert_array_equal(ours[name], value, err_msg=name)


def ref_dedup(msas):
  """Reference Msas with repeated sequences dropped, as DeepMind's make_msa_features does.

  The installed reference (alphafold-colabfold) has that step commented out.
  """
  seen, out = set(), []
  for msa in msas:
    keep = [i for i, s in enumerate(msa.sequences) if not (s in seen or seen.add(s))]
    out.append(ref_parsers.Msa([msa.sequences[i] for i in keep],
                               [msa.deletion_matrix[i] for i in keep],
                               [msa.descriptions[i] for i in keep]))
  return out


def ref_msas_2q2k():
  msas = []
  for name in MSA_NAMES:
    text = (ALIGN_2Q2K / name).read_text()
    msas.append(ref_parsers.parse_stockholm(text) if name.endswith('.sto') else
                ref_parsers.parse_a3m(text))
  return msas


# ---------------------------------------------------------------------------
# Sequence and MSA features.


@pytest.mark.parametrize('sequence', ['MGSSHHHHHHSSGLVPRGSHMACDEFIKLNPQTWYVX', 'XXGW'])
def test_sequence_features_parity(sequence):
  theirs = ref_pipeline.make_sequence_features(sequence, 't1 some protein', len(sequence))
  ours = features.make_sequence_features(sequence, 't1 some protein', len(sequence))
  assert_same_features(ours, theirs)


def test_sequence_features_checks_length():
  with pytest.raises(InputError, match=r'num_res=5 differs from the length 3'):
    features.make_sequence_features('MKV', 't1', 5)


def test_msa_features_parity_on_2q2k():
  ours_msas = [parsers.read_msa(ALIGN_2Q2K / name) for name in MSA_NAMES]
  ref_msas = ref_msas_2q2k()
  ours = features.make_msa_features(ours_msas)
  theirs = ref_pipeline.make_msa_features(ref_dedup(ref_msas))
  assert_same_features(ours, theirs)
  # The duplicates really were there and really were dropped.
  all_rows = [s for msa in ref_msas for s in msa.sequences]
  assert ours['msa'].shape[0] == len(set(all_rows)) < len(all_rows)
  assert any(ours['msa_species_identifiers'])  # uniprot_hits.sto has UniProt ids


def test_msa_features_parity_on_colabfold_and_large_a3m():
  paths = [SHARED_DATA / 'chains_with_msa/protenix_msa_demo/msa/0/non_pairing.a3m',
           TEMPLATE_FIXTURE / 'alignments' / 'bfd_uniclust_hits.a3m']
  for path in paths:
    ours = features.make_msa_features([parsers.read_msa(path)])
    theirs = ref_pipeline.make_msa_features(
        ref_dedup([ref_parsers.parse_a3m(path.read_text())]))
    assert_same_features(ours, theirs)


def test_msa_letters_map_as_alphafold():
  # Every letter AlphaFold accepts, including the ambiguity codes B, Z, U, J, O.
  letters = ''.join(sorted(ref_rc.HHBLITS_AA_TO_ID))
  msa = parsers.Msa([letters, letters[::-1]], [[0] * len(letters)] * 2, ['q', 'h'])
  ref_msa = ref_parsers.Msa(msa.sequences, msa.deletion_matrix, msa.descriptions)
  assert_same_features(features.make_msa_features([msa]),
                       ref_pipeline.make_msa_features([ref_msa]))


def test_species_identifiers_match_alphafold():
  descriptions = [
      'tr|A0A146SKV9|A0A146SKV9_FUNHE/12-80 Uncharacterized protein',
      'sp|P0C2L1|A3X1_LOXLA', 'tr|A0A146SKV9_1|A0A146SKV9_FUNHE_33', 'sp|P0C2L1|A3X1_TOOLONG',
      'tr|A0A2W3M096|A0A2W3M096_STAAU Plasmid OS=Staphylococcus', 'UniRef90_A0A141BHY3/1-51',
      'A0A146N6B2\t177\t0.902', '', '   ', 'tr|SHORT|X_AB', 'xx|A0A146SKV9|A0A146SKV9_FUNHE']
  for path in (ALIGN_2Q2K / 'uniprot_hits.sto', ALIGN_2Q2K / 'bfd_uniclust_hits.a3m'):
    descriptions += parsers.read_msa(path).descriptions
  got = [features.species_identifier(d) for d in descriptions]
  want = [ref_ids.get_identifiers(d).species_id for d in descriptions]
  assert got == want
  assert got[:2] == ['FUNHE', 'LOXLA'] and sum(bool(g) for g in got) > 10


def test_msa_feature_errors():
  with pytest.raises(InputError, match='no MSA given'):
    features.make_msa_features([])
  with pytest.raises(InputError, match='MSA 1 holds no sequences'):
    features.make_msa_features([parsers.Msa(['MK'], [[0, 0]], ['q']), parsers.Msa([], [], [])])
  with pytest.raises(InputError, match=r"letter '\*' at column 2 of row 2"):
    features.make_msa_features([parsers.Msa(['MKV', 'M*V'], [[0] * 3] * 2, ['q', 'h'])])
  with pytest.raises(InputError, match='a row of 2 columns'):
    features.make_msa_features([parsers.Msa(['MKV', 'MK'], [[0] * 3, [0] * 2], ['q', 'h'])])


# ---------------------------------------------------------------------------
# Templates.


def test_empty_template_features():
  empty = features.empty_template_features(73)
  assert sorted(empty) == sorted(ref_templates.TEMPLATE_FEATURES)
  with gzip.open(UNIFOLD_PKL, 'rb') as f:
    real = pickle.load(f)  # 20 real templates from AlphaFold's template pipeline
  for name, dtype in ref_templates.TEMPLATE_FEATURES.items():
    assert empty[name].dtype == np.dtype(dtype), name
    assert empty[name].shape[0] == 0, name
    trailing = real[name].shape[1:]
    if len(trailing) > 1:  # per-residue features: [T, N_res, ...]
      trailing = (73,) + trailing[1:]
    assert empty[name].shape[1:] == trailing, name
    assert real[name].dtype == np.dtype(dtype), name


# ---------------------------------------------------------------------------
# features.pkl.


@pytest.fixture(scope='module')
def ref_feature_dict():
  """What AlphaFold's run_alphafold.py pickles: sequence + MSA + (one) template features."""
  from tests.parity import ref_features
  feats = ref_features.raw_features(with_template=True)
  feats['template_sequence'] = np.array([feats['sequence'][0]], dtype=object)
  return feats


def write_pickle(path, obj):
  opener = gzip.open if str(path).endswith('.gz') else open
  with opener(path, 'wb') as f:
    pickle.dump(obj, f, protocol=4)


@pytest.mark.parametrize('name', ['features.pkl', 'features.pkl.gz'])
def test_load_alphafold_features_pkl(tmp_path, ref_feature_dict, name):
  path = tmp_path / name
  write_pickle(path, ref_feature_dict)
  assert_same_features(features.load_features_pkl(path), ref_feature_dict)


def test_load_colabfold_style_variants(tmp_path, ref_feature_dict):
  variant = dict(ref_feature_dict)
  variant['deletion_matrix'] = variant.pop('deletion_matrix_int').astype(np.float32)
  variant['template_all_atom_mask'] = variant.pop('template_all_atom_masks')
  variant['aatype'] = np.argmax(variant['aatype'], -1).astype(np.int32)
  assert variant['deletion_matrix'].any()
  write_pickle(tmp_path / 'f.pkl', variant)
  assert_same_features(features.load_features_pkl(tmp_path / 'f.pkl'), ref_feature_dict)


def test_load_without_templates_gives_empty_templates(tmp_path, ref_feature_dict):
  bare = {k: v for k, v in ref_feature_dict.items() if not k.startswith('template_')}
  write_pickle(tmp_path / 'f.pkl', bare)
  loaded = features.load_features_pkl(tmp_path / 'f.pkl')
  assert_same_features(loaded, {**bare, **features.empty_template_features(70)})


def test_load_unifold_features_with_sparse_deletions():
  with gzip.open(UNIFOLD_PKL, 'rb') as f:
    raw = pickle.load(f)
  sparse = raw['sparse_deletion_matrix_int']
  loaded = features.load_features_pkl(UNIFOLD_PKL)
  assert 'sparse_deletion_matrix_int' not in loaded
  deletions = loaded['deletion_matrix_int']
  assert deletions.dtype == np.int32 and deletions.shape == tuple(sparse['shape'])
  np.testing.assert_array_equal(deletions[sparse['row'], sparse['col']], sparse['data'])
  assert deletions.sum() == sparse['data'].sum()
  assert loaded['msa'].dtype == np.int32
  np.testing.assert_array_equal(loaded['msa'], raw['msa'])
  # Raw AlphaFold encoding: the query row is the sequence in HHblits order.
  sequence = loaded['sequence'][0].decode()
  np.testing.assert_array_equal(loaded['msa'][0],
                                [ref_rc.HHBLITS_AA_TO_ID[c] for c in sequence])
  np.testing.assert_array_equal(
      loaded['aatype'], ref_pipeline.make_sequence_features(sequence, 'x', 287)['aatype'])
  assert loaded['template_all_atom_positions'].shape == (20, 287, 37, 3)


def test_load_features_errors(tmp_path, ref_feature_dict):
  def load(obj):
    write_pickle(tmp_path / 'bad.pkl', obj)
    return features.load_features_pkl(tmp_path / 'bad.pkl')

  with pytest.raises(InputError, match=r'lacks the raw features msa, deletion_matrix_int'):
    load({k: v for k, v in ref_feature_dict.items() if not k.startswith(('msa', 'deletion'))})
  num_seq = len(ref_feature_dict['msa'])
  with pytest.raises(InputError, match=rf'msa in .*bad\.pkl has shape \({num_seq}, 69\), '
                                       rf'expected \({num_seq}, 70\)'):
    load({**ref_feature_dict, 'msa': ref_feature_dict['msa'][:, :69],
          'deletion_matrix_int': ref_feature_dict['deletion_matrix_int'][:, :69]})
  with pytest.raises(InputError, match=r'template_all_atom_positions in .* has shape'):
    load({**ref_feature_dict,
          'template_all_atom_positions': np.zeros((2, 70, 37, 3), np.float32)})
  with pytest.raises(InputError, match=r'lacks template_sum_probs'):
    load({k: v for k, v in ref_feature_dict.items() if k != 'template_sum_probs'})
  with pytest.raises(InputError, match=r'seq_length=71 in .* disagrees'):
    load({**ref_feature_dict, 'seq_length': np.full(70, 71, np.int32)})
  with pytest.raises(InputError, match='AlphaFold-Multimer features'):
    load({**ref_feature_dict, 'asym_id': np.ones(70)})
  with pytest.raises(InputError, match=r'processed model inputs \(msa_feat, target_feat\)'):
    load({**ref_feature_dict, 'msa_feat': 0, 'target_feat': 0})
  with pytest.raises(InputError, match='holds a list, not a feature dict'):
    load([1, 2])
  with pytest.raises(InputError, match='does not exist'):
    features.load_features_pkl(tmp_path / 'missing.pkl')
  (tmp_path / 'trunc.pkl').write_bytes(pickle.dumps(ref_feature_dict)[:100])
  with pytest.raises(InputError, match='cannot unpickle'):
    features.load_features_pkl(tmp_path / 'trunc.pkl')


@pytest.mark.parametrize('name', ['features.pkl', 'features.pkl.gz'])
def test_write_features_pkl_round_trip(tmp_path, ref_feature_dict, name):
  path = tmp_path / name
  features.write_features_pkl(path, ref_feature_dict)
  assert os.listdir(tmp_path) == [name]
  assert_same_features(features.load_features_pkl(path), ref_feature_dict)
  opener = gzip.open if name.endswith('.gz') else open
  with opener(path, 'rb') as f:  # readable by AlphaFold's own pickle.load
    assert_same_features(pickle.load(f), ref_feature_dict)


def test_write_features_pkl_never_leaves_partial_file(tmp_path, ref_feature_dict):
  path = tmp_path / 'features.pkl'
  features.write_features_pkl(path, ref_feature_dict)
  before = path.read_bytes()
  with pytest.raises(Exception):
    features.write_features_pkl(path, {**ref_feature_dict, 'bad': lambda: None})
  assert os.listdir(tmp_path) == ['features.pkl']
  assert path.read_bytes() == before
