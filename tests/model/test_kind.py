"""ModelKind: each preset's kind answers what differs between monomers and complexes."""

import numpy as np
import pytest

import af_jax
from af_jax.common import protein
from af_jax.data import schema
from af_jax.errors import InputError
from af_jax.model import kind
from af_jax.model.alphafold import AlphaFold
from af_jax.model.alphafold_multimer import AlphaFoldMultimer


def test_presets_have_their_kind():
  assert kind.for_config(af_jax.model_config('model_1_ptm').model) is kind.MONOMER
  multimer = af_jax.model_config('model_1_multimer_v3').model
  assert kind.for_config(multimer) is kind.MULTIMER
  assert kind.MONOMER.module_class() is AlphaFold
  assert kind.MULTIMER.module_class() is AlphaFoldMultimer


def test_dummy_batches_have_the_schema_shapes():
  cfg = af_jax.model_config('model_1_ptm')
  batch = kind.MONOMER.dummy_batch(cfg, 16, 8, 4)
  assert kind.of_batch(batch) is kind.MONOMER
  slices = int(cfg.data.common.num_recycle) + 1
  shapes = kind.MONOMER.input_shapes(batch, use_templates=True)
  assert {k: s for k, (s, _) in shapes.items()} == (
      schema.MONOMER + schema.MONOMER_TEMPLATES).shapes(
          num_slices=slices, num_res=16, num_msa=8, num_extra_msa=4, num_templates=4)
  assert kind.MONOMER.bucket_label('m', _structs(batch)) == f'm/L16/msa8x4/t4/r{slices}'

  cfg = af_jax.model_config('model_1_multimer_v3')
  batch = kind.MULTIMER.dummy_batch(cfg, 16, 32, 0)
  assert kind.of_batch(batch) is kind.MULTIMER
  shapes = kind.MULTIMER.input_shapes(batch, use_templates=True)
  assert shapes.pop(schema.SAMPLING_KEY.name) == ((2,), np.uint32)
  assert {k: s for k, (s, _) in shapes.items()} == schema.MULTIMER.shapes(
      num_res=16, num_msa=32, num_templates=4)
  recycles = int(cfg.model.num_recycle) + 1
  assert kind.MULTIMER.label('m', _structs(batch), cfg.model) == f'm/L16/msa32/t4/r{recycles}'


def _structs(batch):
  class Shaped:
    def __init__(self, x):
      self.shape = np.shape(x)
  return {k: Shaped(v) for k, v in batch.items()}


def test_select_refuses_what_the_model_cannot_read():
  cfg = af_jax.model_config('model_1_multimer_v3')
  batch = kind.MULTIMER.dummy_batch(cfg, 4, 8, 0)
  with pytest.raises(InputError, match='sampling key'):
    kind.MULTIMER.select(batch, True)
  seeded = kind.MULTIMER.with_seed(batch, 3)
  assert set(kind.MULTIMER.select(seeded, True)) == set(schema.MULTIMER.names) | {'random_key'}
  with pytest.raises(InputError, match='lacks'):
    kind.MONOMER.select({'aatype': np.zeros((1, 4))}, False)


def test_scores_and_proteins():
  out = {'plddt': np.array([50.0, 70.0]), 'ranking_confidence': np.float32(0.7),
         'iptm': 0.8, 'ptm': 0.5, 'num_recycles': 3, 'tol': 0.25}
  assert kind.MONOMER.ranking_score(out) == 60.0
  assert kind.MULTIMER.ranking_score(out) == pytest.approx(0.7)
  assert kind.MONOMER.summary(out) == 'mean pLDDT 60.00, pTM 0.500, 3 recycles'
  no_ptm = {k: v for k, v in out.items() if k != 'ptm'}
  assert kind.MONOMER.summary(no_ptm) == 'mean pLDDT 60.00, 3 recycles'
  assert kind.MULTIMER.summary(out) == ('ipTM 0.800, pTM 0.500, mean pLDDT 60.00, 3 recycles '
                                        '(tolerance 0.25 A)')
  one_hot = np.eye(21)[[3, 0, 7]]
  fields = kind.MONOMER.protein_fields({'aatype': one_hot})
  np.testing.assert_array_equal(fields['aatype'], [3, 0, 7])
  np.testing.assert_array_equal(fields['residue_index'], [0, 1, 2])
  assert kind.MONOMER.num_residues({'aatype': one_hot}) == 3
  raw = {'aatype': np.array([1, 2, 3]), 'residue_index': np.array([0, 1, 0]),
         'asym_id': np.array([1, 1, 2])}
  assert set(kind.MULTIMER.protein_fields(raw)) == {'aatype', 'residue_index', 'asym_id'}
  prot = protein.Protein(
      atom_positions=np.zeros((3, 37, 3)), atom_mask=np.ones((3, 37)), aatype=raw['aatype'],
      residue_index=raw['residue_index'], b_factors=np.zeros((3, 37)),
      chain_index=np.array([0, 0, 1]))
  title, chains = kind.MULTIMER.plot_labels('c', 3, prot)
  assert title == 'c (2 chains, 3 residues)' and chains['chain_lengths'] == [2, 1]
  assert kind.MONOMER.plot_labels('p', 3, prot) == ('p (3 residues)', {})
