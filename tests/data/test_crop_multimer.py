"""AlphaFold-Multimer's training crops on real complexes with their experimental coordinates.

2Q2K (70-aa homodimer, real AlphaFold-layout MSAs, His tag unresolved), 8D27 (287-aa C2
homodimer, Uni-Fold's features.pkl and labels) and the 7A4D assembly (two nanobody pairs
and a coiled-coil peptide twice: 6 chains, 5 entities, query-only MSAs).
"""

import gzip
import pickle

import numpy as np
import pytest

from af_jax.common import protein
from af_jax.common import residue_constants as rc
from af_jax.data import crop_multimer, features, mmcif, msa_pairing, parsers, pipeline_multimer
from af_jax.errors import InputError
from tests.data.shared_data import CHAIN_2Q2K, SHARED_DATA
from tests.data.test_msa_pairing import ALIGN_2Q2K, SEQ_2Q2K

UNIFOLD_8D27 = SHARED_DATA / 'chains_with_msa' / 'unifold_8d27_features'
ASSEMBLY_7A4D = SHARED_DATA / 'chains_with_msa' / 'af3pytorch_721p_7a4d' / '7a4d-assembly1.cif'
CA = rc.atom_order['CA']
# Per-residue features whose values a crop must keep (chain and position identity).
ID_FEATURES = ('aatype', 'residue_index', 'asym_id', 'entity_id', 'sym_id', 'seq_mask')


def _with_structure(feats, sequences, structures):
  """Complex features with each chain's atom37 coordinates, chains in asym_id order."""
  chains = pipeline_multimer.assembly_chains(sequences)
  order = sorted(range(len(chains)), key=lambda i: chains[i].asym_id)
  feats = dict(feats)
  feats['all_atom_positions'] = np.concatenate([structures[i][0] for i in order])
  feats['all_atom_mask'] = np.concatenate([structures[i][1] for i in order]).astype(np.float32)
  assert feats['all_atom_positions'].shape == (feats['aatype'].shape[0], 37, 3)
  return feats


@pytest.fixture(scope='module')
def complex_2q2k():
  record = parsers.FastaRecord('2q2k', '2q2k', SEQ_2Q2K)
  chain = pipeline_multimer.ChainInput.from_dir(record, ALIGN_2Q2K)
  feats = pipeline_multimer.make_multimer_features([chain, chain])
  structure = mmcif.read(CHAIN_2Q2K / '2q2k.cif')
  chains = [structure.chains[c] for c in 'AB']
  assert all(c.seqres == SEQ_2Q2K for c in chains)
  return _with_structure(feats, [SEQ_2Q2K] * 2,
                         [(c.atom_positions, c.atom_mask) for c in chains])


@pytest.fixture(scope='module')
def complex_8d27():
  feats = features.load_features_pkl(
      str(UNIFOLD_8D27 / 'pdb_features' / '8d27_A.feature.pkl.gz'))
  labels = []
  for chain in 'AB':
    with gzip.open(UNIFOLD_8D27 / 'pdb_labels' / f'8d27_{chain}.label.pkl.gz') as f:
      label = pickle.load(f)
    labels.append((label['all_atom_positions'], label['all_atom_mask']))
  sequence = feats['sequence'][0].decode()
  return _with_structure(pipeline_multimer.assemble([feats, feats]), [sequence] * 2, labels)


@pytest.fixture(scope='module')
def complex_7a4d():
  # The observed residues of each chain, less the ACE/NH2 caps (UNK, no MSA column).
  text = ASSEMBLY_7A4D.read_text()
  inputs, structures = [], []
  for chain in 'ABCDEF':
    prot = protein.from_mmcif_string(text, chain)
    keep = prot.aatype != rc.unk_restype_index
    sequence = ''.join(rc.restypes[a] for a in prot.aatype[keep])
    inputs.append(pipeline_multimer.ChainInput(parsers.FastaRecord(chain, chain, sequence)))
    structures.append((prot.atom_positions[keep], prot.atom_mask[keep]))
  feats = pipeline_multimer.make_multimer_features(inputs)
  return _with_structure(feats, [c.record.sequence for c in inputs], structures)


