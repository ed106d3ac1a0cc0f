"""Parity of AlphaFold-Multimer's IPA and structure module with the reference (float32).

The reference is `alphafold.model.folding_multimer` (alphafold-colabfold
2.3.20). As for the monomer (test_structure_module.py), a structure-module
layer amplifies rounding differences, so the strict 1e-5 checks run single
layers and 2 layers at the team's perturbation (every array + N(0, max(std,
0.1))), and all 8 layers with a 0.01 floor; the slow test compares the
8-layer, 0.1-floor run with the reference's own jit-vs-op-by-op spread.
"""

import haiku as hk
import jax
import numpy as np
import pytest
from alphafold.model import folding_multimer, geometry
from flax import nnx

from af_jax import params as af_params
from af_jax.common.geometry import Rigid
from af_jax.model.structure_module_multimer import (
    FoldIterationMultimer,
    InvariantPointAttentionMultimer,
    StructureModuleMultimer,
    rigid_from_array,
    rigid_to_array,
)
from tests.parity import ref_utils

N_RES, C_S, C_Z = 20, 384, 128
TOL = 1e-5
PRESET = 'model_1_multimer_v3'


@pytest.fixture(scope='module')
def cfg():
  return ref_utils.ref_model_config(PRESET)


def _inputs(seed):
  """Random single/pair, padding at the end, glycine and an unknown residue."""
  rng = np.random.default_rng(seed)
  single = rng.normal(size=(N_RES, C_S)).astype(np.float32)
  pair = rng.normal(size=(N_RES, N_RES, C_Z)).astype(np.float32)
  seq_mask = np.ones(N_RES, np.float32)
  seq_mask[-2:] = 0.0  # padding
  aatype = rng.integers(0, 20, size=N_RES).astype(np.int32)
  aatype[:3] = [7, 17, 1]  # GLY, TRP, ARG
  aatype[5] = 20  # one unknown residue
  return single, pair, seq_mask, aatype


def _random_rigids(seed, scale=2.0):
  """[N_res, 3, 4] random proper rotations (from quaternions) and translations."""
  rng = np.random.default_rng(seed)
  q = rng.normal(size=(N_RES, 4))
  w, x, y, z = (q / np.linalg.norm(q, axis=-1, keepdims=True)).T
  rot = np.stack([
      np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], -1),
      np.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], -1),
      np.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1),
  ], -2)
  trans = scale * rng.normal(size=(N_RES, 3))
  return np.concatenate([rot, trans[..., None]], -1).astype(np.float32)


def _check(name, ours, ref, tol=TOL):
  ours, ref = np.asarray(ours), np.asarray(ref)
  assert ours.shape == ref.shape, f'{name}: shape {ours.shape} != reference {ref.shape}'
  err = ref_utils.rel_err(ours, ref)
  print(f'{name}: relative error {err:.2e}, max abs {np.abs(ours - ref).max():.2e}')
  assert err <= tol, f'{name}: relative error {err:.2e} > {tol:.0e}'
  return err


def _run_ref(fn, *args, seed: int = 0):
  """`ref_utils.run_ref` with a jitted init (eager Haiku init compiles op by op: slow)."""
  transformed = hk.transform(fn)
  params = jax.jit(transformed.init)(jax.random.PRNGKey(seed), *args)
  params = ref_utils.perturb(hk.data_structures.to_mutable_dict(params), seed + 1)
  out = jax.jit(transformed.apply)(params, jax.random.PRNGKey(seed + 2), *args)
  return jax.tree_util.tree_map(np.asarray, out), ref_utils.flatten(params)


def test_invariant_point_attention(cfg):
  c, gc = cfg.model.heads.structure_module, cfg.model.global_config
  single, pair, seq_mask, _ = _inputs(0)
  rigids = _random_rigids(1)

  def ref_fn(s, p, m, r):
    return folding_multimer.InvariantPointAttention(c, gc)(
        inputs_1d=s, inputs_2d=p, mask=m[:, None], rigid=geometry.Rigid3Array.from_array(r))

  ref, flat = _run_ref(ref_fn, single, pair, seq_mask, rigids)
  assert {k.split('//')[0] for k in flat} >= {
      'invariant_point_attention/q_point_projection/point_projection'}
  ipa = InvariantPointAttentionMultimer(c, c_s=C_S, c_z=C_Z, rngs=nnx.Rngs(0))
  ref_utils.load_into(ipa, flat, 'invariant_point_attention')
  ours = jax.jit(lambda *a: ipa(*a))(single, pair, seq_mask, rigid_from_array(rigids))
  _check('ipa', ours, ref)


