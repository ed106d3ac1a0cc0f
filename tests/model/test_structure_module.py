"""Structure module: parameter tree, scan vs. loop, invariances, gradients."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from af_jax import params
from af_jax.common.geometry import QuatRigid, Rigid
from af_jax.model.ipa import InvariantPointAttention
from af_jax.model.structure_module import StructureModule
from configs.model import base_config
from tests import tolerance

C_S, C_Z = 384, 128
SHAPES = '/work/shared/reference/param_shapes_model_1_ptm.json'


@pytest.fixture(scope='module')
def config():
  return base_config().model.heads.structure_module


def _inputs(n, seed=0):
  rng = np.random.default_rng(seed)
  single = rng.normal(size=(n, C_S)).astype(np.float32)
  pair = rng.normal(size=(n, n, C_Z)).astype(np.float32)
  mask = np.ones(n, np.float32)
  aatype = rng.integers(0, 21, size=n).astype(np.int32)
  return single, pair, mask, aatype


def _rel(a, b):
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  return np.linalg.norm(a - b) / np.linalg.norm(b)


def test_parameter_tree_is_alphafolds(config):
  module = nnx.eval_shape(lambda: StructureModule(config, c_s=C_S, c_z=C_Z, rngs=nnx.Rngs(0)))
  prefix = params.ROOT + '/structure_module'
  ours = {params.path_to_key(path, prefix): tuple(var.get_value().shape)
          for path, var in nnx.to_flat_state(nnx.state(module, nnx.Param))}
  with open(SHAPES) as f:
    ref = {k: tuple(v) for k, v in json.load(f).items() if '/structure_module/' in k}
  assert len(ref) == 45
  assert ours == ref


def test_scan_equals_python_loop(config):
  module = StructureModule(config, c_s=C_S, c_z=C_Z, zero_init=False, rngs=nnx.Rngs(1))
  graphdef, state = nnx.split(module)
  run = jax.jit(lambda state, *a, unroll: nnx.merge(graphdef, state)(*a, unroll=unroll),
                static_argnames='unroll')
  args = _inputs(12)
  scanned = run(state, *args, unroll=False)
  looped = run(state, *args, unroll=True)
  assert scanned['traj'].shape == (8, 12, 7)
  # The two compile differently (fusion, FMA contraction): equal up to rounding.
  assert _rel(scanned['traj'][0], looped['traj'][0]) < 2e-6
  for key in ('act', 'final_atom_positions', 'traj'):
    assert _rel(scanned[key], looped[key]) < 2e-5, key
  # The trajectory moves: the layers are not trivial.
  assert np.abs(np.diff(scanned['traj'][:, :, 4:], axis=0)).min(axis=(1, 2)).min() > 0


def test_training_dropout(config):
  """With a key, dropout (rate config.dropout) changes the fold, the same way per key."""
  module = StructureModule(config, c_s=C_S, c_z=C_Z, zero_init=False, rngs=nnx.Rngs(1))
  graphdef, state = nnx.split(module)
  run = jax.jit(lambda state, key, *a: nnx.merge(graphdef, state)(*a, key=key)['traj'])
  args = _inputs(10)
  plain = nnx.merge(graphdef, state)(*args)['traj']
  a, b = run(state, jax.random.key(0), *args), run(state, jax.random.key(0), *args)
  c = run(state, jax.random.key(1), *args)
  np.testing.assert_array_equal(a, b)
  assert np.abs(np.asarray(a - plain)).max() > 1e-2 and np.abs(np.asarray(a - c)).max() > 1e-2


def test_outputs_shapes_and_masks(config):
  module = StructureModule(config, c_s=C_S, c_z=C_Z, zero_init=False, rngs=nnx.Rngs(2))
  single, pair, mask, aatype = _inputs(10, seed=3)
  out = nnx.jit(lambda m, *a: m(*a))(module, single, pair, mask, aatype)
  assert out['final_atom_positions'].shape == (10, 37, 3)
  assert out['final_atom14_positions'].shape == (10, 14, 3)
  assert out['final_affines'].shape == (10, 7)
  assert out['act'].shape == (10, config.num_channel)
  sc = out['sidechains']
  assert sc['angles_sin_cos'].shape == (8, 10, 7, 2)
  assert sc['frames'].shape == (8, 10, 8, 12)
  assert sc['atom_pos'].shape == (8, 10, 14, 3)
  # Normalised vectors: a division and the norm taken here, a few roundings at 1.
  unit = tolerance.rounding_atol(1.0, 16)
  np.testing.assert_allclose(np.linalg.norm(sc['angles_sin_cos'], axis=-1), 1.0, rtol=0,
                             atol=unit)
  np.testing.assert_allclose(np.linalg.norm(out['final_affines'][:, :4], axis=-1), 1.0,
                             rtol=0, atol=unit)
  absent = np.asarray(out['final_atom_mask']) == 0
  assert np.all(np.asarray(out['final_atom_positions'])[absent] == 0)
  # CA is the backbone frame's origin: a rotation of (0, 0, 0) plus the translation,
  # rounded at the translation's magnitude.
  translation = np.asarray(out['final_affines'][:, 4:][aatype < 20])
  np.testing.assert_allclose(out['final_atom14_positions'][:, 1][aatype < 20], translation,
                             rtol=0, atol=tolerance.rounding_atol(translation, 8))


def test_ipa_is_invariant_to_global_rigid_motion(config):
  ipa = InvariantPointAttention(config, c_s=C_S, c_z=C_Z, zero_init=False, rngs=nnx.Rngs(3))
  single, pair, mask, _ = _inputs(9, seed=4)
  rng = np.random.default_rng(5)
  q = rng.normal(size=(9, 4)).astype(np.float32)
  frames = QuatRigid(jnp.asarray(q / np.linalg.norm(q, axis=-1, keepdims=True)),
                     jnp.asarray(rng.normal(size=(9, 3)), jnp.float32)).to_rigid()
  g = rng.normal(size=(4,)).astype(np.float32)
  motion = QuatRigid(jnp.asarray(g / np.linalg.norm(g)), jnp.asarray([3., -1., 2.])).to_rigid()
  moved = Rigid(jnp.broadcast_to(motion.rotation, (9, 3, 3)),
                jnp.broadcast_to(motion.translation, (9, 3))).compose(frames)
  out = ipa(single, pair, mask, frames)
  # The moved frames' points are rounded at their own magnitude, then attention mixes them:
  # ours' spread under a one-ulp change of the frames.
  spread = tolerance.spread(lambda f: ipa(single, pair, mask, f), frames)
  tolerance.assert_close(ipa(single, pair, mask, moved), out, spread, what='moved frames')
  # A masked residue does not influence the others.
  mask[4] = 0
  single2 = single.copy()
  single2[4] += 5.0
  a, b = ipa(single, pair, mask, frames), ipa(single2, pair, mask, frames)
  keep = np.arange(9) != 4
  a, b = np.asarray(a), np.asarray(b)
  np.testing.assert_allclose(a[keep], b[keep], rtol=0, atol=tolerance.rounding_atol(a, 8))


def test_gradients_flow_through_scan(config):
  c = config.copy_and_resolve_references()  # a tiny config: 2 layers, few channels
  c.update(dict(num_layer=2, num_channel=32, num_head=2))
  c.sidechain.num_channel = 16
  module = StructureModule(c, c_s=24, c_z=8, zero_init=False, rngs=nnx.Rngs(4))
  graphdef, state = nnx.split(module)
  rng = np.random.default_rng(6)
  single, pair = rng.normal(size=(6, 24)), rng.normal(size=(6, 6, 8))
  mask, aatype = np.ones(6, np.float32), np.array([0, 7, 17, 1, 20, 5])

  def loss(state):
    out = nnx.merge(graphdef, state)(single, pair, mask, aatype)
    return jnp.sum(jnp.square(out['final_atom_positions'])) + jnp.sum(out['act'])

  grads = jax.jit(jax.grad(loss))(state)
  flat = params.module_to_flat(nnx.merge(graphdef, grads), prefix='')
  assert all(np.all(np.isfinite(g)) for g in flat.values())
  for key in ('fold_iteration/affine_update//weights',
              'fold_iteration/invariant_point_attention/q_point_local//weights',
              'fold_iteration/rigid_sidechain/unnormalized_angles//weights'):
    assert np.abs(flat[key]).max() > 0, key
