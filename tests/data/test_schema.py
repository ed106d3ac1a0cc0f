"""The feature schema agrees with what the pipelines make and with what the models read."""

import numpy as np
import pytest

import af_jax
from af_jax.data import features, parsers, schema, transforms, transforms_multimer


def _sizes_of(feature: schema.Feature, shape: tuple[int, ...]) -> dict[str, int]:
  assert len(shape) == len(feature.axes), (feature.name, shape, feature.axes)
  sizes = {}
  for axis, size in zip(feature.axes, shape):
    if isinstance(axis, int):
      assert size == axis, (feature.name, shape)
    else:
      assert sizes.setdefault(axis, size) == size, (feature.name, axis)
  return sizes


def _raw_monomer(sequence: str) -> dict:
  msa = parsers.Msa(sequences=[sequence], deletion_matrix=[[0] * len(sequence)],
                    descriptions=['query'])
  return {**features.make_sequence_features(sequence, 'query', len(sequence)),
          **features.make_msa_features([msa]), **features.empty_template_features(len(sequence))}


def test_monomer_schema_is_what_process_features_makes():
  cfg = af_jax.model_config('model_1_ptm')
  batch = transforms.process_features(_raw_monomer('ACDEFG'), cfg, 0, num_res=8,
                                      msa_clusters=4, extra_msa=3)
  sizes = {'num_slices': int(cfg.data.common.num_recycle) + 1, 'num_res': 8, 'num_msa': 4,
           'num_extra_msa': 3, 'num_templates': int(cfg.data.eval.max_templates)}
  wanted = schema.MONOMER + schema.MONOMER_TEMPLATES
  assert wanted.missing(batch) == []
  assert {k: batch[k].shape for k in wanted.names} == wanted.shapes(**sizes)
  for name, dtype in wanted.dtypes.items():  # the pipeline's dtypes, or a safe cast of them
    assert np.can_cast(batch[name].dtype, dtype, 'same_kind'), name


def test_multimer_schema_pads_by_axis_name():
  raw = schema.MULTIMER.zeros(num_res=3, num_msa=2, num_templates=5)
  raw['aatype'] = np.arange(3)
  batch = transforms_multimer.make_batch(raw, num_res=8, num_seq=4, num_templates=2)
  assert {k: v.shape for k, v in batch.items()} == schema.MULTIMER.shapes(
      num_res=8, num_msa=4, num_templates=2)
  assert {k: v.dtype for k, v in batch.items()} == {
      k: np.dtype(d) for k, d in schema.MULTIMER.dtypes.items()}
  np.testing.assert_array_equal(batch['aatype'], [0, 1, 2, 0, 0, 0, 0, 0])


def test_raw_templates_are_alphafolds():
  empty = features.empty_template_features(7)
  assert list(empty) == list(schema.RAW_TEMPLATES.names)
  assert empty['template_all_atom_positions'].shape == (0, 7, 37, 3)
  assert empty['template_sum_probs'].shape == (0, 1)
  assert empty['template_sequence'].dtype == object


def test_select_casts_and_names_the_missing():
  batch = {'true_msa': np.zeros((2, 3, 4), np.int64), 'bert_mask': np.ones((2, 3, 4))}
  selected = schema.TRAIN_TARGETS.select({**batch, 'other': 1})
  assert list(selected) == ['true_msa', 'bert_mask']
  assert selected['true_msa'].dtype == np.int32 and selected['bert_mask'].dtype == np.float32
  assert schema.TRAIN_TARGETS.missing({'bert_mask': 0}) == ['true_msa']
  with pytest.raises(KeyError, match='num_res'):
    schema.TRAIN_EXAMPLE['all_atom_mask'].shape({})
