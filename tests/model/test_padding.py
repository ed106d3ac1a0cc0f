"""Padding a real protein up to a bucket leaves its prediction unchanged (float rounding).

The data pipeline pads length and MSA depth to buckets so that proteins share
executables; this checks the model side: every op masks the padded residues and
rows, so the unpadded part of every output is the same.
"""

import numpy as np

from af_jax import outputs
from af_jax.data import features, parsers, transforms
from af_jax.inference import Predictor, build_model
from af_jax import params as af_params
from tests.data.shared_data import CHAIN_2Q2K
from tests.model.tiny import tiny_config


def test_bucket_padding_does_not_change_the_prediction():
  msa_dir = CHAIN_2Q2K / 'alignments' / '2q2k_A'
  msas = [parsers.read_msa(msa_dir / n) for n in ('uniref90_hits.sto', 'bfd_uniclust_hits.a3m')]
  seq = msas[0].sequences[0]
  raw = {**features.make_sequence_features(seq, '2q2k_A', len(seq)),
         **features.make_msa_features(msas), **features.empty_template_features(len(seq))}
  cfg = tiny_config('model_1_ptm', **{
      'model.num_recycle': 1, 'data.common.num_recycle': 1,
      'data.eval.max_msa_clusters': 8, 'data.common.max_extra_msa': 8,
      'model.global_config.zero_init': False})
  params = af_params.module_to_flat(build_model(cfg.model, seed=3))
  predictor = Predictor(cfg, params)
  n_res = len(seq)
  natural = transforms.process_features(raw, cfg, 0)
  padded = transforms.process_features(raw, cfg, 0, num_res=n_res + 18, msa_clusters=8,
                                       extra_msa=16)
  assert padded['aatype'].shape[-1] == n_res + 18
  assert padded['extra_msa'].shape[-2] > natural['extra_msa'].shape[-2]
  a = predictor.predict_processed(natural)
  b = outputs.unpad_prediction(predictor.predict_processed(padded), n_res)
  pos_a = a['structure_module']['final_atom_positions']
  pos_b = b['structure_module']['final_atom_positions']
  assert np.abs(pos_a).max() > 1.0  # a real structure, not the origin
  np.testing.assert_allclose(pos_b, pos_a, atol=1e-3)
  np.testing.assert_allclose(b['plddt'], a['plddt'], atol=1e-3)
  np.testing.assert_allclose(b['predicted_aligned_error'], a['predicted_aligned_error'],
                             atol=1e-3)
  np.testing.assert_allclose(b['ptm'], a['ptm'], atol=1e-5)
  np.testing.assert_allclose(b['representations']['pair'], a['representations']['pair'],
                             atol=1e-4, rtol=1e-4)
