"""The train step on a real chain: it learns, skips non-finite steps, resumes exactly, exports.

One train step executable (the tiny model on 2Q2K chain A, crop 32) serves every test
here, so the file compiles it once.
"""

import jax
import numpy as np
import pytest

import af_jax
from af_jax import params as af_params
from af_jax.errors import ConfigError, InputError
from af_jax.model.build import build_model
from af_jax.train.checkpoint import Checkpointer
from af_jax.train.data import TrainingData
from af_jax.train.loader import BatchLoader
from af_jax.train.optimizer import learning_rate_schedule
from af_jax.train.state import (abstract_train_state, export_params, init_train_state,
                                training_model_config)
from af_jax.train.step import TrainStep
from tests.train.train_case import ALIGNMENT_DIR, MMCIF_DIR, small_train_config


@pytest.fixture(scope='module')
def cfg():
  return small_train_config()


@pytest.fixture(scope='module')
def dataset(cfg):
  return TrainingData(ALIGNMENT_DIR, MMCIF_DIR, cfg.data, batch_size=1)


@pytest.fixture(scope='module')
def state0(cfg):
  return init_train_state(cfg)


@pytest.fixture(scope='module')
def step_fn(cfg, state0, dataset):
  # donate=False: the tests reuse the states they pass in.
  step = TrainStep(cfg, state0.graphdef, donate=False)
  step.compile(state0, dataset.batch(0))
  return step


def _host(tree):
  return jax.tree_util.tree_map(lambda x: np.asarray(jax.device_get(x)), tree)


def _assert_trees_equal(a, b):
  a, b = _host(a), _host(b)
  assert jax.tree_util.tree_structure(a) == jax.tree_util.tree_structure(b)
  for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
    np.testing.assert_array_equal(x, y)


def _run(step_fn, state, dataset, steps):
  metrics = []
  for s in steps:
    state, m = step_fn(state, dataset.batch(s))
    metrics.append({k: float(v) for k, v in jax.device_get(m).items()})
  return state, metrics


def test_overfits_a_real_chain(step_fn, state0, dataset):
  """200 steps on 2Q2K chain A (random crops of 32 residues) halve the loss."""
  state, metrics = _run(step_fn, state0, dataset, range(200))
  loss = np.array([m['loss'] for m in metrics])
  assert np.all(np.isfinite(loss))
  assert sum(m['skipped'] for m in metrics) == 0
  first, last = loss[:5].mean(), loss[-10:].mean()
  assert last < 0.5 * first, (first, last)
  # The structure improves too, not only the MSA and distogram heads.
  assert np.mean([m['fape'] for m in metrics[-10:]]) < np.mean([m['fape'] for m in metrics[:5]])
  assert int(state.step) == 200 and int(state.num_skipped) == 0


def test_metrics_name_every_loss_term(step_fn, state0, dataset, cfg):
  _, (m,) = _run(step_fn, state0, dataset, [0])
  expected = {'loss', 'fape', 'sidechain_fape', 'chi_loss', 'angle_norm_loss', 'distogram',
              'masked_msa', 'predicted_lddt', 'aligned_error', 'violations', 'lddt_ca',
              'learning_rate', 'grad_norm', 'skipped', 'num_skipped', 'num_recycles'}
  assert expected <= set(m)
  assert m['learning_rate'] == pytest.approx(float(learning_rate_schedule(cfg.optimizer)(0)))
  assert m['grad_norm'] > 0


def test_non_finite_step_is_skipped_and_counted(step_fn, state0, dataset, cfg):
  bad = dict(dataset.batch(0))
  bad['msa_feat'] = bad['msa_feat'].copy()
  bad['msa_feat'][..., 3, :] = np.nan
  state, m = step_fn(state0, bad)
  m = jax.device_get(m)
  assert int(m['skipped']) == 1 and int(state.num_skipped) == 1 and int(state.step) == 1
  assert not np.isfinite(float(m['loss']))
  # Nothing learned from it: parameters, Adam moments and count, EMA untouched.
  _assert_trees_equal(state.params, state0.params)
  _assert_trees_equal(state.opt_state, state0.opt_state)
  _assert_trees_equal(state.ema_params, state0.ema_params)
  assert not np.array_equal(np.asarray(state.rng), np.asarray(state0.rng))
  # The next good step is the first applied update: warm-up starts from its first value.
  state, m = step_fn(state, dataset.batch(1))
  assert int(m['skipped']) == 0 and int(state.num_skipped) == 1 and int(state.step) == 2
  assert float(m['learning_rate']) == pytest.approx(
      float(learning_rate_schedule(cfg.optimizer)(0)))
  assert not np.array_equal(*(np.asarray(jax.tree_util.tree_leaves(s)[0])
                              for s in (state.params, state0.params)))


