"""MSA pairing and merging: parity with AlphaFold-Multimer's pair_and_merge on real MSAs."""

import copy
import gzip
import pickle

import numpy as np
import pytest
from alphafold.data import feature_processing as ref_processing
from alphafold.data import msa_pairing as ref_pairing
from alphafold.data import pipeline_multimer as ref_multimer

from af_jax.common import residue_constants as rc
from af_jax.data import features, msa_pairing, parsers, pipeline_multimer
from tests.data.shared_data import CHAIN_2Q2K, SHARED_DATA

UNIFOLD_8D27 = SHARED_DATA / 'chains_with_msa' / 'unifold_8d27_features'
ALIGN_2Q2K = CHAIN_2Q2K / 'alignments' / '2q2k_A'
SEQ_2Q2K = 'MGSSHHHHHHSSGLVPGSHMDKKETKHLLKIKKEDYPQIFDFLENVPRGTKTAHIREALRRYIEEIGENP'


def reference_multimer_features(chain_features):
  """DeepMind's DataPipeline.process after its searches: convert, add ids, pair, merge, pad."""
  chains = {}
  for chain_id, feats in zip(pipeline_multimer.CHAIN_IDS, chain_features):
    chains[chain_id] = ref_multimer.convert_monomer_features(copy.deepcopy(feats), chain_id)
  chains = ref_multimer.add_assembly_features(chains)
  example = ref_processing.pair_and_merge(all_chain_features=chains)
  return ref_multimer.pad_msa(example, 512)


def assert_same_example(ours, theirs):
  """Same feature names, and every array identical in shape, dtype and value."""
  assert sorted(ours) == sorted(theirs)
  for name, value in theirs.items():
    value = np.asarray(value)
    assert ours[name].shape == value.shape, name
    assert ours[name].dtype == value.dtype, name
    np.testing.assert_array_equal(ours[name], value, err_msg=name)


def _dense(sparse):
  dense = np.zeros(tuple(sparse['shape']), np.int32)
  np.add.at(dense, (sparse['row'], sparse['col']), sparse['data'])
  return dense


@pytest.fixture(scope='module')
def chain_2q2k():
  """2Q2K A from its AlphaFold-layout files, with uniprot_hits.sto as the pairing MSA."""
  record = parsers.FastaRecord('2q2k_A', '2q2k_A', SEQ_2Q2K)
  return pipeline_multimer.make_chain_features(
      pipeline_multimer.ChainInput.from_dir(record, ALIGN_2Q2K), pairing=True)


@pytest.fixture(scope='module')
def chain_8d27(chain_2q2k):
  """8D27 A from Uni-Fold's features.pkl (12141 rows, 20 templates) and uniprot pickle.

  Only the features our pipeline makes are kept: AlphaFold's merge needs every chain to
  have the same names.
  """
  feats = features.load_features_pkl(
      str(UNIFOLD_8D27 / 'pdb_features' / '8d27_A.feature.pkl.gz'))
  with gzip.open(UNIFOLD_8D27 / 'pdb_uniprots' / '8d27_A.uniprot.pkl.gz') as f:
    uniprot = pickle.load(f)  # 31129 rows, species ids from Uni-Fold's own parse
  feats['msa_all_seq'] = uniprot['msa'].astype(np.int32)
  feats['deletion_matrix_int_all_seq'] = _dense(uniprot['sparse_deletion_matrix_int'])
  feats['msa_species_identifiers_all_seq'] = uniprot['msa_species_identifiers']
  return {k: v for k, v in feats.items() if k in chain_2q2k}


def point_mutant(feats, position, letter):
  """A chain differing from `feats` at one residue, with the same MSAs (its own query row).

  A synthetic second entity that shares every species with the first, so thousands of
  rows pair, the paired block is cropped and crowded species are skipped.
  """
  sequence = feats['sequence'][0].decode()
  sequence = sequence[:position] + letter + sequence[position + 1:]
  out = dict(feats, **features.make_sequence_features(sequence, 'mutant', len(sequence)))
  for name in ('msa', 'msa_all_seq'):
    out[name] = feats[name].copy()
    out[name][0, position] = rc.HHBLITS_AA_TO_ID[letter]
  return out


# ---------------------------------------------------------------------------
# Parity of the merged features.


def test_heteromer_with_species_pairing_matches_alphafold(chain_8d27, chain_2q2k):
  # 8D27 + a 2Q2K homodimer: UniProt species pair, copies of 2Q2K share their rows, 8D27's
  # 20 templates are cut to 4 and 2Q2K's none padded to 4.
  chains = [chain_8d27, chain_2q2k, chain_2q2k]
  ours = pipeline_multimer.assemble(chains)
  assert_same_example(ours, reference_multimer_features(chains))
  assert ours['msa'].shape == (int(ours['num_alignments']), 287 + 2 * 70)
  np.testing.assert_array_equal(ours['entity_id'][[0, 287, 357]], [1, 2, 2])
  np.testing.assert_array_equal(ours['sym_id'][[0, 287, 357]], [1, 1, 2])
  assert int(ours['num_templates']) == 4


