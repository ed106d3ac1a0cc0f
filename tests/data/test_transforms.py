"""Feature processing against AlphaFold's own process_features, on real MSAs.

AlphaFold's shuffles draw from TensorFlow's Philox, ours from PCG64, so the
parity tests take the shuffles out on both sides (identity order) and switch
BERT masking off; the random parts are then checked for determinism and for
the configured distributions.
"""

import functools

import numpy as np
import pytest
from alphafold.data import parsers, pipeline
from alphafold.model import config as ref_config
from alphafold.model import features as ref_features_lib
from alphafold.model.tf import np_backend

import af_jax
from af_jax.data import msa_sampling, transforms
from af_jax.errors import ConfigError, InputError
from configs import buckets
from tests.data.shared_data import TEMPLATE_FIXTURE
from tests.parity import ref_features

DEEP_A3M = TEMPLATE_FIXTURE / 'alignments' / 'bfd_uniclust_hits.a3m'


@functools.lru_cache(maxsize=None)
def _raw_2q2k():
  return ref_features.raw_features(True)


@functools.lru_cache(maxsize=None)
def _raw_deep():
  """1024-sequence hhblits MSA of OpenFold's 73-residue query, AlphaFold's raw features."""
  msa = parsers.parse_a3m(DEEP_A3M.read_text())
  query = msa.sequences[0]
  return {**pipeline.make_sequence_features(query, 'query', len(query)),
          **pipeline.make_msa_features([msa])}


def _configs(preset, **overrides):
  """(af_jax config, reference config) with the same `data` overrides."""
  ours, ref = af_jax.model_config(preset), ref_config.model_config(preset)
  for cfg in (ours, ref):
    cfg.update_from_flattened_dict({f'data.{k}': v for k, v in overrides.items()})
  return ours, ref


def _reference(raw, cfg, seed=0, monkeypatch=None):
  if monkeypatch is not None:
    monkeypatch.setattr(np_backend, 'random_shuffle',
                        lambda value, seed=None, name=None: np.asarray(value))
  return ref_features_lib.np_example_to_features(dict(raw), cfg, random_seed=seed)


def _assert_same_batch(ours, ref):
  assert sorted(ours) == sorted(ref)
  for key in ref:
    assert ours[key].shape == ref[key].shape, key
    assert ours[key].dtype == ref[key].dtype, key
    if key == 'random_crop_to_size_seed':
      continue  # a random value the model never reads; Philox vs PCG64
    np.testing.assert_allclose(ours[key], ref[key], rtol=1e-6, atol=1e-7, err_msg=key)


_NO_MASK = {'eval.masked_msa_replace_fraction': 0.0, 'common.num_recycle': 1}


def test_parity_2q2k_with_template(monkeypatch):
  ours_cfg, ref_cfg = _configs('model_1_ptm', **_NO_MASK)
  raw = _raw_2q2k()
  ref = _reference(raw, ref_cfg, monkeypatch=monkeypatch)
  ours = transforms.process_features(raw, ours_cfg, 0,
                                     permutation=msa_sampling.identity_permutation)
  assert ours['msa_feat'].shape == (2, 508, 70, 49)
  assert ours['template_mask'][0].tolist() == [1, 0, 0, 0]
  _assert_same_batch(ours, ref)
  from af_jax import inference  # the model's own input check accepts the batch
  assert set(inference.select_features(ours, use_templates=True)) <= set(ours)


def test_parity_deep_msa_clusters_and_extra(monkeypatch):
  ours_cfg, ref_cfg = _configs('model_3_ptm', **_NO_MASK, **{'eval.max_msa_clusters': 32,
                                                              'common.max_extra_msa': 128})
  raw = _raw_deep()
  assert raw['msa'].shape[0] > 32 + 128  # clustering and extra-MSA cropping both happen
  ref = _reference(raw, ref_cfg, monkeypatch=monkeypatch)
  ours = transforms.process_features(raw, ours_cfg, 0,
                                     permutation=msa_sampling.identity_permutation)
  # Members really joined clusters: some cluster profile is not its centre's one-hot.
  profile = ours['msa_feat'][0, :, :, 25:48]
  assert np.abs(profile - ours['msa_feat'][0, :, :, :23]).max() > 0.5
  assert ours['extra_msa_mask'].sum() == 2 * 128 * 73
  _assert_same_batch(ours, ref)


