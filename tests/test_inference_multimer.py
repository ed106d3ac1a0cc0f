"""Folding complexes through the Predictor: bucket padding, labels, seeds, warm-up shapes."""

import numpy as np
import pytest

from af_jax import params as af_params
from af_jax.run import warmup
from af_jax.data import parsers, pipeline_multimer, transforms_multimer
from af_jax.errors import InputError
from af_jax.inference import Predictor, feature_shapes
from af_jax.model.build import build_model
from tests.data.test_msa_pairing import ALIGN_2Q2K, SEQ_2Q2K
from tests.data.test_pipeline_multimer import PEPTIDE_7A4D
from tests.model.tiny import random_batch, tiny_config, tiny_multimer_config


@pytest.fixture(scope='module')
def complex_raw():
  """2Q2K : peptide : 2Q2K with 2Q2K's real MSAs, AlphaFold-Multimer's raw features."""
  chain = pipeline_multimer.ChainInput.from_dir(
      parsers.FastaRecord('2q2k', '2q2k', SEQ_2Q2K), ALIGN_2Q2K)
  peptide = pipeline_multimer.ChainInput(parsers.FastaRecord('pep', 'pep', PEPTIDE_7A4D))
  return pipeline_multimer.make_multimer_features([chain, peptide, chain])


@pytest.fixture(scope='module')
def predictor():
  cfg = tiny_multimer_config(**{'model.global_config.zero_init': False})
  return Predictor(cfg, af_params.module_to_flat(build_model(cfg.model, seed=3)))


def test_make_batch_pads_to_the_bucket(complex_raw):
  n_res, n_seq, n_templ = transforms_multimer.natural_sizes(complex_raw)
  assert (n_res, n_seq, n_templ) == (180, 512, 4)
  batch = transforms_multimer.make_batch(complex_raw, num_res=192, num_seq=1024,
                                         num_templates=2)
  assert batch['msa'].shape == (1024, 192) and batch['template_aatype'].shape == (2, 192)
  assert batch['cluster_bias_mask'].shape == (1024,)
  assert batch['asym_id'].dtype == np.int32 and set(np.unique(batch['asym_id'])) == {0, 1, 2, 3}
  # Padding is no chain, no residue, no row; the real block is unchanged.
  assert batch['seq_mask'][180:].sum() == 0 and batch['asym_id'][180:].sum() == 0
  assert batch['msa_mask'][512:].sum() == 0
  np.testing.assert_array_equal(batch['msa'][:512, :180], complex_raw['msa'])
  with pytest.raises(InputError, match='does not fit a bucket'):
    transforms_multimer.make_batch(complex_raw, num_res=128)
  with pytest.raises(InputError, match='lack'):
    transforms_multimer.make_batch({'aatype': complex_raw['aatype']})


def test_predict_complex_seeds_and_label(predictor, complex_raw):
  batch = transforms_multimer.make_batch(complex_raw, num_res=192, num_templates=4)
  out = predictor.predict_processed(batch, random_seed=0)
  assert predictor.last_compile.label == 'model_1_multimer_v3/L192/msa512/t4/r3'
  again = predictor.predict_processed(batch, random_seed=0)
  other = predictor.predict_processed(batch, random_seed=1)
  pos = out['structure_module']['final_atom_positions']
  assert predictor.last_compile.status == 'in_process'  # one executable for every seed
  np.testing.assert_array_equal(again['structure_module']['final_atom_positions'], pos)
  assert np.abs(other['structure_module']['final_atom_positions'] - pos).max() > 1e-3
  assert 0 < float(out['iptm']) < 1 and 0 < float(out['ptm']) < 1
  np.testing.assert_allclose(out['ranking_confidence'], 0.8 * out['iptm'] + 0.2 * out['ptm'],
                             rtol=1e-6)
  assert out['predicted_aligned_error'].shape == (192, 192)


def test_monomer_and_multimer_batches_are_not_mixed(predictor, complex_raw):
  with pytest.raises(InputError, match='multimer preset'):
    predictor.predict_processed(random_batch(seed=0))
  cfg = tiny_config('model_1_ptm')
  monomer = Predictor(cfg, None)
  with pytest.raises(InputError, match='monomer preset'):
    monomer.predict_processed(transforms_multimer.make_batch(complex_raw))


def test_warmup_shapes_are_a_real_complex_shapes(predictor, complex_raw):
  cfg = predictor.config
  batch = transforms_multimer.make_batch(complex_raw, num_res=192, num_seq=512,
                                         num_templates=4)
  assert warmup.bucket_shapes(cfg, 192, 512, 0) == feature_shapes(batch, True)
  # The fixture's Predictor reports no progress, as a --noprogress fold's.
  label, _, _ = warmup.model_specs(cfg, [192], [(512, 0)], chunk='none', progress=False)[0]
  assert label == predictor.label(feature_shapes(batch, True))
  # Default depth: the rows the preset reads (8 sampled + 16 extra here), to an MSA bucket.
  assert warmup.preset_depths(cfg) == (32, 0)
