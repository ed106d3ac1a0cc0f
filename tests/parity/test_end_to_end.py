"""End-to-end parity with DeepMind's AlphaFold (alphafold-colabfold 2.3.20, float32).

A real protein (2Q2K chain A, 70 residues, its real MSAs from ../shared/data and
its own chain as a template), processed by the reference's feature pipeline;
random parameters (every array perturbed) written as an AlphaFold `.npz` and
read by each side's own loader; 3 recycles driven in float32 on the reference
side, as REFERENCE.md prescribes.
"""

import jax
import numpy as np
import pytest
from alphafold.model import data as ref_data
from alphafold.model import model as ref_model

import af_jax
from af_jax import params as af_params
from af_jax.inference import Predictor, build_model
from tests.parity import ref_utils
from tests.parity.ref_features import raw_features

OVERRIDES = {
    'model.embeddings_and_evoformer.evoformer_num_block': 2,
    'model.embeddings_and_evoformer.extra_msa_stack_num_block': 1,
    'data.eval.max_msa_clusters': 16,
    'data.common.max_extra_msa': 32,
    'model.num_recycle': 3,
    'data.common.num_recycle': 3,
}


def _configs(preset):
  ref_cfg = ref_utils.ref_model_config(preset)
  ref_cfg.update_from_flattened_dict(OVERRIDES)
  cfg = af_jax.model_config(preset)
  cfg.update_from_flattened_dict(OVERRIDES)
  return ref_cfg, cfg


@pytest.mark.slow
@pytest.mark.parametrize('preset,with_template', [('model_1_ptm', True), ('model_3_ptm', False)])
def test_end_to_end(tmp_path, preset, with_template):
  with ref_utils.undefined_torsions_zeroed():
    _run_and_compare(tmp_path, preset, with_template)


def _run_and_compare(tmp_path, preset, with_template):
  ref_cfg, cfg = _configs(preset)
  runner = ref_model.RunModel(ref_cfg)
  batch = runner.process_features(raw_features(with_template), random_seed=0)
  n_res = batch['aatype'].shape[1]
  assert batch['aatype'].shape[0] == 4  # one slice per recycle

  zeros = {'prev_msa_first_row': np.zeros((n_res, 256), np.float32),
           'prev_pair': np.zeros((n_res, n_res, 128), np.float32),
           'prev_pos': np.zeros((n_res, 37, 3), np.float32)}
  # Every array random: AlphaFold's initializers, then perturbed (output
  # layers included), written in the published (unfused) layout.
  published = ref_utils.perturb(af_params.module_to_flat(build_model(cfg.model, seed=0)),
                                seed=5, scale=0.2)
  params_dir = tmp_path / 'params'
  params_dir.mkdir()
  af_jax.save_params(params_dir / f'params_{preset}.npz', published)

  # Reference: its own loader, recycles driven by hand in float32 (REFERENCE.md).
  ref_params = ref_data.get_model_haiku_params(preset, str(tmp_path))
  prev = zeros
  for r in range(4):
    out = runner.apply(ref_params, jax.random.PRNGKey(0),
                       {**{k: v[r:r + 1] for k, v in batch.items()}, 'prev': prev})
    prev = {k: np.asarray(v, np.float32) for k, v in out['prev'].items()}
  ref_pos = np.asarray(out['structure_module']['final_atom_positions'])
  ref_plddt = np.asarray(out['plddt'])

  predictor = Predictor(cfg, af_jax.load_params(params_dir / f'params_{preset}.npz'))
  ours = predictor.predict_processed(batch)
  assert ours['num_recycles'] == 3
  pos = ours['structure_module']['final_atom_positions']
  assert pos.shape == (n_res, 37, 3)
  pos_err = float(np.max(np.abs(pos - ref_pos)))
  plddt_err = float(np.max(np.abs(ours['plddt'] - ref_plddt)))
  print(f'{preset}: max |dpos| = {pos_err:.2e} A, max |dpLDDT| = {plddt_err:.2e}, '
        f'ptm {float(ours["ptm"]):.4f} vs {float(out["ptm"]):.4f}')
  assert pos_err <= 1e-2, pos_err
  assert plddt_err <= 0.05, plddt_err
  assert abs(float(ours['ptm']) - float(out['ptm'])) <= 1e-3
  np.testing.assert_allclose(ours['predicted_aligned_error'], out['predicted_aligned_error'],
                             atol=1e-2)