def test_interrupted_and_resumed_run_equals_uninterrupted(step_fn, state0, dataset, cfg,
                                                          tmp_path):
  """Stop after 2 steps (checkpoint), restore into a fresh abstract state, go on to 5."""
  with BatchLoader(dataset) as loader:
    straight = state0
    for _ in range(5):
      straight, _ = step_fn(straight, next(loader))

  with BatchLoader(dataset) as loader:
    state = state0
    for _ in range(2):
      state, _ = step_fn(state, next(loader))
    with Checkpointer(tmp_path / 'ckpt', every_steps=100, keep=2) as ckpt:
      assert ckpt.save(state, loader.state_dict(), config=cfg, force=True)
  del state, loader

  with Checkpointer(tmp_path / 'ckpt', every_steps=100, keep=2) as ckpt:
    assert ckpt.latest_step() == 2
    resumed, position, meta = ckpt.restore(abstract_train_state(cfg))
  assert meta['step'] == 2 and meta['config']['model_preset'] == 'model_3_ptm'
  assert int(resumed.step) == 2
  with BatchLoader(dataset, state=position) as loader:
    assert loader.step == 2
    for _ in range(3):
      resumed, _ = step_fn(resumed, next(loader))
  _assert_trees_equal(resumed.arrays, straight.arrays)


def test_checkpoints_keep_the_newest_and_refuse_another_model(state0, cfg, tmp_path):
  with Checkpointer(tmp_path / 'ckpt', every_steps=2, keep=2, async_save=False) as ckpt:
    for step in range(1, 7):
      ckpt.save(state0.replace(step=np.int32(step)), {'step': step})
    assert ckpt.all_steps() == [4, 6]
    other = small_train_config(**{'model.embeddings_and_evoformer.msa_channel': 24})
    with pytest.raises(ConfigError, match='does not fit'):
      ckpt.restore(abstract_train_state(other))
    with pytest.raises(ConfigError, match='no checkpoint of step 3'):
      ckpt.restore(abstract_train_state(cfg), step=3)
  with pytest.raises(ConfigError, match='no checkpoint in'):
    with Checkpointer(tmp_path / 'empty') as empty:
      empty.restore(abstract_train_state(cfg))
  with pytest.raises(ConfigError, match='every_steps'):
    Checkpointer(tmp_path / 'bad', every_steps=0)


def test_exported_params_are_alphafolds_file(step_fn, state0, dataset, cfg, tmp_path):
  """The EMA weights leave as the published `.npz` layout and load into inference."""
  state, _ = _run(step_fn, state0, dataset, range(3))
  path = tmp_path / 'params' / 'params_model_3_ptm.npz'
  path.parent.mkdir()
  export_params(state, path)
  flat = af_jax.load_params(path)
  assert all(k.startswith('alphafold/alphafold_iteration/') and '//' in k for k in flat)
  model = build_model(training_model_config(cfg), flat, preset='model_3_ptm')
  assert af_params.module_to_flat(model).keys() == flat.keys()
  ema = _host(state.ema_params)
  reloaded = init_train_state(cfg, flat)
  _assert_trees_equal(reloaded.params, ema)
  # EMA (decay 0.999) is not the raw parameters after training.
  assert any(not np.array_equal(a, b) for a, b in zip(
      jax.tree_util.tree_leaves(ema), jax.tree_util.tree_leaves(_host(state.params))))
  # The directory form of --init_params finds params_<model_preset>.npz (or params/...).
  from_dir = init_train_state(cfg, tmp_path)
  _assert_trees_equal(from_dir.params, ema)


def test_wrong_init_params_name_the_key(cfg, tmp_path):
  other = small_train_config(**{'model.embeddings_and_evoformer.pair_channel': 8})
  path = tmp_path / 'params_model_3_ptm.npz'
  af_jax.save_params(path, build_model(training_model_config(other)))
  with pytest.raises(af_jax.ParamsError, match=r'has shape \(8, 64\) .* expected \(16, 64\)'):
    init_train_state(cfg, path)


def test_batch_without_a_needed_feature_is_one_error(step_fn, state0, dataset):
  batch = {k: v for k, v in dataset.batch(0).items() if k != 'bert_mask'}
  with pytest.raises(InputError, match='bert_mask'):
    step_fn(state0, batch)



def test_a_template_model_gets_masked_templates_from_data_without_them():
  from af_jax.data import schema
  from af_jax.train.step import EXAMPLE_KEYS, TARGET_FEATURES, select_batch
  model_cfg = af_jax.model_config('model_1').model  # a preset that embeds templates
  sizes = dict(num_slices=2, num_res=5, num_msa=3, num_extra_msa=4)
  batch = {k: np.zeros((1, *shape)) for k, shape in schema.MONOMER.shapes(**sizes).items()}
  for part in (schema.TRAIN_TARGETS, schema.TRAIN_EXAMPLE):
    batch.update({k: np.zeros((1, *shape)) for k, shape in part.shapes(**sizes).items()})
  selected = select_batch(batch, model_cfg)
  assert set(selected) == set(batch) | set(schema.MONOMER_TEMPLATES.names)
  assert set(TARGET_FEATURES) | set(EXAMPLE_KEYS) <= set(selected)
  templates = schema.MONOMER_TEMPLATES.shapes(num_templates=1, **sizes)
  for name, shape in templates.items():
    assert selected[name].shape == (1, *shape), name
    assert selected[name].dtype == schema.MONOMER_TEMPLATES[name].dtype and not selected[name].any()
  assert selected['aatype'].dtype == np.int32