def test_nearest_clusters_matches_reference_on_shuffled_rows():
  """Clustering of masked, shuffled centres (no identity shortcut) equals the reference's."""
  raw = _raw_deep()
  msa = np.asarray(raw['msa'])
  rng = np.random.default_rng(3)
  order = np.concatenate([[0], 1 + rng.permutation(msa.shape[0] - 1)])
  centres, others = msa[order[:40]].copy(), msa[order[40:]]
  centres[rng.random(centres.shape) < 0.2] = msa_sampling.MASK_TOKEN
  protein = {'msa': centres, 'msa_mask': np.ones(centres.shape, np.float32),
             'extra_msa': others, 'extra_msa_mask': np.ones(others.shape, np.float32)}
  expected = np_backend.fast_nearest_neighbor_clusters(protein)['extra_cluster_assignment']
  assignment = msa_sampling.nearest_clusters(centres, others)
  np.testing.assert_array_equal(assignment, expected)
  deletion = rng.integers(0, 5, msa.shape).astype(np.float32)
  protein.update(extra_cluster_assignment=expected, deletion_matrix=deletion[order[:40]],
                 extra_deletion_matrix=deletion[order[40:]])
  ref = np_backend.fast_summarize_clusters(protein)
  profile, deletion_mean = msa_sampling.summarize_clusters(
      centres, deletion[order[:40]], others, deletion[order[40:]], assignment)
  np.testing.assert_allclose(profile, ref['cluster_profile'], rtol=1e-6, atol=1e-7)
  np.testing.assert_allclose(deletion_mean, ref['cluster_deletion_mean'], rtol=1e-6, atol=1e-7)


def test_random_shuffles_and_masking_keep_reference_layout():
  """With every random step on (both sides), the batch has the reference's names and shapes."""
  overrides = {'common.num_recycle': 1, 'eval.max_msa_clusters': 32, 'common.max_extra_msa': 128}
  ours_cfg, ref_cfg = _configs('model_1_ptm', **overrides)
  n = _raw_deep()['aatype'].shape[0]
  no_templates = {  # what AlphaFold's template featurizer gives when nothing is found
      'template_aatype': np.zeros((0, n, 22), np.float32),
      'template_all_atom_positions': np.zeros((0, n, 37, 3), np.float32),
      'template_all_atom_masks': np.zeros((0, n, 37), np.float32),
      'template_sum_probs': np.zeros((0, 1), np.float32),
      'template_domain_names': np.zeros((0,), object)}
  raw = {**_raw_deep(), **no_templates}
  ref = _reference(raw, ref_cfg)
  ours = transforms.process_features(raw, ours_cfg, 0)
  assert ours['template_mask'].sum() == 0
  assert {k: (v.shape, v.dtype) for k, v in ours.items()} == {
      k: (v.shape, v.dtype) for k, v in ref.items()}
  for batch in (ours, ref):  # both mask about 15% of the centres
    assert 0.1 < batch['bert_mask'].mean() < 0.2


def _masked_batch(seed, fraction=0.15, preset='model_3_ptm'):
  cfg = af_jax.model_config(preset)
  cfg.data.common.num_recycle = 1
  cfg.data.eval.max_msa_clusters = 128
  cfg.data.common.max_extra_msa = 64
  cfg.data.eval.masked_msa_replace_fraction = fraction
  return cfg, transforms.process_features(_raw_deep(), cfg, seed)


def test_masking_is_seeded():
  _, a = _masked_batch(7)
  _, b = _masked_batch(7)
  _, c = _masked_batch(8)
  for key in a:
    np.testing.assert_array_equal(a[key], b[key], err_msg=key)
  assert not np.array_equal(a['bert_mask'], c['bert_mask'])
  assert not np.array_equal(a['true_msa'], c['true_msa'])  # different rows sampled
  # Each recycle draws afresh.
  assert not np.array_equal(a['bert_mask'][0], a['bert_mask'][1])
  assert not np.array_equal(a['extra_msa'][0], a['extra_msa'][1])
  np.testing.assert_array_equal(a['true_msa'][:, 0], np.broadcast_to(a['aatype'][0], (2, 73)))