def test_fold_iteration(cfg):
  """One layer from random frames (not the identity the module starts from)."""
  c, gc = cfg.model.heads.structure_module, cfg.model.global_config
  single, pair, seq_mask, aatype = _inputs(6)
  initial_act = np.random.default_rng(7).normal(size=(N_RES, C_S)).astype(np.float32)
  rigids = _random_rigids(8, scale=1.0)

  def ref_fn(act, r, init, p, m, aa):
    new, out = folding_multimer.FoldIteration(c, gc)(
        {'act': act, 'rigid': geometry.Rigid3Array.from_array(r)}, aatype=aa,
        sequence_mask=m[:, None], update_rigid=True, is_training=False, initial_act=init,
        static_feat_2d=p)
    sc = out['sc']
    return {'act': new['act'], 'rigid': out['rigid'].to_array(),
            'angles_sin_cos': sc['angles_sin_cos'],
            'unnormalized_angles_sin_cos': sc['unnormalized_angles_sin_cos'],
            'atom_pos': sc['atom_pos'].to_array(), 'frames': sc['frames'].to_array()}

  ref, flat = _run_ref(ref_fn, single, rigids, initial_act, pair, seq_mask, aatype,
                                seed=9)
  layer = FoldIterationMultimer(c, c_s=C_S, c_z=C_Z, rngs=nnx.Rngs(0))
  ref_utils.load_into(layer, flat, 'fold_iteration')

  def ours_fn(act, r, init, p, m, aa):
    act, _, out = layer(act, rigid_from_array(r), initial_act=init, pair=p, seq_mask=m,
                        aatype=aa)
    sc = out['sc']
    return {'act': act, 'rigid': rigid_to_array(out['rigid']),
            'angles_sin_cos': sc['angles_sin_cos'],
            'unnormalized_angles_sin_cos': sc['unnormalized_angles_sin_cos'],
            'atom_pos': sc['atom_pos'],
            'frames': rigid_to_array(Rigid.from_flat12(sc['frames']))}

  ours = jax.jit(ours_fn)(single, rigids, initial_act, pair, seq_mask, aatype)
  for key in ref:
    _check(f'fold_iteration.{key}', ours[key], ref[key])


_REFERENCE = {}


def _reference(cfg, num_layer: int):
  """Jitted init/apply of the reference multimer structure module (cached per depth)."""
  if num_layer not in _REFERENCE:
    c = cfg.model.heads.structure_module.copy_and_resolve_references()
    c.num_layer = num_layer
    gc = cfg.model.global_config

    def ref_fn(s, p, m, aa):
      return folding_multimer.StructureModule(c, gc)(
          {'single': s, 'pair': p}, {'seq_mask': m, 'aatype': aa}, is_training=False,
          compute_loss=True)

    transformed = hk.transform(ref_fn)
    _REFERENCE[num_layer] = (c, transformed, jax.jit(transformed.apply))
  return _REFERENCE[num_layer]


_INIT = {}


def _reference_init(cfg):
  """Haiku's initial parameters (the same for any number of layers: shared weights)."""
  if not _INIT:
    _, transformed, _ = _reference(cfg, 1)
    init = jax.jit(transformed.init)(jax.random.PRNGKey(3), *_inputs(2))
    _INIT.update(hk.data_structures.to_mutable_dict(init))
  return _INIT


def _perturbed(cfg, floor: float):
  """Every array becomes init + N(0, max(std(init), floor))."""
  rng = np.random.default_rng(4)
  return jax.tree_util.tree_map(
      lambda x: (x + rng.normal(size=x.shape) * max(float(np.std(x)), floor)).astype(np.float32),
      _reference_init(cfg))


def _run_both(cfg, num_layer: int, floor: float, ref_eager: bool = False):
  """Reference and af_jax multimer structure modules on the same perturbed weights."""
  c, transformed, apply = _reference(cfg, num_layer)
  args = _inputs(2)
  params = _perturbed(cfg, floor)
  ref = apply(params, jax.random.PRNGKey(5), *args)
  eager = None
  if ref_eager:
    with jax.disable_jit():
      eager = transformed.apply(params, jax.random.PRNGKey(5), *args)

  module = StructureModuleMultimer(c, c_s=C_S, c_z=C_Z, rngs=nnx.Rngs(0))
  ref_utils.load_into(module, ref_utils.flatten(params), 'structure_module')
  graphdef, state = nnx.split(module)
  run = jax.jit(lambda state, *a: nnx.merge(graphdef, state)(*a))
  ours = run(state, *args)
  to_np = lambda t: jax.tree_util.tree_map(np.asarray, t)  # noqa: E731
  return to_np(ours), to_np(ref), to_np(eager)


