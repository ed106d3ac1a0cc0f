"""all_atom against the reference's `all_atom`, `r3`, `modules` and data transforms.

Float32 results of the two implementations are compared within a multiple of ours'
spread under a one-ulp change of its inputs, identities within a stated number of
roundings at the magnitude compared (tests/tolerance.py).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from alphafold.model import all_atom as ref_all_atom
from alphafold.model import modules as ref_modules
from alphafold.model import quat_affine, r3
from alphafold.model.tf import data_transforms

from af_jax.common import residue_constants as rc
from af_jax.common.geometry import QuatRigid, Rigid
from af_jax.model import all_atom
from tests import tolerance
from tests.parity import ref_utils, template_inputs

N = 21


def _aatype(seed, n=N):
  rng = np.random.default_rng(seed)
  aatype = rng.integers(0, 20, size=n)
  aatype[:4] = [7, 0, 17, 1]  # GLY, ALA, TRP, ARG
  aatype[-1] = 20  # unknown residue
  return aatype.astype(np.int32)


def _rigid_to_r3(r: Rigid) -> r3.Rigids:
  return r3.Rigids(r3.rots_from_tensor3x3(r.rotation), r3.vecs_from_tensor(r.translation))


def _r3_to_arrays(r: r3.Rigids):
  rot = jnp.stack([jnp.stack(r.rot[3 * i:3 * i + 3], -1) for i in range(3)], -2)
  return np.asarray(rot), np.asarray(r3.vecs_to_tensor(r.trans))


def _random_backbone(seed, n=N) -> Rigid:
  rng = np.random.default_rng(seed)
  q = rng.normal(size=(n, 4)).astype(np.float32)
  t = rng.normal(size=(n, 3)).astype(np.float32) * 10
  return QuatRigid(jnp.asarray(q / np.linalg.norm(q, axis=-1, keepdims=True)),
                   jnp.asarray(t)).to_rigid()


def _random_angles(seed, n=N):
  rng = np.random.default_rng(seed)
  a = rng.normal(size=(n, 7, 2)).astype(np.float32)
  return a / np.linalg.norm(a, axis=-1, keepdims=True)


def test_make_atom14_masks_matches_data_pipeline():
  aatype = _aatype(0)
  ref = data_transforms.make_atom14_masks({'aatype': aatype})
  ours = jax.jit(all_atom.make_atom14_masks)(jnp.asarray(aatype))
  for key, value in ours.items():
    np.testing.assert_array_equal(np.asarray(value), np.asarray(ref[key]), err_msg=key)
    assert value.dtype == np.asarray(ref[key]).dtype, key


def test_atom14_atom37_round_trip_matches_reference():
  aatype = _aatype(1)
  batch = data_transforms.make_atom14_masks({'aatype': aatype})
  batch = {k: jnp.asarray(v) for k, v in batch.items()}
  x14 = np.random.default_rng(2).normal(size=(N, 14, 3)).astype(np.float32)
  x37 = jax.jit(all_atom.atom14_to_atom37)(x14, aatype)
  np.testing.assert_array_equal(x37, ref_all_atom.atom14_to_atom37(jnp.asarray(x14), batch))
  x14_back = all_atom.atom37_to_atom14(x37, aatype)
  np.testing.assert_array_equal(x14_back, ref_all_atom.atom37_to_atom14(x37, batch))
  np.testing.assert_array_equal(x14_back, x14 * batch['atom14_atom_exists'][..., None])
  m14 = batch['atom14_atom_exists']
  np.testing.assert_array_equal(all_atom.atom14_to_atom37(m14, aatype),
                                ref_all_atom.atom14_to_atom37(m14, batch))


def test_torsion_angles_to_frames_matches_reference():
  aatype, backbone, angles = _aatype(3), _random_backbone(4), _random_angles(5)
  to_frames = jax.jit(all_atom.torsion_angles_to_frames)

  def frames(inputs):
    f = to_frames(aatype, *inputs)
    return {'rotation': f.rotation, 'translation': f.translation}

  ours = to_frames(aatype, backbone, angles)
  ref = jax.jit(ref_all_atom.torsion_angles_to_frames)(
      jnp.asarray(aatype), _rigid_to_r3(backbone), jnp.asarray(angles))
  ref_rot, ref_trans = _r3_to_arrays(ref)
  tolerance.assert_close(frames((backbone, angles)),
                         {'rotation': ref_rot, 'translation': ref_trans},
                         tolerance.spread(frames, (backbone, angles)), what='frames')
  # Frames of existing groups stay rotations (absent groups and UNK have
  # all-zero default frames, as in AlphaFold).
  exists = np.concatenate([np.ones((21, 4)), rc.chi_angles_mask + [[0] * 4]], 1)[aatype]
  exists[aatype == 20] = 0
  rot = np.asarray(ours.rotation)[exists > 0]
  rrt = np.einsum('...ij,...kj->...ik', rot, rot)
  # Up to 4 chained compositions of 3-term products, and one more here.
  np.testing.assert_allclose(rrt, np.broadcast_to(np.eye(3), rrt.shape), rtol=0,
                             atol=tolerance.rounding_atol(1.0, 32))


def test_frames_to_atom14_matches_reference_and_ideal_geometry():
  aatype, backbone, angles = _aatype(6), _random_backbone(7), _random_angles(8)
  frames = all_atom.torsion_angles_to_frames(aatype, backbone, angles)
  to_atom14 = jax.jit(all_atom.frames_and_literature_positions_to_atom14_pos)
  ours = np.asarray(to_atom14(aatype, frames))
  ref = ref_all_atom.frames_and_literature_positions_to_atom14_pos(
      jnp.asarray(aatype), _rigid_to_r3(frames))
  tolerance.assert_close(ours, r3.vecs_to_tensor(ref),
                         tolerance.spread(lambda f: to_atom14(aatype, f), frames),
                         what='atom14 positions')
  # Rigid motion keeps the CA-C bond at its literature length: a difference of two
  # positions, each a rotation and a translation at the coordinates' magnitude.
  ca_c = np.linalg.norm(ours[:, 2] - ours[:, 1], axis=-1)
  lit = np.linalg.norm(rc.restype_atom14_rigid_group_positions[aatype, 2], axis=-1)
  np.testing.assert_allclose(ca_c, lit, rtol=0, atol=tolerance.rounding_atol(ours, 8))
  assert np.all(np.asarray(ours)[aatype == 20] == 0)


def _template_cases():
  """Real PDB hits of 8D27 A as AlphaFold featurized them, and the same stripped.

  Coordinates are far from the origin and missing atoms sit at it: the masked
  torsions then have a well-defined value (chi1 to a CG at the origin), except
  the undefined ones (three collinear points, e.g. after a gap).
  """
  hits = template_inputs.hits_8d27(n_templ=6, start=0, n_res=120)
  aatype = hits['template_aatype']
  pos, mask = hits['template_all_atom_positions'], hits['template_all_atom_masks']
  stripped = template_inputs.keep_atoms(pos, mask)
  gapped = template_inputs.drop_residues(*stripped, [40, 41, 42, 77])
  rng = np.random.default_rng(3)
  thinned = mask * (rng.random(mask.shape) > 0.25)
  return {'hits': (aatype, pos, mask),
          'backbone and CB, gaps': (aatype, *gapped),
          'glycine/alanine rich': template_inputs.glycine_alanine_rich(aatype, *stripped),
          'a quarter of atoms lost': (aatype, pos * thinned[..., None], thinned)}


@pytest.mark.parametrize('case', ['hits', 'backbone and CB, gaps', 'glycine/alanine rich',
                                  'a quarter of atoms lost'])
@pytest.mark.parametrize('placeholder', [False, True])
def test_atom37_to_torsion_angles_matches_reference(case, placeholder):
  """Every torsion the reference computes reproducibly, masked ones included.

  Where the dihedral is undefined (three consecutive collinear points), the
  reference's value is rounding noise that differs jitted and eager; af_jax
  gives (0, 0) there (DIFFERS FROM AF2 in all_atom.atom37_to_torsion_angles).
  """
  aatype, pos, mask = _template_cases()[case]
  torsions = jax.jit(all_atom.atom37_to_torsion_angles, static_argnums=3)
  ours = torsions(aatype, pos, mask, placeholder)
  ref_jit = jax.jit(ref_all_atom.atom37_to_torsion_angles, static_argnums=3)(
      aatype, pos, mask, placeholder)
  np.testing.assert_array_equal(ours['torsion_angles_mask'], ref_jit['torsion_angles_mask'])
  torsion_mask = np.asarray(ref_jit['torsion_angles_mask'])
  undefined = np.asarray(ref_utils.undefined_dihedrals(
      ref_utils.torsion_points(jnp.asarray(aatype), jnp.asarray(pos))))
  # Three collinear points need a missing atom: undefined torsions are masked.
  assert undefined.any() and not (undefined & (torsion_mask > 0)).any()
  if placeholder:  # masked torsions are (1, 0) on both sides, undefined ones among them
    undefined = np.zeros_like(undefined)
  masked_defined = (torsion_mask == 0) & ~undefined
  assert masked_defined.sum() > 100 and (torsion_mask > 0).sum() > 100
  # In float64 both compute the same function: equal to rounding everywhere but
  # at the undefined torsions.
  with jax.enable_x64(True):
    args64 = (jnp.asarray(aatype), jnp.asarray(pos, jnp.float64),
              jnp.asarray(mask, jnp.float64), placeholder)
    ours64 = jax.jit(all_atom.atom37_to_torsion_angles, static_argnums=3)(*args64)
    ref64 = jax.jit(ref_all_atom.atom37_to_torsion_angles, static_argnums=3)(*args64)
    assert ours64['torsion_angles_sin_cos'].dtype == jnp.float64
  for key in ('torsion_angles_sin_cos', 'alt_torsion_angles_sin_cos'):
    got64, want64 = np.asarray(ours64[key]), np.asarray(ref64[key])
    np.testing.assert_allclose(got64[~undefined], want64[~undefined], atol=1e-9, err_msg=key)
    got, want = np.asarray(ours[key]), np.asarray(ref_jit[key])
    assert np.all(got[undefined] == 0) and np.all(got64[undefined] == 0), key
    # In float32, wherever the reference is accurate (within 1e-6 of its float64
    # value); elsewhere a missing atom at the origin is the frame's centre, 30+ Å
    # from the others, and float32 rounding alone moves the value by up to 1e-2.
    accurate = (np.abs(want - want64).max(-1) < 1e-6) & ~undefined
    assert (accurate & masked_defined).sum() > 100
    # The rounding of coordinates 30+ Å from the origin, divided by bond lengths near
    # 1.5 Å: measured as ours' spread there under a one-ulp change of the coordinates.
    spread = tolerance.spread(
        lambda p: np.asarray(torsions(aatype, p, mask, placeholder)[key])[accurate],
        jnp.asarray(pos))
    tolerance.assert_close(got[accurate], want[accurate], spread, what=key)


def test_reference_undefined_torsions_are_not_reproducible():
  """Why af_jax pins undefined torsions: the reference's value there is noise.

  All 20 real hits of 8D27 A, every observed coordinate moved by one float32
  ulp: the reference's (sin, cos) of undefined torsions jump by O(1), the
  others stay put. (Jitted and eager runs differ the same way, as far as
  the compiler's choices differ.)
  """
  hits = template_inputs.hits_8d27(n_templ=20, start=0, n_res=287)
  aatype, pos, mask = (hits[k] for k in ('template_aatype', 'template_all_atom_positions',
                                         'template_all_atom_masks'))
  rng = np.random.default_rng(0)
  nudged = np.where((pos != 0) & (rng.random(pos.shape) < 0.5),
                    np.nextafter(pos, np.float32(np.inf)), pos).astype(np.float32)
  fn = jax.jit(ref_all_atom.atom37_to_torsion_angles)
  noise = np.abs(np.asarray(fn(aatype, pos, mask)['torsion_angles_sin_cos'])
                 - np.asarray(fn(aatype, nudged, mask)['torsion_angles_sin_cos'])).max(-1)
  undefined = np.asarray(ref_utils.undefined_dihedrals(
      ref_utils.torsion_points(jnp.asarray(aatype), jnp.asarray(pos))))
  assert undefined.sum() >= 20
  assert (noise[undefined] > 0.1).sum() >= 5
  assert noise[~undefined].max() < 0.05


def test_torsion_angles_round_trip_through_frames():
  """Atoms built from angles give back those angles (Alg. 24 inverted)."""
  aatype = _aatype(12)[:-1]  # known residues only
  angles = _random_angles(13, N - 1)

  @jax.jit
  def round_trip(aatype, backbone, angles):
    frames = all_atom.torsion_angles_to_frames(aatype, backbone, angles)
    pos37 = all_atom.atom14_to_atom37(
        all_atom.frames_and_literature_positions_to_atom14_pos(aatype, frames), aatype)
    mask37 = all_atom.make_atom14_masks(aatype)['atom37_atom_exists']
    return all_atom.atom37_to_torsion_angles(aatype[None], pos37[None], mask37[None])

  backbone = _random_backbone(14, N - 1)
  out = round_trip(aatype, backbone, angles)
  chi_mask = np.asarray(out['torsion_angles_mask'][0, :, 3:])[..., None]

  def chis(angles):
    return np.asarray(round_trip(aatype, backbone, angles)['torsion_angles_sin_cos'])[
        0, :, 3:] * chi_mask

  tolerance.assert_close(chis(angles), angles[:, 3:] * chi_mask,
                         tolerance.spread(chis, jnp.asarray(angles)), what='chi round trip')


def test_pseudo_beta_matches_reference():
  rng = np.random.default_rng(15)
  aatype = _aatype(16)
  pos = rng.normal(size=(N, 37, 3)).astype(np.float32)
  mask = (rng.random((N, 37)) > 0.3).astype(np.float32)
  ours, ours_mask = all_atom.pseudo_beta(aatype, pos, mask)
  ref, ref_mask = ref_modules.pseudo_beta_fn(jnp.asarray(aatype), jnp.asarray(pos),
                                             jnp.asarray(mask))
  np.testing.assert_array_equal(ours, ref)
  np.testing.assert_array_equal(ours_mask, ref_mask)
  np.testing.assert_array_equal(all_atom.pseudo_beta(aatype, pos), ref)


def test_backbone_frames_match_quat_affine():
  """QuatRigid -> Rigid equals the reference's QuatAffine -> r3.Rigids conversion."""
  rng = np.random.default_rng(17)
  tensor = rng.normal(size=(N, 7)).astype(np.float32)
  tensor[:, :4] /= np.linalg.norm(tensor[:, :4], axis=-1, keepdims=True)
  ours = QuatRigid.from_tensor(jnp.asarray(tensor)).scale_translation(10.).to_rigid()
  ref = r3.rigids_from_quataffine(
      quat_affine.QuatAffine.from_tensor(jnp.asarray(tensor)).scale_translation(10.))
  ref_rot, ref_trans = _r3_to_arrays(ref)
  np.testing.assert_array_equal(ours.rotation, ref_rot)
  np.testing.assert_array_equal(ours.translation, ref_trans)
