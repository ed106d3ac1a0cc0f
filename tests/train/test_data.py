"""Training data on real chains: labels, crops, determinism, resume, filters, errors, loader.

2Q2K comes in OpenFold's own layout; the Protenix demo chains (myoglobin 102m/8f9h,
5zyh, 7zzx) are linked into that layout in a temporary directory.
"""

import gzip
import json
import pathlib

import numpy as np
import pytest

from af_jax import inference
from af_jax.common import residue_constants as rc
from af_jax.data import mmcif, parsers, pipeline, transforms
from af_jax.errors import ConfigError, InputError
from af_jax.train import chains
from af_jax.train import data as train_data
from af_jax.train.loader import BatchLoader
from configs.train import train_config
from tests.data.shared_data import CHAIN_2Q2K, SHARED_DATA

PROTENIX = SHARED_DATA / 'chains_with_msa' / 'protenix_msa_demo'
ALIGNMENTS_2Q2K = CHAIN_2Q2K / 'alignments'
# Chain -> the Protenix MSA of its sequence (see the MANIFEST).
PROTENIX_CHAINS = {'102m_A': 'msa/3/non_pairing.a3m', '8f9h_A': 'msa/3/non_pairing.a3m',
                   '5zyh_A': 'msa/0/non_pairing.a3m', '7zzx_B': 'msa/2/non_pairing.a3m.gz'}


def _config(**overrides):
  cfg = train_config('small')
  cfg.update_from_flattened_dict({f'data.{k}': v for k, v in overrides.items()})
  return cfg.data


def _link_chain(alignment_dir, mmcif_dir, name, cif, msa_files):
  """One chain in OpenFold's layout: <mmcif_dir>/<pdb_id>.cif, <alignment_dir>/<name>/*."""
  chain_dir = alignment_dir / name
  chain_dir.mkdir(parents=True)
  target = mmcif_dir / f'{name.split("_")[0]}.cif'
  if not target.exists():
    target.symlink_to(cif)
  for msa in msa_files:
    (chain_dir / pathlib.Path(msa).name).symlink_to(msa)


@pytest.fixture(scope='module')
def layout(tmp_path_factory):
  """(alignment_dir, mmcif_dir) with 2q2k_A and the four Protenix chains."""
  root = tmp_path_factory.mktemp('openfold_layout')
  alignment_dir, mmcif_dir = root / 'alignments', root / 'mmcifs'
  mmcif_dir.mkdir()
  _link_chain(alignment_dir, mmcif_dir, '2q2k_A', CHAIN_2Q2K / '2q2k.cif',
              sorted((ALIGNMENTS_2Q2K / '2q2k_A').iterdir()))
  for name, msa in PROTENIX_CHAINS.items():
    _link_chain(alignment_dir, mmcif_dir, name, PROTENIX / 'mmcif' / f'{name[:4]}.cif',
                [PROTENIX / msa])
  return alignment_dir, mmcif_dir


def _dataset(layout, **overrides):
  """The layout's chains up to 2.0 Å (102m, 8f9h, 5zyh): 7zzx's deep MSA is never read."""
  overrides = {'filters.max_resolution': 2.0, **overrides}
  return train_data.TrainingData(*layout, _config(**overrides))


def _atom_site_rows(cif_path, chain):
  """(label_seq_id, atom name, xyz) of chain's protein atoms, read from the file's columns."""
  lines = pathlib.Path(cif_path).read_text().splitlines()
  columns = [line.split('.', 1)[1].strip() for line in lines if line.startswith('_atom_site.')]
  col = {name: i for i, name in enumerate(columns)}
  for line in lines:
    fields = line.split()
    if (fields[:1] == ['ATOM'] and fields[col['auth_asym_id']] == chain
        and fields[col['label_comp_id']] in rc.resnames):
      xyz = [float(fields[col[f'Cartn_{a}']]) for a in 'xyz']
      yield int(fields[col['label_seq_id']]), fields[col['label_atom_id']], xyz