@pytest.fixture(params=['2q2k', '8d27', '7a4d'])
def complex_features(request):
  return request.getfixturevalue(f'complex_{request.param}')


def _nearest_reference(feats, centre, crop_size):
  """The crop_size residues nearest `centre` by CA, recomputed by brute force.

  Observed CAs first by (distance, index), then residues without a CA by index.
  """
  ca = feats['all_atom_positions'][:, CA].astype(np.float64)
  present = feats['all_atom_mask'][:, CA] > 0
  distance = np.linalg.norm(ca - ca[centre], axis=-1)
  index = np.arange(len(ca))
  order = np.lexsort((index, distance, ~present))
  return np.sort(order[:crop_size])


# ---------------------------------------------------------------------------
# Contiguous crops.


@pytest.mark.parametrize('crop_size', [1, 17, 64, 130])
def test_contiguous_crop_is_algorithm_1_windows(complex_features, crop_size):
  asym_id = complex_features['asym_id']
  num_res = len(asym_id)
  blocks = crop_multimer.chain_blocks(asym_id)
  for seed in range(20):
    crop = crop_multimer.contiguous_crop(asym_id, crop_size, np.random.default_rng(seed))
    assert crop.kind == 'contiguous' and len(crop.indices) == min(crop_size, num_res)
    assert np.all(np.diff(crop.indices) > 0)
    # The windows in chain order; lengths within the bounds Alg. 1 gives in visiting order.
    assert [(w.chain_start, w.chain_start + w.num_res) for w in crop.windows] == blocks
    assert sorted(w.visit for w in crop.windows) == list(range(len(blocks)))
    n_added, n_remaining = 0, num_res
    for w in sorted(crop.windows, key=lambda w: w.visit):
      n_remaining -= w.num_res
      assert w.max_length == min(w.num_res, crop_size - n_added)
      assert w.min_length == min(w.num_res, max(0, crop_size - (n_added + n_remaining)))
      assert w.min_length <= w.length <= w.max_length
      assert 0 <= w.start <= w.num_res - w.length
      n_added += w.length
    # Each chain's kept residues are one window inside the chain.
    for (start, stop), w in zip(blocks, crop.windows):
      kept = crop.indices[(crop.indices >= start) & (crop.indices < stop)]
      np.testing.assert_array_equal(kept, start + w.start + np.arange(w.length))


def test_contiguous_crop_varies_chain_shares(complex_7a4d):
  # Six chains, 40-118 residues, crop 64: random visiting order, so every chain is
  # sometimes absent and sometimes the largest part.
  asym_id = complex_7a4d['asym_id']
  shares = np.array([[w.length for w in crop_multimer.contiguous_crop(
      asym_id, 64, np.random.default_rng(seed)).windows] for seed in range(100)])
  assert shares.shape == (100, 6) and (shares.sum(1) == 64).all()
  assert (shares.min(0) == 0).all() and (shares.max(0) >= 32).all()


def test_contiguous_windows_of_chains_that_fit_are_whole():
  windows = crop_multimer.contiguous_windows([5, 3, 7], 20, np.random.default_rng(0))
  assert [(w.start, w.length) for w in windows] == [(0, 5), (0, 3), (0, 7)]


# ---------------------------------------------------------------------------
# Spatial crops.


def test_interface_residues_find_the_2q2k_dimer_interface(complex_2q2k):
  ca, present = crop_multimer.ca_coordinates(complex_2q2k)
  asym_id = complex_2q2k['asym_id']
  interface = crop_multimer.interface_residues(ca, present, asym_id)
  assert interface[asym_id == 1].sum() > 0 and interface[asym_id == 2].sum() > 0
  assert not interface[~present].any()  # the unresolved His tag
  # Brute force: a CA within 6 Å of a CA of the other chain.
  d = np.linalg.norm(ca[:, None] - ca[None], axis=-1)
  other = (asym_id[:, None] != asym_id[None]) & present[:, None] & present[None]
  np.testing.assert_array_equal(interface, ((d < 6.0) & other).any(1))
  # Every spatial crop is centred on the interface and holds both chains.
  for seed in range(10):
    crop = crop_multimer.spatial_crop(ca, present, asym_id, 24, np.random.default_rng(seed))
    assert interface[crop.centre]
    assert set(asym_id[crop.indices]) == {1.0, 2.0}


