"""End-to-end parity with DeepMind's AlphaFold (alphafold-colabfold 2.3.20, float32).

Real proteins with their real MSAs, processed by the reference's feature
pipeline, folded with 2 recycles (driven in float32 on the reference side, as
REFERENCE.md prescribes) by random parameters written as an AlphaFold `.npz`
and read by each side's own loader. Templates as users have them:
- the short query's HHsearch hits featurized by af_jax's template pipeline
  (hit mmCIFs with missing atoms, no atoms where a hit does not cover the query);
- 2Q2K A's own chain with only N, CA, C, O and CB observed, a stretch without
  any atom, and every other residue glycine or alanine;
and no templates (model_3_ptm). The 2Q2K case also carries a chain break
(residue numbers jump by 50, as numbering from a PDB file or a linker-free
complex gives) and an unknown residue X in the query. Two kinds of random weights: scaled relative
noise (`ref_utils.perturb`) and noise at each array's own spread
(`ref_utils.perturb_by_spread`). The reference's undefined template torsions
(rounding noise) are pinned to zero, as af_jax does (all_atom.py).
"""

import jax
import numpy as np
import pytest
from alphafold.model import data as ref_data
from alphafold.model import model as ref_model

import af_jax
from af_jax import params as af_params
from af_jax.common import residue_constants as rc
from af_jax.inference import Predictor
from af_jax.model.build import build_model
from tests.parity import ref_utils, template_inputs
from tests.parity.ref_features import raw_features

# Float32 rounding through 2 Evoformer blocks, 3 iterations and the structure
# module: the reference moves by ~2e-4 Å against itself when every weight is
# multiplied by (1 + 1e-7 N(0, 1)).
POS_TOL, PLDDT_TOL = 1e-3, 1e-3
OVERRIDES = {
    'model.embeddings_and_evoformer.evoformer_num_block': 2,
    'model.embeddings_and_evoformer.extra_msa_stack_num_block': 1,
    'data.eval.max_msa_clusters': 16,
    'data.common.max_extra_msa': 32,
    'model.num_recycle': 2,
    'data.common.num_recycle': 2,
}


def _configs(preset):
  ref_cfg = ref_utils.ref_model_config(preset)
  ref_cfg.update_from_flattened_dict(OVERRIDES)
  cfg = af_jax.model_config(preset)
  cfg.update_from_flattened_dict(OVERRIDES)
  return ref_cfg, cfg


@pytest.mark.slow
@pytest.mark.parametrize('preset,inputs,weights', [
    ('model_1_ptm', 'pipeline hits', 'spread'),
    ('model_1_ptm', 'backbone and CB, gap, G/A', 'relative'),
    ('model_3_ptm', 'no templates', 'relative'),
])
def test_end_to_end(tmp_path, preset, inputs, weights):
  if inputs == 'pipeline hits':
    raw = template_inputs.pipeline_raw_features(tmp_path / 'pipeline')
  elif inputs == 'no templates':
    raw = raw_features(with_template=False)
  else:
    raw = with_chain_break_and_unknown_residue(template_inputs.edit_raw_templates(
        raw_features(with_template=True), template_inputs.strip_gap_and_glycine_alanine))
  with ref_utils.undefined_torsions_pinned():
    _run_and_compare(tmp_path, preset, raw, weights)


def with_chain_break_and_unknown_residue(raw: dict, at: int = 35, x_at: int = 12) -> dict:
  """Residue numbers jump by 50 from `at` on; residue `x_at` of the query becomes X."""
  raw = dict(raw)
  raw['residue_index'] = raw['residue_index'] + 50 * (np.arange(len(raw['residue_index'])) >= at)
  aatype = raw['aatype'].copy()
  aatype[x_at] = np.eye(aatype.shape[-1])[rc.restypes_with_x.index('X')]
  msa = raw['msa'].copy()
  msa[0, x_at] = rc.HHBLITS_AA_TO_ID['X']
  sequence = raw['sequence'][0].decode()
  raw.update(aatype=aatype, msa=msa, sequence=np.array(
      [(sequence[:x_at] + 'X' + sequence[x_at + 1:]).encode()], dtype=object))
  return raw