@pytest.mark.parametrize('order', ['AB', 'ABC', 'CACB'])
def test_dense_pairing_and_crops_match_alphafold(chain_8d27, chain_2q2k, order):
  # A: 8D27, B: its point mutant (11,000 rows pair; crowded species are skipped; the
  # paired block is cut to 1024 rows), C: 2Q2K (species found in 2 of 3 chains).
  by_name = {'A': chain_8d27, 'B': point_mutant(chain_8d27, 10, 'W'), 'C': chain_2q2k}
  chains = [by_name[c] for c in order]
  ours = pipeline_multimer.assemble(chains)
  assert_same_example(ours, reference_multimer_features(chains))
  assert ours['num_alignments'] > msa_pairing.MSA_CROP_SIZE // 2


def test_homomer_is_not_paired_and_matches_alphafold(chain_2q2k):
  homomer = {k: v for k, v in chain_2q2k.items() if not k.endswith('_all_seq')}
  ours = pipeline_multimer.assemble([homomer, homomer])
  assert_same_example(ours, reference_multimer_features([homomer, homomer]))
  rows = int(homomer['num_alignments'][0])
  assert int(ours['num_alignments']) == rows  # dense: both copies side by side, query kept
  np.testing.assert_array_equal(ours['msa'][:rows, :70], ours['msa'][:rows, 70:])
  np.testing.assert_array_equal(ours['sym_id'], [1] * 70 + [2] * 70)
  np.testing.assert_array_equal(ours['entity_id'], 1)
  assert ours['cluster_bias_mask'][0] == 1 and ours['cluster_bias_mask'][1:].sum() == 0


# ---------------------------------------------------------------------------
# The pairing rule on small made-up MSAs, against AlphaFold's.


def _random_pairing_chain(rng, num_seq, num_res, crowded):
  """A pairing MSA with many ties in query similarity and in row-index products."""
  msa = rng.integers(0, 3, size=(num_seq, num_res)).astype(np.int32)
  species = np.array([f'SP{i}'.encode() for i in rng.integers(0, 25, size=num_seq)],
                     dtype=object)
  species[0] = b''
  species[1:crowded + 1] = b'CROWD'
  return {'msa_all_seq': msa, 'msa_species_identifiers_all_seq': species,
          'deletion_matrix_all_seq': np.zeros(msa.shape, np.float32)}


@pytest.mark.parametrize('seed', [0, 1, 2])
def test_pair_rows_matches_alphafold_on_ties(seed):
  rng = np.random.default_rng(seed)
  # Chain 0 has 601 rows of one species (not paired), chain 2 none of most species.
  chains = [_random_pairing_chain(rng, 1500, 5, 601), _random_pairing_chain(rng, 900, 4, 30),
            _random_pairing_chain(rng, 40, 6, 0)]
  theirs = ref_pairing.reorder_paired_rows(ref_pairing.pair_sequences(chains))
  ours = msa_pairing.pair_rows([c['msa_species_identifiers_all_seq'] for c in chains],
                               [c['msa_all_seq'] for c in chains])
  np.testing.assert_array_equal(ours, theirs)
  assert (ours[0] == 0).all() and (ours == -1).any()
  assert not np.isin(np.arange(1, 602), ours[:, 0]).any()  # the crowded species


def test_pair_rows_puts_species_of_all_chains_first():
  species = [np.array([b'', b'X', b'Y', b'Z'], dtype=object),
             np.array([b'', b'Y', b'X'], dtype=object),
             np.array([b'', b'Y', b'W'], dtype=object)]
  msas = [np.zeros((len(s), 3), np.int32) for s in species]
  rows = msa_pairing.pair_rows(species, msas)
  # queries; Y in all three; X in chains 0 and 1 (gap row for chain 2); Z and W unpaired.
  np.testing.assert_array_equal(rows, [[0, 0, 0], [2, 1, 1], [1, 2, -1]])


def test_block_diagonal_matches_alphafold_with_empty_blocks():
  blocks = [np.arange(6, dtype=np.int32).reshape(2, 3), np.zeros((0, 2), np.int32),
            np.ones((1, 4), np.int32)]
  ours = msa_pairing.block_diagonal(blocks, msa_pairing.GAP)
  theirs = ref_pairing.block_diag(*blocks, pad_value=msa_pairing.GAP)
  assert ours.dtype == theirs.dtype
  np.testing.assert_array_equal(ours, theirs)


def test_unpaired_rows_drop_what_the_paired_block_holds():
  msa = np.array([[1, 2], [3, 4], [1, 2], [5, 6]], np.int32)
  paired = np.array([[1, 2], [21, 21]], np.uint8)  # other dtype: compared by value
  np.testing.assert_array_equal(msa_pairing.unpaired_rows(msa, paired), [1, 3])
