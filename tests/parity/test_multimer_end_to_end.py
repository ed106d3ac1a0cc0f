"""End-to-end parity of AlphaFold-Multimer with alphafold-colabfold 2.3.20 (float32).

A real heteromer built by af_jax's multimer pipeline (whose features equal the
reference pipeline's, tests/data/test_pipeline_multimer.py), each chain with its
real MSAs (homomer copies are covered by the trunk test):
- 2Q2K A, its own chain as its one template with only N, CA, C, O and CB
  observed, a stretch without atoms and every other residue glycine or alanine
  (its other template slots empty); the chain's numbering jumps by 50 (a chain
  break) and one residue is X;
- the short query, with its four HHsearch hits featurized by af_jax's template
  pipeline (missing atoms, no atoms where a hit does not cover it).
Random parameters in the published v3 layout (noise at each array's own spread;
the trunk test uses scaled relative noise), written as an .npz and read by
af_jax's loader; 2 recycles, the reference driven recycle by recycle with the
same sampling keys.
"""

import haiku as hk
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from alphafold.model import modules_multimer
from flax import nnx

from af_jax import params as af_params
from af_jax.common import residue_constants as rc
from af_jax.data import parsers, pipeline_multimer
from af_jax.model.alphafold_multimer import AlphaFoldMultimer, recycle_key
from configs import model_config
from tests.data.test_msa_pairing import ALIGN_2Q2K, SEQ_2Q2K
from tests.data.shared_data import TEMPLATE_FIXTURE
from tests.parity import ref_utils, template_inputs
from tests.parity.ref_features import raw_features

PRESET = 'model_1_multimer_v3'
OVERRIDES = {
    'model.embeddings_and_evoformer.evoformer_num_block': 2,
    'model.embeddings_and_evoformer.extra_msa_stack_num_block': 1,
    'model.embeddings_and_evoformer.num_msa': 16,
    'model.embeddings_and_evoformer.num_extra_msa': 32,
    'model.num_recycle': 2,
    'model.recycle_early_stop_tolerance': 0.0,
}


def complex_features(workdir) -> dict:
  """2Q2K A : the short query, AlphaFold-Multimer's raw features (see the module docstring)."""
  stripped = template_inputs.edit_raw_templates(raw_features(with_template=True),
                                                template_inputs.strip_gap_and_glycine_alanine)
  hits = template_inputs.pipeline_raw_features(workdir)
  chains = [
      pipeline_multimer.ChainInput.from_dir(
          parsers.FastaRecord('2q2k', '2q2k', SEQ_2Q2K), ALIGN_2Q2K,
          template_features={k: v for k, v in stripped.items() if k.startswith('template_')}),
      pipeline_multimer.ChainInput.from_dir(
          parsers.read_fasta(str(TEMPLATE_FIXTURE / 'short.fasta'))[0],
          TEMPLATE_FIXTURE / 'alignments',
          template_features={k: v for k, v in hits.items() if k.startswith('template_')}),
  ]
  feats = pipeline_multimer.make_multimer_features(chains, min_num_seq=64)
  feats = {k: (v.astype(np.float32) if v.dtype == np.float64 else v) for k, v in feats.items()
           if v.dtype != object}
  # A chain break inside chain A, and an unknown residue.
  first = feats['asym_id'] == feats['asym_id'][0]
  feats['residue_index'] = feats['residue_index'] + 50 * (first & (np.arange(len(first)) >= 35))
  feats['aatype'] = feats['aatype'].copy()
  feats['msa'] = feats['msa'].copy()
  feats['aatype'][12] = feats['msa'][0, 12] = rc.restypes_with_x.index('X')
  return feats


@pytest.mark.slow
def test_multimer_end_to_end(tmp_path):
  ref_cfg = ref_utils.ref_model_config(PRESET)
  ref_cfg.update_from_flattened_dict(OVERRIDES)
  ref_cfg.model.calc_extended_ptm = False
  ref_cfg.model.use_probs_extended = False
  cfg = model_config(PRESET)
  cfg.update_from_flattened_dict(OVERRIDES)
  batch = complex_features(tmp_path / 'pipeline')
  n_res = batch['aatype'].shape[0]
  assert batch['template_all_atom_mask'][0].sum() > 0

  prev = {'prev_msa_first_row': np.zeros((n_res, 256), np.float32),
          'prev_pair': np.zeros((n_res, n_res, 128), np.float32),
          'prev_pos': np.zeros((n_res, 37, 3), np.float32)}
  forward = hk.transform(lambda b, k: modules_multimer.AlphaFold(ref_cfg.model)(
      b, is_training=False, safe_key=k))
  ref_batch = jax.tree_util.tree_map(jnp.asarray, batch)  # the reference indexes with tracers
  init = forward.init(jax.random.PRNGKey(0), {**ref_batch, 'prev': prev}, jax.random.PRNGKey(1))
  # The reference's own initial layout is the published v3 one (fused triangle projections).
  published = ref_utils.perturb_by_spread(ref_utils.flatten(init), seed=7)
  path = tmp_path / f'params_{PRESET}.npz'
  af_params.write_npz(path, published)

  msa_key = jax.random.PRNGKey(42)
  apply = jax.jit(forward.apply)
  ref_params = ref_utils.unflatten(af_params.read_npz(path))
  with ref_utils.self_unit_vectors_zeroed():
    for r in range(3):
      out = apply(ref_params, jax.random.PRNGKey(0), {**ref_batch, 'prev': prev},
                  recycle_key(msa_key, r))
      prev = {k: np.asarray(v, np.float32) for k, v in out['prev'].items()}
  ref_pos = np.asarray(out['structure_module']['final_atom_positions'])

  model = AlphaFoldMultimer(cfg.model, rngs=nnx.Rngs(0))
  af_params.assign_flat(model, af_params.read_npz(path), preset=PRESET)
  ours = nnx.jit(lambda m, b, k: m(b, k))(model, batch, msa_key)
  assert int(ours['num_recycles']) == 2
  exists = np.asarray(ours['structure_module']['final_atom_mask']) > 0
  pos_err = float(np.max(np.abs(np.asarray(ours['structure_module']['final_atom_positions'])
                                - ref_pos)[exists]))
  plddt_err = float(np.max(np.abs(np.asarray(ours['plddt']) - np.asarray(out['plddt']))))
  print(f'multimer: max |dpos| {pos_err:.2e} A, max |dpLDDT| {plddt_err:.2e}, '
        f'ptm {float(ours["ptm"]):.4f} vs {float(out["ptm"]):.4f}, '
        f'iptm {float(ours["iptm"]):.4f} vs {float(out["iptm"]):.4f}')
  assert pos_err <= 1e-3, pos_err
  assert plddt_err <= 1e-3, plddt_err
  assert abs(float(ours['ptm']) - float(out['ptm'])) <= 1e-4
  assert abs(float(ours['iptm']) - float(out['iptm'])) <= 1e-4
  # The reference reports 80 ipTM + 20 pTM; AlphaFold's own scale is [0, 1].
  assert abs(float(ours['ranking_confidence']) - float(out['ranking_confidence']) / 100) <= 1e-4
  np.testing.assert_allclose(ours['predicted_aligned_error'], out['predicted_aligned_error'],
                             atol=1e-3)