def test_labels_are_the_mmcif_atoms_and_features_the_inference_pipelines(tmp_path):
  entries, _ = chains.discover_chains(ALIGNMENTS_2Q2K, CHAIN_2Q2K)
  assert [e.name for e in entries] == ['2q2k_A']
  raw = chains.load_chain(entries[0])
  positions, mask = raw['all_atom_positions'], raw['all_atom_mask']
  assert positions.shape == (70, 37, 3) and mask.shape == (70, 37)
  assert raw['resolution'] == np.float32(3.0)
  rows = list(_atom_site_rows(CHAIN_2Q2K / '2q2k.cif', 'A'))
  assert mask.sum() == len(rows) == 383  # every observed atom, nothing else
  for seq_id, atom, xyz in rows:
    np.testing.assert_allclose(positions[seq_id - 1, rc.atom_order[atom]], xyz, atol=1e-3)
  # Residue 23 (author 4) is LYS; its CA from the file: 13.618 24.436 37.967.
  np.testing.assert_allclose(positions[22, rc.atom_order['CA']], [13.618, 24.436, 37.967],
                             atol=1e-3)
  assert not mask[:22].any()  # the His-tag end is disordered

  # The features are exactly what inference builds from the same MSA files.
  sequence = entries[0].sequence
  record = parsers.FastaRecord('2q2k_A', '2q2k_A', sequence)
  # uniprot_hits.sto is AlphaFold-Multimer's pairing MSA: left out, as OpenFold does.
  msa_files = ('uniref90_hits.sto', 'bfd_uniclust_hits.a3m', 'mgnify_hits.sto')
  options = pipeline.PipelineOptions(
      msa_mode='precomputed',
      msa_paths=tuple(str(ALIGNMENTS_2Q2K / '2q2k_A' / name) for name in msa_files))
  reference = pipeline.make_raw_features(record, tmp_path, options)
  for key in ('aatype', 'msa', 'deletion_matrix_int', 'residue_index', 'seq_length'):
    np.testing.assert_array_equal(raw[key], reference[key], err_msg=key)
  assert raw['msa'].shape[0] > 16  # the three files merged, duplicates dropped


def test_crop_keeps_features_msa_and_labels_aligned(layout):
  ds = _dataset(layout, **{'train.crop_size': 48})
  index = [e.name for e in ds.entries].index('5zyh_A')
  raw = chains.load_chain(ds.entries[index])
  full_aatype = raw['aatype'].argmax(-1)
  starts = set()
  for epoch in range(3):
    ex = ds.example(epoch, index)
    start = int(ex['crop_start'])
    starts.add(start)
    window = slice(start, start + 48)
    assert 0 <= start <= 237 - 48
    for r in range(3):  # every recycle slice holds the same crop
      np.testing.assert_array_equal(ex['aatype'][r], full_aatype[window])
      np.testing.assert_array_equal(ex['residue_index'][r], np.arange(237)[window])
      # The query row of the (unmasked) cluster centres is the cropped query.
      np.testing.assert_array_equal(ex['true_msa'][r, 0], full_aatype[window])
    np.testing.assert_array_equal(ex['all_atom_positions'], raw['all_atom_positions'][window])
    np.testing.assert_array_equal(ex['all_atom_mask'], raw['all_atom_mask'][window])
    assert ex['seq_mask'].min() == 1.0
    assert ex['bert_mask'].sum() > 0  # masked-MSA targets are there
  assert len(starts) == 3


def test_short_chain_is_padded_to_crop_size():
  ds = train_data.TrainingData(ALIGNMENTS_2Q2K, CHAIN_2Q2K, _config(**{'train.crop_size': 80}))
  batch = ds.batch(0)
  assert batch['aatype'].shape == (2, 3, 80)
  np.testing.assert_array_equal(batch['crop_start'], [0, 0])
  np.testing.assert_array_equal(batch['seq_mask'][:, :, :70], 1.0)
  np.testing.assert_array_equal(batch['seq_mask'][:, :, 70:], 0.0)
  assert not batch['all_atom_mask'][:, 70:].any()
  assert not batch['msa_mask'][:, :, :, 70:].any()
  # The model finds its inputs (names and dtypes) in one example's features.
  features, per_example = train_data.split_batch(batch)
  assert set(per_example) == set(train_data.PER_EXAMPLE_KEYS)
  inference.select_features({k: v[0] for k, v in features.items()}, use_templates=False)


