"""Parity of invariant point attention and the structure module with the reference (float32).

With the team's perturbation (every array + N(0, max(std, 0.1))) one structure
module layer has a gain of about 3 on rounding differences: after 8 layers the
reference disagrees with *itself* (jit vs. op-by-op) by ~3e-3. The strict 1e-5
checks therefore run (a) 2 layers with that perturbation and (b) all 8 layers
with a 0.01 floor (every array still non-zero); the slow test checks the
8-layer, 0.1-floor run against the reference's own rounding spread.
"""

import haiku as hk
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from alphafold.model import folding, quat_affine, r3
from alphafold.model.tf import data_transforms
from flax import nnx

from af_jax.common.geometry import QuatRigid
from af_jax.model.ipa import InvariantPointAttention
from af_jax.model.structure_module import StructureModule
from tests.parity import ref_utils

N_RES, C_S, C_Z = 19, 384, 128
TOL = 1e-5


@pytest.fixture(scope='module')
def cfg():
  return ref_utils.ref_model_config('model_1_ptm')


def _inputs(seed):
  rng = np.random.default_rng(seed)
  single = rng.normal(size=(N_RES, C_S)).astype(np.float32)
  pair = rng.normal(size=(N_RES, N_RES, C_Z)).astype(np.float32)
  seq_mask = np.ones(N_RES, np.float32)
  seq_mask[-2:] = 0.0  # padding
  aatype = rng.integers(0, 20, size=N_RES).astype(np.int32)
  aatype[:3] = [7, 17, 1]  # GLY, TRP, ARG
  aatype[5] = 20  # one unknown residue
  return single, pair, seq_mask, aatype


def _check(name, ours, ref, tol=TOL):
  err = ref_utils.rel_err(ours, ref)
  print(f'{name}: relative error {err:.2e}, max abs {np.abs(np.asarray(ours) - ref).max():.2e}')
  assert err <= tol, f'{name}: relative error {err:.2e} > {tol:.0e}'
  return err


def test_invariant_point_attention(cfg):
  c, gc = cfg.model.heads.structure_module, cfg.model.global_config
  single, pair, seq_mask, _ = _inputs(0)
  rng = np.random.default_rng(1)
  affine = rng.normal(size=(N_RES, 7)).astype(np.float32)
  affine[:, :4] /= np.linalg.norm(affine[:, :4], axis=-1, keepdims=True)
  affine[:, 4:] *= 2.0  # internal units (nm-like)

  def ref_fn(s, p, m, a):
    return folding.InvariantPointAttention(c, gc)(
        inputs_1d=s, inputs_2d=p, mask=m[:, None], affine=quat_affine.QuatAffine.from_tensor(a))

  ref, flat = ref_utils.run_ref(ref_fn, single, pair, seq_mask, affine)
  ipa = InvariantPointAttention(c, c_s=C_S, c_z=C_Z, rngs=nnx.Rngs(0))
  ref_utils.load_into(ipa, flat, 'invariant_point_attention')
  frames = QuatRigid.from_tensor(jnp.asarray(affine)).to_rigid()
  ours = jax.jit(lambda *a: ipa(*a))(single, pair, seq_mask, frames)
  _check('ipa', ours, ref)


_REFERENCE = {}


def _reference(cfg, num_layer: int):
  """Jitted init/apply of the reference structure module (cached per depth)."""
  if num_layer not in _REFERENCE:
    c = cfg.model.heads.structure_module.copy_and_resolve_references()
    c.num_layer = num_layer
    gc = cfg.model.global_config

    def ref_fn(s, p, m, aa, masks):
      batch = {'seq_mask': m, 'aatype': aa, **masks}
      return folding.StructureModule(c, gc, compute_loss=True)(
          {'single': s, 'pair': p}, batch, is_training=False)

    transformed = hk.transform(ref_fn)
    _REFERENCE[num_layer] = (c, transformed, jax.jit(transformed.apply))
  return _REFERENCE[num_layer]


def _structure_inputs():
  single, pair, seq_mask, aatype = _inputs(2)
  masks = data_transforms.make_atom14_masks({'aatype': aatype})
  masks = {k: np.asarray(v) for k, v in masks.items() if k != 'aatype'}
  return single, pair, seq_mask, aatype, masks