def _run_and_compare(tmp_path, preset, raw, weights):
  ref_cfg, cfg = _configs(preset)
  runner = ref_model.RunModel(ref_cfg)
  batch = runner.process_features(raw, random_seed=0)
  n_res = batch['aatype'].shape[1]
  assert batch['aatype'].shape[0] == 3  # one slice per recycle

  zeros = {'prev_msa_first_row': np.zeros((n_res, 256), np.float32),
           'prev_pair': np.zeros((n_res, n_res, 128), np.float32),
           'prev_pos': np.zeros((n_res, 37, 3), np.float32)}
  # Every array random: AlphaFold's initializers, then perturbed (output
  # layers included), written in the published (unfused) layout.
  initial = af_params.module_to_flat(build_model(cfg.model, seed=0))
  published = (ref_utils.perturb(initial, seed=5, scale=0.2) if weights == 'relative'
               else ref_utils.perturb_by_spread(initial, seed=5))
  params_dir = tmp_path / 'params'
  params_dir.mkdir()
  af_jax.save_params(params_dir / f'params_{preset}.npz', published)

  # Reference: its own loader, recycles driven by hand in float32 (REFERENCE.md).
  ref_params = ref_data.get_model_haiku_params(preset, str(tmp_path))
  prev, iterations = zeros, []
  for r in range(3):
    out = runner.apply(ref_params, jax.random.PRNGKey(0),
                       {**{k: v[r:r + 1] for k, v in batch.items()}, 'prev': prev})
    prev = {k: np.asarray(v, np.float32) for k, v in out['prev'].items()}
    iterations.append(out)
  ref_pos = np.asarray(out['structure_module']['final_atom_positions'])
  ref_plddt = np.asarray(out['plddt'])

  predictor = Predictor(cfg, af_jax.load_params(params_dir / f'params_{preset}.npz'))
  ours = predictor.predict_processed(batch)
  assert ours['num_recycles'] == 2
  pos = ours['structure_module']['final_atom_positions']
  assert pos.shape == (n_res, 37, 3)
  pos_err = float(np.max(np.abs(pos - ref_pos)))
  plddt_err = float(np.max(np.abs(ours['plddt'] - ref_plddt)))
  ptm_err = abs(float(ours['ptm']) - float(out['ptm']))
  print(f'{preset}, {inputs_label(raw)}: max |dpos| = {pos_err:.2e} A, '
        f'max |dpLDDT| = {plddt_err:.2e}, |dpTM| = {ptm_err:.1e}')
  assert pos_err <= POS_TOL, pos_err
  assert plddt_err <= PLDDT_TOL, plddt_err
  assert ptm_err <= 1e-4
  np.testing.assert_allclose(ours['predicted_aligned_error'], out['predicted_aligned_error'],
                             atol=1e-3)
  if preset == 'model_3_ptm':
    _check_early_stop(cfg, params_dir / f'params_{preset}.npz', batch, iterations)


def _check_early_stop(cfg, params_path, batch, iterations):
  """Recycling stops where the reference's RunModel.predict stops, with its outputs.

  The reference stops after iteration r > 0 once its CA change `tol` falls below
  `recycle_early_stop_tolerance`; a tolerance just above iteration 1's change
  stops both after 2 iterations.
  """
  tol_1, tol_2 = (float(it['tol']) for it in iterations[1:3])
  assert tol_1 > 0 and tol_2 > 0
  cfg.model.recycle_early_stop_tolerance = tol_1 * 1.01
  ours = Predictor(cfg, af_jax.load_params(params_path)).predict_processed(batch)
  assert ours['num_recycles'] == 1
  want = np.asarray(iterations[1]['structure_module']['final_atom_positions'])
  err = float(np.max(np.abs(ours['structure_module']['final_atom_positions'] - want)))
  print(f'early stop after 2 iterations (tol {tol_1:.3f} A): max |dpos| = {err:.2e} A')
  assert err <= POS_TOL


def inputs_label(raw) -> str:
  n = raw['template_aatype'].shape[0] if 'template_aatype' in raw else 0
  return f'{len(raw["sequence"][0])} residues, {n} templates'
