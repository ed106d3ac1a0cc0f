"""Parity of the template embedder, the heads and the confidence metrics (float32)."""

import jax.numpy as jnp
import numpy as np
import pytest
from alphafold.common import confidence as ref_confidence
from alphafold.model import modules
from flax import nnx

from af_jax.common import confidence
from af_jax.model import heads
from af_jax.model.template import TemplateEmbedding
from tests.parity import ref_utils

N_RES, N_TEMPL, C_Z = 11, 3, 128
TOL = 1e-5


@pytest.fixture(scope='module')
def cfg():
  return ref_utils.ref_model_config('model_1_ptm')


def random_templates(rng, n_templ=N_TEMPL, n_res=N_RES):
  pos = rng.normal(size=(n_templ, n_res, 37, 3)).astype(np.float32) * 8.0
  masks = (rng.random((n_templ, n_res, 37)) > 0.15).astype(np.float32)
  return {
      'template_aatype': rng.integers(0, 21, (n_templ, n_res)).astype(np.int32),
      'template_all_atom_positions': pos,
      'template_all_atom_masks': masks,
      'template_pseudo_beta': pos[:, :, 3],
      'template_pseudo_beta_mask': masks[:, :, 3],
      'template_mask': np.array([1.0] * (n_templ - 1) + [0.0], np.float32),
  }


@pytest.mark.parametrize('unit_vector', [False, True])
def test_template_embedding(cfg, unit_vector):
  c = cfg.model.embeddings_and_evoformer.template
  c.use_template_unit_vector = unit_vector
  gc = cfg.model.global_config
  rng = np.random.default_rng(11)
  pair = rng.normal(size=(N_RES, N_RES, C_Z)).astype(np.float32)
  seq_mask = np.ones(N_RES, np.float32)
  seq_mask[-1] = 0
  mask_2d = seq_mask[:, None] * seq_mask[None]
  templates = random_templates(rng)
  ref, flat = ref_utils.run_ref(
      lambda p, t, m: modules.TemplateEmbedding(c, gc)(p, t, m, is_training=False),
      pair, templates, mask_2d)
  mod = TemplateEmbedding(c, c_z=C_Z, rngs=nnx.Rngs(0))
  ref_utils.load_into(mod, flat, 'template_embedding')
  out = nnx.jit(lambda m, *a: m(*a))(mod, pair, templates, mask_2d)
  err = ref_utils.rel_err(out, ref)
  assert err <= TOL, err


def _head_case(cfg, ref_cls, our_cls, rep_key, shape, head_cfg, prefix, **dims):
  gc = cfg.model.global_config
  rng = np.random.default_rng(hash(prefix) % 1000)
  rep = rng.normal(size=shape).astype(np.float32)
  ref, flat = ref_utils.run_ref(
      lambda r: ref_cls(head_cfg, gc)({rep_key: r}, None, is_training=False), rep)
  mod = our_cls(head_cfg, rngs=nnx.Rngs(0), **dims)
  ref_utils.load_into(mod, flat, prefix)
  return mod(jnp.asarray(rep)), ref


def test_heads(cfg):
  h = cfg.model.heads
  cases = [
      (modules.DistogramHead, heads.DistogramHead, 'pair', (N_RES, N_RES, 128), h.distogram,
       'distogram_head', dict(c_z=128)),
      (modules.MaskedMsaHead, heads.MaskedMsaHead, 'msa', (5, N_RES, 256), h.masked_msa,
       'masked_msa_head', dict(c_m=256)),
      (modules.PredictedLDDTHead, heads.PredictedLDDTHead, 'structure_module', (N_RES, 384),
       h.predicted_lddt, 'predicted_lddt_head', dict(c_s=384)),
      (modules.ExperimentallyResolvedHead, heads.ExperimentallyResolvedHead, 'single',
       (N_RES, 384), h.experimentally_resolved, 'experimentally_resolved_head', dict(c_s=384)),
      (modules.PredictedAlignedErrorHead, heads.PredictedAlignedErrorHead, 'pair',
       (N_RES, N_RES, 128), h.predicted_aligned_error, 'predicted_aligned_error_head',
       dict(c_z=128)),
  ]
  for ref_cls, our_cls, key, shape, hc, prefix, dims in cases:
    out, ref = _head_case(cfg, ref_cls, our_cls, key, shape, hc, prefix, **dims)
    assert set(out) == set(ref), prefix
    for k in ref:
      err = ref_utils.rel_err(out[k], ref[k])
      assert err <= TOL, (prefix, k, err)


def test_confidence_metrics():
  rng = np.random.default_rng(3)
  plddt_logits = rng.normal(size=(N_RES, 50)).astype(np.float32) * 3
  pae_logits = rng.normal(size=(N_RES, N_RES, 64)).astype(np.float32) * 3
  breaks = np.linspace(0.0, 31.0, 63).astype(np.float32)
  mask = np.ones(N_RES, np.float32)
  mask[-2:] = 0
  assert ref_utils.rel_err(confidence.plddt(plddt_logits),
                           ref_confidence.compute_plddt(plddt_logits)) <= TOL
  ours = confidence.predicted_aligned_error(pae_logits, breaks)
  ref = ref_confidence.compute_predicted_aligned_error(pae_logits, breaks)
  for k in ref:
    assert ref_utils.rel_err(ours[k], ref[k]) <= TOL, k
  ptm = confidence.predicted_tm_score(pae_logits, breaks, mask)
  ref_ptm = ref_confidence.predicted_tm_score(pae_logits, breaks, residue_weights=mask)
  assert abs(float(ptm) - float(ref_ptm)) <= 1e-6
  prev = rng.normal(size=(N_RES, 37, 3)).astype(np.float32) * 5
  cur = prev + rng.normal(size=prev.shape).astype(np.float32)
  assert abs(float(confidence.ca_distance_change(prev, cur, mask))
             - float(ref_confidence.compute_tol(prev, cur, mask))) <= 1e-5