def test_masking_follows_configured_distribution():
  cfg, batch = _masked_batch(11)
  masked = cfg.data.common.masked_msa
  bert = batch['bert_mask'] > 0
  n = bert.size
  frac = cfg.data.eval.masked_msa_replace_fraction
  assert abs(bert.mean() - frac) < 5 * np.sqrt(frac * (1 - frac) / n)

  new = batch['msa_feat'][..., :23].argmax(-1)
  true = batch['true_msa']
  assert np.array_equal(new[~bert], true[~bert])  # unpicked residues untouched
  # Expected class counts at picked positions, from the profile of the full MSA (computed
  # here from the raw MSA independently of the code under test).
  raw_msa = np.asarray(af_jax.common.residue_constants.MAP_HHBLITS_AATYPE_TO_OUR_AATYPE)[
      np.asarray(_raw_deep()['msa'])]
  profile = np.stack([(raw_msa == k).mean(0) for k in range(22)], -1)  # [N_res, 22]
  _, rows, cols = np.nonzero(bert)
  probs = np.zeros((rows.size, 23))
  probs[:, :20] += masked.uniform_prob / 20
  probs[:, :22] += masked.profile_prob * profile[cols]
  probs[np.arange(rows.size), true[bert]] += masked.same_prob
  probs[:, 22] += 1 - masked.uniform_prob - masked.profile_prob - masked.same_prob
  expected = probs.sum(0)
  observed = np.bincount(new[bert], minlength=23)
  sd = np.sqrt((probs * (1 - probs)).sum(0)) + 1
  assert np.all(np.abs(observed - expected) < 5 * sd), (observed, expected)
  assert abs(observed[22] / rows.size - 0.7) < 0.05  # mostly the mask token
  # The same as a proportion: "same" answers at least same_prob of the time.
  assert (new[bert] == true[bert]).mean() > masked.same_prob


def test_masking_off_leaves_msa_unmasked():
  _, batch = _masked_batch(5, fraction=0.0)
  assert batch['bert_mask'].sum() == 0
  np.testing.assert_array_equal(batch['msa_feat'][..., :23].argmax(-1), batch['true_msa'])


def test_padding_keeps_the_unpadded_region():
  cfg = af_jax.model_config('model_1_ptm')
  cfg.data.common.num_recycle = 1
  cfg.data.eval.max_msa_clusters = 36  # 32 after reserving 4 for templates
  cfg.data.common.max_extra_msa = 100
  raw = _raw_2q2k()  # 27 sequences: fewer than the clusters, no extra MSA
  n_res, n_clust, n_extra = transforms.natural_sizes(raw, cfg)
  assert (n_res, n_clust, n_extra) == (70, 27, 0)
  small = transforms.process_features(raw, cfg, 1, num_res=70, msa_clusters=27, extra_msa=1)
  big = transforms.process_features(raw, cfg, 1, num_res=96, msa_clusters=64, extra_msa=128)
  assert big['msa_feat'].shape == (2, 64, 96, 49)
  assert big['extra_msa'].shape == (2, 128, 96)
  assert big['template_aatype'].shape == (2, 4, 96)
  for key, value in small.items():
    region = tuple(slice(0, s) for s in value.shape)
    np.testing.assert_array_equal(big[key][region], value, err_msg=key)
  assert big['seq_mask'][:, 70:].sum() == 0 and big['seq_mask'][:, :70].min() == 1
  assert big['msa_mask'][:, 27:].sum() == 0 and big['msa_mask'][:, :, 70:].sum() == 0
  assert big['msa_row_mask'][:, 27:].sum() == 0
  assert big['extra_msa_mask'].sum() == 0 and big['extra_msa_row_mask'].sum() == 0
  assert big['template_pseudo_beta_mask'][:, :, 70:].sum() == 0
  assert big['seq_length'].tolist() == [70, 70]