_INIT = {}


def _reference_init(cfg):
  """Haiku's initial parameters (the same for any number of layers: shared weights)."""
  if not _INIT:
    _, transformed, _ = _reference(cfg, 1)
    init = jax.jit(transformed.init)(jax.random.PRNGKey(3), *_structure_inputs())
    _INIT.update(hk.data_structures.to_mutable_dict(init))
  return _INIT


def _run_both(cfg, num_layer: int, floor: float, ref_eager: bool = False):
  """Reference and af_jax structure modules on the same perturbed weights.

  Every array becomes init + N(0, max(std(init), floor)).
  """
  c, transformed, apply = _reference(cfg, num_layer)
  args = _structure_inputs()
  single, pair, seq_mask, aatype, masks = args
  params = _reference_init(cfg)
  rng = np.random.default_rng(4)
  params = jax.tree_util.tree_map(
      lambda x: (x + rng.normal(size=x.shape) * max(float(np.std(x)), floor)).astype(np.float32),
      params)
  ref = apply(params, jax.random.PRNGKey(5), *args)
  eager = None
  if ref_eager:
    with jax.disable_jit():
      eager = transformed.apply(params, jax.random.PRNGKey(5), *args)

  module = StructureModule(c, c_s=C_S, c_z=C_Z, rngs=nnx.Rngs(0))
  ref_utils.load_into(module, ref_utils.flatten(params), 'structure_module')
  graphdef, state = nnx.split(module)
  run = jax.jit(lambda state, *a: nnx.merge(graphdef, state)(*a))
  ours = run(state, single, pair, seq_mask, aatype)
  to_np = lambda t: jax.tree_util.tree_map(np.asarray, t)  # noqa: E731
  return to_np(ours), to_np(ref), masks, to_np(eager)


def _check_all(ours, ref, masks):
  _check('act', ours['act'], ref['representations']['structure_module'])
  _check('final_atom_positions', ours['final_atom_positions'], ref['final_atom_positions'])
  err = np.abs(ours['final_atom_positions'] - ref['final_atom_positions']).max()
  assert err < 1e-3, f'max abs error on final atom positions {err:.2e} Å'
  _check('final_atom14_positions', ours['final_atom14_positions'],
         ref['final_atom14_positions'])
  _check('traj', ours['traj'], ref['traj'])
  _check('final_affines', ours['final_affines'], ref['final_affines'])
  for key in ('angles_sin_cos', 'unnormalized_angles_sin_cos'):
    _check(key, ours['sidechains'][key], ref['sidechains'][key])
  _check('sidechains.atom_pos', ours['sidechains']['atom_pos'],
         r3.vecs_to_tensor(ref['sidechains']['atom_pos']))
  _check('sidechains.frames', ours['sidechains']['frames'],
         r3.rigids_to_tensor_flat12(ref['sidechains']['frames']))
  np.testing.assert_array_equal(ours['final_atom_mask'], ref['final_atom_mask'])
  np.testing.assert_array_equal(ours['final_atom14_mask'], masks['atom14_atom_exists'])


def test_structure_module_8_layers(cfg):
  _check_all(*_run_both(cfg, num_layer=8, floor=0.01)[:3])


def test_structure_module_2_layers_team_perturbation(cfg):
  _check_all(*_run_both(cfg, num_layer=2, floor=0.1)[:3])


@pytest.mark.slow
def test_structure_module_8_layers_within_reference_rounding(cfg):
  """8 layers, 0.1 floor: no further from the reference than it is from itself."""
  ours, ref, _, eager = _run_both(cfg, num_layer=8, floor=0.1, ref_eager=True)
  for name, a, b, e in [
      ('act', ours['act'], ref['representations']['structure_module'],
       eager['representations']['structure_module']),
      ('final_atom_positions', ours['final_atom_positions'], ref['final_atom_positions'],
       eager['final_atom_positions'])]:
    ours_err, self_err = ref_utils.rel_err(a, b), ref_utils.rel_err(e, b)
    print(f'{name}: af_jax vs reference {ours_err:.2e}; reference op-by-op vs jit {self_err:.2e}')
    assert ours_err <= max(self_err, TOL), name