def _check_all(ours, ref, tol=TOL, max_abs_atoms=2e-4):
  for key in ('act', 'final_atom_positions', 'final_atom14_positions', 'traj',
              'final_rigids'):
    _check(key, ours[key], ref[key], tol)
  err = np.abs(ours['final_atom_positions'] - ref['final_atom_positions']).max()
  print(f'final_atom_positions: max abs error {err:.2e} Å')
  assert err < max_abs_atoms, f'max abs error on final atom positions {err:.2e} Å'
  for key in ('angles_sin_cos', 'unnormalized_angles_sin_cos', 'atom_pos', 'frames'):
    _check(f'sidechains.{key}', ours['sidechains'][key], ref['sidechains'][key], tol)
  np.testing.assert_array_equal(ours['final_atom_mask'], ref['final_atom_mask'])
  np.testing.assert_array_equal(ours['final_atom14_mask'], ref['final_atom14_mask'])
  # Padding has no atoms; the unknown residue has none either.
  assert not ours['final_atom_positions'][-2:].any()
  assert not ours['final_atom_mask'][5].any()


def test_param_keys_match_reference(cfg):
  """The module's variables are exactly the reference's keys and shapes (both ways)."""
  c = _reference(cfg, 1)[0]
  flat = ref_utils.flatten(_perturbed(cfg, 0.1))
  module = StructureModuleMultimer(c, c_s=C_S, c_z=C_Z, rngs=nnx.Rngs(0))
  ours = af_params.module_to_flat(module, prefix='structure_module')
  assert {k: v.shape for k, v in ours.items()} == {k: v.shape for k, v in flat.items()}
  print(f'{len(flat)} arrays, {sum(v.size for v in flat.values())} parameters')
  ref_utils.load_into(module, flat, 'structure_module')  # strict both ways
  loaded = af_params.module_to_flat(module, prefix='structure_module')
  for key, value in flat.items():
    np.testing.assert_array_equal(loaded[key], value, err_msg=key)
  ipa = 'structure_module/fold_iteration/invariant_point_attention'
  assert flat[f'{ipa}/q_scalar_projection//weights'].shape == (C_S, 12, 16)
  assert f'{ipa}/q_scalar_projection//bias' not in flat
  assert flat[f'{ipa}/v_point_projection/point_projection//weights'].shape == (C_S, 12, 24)
  assert flat[f'{ipa}/output_projection//weights'].shape == (2112, C_S)
  assert flat['structure_module/fold_iteration/quat_rigid/rigid//weights'].shape == (C_S, 6)


def test_structure_module_2_layers_team_perturbation(cfg):
  ours, ref, _ = _run_both(cfg, num_layer=2, floor=0.1)
  _check_all(ours, ref)


def test_structure_module_8_layers(cfg):
  ours, ref, _ = _run_both(cfg, num_layer=8, floor=0.01)
  _check_all(ours, ref)


def test_unroll_and_dropout(cfg):
  """Unrolled = scanned (to rounding); a key turns dropout on, reproducibly."""
  c = _reference(cfg, 2)[0]
  module = StructureModuleMultimer(c, c_s=C_S, c_z=C_Z, zero_init=False, rngs=nnx.Rngs(0))
  args = _inputs(10)
  graphdef, state = nnx.split(module)

  @jax.jit
  def run(state, key, *a):
    m = nnx.merge(graphdef, state)
    return (m(*a)['final_atom_positions'], m(*a, unroll=True)['final_atom_positions'],
            m(*a, key=key)['final_atom_positions'])

  scanned, unrolled, dropped = run(state, jax.random.PRNGKey(0), *args)
  # Not bit-identical: XLA fuses the loop body differently from the unrolled layers.
  _check('unrolled vs scanned', unrolled, scanned)
  assert np.abs(np.asarray(dropped) - np.asarray(scanned)).max() > 1e-3
  again = run(state, jax.random.PRNGKey(0), *args)[2]
  np.testing.assert_array_equal(again, dropped)


@pytest.mark.slow
def test_structure_module_8_layers_within_reference_rounding(cfg):
  """8 layers, 0.1 floor: no further from the reference than it is from itself."""
  ours, ref, eager = _run_both(cfg, num_layer=8, floor=0.1, ref_eager=True)
  for key in ('act', 'final_atom_positions'):
    ours_err, self_err = ref_utils.rel_err(ours[key], ref[key]), ref_utils.rel_err(
        eager[key], ref[key])
    print(f'{key}: af_jax vs reference {ours_err:.2e}; reference op-by-op vs jit {self_err:.2e}')
    assert ours_err <= max(self_err, TOL), key
  err = np.abs(ours['final_atom_positions'] - ref['final_atom_positions']).max()
  self_err = np.abs(eager['final_atom_positions'] - ref['final_atom_positions']).max()
  print(f'final_atom_positions: max abs af_jax vs reference {err:.2e} Å; '
        f'reference op-by-op vs jit {self_err:.2e} Å')
  assert err <= max(self_err, 1e-3)
