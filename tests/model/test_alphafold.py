"""The whole model on a tiny config: outputs, recycling loop, early stop, compile once.

Two ways of computing one thing are compared within a multiple of the result's own
spread under a one-ulp change of the parameters (tests/tolerance.py).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from af_jax import params as af_params
from af_jax.errors import InputError
from af_jax.inference import Predictor, select_features
from af_jax.model.build import build_model
from tests import tolerance as tol_lib
from tests.model.tiny import random_batch, tiny_config


@pytest.fixture(scope='module')
def setup():
  cfg = tiny_config()
  flat = af_params.module_to_flat(build_model(cfg.model, seed=1))
  # Perturb so no output layer is zero.
  rng = np.random.default_rng(0)
  flat = {k: v + 0.05 * rng.normal(size=v.shape).astype(np.float32) for k, v in flat.items()}
  return cfg, flat


def test_outputs_have_alphafolds_names_and_shapes(setup):
  cfg, flat = setup
  batch = random_batch()
  out = Predictor(cfg, flat).predict_processed(batch)
  n = batch['aatype'].shape[1]
  sm = out['structure_module']
  assert sm['final_atom_positions'].shape == (n, 37, 3)
  assert sm['final_atom_mask'].shape == (n, 37)
  assert out['plddt'].shape == (n,) and (0 <= out['plddt']).all() and (out['plddt'] <= 100).all()
  assert out['predicted_aligned_error'].shape == (n, n)
  assert 0 < float(out['ptm']) <= 1
  assert float(out['max_predicted_aligned_error']) > 30
  assert out['distogram']['logits'].shape == (n, n, 64)
  assert out['distogram']['bin_edges'].shape == (63,)
  assert out['masked_msa']['logits'].shape == (5, n, 23)
  assert out['experimentally_resolved']['logits'].shape == (n, 37)
  assert out['representations']['single'].shape == (n, 32)
  assert out['representations']['pair'].shape == (n, n, 16)
  assert out['num_recycles'] == 3
  assert np.isfinite(sm['final_atom_positions']).all()


def test_recycling_loop_equals_python_loop(setup):
  cfg, flat = setup
  from flax import nnx
  model = build_model(cfg.model, flat)
  graphdef, state = nnx.split(model)
  feats = select_features(random_batch(seed=2), use_templates=True)
  forward = jax.jit(lambda s: nnx.merge(graphdef, s)(feats)['structure_module'][
      'final_atom_positions'])
  want = forward(state)
  n = feats['aatype'].shape[1]
  prev = {'prev_msa_first_row': np.zeros((n, 32), np.float32),
          'prev_pair': np.zeros((n, n, 16), np.float32),
          'prev_pos': np.zeros((n, 37, 3), np.float32)}
  step = jax.jit(lambda b, p: model.iteration(b, p))
  for r in range(4):
    reps, sm = step(jax.tree_util.tree_map(lambda x: x[r], feats), prev)
    prev = {'prev_msa_first_row': reps['msa_first_row'], 'prev_pair': reps['pair'],
            'prev_pos': sm['final_atom_positions']}
  tol_lib.assert_close(sm['final_atom_positions'], want, tol_lib.spread(forward, state),
                         what='final_atom_positions')


@pytest.mark.parametrize('tolerance,expected', [(0.0, 3), (1e6, 1)])
def test_early_stop(setup, tolerance, expected):
  cfg, flat = setup
  cfg = tiny_config(**{'model.recycle_early_stop_tolerance': tolerance})
  out = Predictor(cfg, flat).predict_processed(random_batch())
  assert out['num_recycles'] == expected
  assert float(out['tol']) >= 0


def test_compiles_once_per_shape(setup):
  cfg, flat = setup
  predictor = Predictor(cfg, flat)
  a = predictor.predict_processed(random_batch(seed=3))
  assert predictor.last_compile.status != 'in_process'
  b = predictor.predict_processed(random_batch(seed=4))
  assert predictor.last_compile.status == 'in_process'  # same shapes: the kept executable
  assert not np.allclose(a['plddt'], b['plddt'])
  predictor.predict_processed(random_batch(seed=3, n_res=14))
  assert predictor.last_compile.status != 'in_process'
  assert predictor.last_compile.compiled is not None
  assert len(predictor._executables) == 2


def test_bad_batches_are_input_errors(setup):
  cfg, flat = setup
  predictor = Predictor(cfg, flat)
  batch = random_batch()
  with pytest.raises(InputError, match='lacks'):
    predictor.predict_processed({k: v for k, v in batch.items() if k != 'msa_feat'})
  with pytest.raises(InputError, match='one slice per recycle'):
    predictor.predict_processed({k: v[0] for k, v in batch.items()})
  with pytest.raises(InputError, match='recycle slices'):
    predictor.predict_processed({k: v[:2] for k, v in batch.items()})


def test_bfloat16_runs_close_to_float32(setup):
  cfg, flat = setup
  batch = random_batch()
  f32 = Predictor(cfg, flat).predict_processed(batch)
  bf16 = Predictor(tiny_config(**{'model.global_config.bfloat16': True}),
                   flat).predict_processed(batch)
  assert np.isfinite(bf16['structure_module']['final_atom_positions']).all()
  assert abs(float(bf16['mean_plddt']) - float(f32['mean_plddt'])) < 5


def test_training_forward_differentiates_only_the_last_iteration():
  """forward_train(n) = inference with n recycles, and its gradient flows.

  Dropout is tested where it is drawn: tests/model/test_structure_module.py and
  the Evoformer stack in tests/parallel/test_dap.py.
  """
  from flax import nnx
  # model_3 (no templates) and one recycle: two compiles of the tiny model, one with gradients.
  cfg = tiny_config('model_3_ptm', **{'model.num_recycle': 1,
                                      'model.global_config.zero_init': False})
  model = build_model(cfg.model, seed=5)
  graphdef, state = nnx.split(model)
  feats = select_features(random_batch(seed=3, n_slices=2), use_templates=False)

  def loss(state):
    out = nnx.merge(graphdef, state).forward_train(feats, 1)
    return jnp.mean(out['structure_module']['final_atom_positions'] ** 2), out

  (_, out), grads = jax.jit(jax.value_and_grad(loss, has_aux=True))(state)
  forward = jax.jit(lambda s: nnx.merge(graphdef, s)(feats)['structure_module'][
      'final_atom_positions'])
  tol_lib.assert_close(out['structure_module']['final_atom_positions'], forward(state),
                         tol_lib.spread(forward, state), what='final_atom_positions')
  norms = [float(jnp.abs(g).sum()) for g in jax.tree_util.tree_leaves(grads)]
  assert all(np.isfinite(norms)) and sum(n > 0 for n in norms) > len(norms) // 2
