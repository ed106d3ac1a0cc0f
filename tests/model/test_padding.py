"""Padding a real protein up to a bucket leaves its prediction unchanged (float rounding).

The data pipeline pads length and MSA depth to buckets so that proteins share
executables; this checks the model side: every op masks the padded residues and
rows, so the unpadded part of every output is the same: within a multiple of the
unpadded prediction's own spread under a one-ulp change of the weights
(tests/tolerance.py), since only the order of float32 sums changes.
"""

import numpy as np

from af_jax.run import outputs
from af_jax.data import features, parsers, transforms
from af_jax.inference import Predictor
from af_jax.model.build import build_model
from af_jax import params as af_params
from tests import tolerance
from tests.data.shared_data import CHAIN_2Q2K
from tests.model.tiny import tiny_config


def _summary(out):
  return {'pos': out['structure_module']['final_atom_positions'], 'plddt': out['plddt'],
          'pae': out['predicted_aligned_error'], 'ptm': out['ptm'],
          'pair': out['representations']['pair']}


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
  assert np.abs(a['structure_module']['final_atom_positions']).max() > 1.0  # not the origin
  spread = tolerance.predictor_spread(predictor, natural, _summary)
  tolerance.assert_close(_summary(b), _summary(a), spread, what='padded')