@pytest.mark.parametrize('crop_size', [1, 40, 100])
def test_spatial_crop_is_the_nearest_residues_to_its_centre(complex_features, crop_size):
  ca, present = crop_multimer.ca_coordinates(complex_features)
  asym_id = complex_features['asym_id']
  interface = crop_multimer.interface_residues(ca, present, asym_id)
  assert interface.any()
  centres = set()
  for seed in range(10):
    crop = crop_multimer.spatial_crop(ca, present, asym_id, crop_size,
                                      np.random.default_rng(seed))
    assert crop.kind == 'spatial' and len(crop.indices) == min(crop_size, len(asym_id))
    assert crop.centre in crop.indices and interface[crop.centre]
    assert np.all(np.diff(crop.indices) > 0)
    # Residues without a CA (2Q2K's His tags) only fill a crop larger than the resolved part.
    assert present[crop.indices].sum() == min(crop_size, present.sum())
    np.testing.assert_array_equal(crop.indices,
                                  _nearest_reference(complex_features, crop.centre, crop_size))
    centres.add(crop.centre)
  assert len(centres) > 1  # a random interface residue, not a fixed one


def test_spatial_crop_breaks_ties_by_index_and_fills_with_unresolved():
  # Four residues at one point, two without a CA: ties go to the lower index, and the
  # unresolved ones come last, by index.
  ca = np.zeros((6, 3))
  ca[4:] = [[10.0, 0, 0], [3.0, 0, 0]]
  present = np.array([True, False, True, True, True, False])
  asym_id = np.array([1, 1, 1, 2, 2, 2])
  crop = crop_multimer.spatial_crop(ca, present, asym_id, 3, np.random.default_rng(0))
  assert crop.centre in (0, 2, 3)
  np.testing.assert_array_equal(crop.indices, [0, 2, 3])
  crop = crop_multimer.spatial_crop(ca, present, asym_id, 5, np.random.default_rng(0))
  np.testing.assert_array_equal(crop.indices, [0, 1, 2, 3, 4])


def test_spatial_crop_without_interface_centres_on_any_resolved_residue():
  ca = np.array([[0.0, 0, 0], [3.8, 0, 0], [50.0, 0, 0], [53.8, 0, 0]])
  present = np.array([True, True, True, False])
  asym_id = np.array([1, 1, 2, 2])
  assert not crop_multimer.interface_residues(ca, present, asym_id).any()
  centres = {crop_multimer.spatial_crop(ca, present, asym_id, 2,
                                        np.random.default_rng(s)).centre for s in range(30)}
  assert centres == {0, 1, 2}


# ---------------------------------------------------------------------------
# crop_complex: choosing a crop and cutting the features.


def test_crop_complex_cuts_every_feature_at_the_kept_residues(complex_features):
  feats = complex_features
  num_res = feats['aatype'].shape[0]
  for seed, prob in [(0, 0.0), (1, 1.0)]:
    crop = crop_multimer.choose_crop(feats, 50, np.random.default_rng(seed), prob)
    assert crop.kind == ('spatial' if prob else 'contiguous')
    out = crop_multimer.crop_complex(feats, 50, np.random.default_rng(seed), prob)
    idx = crop.indices
    assert sorted(out) == sorted(feats)
    for name in ID_FEATURES + ('deletion_mean', 'entity_mask', 'all_atom_positions',
                               'all_atom_mask'):
      np.testing.assert_array_equal(out[name], feats[name][idx], err_msg=name)
    for name in ('msa', 'deletion_matrix', 'msa_mask', 'bert_mask',
                 *msa_pairing.TEMPLATE_FEATURES):
      assert out[name].shape[:2] == (feats[name].shape[0], 50), name  # rows/slots all kept
      np.testing.assert_array_equal(out[name], feats[name][:, idx], err_msg=name)
    # Row 0 is every chain's query: still the cropped sequence.
    np.testing.assert_array_equal(out['msa'][0], out['aatype'])
    assert int(out['seq_length']) == 50 and out['seq_length'].dtype == feats['seq_length'].dtype
    for name in ('cluster_bias_mask', 'num_alignments', 'num_templates', 'assembly_num_chains'):
      assert out[name] is feats[name], name
    assert feats['aatype'].shape[0] == num_res  # the input is not modified