def test_gzipped_mmcif(tmp_path):
  dirs = _one_chain(tmp_path, '2q2k_A', sorted((ALIGNMENTS_2Q2K / '2q2k_A').iterdir()))
  (dirs[1] / '2q2k.cif').unlink()
  (dirs[1] / '2q2k.cif.gz').write_bytes(gzip.compress((CHAIN_2Q2K / '2q2k.cif').read_bytes()))
  (entry,), _ = chains.discover_chains(*dirs)
  assert entry.mmcif_path.endswith('2q2k.cif.gz') and entry.resolution == 3.0
  assert chains.load_chain(entry)['all_atom_mask'].sum() == 383


def test_same_seed_same_batches_other_seed_other_crops(layout):
  first, again = _dataset(layout), _dataset(layout)
  other = _dataset(layout, seed=1)
  for step in range(2):
    a, b = first.batch(step), again.batch(step)
    assert a.keys() == b.keys()
    for key in a:
      np.testing.assert_array_equal(a[key], b[key], err_msg=key)
  # The same chain in the same epoch: another seed gives another crop and MSA sample.
  index = [e.name for e in first.entries].index('5zyh_A')
  a, b = first.example(0, index), other.example(0, index)
  assert a['crop_start'] != b['crop_start']
  assert not np.array_equal(a['msa_feat'], b['msa_feat'])
  assert not np.array_equal(first.epoch_order(0), other.epoch_order(0)) or \
      not np.array_equal(first.epoch_order(1), other.epoch_order(1))


def test_epochs_visit_every_chain_once_in_seeded_orders(layout):
  ds = _dataset(layout)
  assert len(ds) == 3
  epochs = [sorted(ds.epoch_order(e)) for e in range(4)]
  assert all(order == [0, 1, 2] for order in epochs)
  assert len({tuple(ds.epoch_order(e)) for e in range(6)}) > 1  # shuffled per epoch
  # Batches of 2 walk the stream: steps 0..2 cover epochs 0 and 1 exactly.
  seen = [p for s in range(3) for p in ds.positions(s)]
  assert sorted(i for e, i in seen if e == 0) == [0, 1, 2]
  assert sorted(i for e, i in seen if e == 1) == [0, 1, 2]


def test_recycles_uniform_per_batch():
  ds = train_data.TrainingData(ALIGNMENTS_2Q2K, CHAIN_2Q2K, _config())
  counts = [ds.num_recycles(s) for s in range(60)]
  assert set(counts) == {0, 1, 2}
  batch = ds.batch(3)
  np.testing.assert_array_equal(batch['num_recycles'], counts[3])
  assert batch['num_recycles'].dtype == np.int32
  fixed = train_data.TrainingData(ALIGNMENTS_2Q2K, CHAIN_2Q2K,
                                  _config(**{'train.uniform_recycling': False}))
  assert {fixed.num_recycles(s) for s in range(10)} == {2}


def test_loader_resumes_at_the_saved_position(layout):
  ds = _dataset(layout)
  with BatchLoader(ds, num_workers=2, prefetch=2) as loader:
    first = next(loader)
    state = loader.state_dict()
    rest = [next(loader) for _ in range(3)]
  assert state['step'] == 1
  state = json.loads(json.dumps(state))  # survives a checkpoint file
  with BatchLoader(_dataset(layout), state=state, num_workers=1, prefetch=1) as resumed:
    assert resumed.step == 1
    again = [next(resumed) for _ in range(3)]
  for a, b in zip(rest, again):
    for key in a:
      np.testing.assert_array_equal(a[key], b[key], err_msg=key)
  np.testing.assert_array_equal(first['crop_start'], ds.batch(0)['crop_start'])
  with pytest.raises(ConfigError, match='seed'):
    BatchLoader(_dataset(layout, seed=7), state=state)