def test_padding_deep_msa_with_masking_on():
  cfg, _ = _masked_batch(0)
  raw = _raw_deep()
  n_res, n_clust, n_extra = transforms.natural_sizes(raw, cfg)
  small = transforms.process_features(raw, cfg, 4)
  big = transforms.process_features(raw, cfg, 4, num_res=128, msa_clusters=256, extra_msa=256)
  for key, value in small.items():
    region = tuple(slice(0, s) for s in value.shape)
    np.testing.assert_allclose(big[key][region], value, rtol=0, atol=0, err_msg=key)
  assert big['extra_msa_mask'][:, n_extra:].sum() == 0
  assert big['msa_mask'][:, n_clust:].sum() == 0


def test_bad_inputs_name_the_fix():
  cfg = af_jax.model_config('model_3_ptm')
  raw = _raw_deep()
  with pytest.raises(InputError, match='num_res=50 is smaller than the 73'):
    transforms.process_features(raw, cfg, 0, num_res=50)
  with pytest.raises(InputError, match='msa_clusters'):
    transforms.process_features(raw, cfg, 0, msa_clusters=8)
  with pytest.raises(InputError, match="'msa'"):
    transforms.process_features({**raw, 'msa': raw['msa'][:, :10]}, cfg, 0)
  with pytest.raises(InputError, match='deletion_matrix_int'):
    transforms.process_features({k: v for k, v in raw.items() if k != 'deletion_matrix_int'},
                                cfg, 0)
  with pytest.raises(InputError, match='negative'):
    transforms.process_features(raw, cfg, -1)
  cfg.data.eval.num_ensemble = 2
  with pytest.raises(ConfigError, match='num_ensemble'):
    transforms.process_features(raw, cfg, 0)


def test_no_resampling_gives_one_slice():
  cfg = af_jax.model_config('model_3_ptm')
  cfg.data.common.resample_msa_in_recycling = False
  cfg.data.eval.max_msa_clusters = 16
  cfg.data.common.max_extra_msa = 16
  batch = transforms.process_features(_raw_deep(), cfg, 0)
  assert batch['msa_feat'].shape == (1, 16, 73, 49)
  assert batch['extra_msa'].shape == (1, 16, 73)


@pytest.mark.parametrize('n, expected', [(0, 64), (1, 64), (64, 64), (65, 128), (4096, 4096),
                                         (4097, 5120), (5120, 5120), (5121, 6144)])
def test_bucket_size_lengths(n, expected):
  assert buckets.bucket_size(n, (64, 128, 192, 256, 1024, 2048, 3072, 4096)) == expected


def test_default_length_buckets_pad_by_at_most_a_quarter_or_16():
  for n in range(1, 4097):
    size = buckets.bucket_size(n, buckets.LENGTH_BUCKETS)
    assert n <= size <= max(32, n + 16, 1.25 * n), (n, size)


def test_bucket_lists_ascend_and_msa_sizes():
  for lst in (buckets.LENGTH_BUCKETS, buckets.MSA_BUCKETS):
    assert list(lst) == sorted(set(lst)) and lst[0] >= 1
  assert buckets.bucket_size(0, buckets.MSA_BUCKETS) == buckets.MSA_BUCKETS[0]
  assert buckets.bucket_size(508, buckets.MSA_BUCKETS) == 512
  big = buckets.bucket_size(12000, buckets.MSA_BUCKETS)
  step = buckets.MSA_BUCKETS[-1] - buckets.MSA_BUCKETS[-2]
  assert big >= 12000 and big % step == 0 and big - 12000 < step
  assert buckets.bucket_size(3, (5,)) == 5 and buckets.bucket_size(7, (5,)) == 10
  with pytest.raises(ConfigError):
    buckets.bucket_size(-1, buckets.LENGTH_BUCKETS)
  with pytest.raises(ConfigError):
    buckets.bucket_size(3, ())
  with pytest.raises(ConfigError):
    buckets.bucket_size(3, (8, 4))


def test_parse_buckets():
  assert buckets.parse_buckets('64,128,256') == (64, 128, 256)
  assert buckets.parse_buckets(' 256, 64 ,128 ') == (64, 128, 256)
  for bad in ('', '64,,128', '64,abc', '0,64', '-64', '64,64', '1.5'):
    with pytest.raises(ConfigError, match='buckets'):
      buckets.parse_buckets(bad)
  import configs
  assert configs.parse_buckets is buckets.parse_buckets
  assert configs.bucket_size is buckets.bucket_size