def test_crop_complex_keeps_a_complex_that_fits(complex_2q2k):
  crop = crop_multimer.choose_crop(complex_2q2k, 140, np.random.default_rng(0))
  assert crop.kind == 'whole'
  out = crop_multimer.crop_complex(complex_2q2k, 500, np.random.default_rng(0))
  for name, value in complex_2q2k.items():
    np.testing.assert_array_equal(out[name], value, err_msg=name)


def test_crop_complex_is_deterministic_by_seed(complex_8d27):
  first = crop_multimer.crop_complex(complex_8d27, 128, np.random.default_rng(7))
  again = crop_multimer.crop_complex(complex_8d27, 128, np.random.default_rng(7))
  for name in first:
    np.testing.assert_array_equal(first[name], again[name], err_msg=name)
  picks = {tuple(crop_multimer.choose_crop(complex_8d27, 128, np.random.default_rng(s)).indices)
           for s in range(10)}
  assert len(picks) > 1


def test_crop_complex_mixes_spatial_and_contiguous(complex_7a4d):
  kinds = [crop_multimer.choose_crop(complex_7a4d, 96, np.random.default_rng(s)).kind
           for s in range(60)]
  assert crop_multimer.SPATIAL_CROP_PROB == 0.5
  assert 15 <= kinds.count('spatial') <= 45 and kinds.count('contiguous') == 60 - kinds.count(
      'spatial')


# ---------------------------------------------------------------------------
# Bad inputs.


@pytest.mark.parametrize('crop_size', [0, -3, 2.5])
def test_crop_size_below_one_is_an_input_error(complex_2q2k, crop_size):
  with pytest.raises(InputError, match=f'crop_size={crop_size} must be an integer >= 1'):
    crop_multimer.crop_complex(complex_2q2k, crop_size, np.random.default_rng(0))


def test_spatial_crop_without_coordinates_is_an_input_error(complex_2q2k):
  feats = {k: v for k, v in complex_2q2k.items() if k != 'all_atom_positions'}
  with pytest.raises(InputError, match=r"lack \['all_atom_positions'\].*spatial_prob=0"):
    crop_multimer.crop_complex(feats, 32, np.random.default_rng(0), spatial_prob=1.0)
  out = crop_multimer.crop_complex(feats, 32, np.random.default_rng(0), spatial_prob=0.0)
  assert out['aatype'].shape == (32,)
  # The inference pipeline's placeholder coordinates (every atom at the origin).
  placeholder = {**complex_2q2k,
                 'all_atom_positions': np.zeros_like(complex_2q2k['all_atom_positions'])}
  with pytest.raises(InputError, match='every CA .* at the same point'):
    crop_multimer.crop_complex(placeholder, 32, np.random.default_rng(0))


def test_malformed_features_are_input_errors(complex_2q2k):
  rng = np.random.default_rng(0)
  with pytest.raises(InputError, match='spatial_prob=1.5 must be in'):
    crop_multimer.crop_complex(complex_2q2k, 32, rng, spatial_prob=1.5)
  with pytest.raises(InputError, match="lack 'asym_id'"):
    crop_multimer.crop_complex({'aatype': complex_2q2k['aatype']}, 32, rng)
  shuffled = {**complex_2q2k, 'asym_id': np.tile([1.0, 2.0], 70)}
  with pytest.raises(InputError, match='contiguous blocks'):
    crop_multimer.crop_complex(shuffled, 32, rng)
  short = {**complex_2q2k, 'msa': complex_2q2k['msa'][:, :-1]}
  with pytest.raises(InputError, match="feature 'msa' has shape .* expected 140 residues"):
    crop_multimer.crop_complex(short, 32, rng, spatial_prob=0.0)
  with pytest.raises(InputError, match='not residues of the 140-residue complex'):
    crop_multimer.take_residues(complex_2q2k, [0, 140])