def test_loader_stops_after_num_steps_or_num_epochs(layout):
  ds = _dataset(layout)  # 3 chains, batch size from _config
  with BatchLoader(ds, num_steps=3, num_workers=1, prefetch=2) as loader:
    batches = list(loader)
  assert len(batches) == 3 and loader.step == 3
  # Resumed at step 1 of a 3-step run: the same stop.
  with BatchLoader(ds, state=ds.position(1), num_steps=3, num_workers=1, prefetch=1) as resumed:
    assert len(list(resumed)) == 2
  # One epoch: the batches that cover every chain once (the last may reach into the next).
  per_epoch = -(-len(ds) // ds.global_batch_size)
  with BatchLoader(ds, num_epochs=1, num_workers=1, prefetch=1) as loader:
    names = [n for s, _ in enumerate(loader) for n in ds.names(s)]
  assert len(names) == per_epoch * ds.global_batch_size
  assert sorted(set(names)) == sorted(e.name for e in ds.entries)
  with BatchLoader(ds, num_epochs=2, num_workers=1, prefetch=1) as loader:
    assert len(list(loader)) == -(-2 * len(ds) // ds.global_batch_size)
  with BatchLoader(ds, num_steps=0, num_workers=1, prefetch=1) as loader:
    assert list(loader) == []
  with pytest.raises(ConfigError, match='both given'):
    BatchLoader(ds, num_steps=2, num_epochs=1)
  with pytest.raises(ConfigError, match='num_epochs=0'):
    BatchLoader(ds, num_epochs=0)


def test_process_workers_give_the_same_batches():
  ds = train_data.TrainingData(ALIGNMENTS_2Q2K, CHAIN_2Q2K, _config())
  with BatchLoader(ds, num_workers=1, prefetch=1, worker_type='process') as loader:
    batch = next(loader)
  expected = ds.batch(0)
  for key in expected:
    np.testing.assert_array_equal(batch[key], expected[key], err_msg=key)


def test_filters_skip_with_reasons(layout, tmp_path):
  ds = train_data.TrainingData(*layout, _config(**{'filters.max_length': 200}))
  assert [e.name for e in ds.entries] == ['102m_A', '2q2k_A', '8f9h_A']
  assert ds.report.total == 5 and ds.report.kept == 3
  assert ds.report.skipped == {'longer than max_length 200': ['5zyh_A', '7zzx_B']}
  ds = _dataset(layout, **{'filters.max_release_date': '2020-01-01'})
  assert sorted(e.name for e in ds.entries) == ['102m_A', '5zyh_A']
  assert ds.report.skipped['released after max_release_date 2020-01-01'] == ['8f9h_A']
  assert ds.report.skipped['resolution above max_resolution 2.0 Å'] == ['2q2k_A', '7zzx_B']
  assert 'skipped 2 (2q2k_A, 7zzx_B): resolution above' in str(ds.report)

  # With OpenFold's chain cache nothing is parsed: the cache's values decide.
  cache = {'102m_A': {'seq': 'Q' * 90 + 'A' * 10, 'resolution': 1.8,
                      'release_date': '1998-04-08', 'cluster_size': 2},
           '8f9h_A': {'seq': 'MVLSEG' * 10, 'resolution': 12.0, 'release_date': '2023-11-08'},
           '5zyh_A': {'seq': 'GPTHRF' * 10, 'resolution': 1.9, 'release_date': '2019-02-27'}}
  path = tmp_path / 'chain_data_cache.json'
  path.write_text(json.dumps(cache))
  ds = train_data.TrainingData(*layout, _config(), chain_cache_path=path)
  assert [e.name for e in ds.entries] == ['5zyh_A']
  skipped = ds.report.skipped
  assert skipped['one residue type over max_single_aa_prop 0.8'] == ['102m_A']
  assert skipped['resolution above max_resolution 9.0 Å'] == ['8f9h_A']
  assert skipped[f'not in the chain cache {path}'] == ['2q2k_A', '7zzx_B']


def test_written_chain_cache_gives_the_same_chains(layout, tmp_path):
  entries, _ = chains.discover_chains(*layout)
  path = tmp_path / 'chain_data_cache.json'
  chains.write_chain_cache(entries, path)
  assert json.loads(path.read_text())['5zyh_A']['resolution'] == pytest.approx(1.95)
  cached, report = chains.discover_chains(*layout, chain_cache_path=path)
  assert cached == entries and report.kept == 5


def test_crop_raw_features_cuts_every_residue_axis():
  (entry,), _ = chains.discover_chains(ALIGNMENTS_2Q2K, CHAIN_2Q2K)
  raw = chains.load_chain(entry)
  crop = transforms.crop_raw_features(raw, 60, 32)  # runs past the end: 10 residues left
  assert crop['sequence'][0] == entry.sequence[60:].encode()
  np.testing.assert_array_equal(crop['msa'], raw['msa'][:, 60:])
  np.testing.assert_array_equal(crop['deletion_matrix_int'], raw['deletion_matrix_int'][:, 60:])
  np.testing.assert_array_equal(crop['seq_length'], [10] * 10)
  np.testing.assert_array_equal(crop['all_atom_positions'], raw['all_atom_positions'][60:])
  assert crop['msa_species_identifiers'] is raw['msa_species_identifiers']
  with pytest.raises(InputError, match='outside the 70 residues'):
    transforms.crop_raw_features(raw, 70, 32)
  rng = np.random.default_rng(0)
  starts = {transforms.random_crop_start(70, 32, rng) for _ in range(400)}
  assert starts == set(range(39))  # uniform over every window that fits
  assert transforms.random_crop_start(20, 32, rng) == 0


def test_openfold_mmcif_cache_and_nothing_left():
  cache = CHAIN_2Q2K / 'train_mmcifs_cache.json'
  ds = train_data.TrainingData(ALIGNMENTS_2Q2K, CHAIN_2Q2K, _config(), chain_cache_path=cache)
  (entry,) = ds.entries
  assert (entry.name, entry.resolution, entry.release_date) == ('2q2k_A', 3.0, '2008-02-05')
  assert ds.batch(0)['all_atom_mask'].shape == (2, 32, 37)
  with pytest.raises(InputError, match='no training chain left.*resolution above'):
    train_data.TrainingData(ALIGNMENTS_2Q2K, CHAIN_2Q2K,
                            _config(**{'filters.max_resolution': 2.5}), chain_cache_path=cache)


def _one_chain(tmp_path, name, msa_files, cif=CHAIN_2Q2K / '2q2k.cif'):
  alignment_dir, mmcif_dir = tmp_path / 'alignments', tmp_path / 'mmcifs'
  mmcif_dir.mkdir(parents=True, exist_ok=True)
  _link_chain(alignment_dir, mmcif_dir, name, cif, msa_files)
  return alignment_dir, mmcif_dir


def _one_line_error(error_type, match, make):
  with pytest.raises(error_type, match=match) as info:
    make()
  assert '\n' not in str(info.value)
  return str(info.value)


def test_bad_inputs_give_one_clear_error_each(tmp_path):
  a3m = ALIGNMENTS_2Q2K / '2q2k_A' / 'bfd_uniclust_hits.a3m'
  # A chain whose mmCIF is missing.
  alignment_dir, mmcif_dir = _one_chain(tmp_path / 'a', '2q2k_A', [a3m])
  (mmcif_dir / '2q2k.cif').unlink()
  _one_line_error(InputError, r'no mmCIF for chain 2q2k_A: neither 2q2k.cif nor 2q2k.cif.gz',
                  lambda: train_data.TrainingData(alignment_dir, mmcif_dir, _config()))
  # A chain that is not in its mmCIF (C: 2q2k has protein chains A and B).
  dirs = _one_chain(tmp_path / 'b', '2q2k_C', [a3m])
  _one_line_error(InputError, r'chain C is not a protein chain .*2q2k.cif \(protein chains: '
                  r'A, B\); rename or remove', lambda: train_data.TrainingData(*dirs, _config()))
  # An MSA built for another sequence (myoglobin's, for 2Q2K): found when the chain loads.
  dirs = _one_chain(tmp_path / 'c', '2q2k_A', [PROTENIX / PROTENIX_CHAINS['102m_A']])
  ds = train_data.TrainingData(*dirs, _config())
  message = _one_line_error(InputError, 'training chain 2q2k_A: query of .*non_pairing.a3m '
                            r'.*does not match', lambda: ds.batch(0))
  assert 'pass the MSA built for this sequence' in message
  # An alignment dir without MSAs.
  dirs = _one_chain(tmp_path / 'd', '2q2k_A', [])
  ds = train_data.TrainingData(*dirs, _config())
  _one_line_error(InputError, r'training chain 2q2k_A: no MSA \(\*.a3m, \*.sto\) in',
                  lambda: ds.batch(0))
  # Directories that do not exist; a config that cannot work.
  _one_line_error(InputError, '--mmcif_dir .* is not a directory',
                  lambda: train_data.TrainingData(dirs[0], tmp_path / 'nowhere', _config()))
  _one_line_error(ConfigError, 'use_templates=True needs template_mmcif_dir',
                  lambda: train_data.TrainingData(*dirs, _config(**{'common.use_templates':
                                                                    True})))


def test_loader_raises_a_worker_exception_naming_the_chain(tmp_path):
  dirs = _one_chain(tmp_path, '2q2k_A', [PROTENIX / PROTENIX_CHAINS['102m_A']])
  loader = BatchLoader(train_data.TrainingData(*dirs, _config()), num_workers=2, prefetch=2)
  with pytest.raises(InputError, match='training chain 2q2k_A'):
    next(loader)
  with pytest.raises(StopIteration):  # stopped after the error
    next(loader)


def test_templates_are_cropped_with_the_chain(tmp_path):
  """A hand-written hit of 2Q2K chain B on residues 21-50 of chain A (identical sequences)."""
  sequence = chains.discover_chains(ALIGNMENTS_2Q2K, CHAIN_2Q2K)[0][0].sequence
  part = sequence[20:50]
  hhr = (f'Query         2q2k_A\nMatch_columns 70\n\n No Hit\n\nNo 1\n>2Q2K_B Hypothetical '
         f'protein\nProbab=99.0  E-value=1e-10  Score=50.0  Aligned_cols=30  Identities=100%  '
         f'Sum_probs=29.0\n\nQ 2q2k_A           21 {part}   50 (70)\n'
         f'T 2Q2K_B           21 {part}   50 (70)\n')
  msa_dir = tmp_path / 'msas'
  msa_dir.mkdir()
  (msa_dir / 'pdb70_hits.hhr').write_text(hhr)
  dirs = _one_chain(tmp_path, '2q2k_A', [*sorted((ALIGNMENTS_2Q2K / '2q2k_A').iterdir()),
                                         msa_dir / 'pdb70_hits.hhr'])
  config = _config(**{'common.use_templates': True, 'train.template_release_gap_days': 0})
  ds = train_data.TrainingData(*dirs, config, template_mmcif_dir=str(CHAIN_2Q2K))
  ex = ds.example(0, 0)
  start = int(ex['crop_start'])
  b = mmcif.read(CHAIN_2Q2K / '2q2k.cif').chains['B']
  expected = np.zeros((70, 37, 3), np.float32)
  expected[20:50] = b.atom_positions[20:50]
  window = slice(start, start + 32)
  assert ex['template_all_atom_positions'].shape == (3, 2, 32, 37, 3)
  np.testing.assert_array_equal(ex['template_mask'][0], [1.0, 0.0])
  np.testing.assert_allclose(ex['template_all_atom_positions'][0, 0], expected[window])
  features, _ = train_data.split_batch(ex)
  inference.select_features(features, use_templates=True)
  # With AlphaFold's 60-day gap the chain's own entry cannot be its template.
  ds = train_data.TrainingData(*dirs, _config(**{'common.use_templates': True}),
                               template_mmcif_dir=str(CHAIN_2Q2K))
  np.testing.assert_array_equal(ds.example(0, 0)['template_mask'][0], [0.0, 0.0])


def test_train_presets():
  initial, finetune = train_config('initial'), train_config('finetune')
  assert (initial.data.train.crop_size, initial.data.train.max_msa_clusters,
          initial.data.train.max_extra_msa) == (256, 128, 1024)
  assert (finetune.data.train.crop_size, finetune.data.train.max_msa_clusters,
          finetune.data.train.max_extra_msa) == (384, 512, 5120)
  assert (initial.loss.violation.weight, finetune.loss.violation.weight) == (0.0, 1.0)
  assert initial.data.filters.max_resolution == 9.0
  assert initial.data.common.max_recycling_iters == 3
  assert initial.data.data_module.data_loaders.batch_size == 1
  with pytest.raises(ConfigError, match='finetune'):
    train_config('fine_tune')
