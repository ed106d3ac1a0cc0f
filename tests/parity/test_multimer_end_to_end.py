"""End-to-end parity of AlphaFold-Multimer with alphafold-colabfold 2.3.20 (float32).

A real heteromer built by af_jax's multimer pipeline (whose features equal the
reference pipeline's, tests/data/test_pipeline_multimer.py): 2Q2K : peptide,
the 2Q2K chain with its real MSAs and its own structure as a template, the
7A4D coiled-coil peptide alone (homomer copies are covered by the trunk test).
Random parameters (every array perturbed) in the published v3 layout, written
as an .npz and read by af_jax's loader; 2 recycles, the reference driven
recycle by recycle with the same sampling keys.
"""

import haiku as hk
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from alphafold.model import modules_multimer
from flax import nnx

from af_jax import params as af_params
from af_jax.data import parsers, pipeline_multimer
from af_jax.model.alphafold_multimer import AlphaFoldMultimer, recycle_key
from configs import model_config
from tests.data.test_msa_pairing import ALIGN_2Q2K, SEQ_2Q2K
from tests.data.test_pipeline_multimer import PEPTIDE_7A4D
from tests.parity import ref_utils
from tests.parity.ref_features import raw_features

PRESET = 'model_1_multimer_v3'
OVERRIDES = {
    'model.embeddings_and_evoformer.evoformer_num_block': 2,
    'model.embeddings_and_evoformer.extra_msa_stack_num_block': 1,
    'model.embeddings_and_evoformer.num_msa': 16,
    'model.embeddings_and_evoformer.num_extra_msa': 32,
    'model.num_recycle': 1,
    'model.recycle_early_stop_tolerance': 0.0,
}


def complex_features() -> dict:
  """2Q2K (with template) : peptide, AlphaFold-Multimer's raw features."""
  template = {k: v for k, v in raw_features(with_template=True).items()
              if k.startswith('template_')}
  chain_2q2k = pipeline_multimer.ChainInput.from_dir(
      parsers.FastaRecord('2q2k', '2q2k', SEQ_2Q2K), ALIGN_2Q2K, template_features=template)
  peptide = pipeline_multimer.ChainInput(parsers.FastaRecord('pep', 'pep', PEPTIDE_7A4D))
  feats = pipeline_multimer.make_multimer_features([chain_2q2k, peptide],
                                                   min_num_seq=64)
  return {k: (v.astype(np.float32) if v.dtype == np.float64 else v) for k, v in feats.items()
          if v.dtype != object}


@pytest.mark.slow
def test_multimer_end_to_end(tmp_path):
  ref_cfg = ref_utils.ref_model_config(PRESET)
  ref_cfg.update_from_flattened_dict(OVERRIDES)
  ref_cfg.model.calc_extended_ptm = False
  ref_cfg.model.use_probs_extended = False
  cfg = model_config(PRESET)
  cfg.update_from_flattened_dict(OVERRIDES)
  batch = complex_features()
  n_res = batch['aatype'].shape[0]
  assert n_res == 110 and batch['template_all_atom_mask'][0].sum() > 0

  prev = {'prev_msa_first_row': np.zeros((n_res, 256), np.float32),
          'prev_pair': np.zeros((n_res, n_res, 128), np.float32),
          'prev_pos': np.zeros((n_res, 37, 3), np.float32)}
  forward = hk.transform(lambda b, k: modules_multimer.AlphaFold(ref_cfg.model)(
      b, is_training=False, safe_key=k))
  ref_batch = jax.tree_util.tree_map(jnp.asarray, batch)  # the reference indexes with tracers
  init = forward.init(jax.random.PRNGKey(0), {**ref_batch, 'prev': prev}, jax.random.PRNGKey(1))
  # The reference's own initial layout is the published v3 one (fused triangle projections).
  published = ref_utils.perturb(ref_utils.flatten(init), seed=7, scale=0.2)
  path = tmp_path / f'params_{PRESET}.npz'
  af_params.write_npz(path, published)

  msa_key = jax.random.PRNGKey(42)
  apply = jax.jit(forward.apply)
  ref_params = ref_utils.unflatten(af_params.read_npz(path))
  with ref_utils.self_unit_vectors_zeroed():
    for r in range(2):
      out = apply(ref_params, jax.random.PRNGKey(0), {**ref_batch, 'prev': prev},
                  recycle_key(msa_key, r))
      prev = {k: np.asarray(v, np.float32) for k, v in out['prev'].items()}
  ref_pos = np.asarray(out['structure_module']['final_atom_positions'])

  model = AlphaFoldMultimer(cfg.model, rngs=nnx.Rngs(0))
  af_params.assign_flat(model, af_params.read_npz(path), preset=PRESET)
  ours = nnx.jit(lambda m, b, k: m(b, k))(model, batch, msa_key)
  assert int(ours['num_recycles']) == 1
  exists = np.asarray(ours['structure_module']['final_atom_mask']) > 0
  pos_err = float(np.max(np.abs(np.asarray(ours['structure_module']['final_atom_positions'])
                                - ref_pos)[exists]))
  plddt_err = float(np.max(np.abs(np.asarray(ours['plddt']) - np.asarray(out['plddt']))))
  print(f'multimer: max |dpos| {pos_err:.2e} A, max |dpLDDT| {plddt_err:.2e}, '
        f'ptm {float(ours["ptm"]):.4f} vs {float(out["ptm"]):.4f}, '
        f'iptm {float(ours["iptm"]):.4f} vs {float(out["iptm"]):.4f}')
  assert pos_err <= 1e-2, pos_err
  assert plddt_err <= 0.05, plddt_err
  assert abs(float(ours['ptm']) - float(out['ptm'])) <= 1e-3
  assert abs(float(ours['iptm']) - float(out['iptm'])) <= 1e-3
  # The reference reports 80 ipTM + 20 pTM; AlphaFold's own scale is [0, 1].
  assert abs(float(ours['ranking_confidence']) - float(out['ranking_confidence']) / 100) <= 1e-3
  np.testing.assert_allclose(ours['predicted_aligned_error'], out['predicted_aligned_error'],
                             atol=1e-2)
