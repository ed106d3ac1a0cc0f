"""AlphaFold .npz <-> model state: every published key, strict both ways, exact round trip."""

import json
import os

import numpy as np
import pytest
from flax import nnx

import af_jax
from af_jax import params
from af_jax.errors import ParamsError
from af_jax.model.build import build_model

SHAPES = os.path.join(os.path.dirname(__file__), '..', '..', 'shared', 'reference')


def _abstract_flat(preset):
  cfg = af_jax.model_config(preset)
  model = nnx.eval_shape(lambda: build_model(cfg.model))
  return {params.path_to_key(p): tuple(v.get_value().shape)
          for p, v in nnx.to_flat_state(nnx.state(model, nnx.Param))}


@pytest.mark.parametrize('preset', ['model_1', 'model_1_ptm', 'model_2', 'model_3',
                                    'model_3_ptm', 'model_5_ptm'])
def test_parameter_tree_is_alphafolds(preset):
  """Every key and shape of the published file, and nothing else."""
  with open(os.path.join(SHAPES, f'param_shapes_{preset}.json')) as f:
    published = {k: tuple(v) for k, v in json.load(f).items()}
  ours = _abstract_flat(preset)
  assert sorted(set(published) - set(ours)) == []
  assert sorted(set(ours) - set(published)) == []
  assert {k: ours[k] for k in published} == published


def test_key_mapping_round_trip():
  key = ('alphafold/alphafold_iteration/evoformer/template_embedding/single_template_embedding/'
         'template_pair_stack/__layer_stack_no_state/pair_transition/transition1//weights')
  path = params.key_to_path(key)
  assert 'layer_stack' in path and params.path_to_key(path) == key
  assert params.path_to_key(('evoformer', 'pair_activations', 'bias')).endswith(
      'evoformer/pair_activiations//bias')


@pytest.fixture(scope='module')
def small_model():
  cfg = af_jax.model_config('model_1_ptm')
  e = cfg.model.embeddings_and_evoformer
  e.evoformer_num_block, e.extra_msa_stack_num_block = 1, 1
  return cfg, build_model(cfg.model, seed=3)


def test_save_load_round_trip_is_exact(tmp_path, small_model):
  cfg, model = small_model
  flat = params.module_to_flat(model)
  path = tmp_path / 'params_model_1_ptm.npz'
  af_jax.save_params(path, flat)
  loaded = af_jax.load_params(path)
  assert set(loaded) == set(flat)
  reloaded = build_model(cfg.model, loaded, preset='model_1_ptm')
  again = params.module_to_flat(reloaded)
  for k in flat:
    np.testing.assert_array_equal(again[k], flat[k])
  # Saving the model itself writes the same file contents.
  af_jax.save_params(tmp_path / 'again.npz', reloaded)
  from_model = af_jax.load_params(tmp_path / 'again.npz')
  assert all(np.array_equal(from_model[k], flat[k]) for k in flat)
  assert not list(tmp_path.glob('*.tmp-*'))


def test_missing_extra_and_misshaped_keys_are_named(small_model):
  cfg, model = small_model
  flat = params.module_to_flat(model)
  key = sorted(flat)[0]
  with pytest.raises(ParamsError, match="missing.*preset 'model_1_ptm'"):
    build_model(cfg.model, {k: v for k, v in flat.items() if k != key}, preset='model_1_ptm')
  with pytest.raises(ParamsError, match='unexpected.*extra//w'):
    build_model(cfg.model, {**flat, 'alphafold/extra//w': np.zeros(1)}, preset='model_1_ptm')
  bad = dict(flat)
  bad[key] = np.zeros(flat[key].shape + (1,), np.float32)
  with pytest.raises(ParamsError, match='has shape'):
    build_model(cfg.model, bad, preset='model_1_ptm')


def test_unreadable_file_is_a_params_error(tmp_path):
  with pytest.raises(ParamsError, match='not found'):
    af_jax.load_params(tmp_path / 'nope.npz')
  (tmp_path / 'bad.npz').write_bytes(b'not a zip')
  with pytest.raises(ParamsError, match='not a readable'):
    af_jax.load_params(tmp_path / 'bad.npz')
