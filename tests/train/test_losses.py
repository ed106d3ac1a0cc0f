"""Labels and losses against AlphaFold's `folding`, `modules`, `all_atom` and data transforms.

Ground truth is a real structure (5NMU chain B, 28 residues, a few atoms and one
residue made unobserved); the prediction is the truth with noisy frames and
torsions, one symmetric side chain flipped by pi, and random head logits.
"""

import functools

import haiku as hk
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from flax import nnx
from alphafold.model import all_atom as ref_all_atom
from alphafold.model import config as ref_config
from alphafold.model import folding as ref_folding
from alphafold.model import modules as ref_modules
from alphafold.model import r3
from alphafold.relax import amber_minimize

from af_jax.common import protein
from af_jax.common import residue_constants as rc
from af_jax.common.geometry import QuatRigid, quaternion_multiply_by_vector
from af_jax.model import all_atom
from af_jax.model.alphafold import AlphaFold
from af_jax.train import labels, losses, structure_losses
from configs.model import model_config
from tests import tolerance
from tests.data.shared_data import SHARED_DATA
from tests.model.tiny import random_batch, tiny_config

PRESET = 'model_1_ptm'
NUM_LAYER = 8
PAD = 5


@pytest.fixture(scope='module')
def truth():
  prot = protein.from_pdb_string(
      (SHARED_DATA / 'structures_only' / 'alphafold2_testdata' / '5nmu.pdb').read_text(), 'B')
  sl = slice(36, 64)
  aatype = prot.aatype[sl].astype(np.int32)
  pos = prot.atom_positions[sl].astype(np.float32)
  mask = prot.atom_mask[sl].astype(np.float32)
  # Unobserved atoms, as in real data: side chain past CB of residue 3, the O of
  # residue 7, all of residue 12.
  mask[3, 5:] = 0
  mask[7, rc.atom_order['O']] = 0
  mask[12] = 0
  pos = pos * mask[..., None]
  names = ''.join(rc.restypes[a] for a in aatype)
  assert {'P', 'G', 'D', 'E', 'Y'} <= set(names), names
  return {'aatype': aatype, 'all_atom_positions': pos, 'all_atom_mask': mask,
          'residue_index': prot.residue_index[sl].astype(np.int32),
          'seq_mask': np.ones(len(aatype), np.float32)}


def _pad(x, n, pad=PAD, value=0.0):
  """Pad every residue axis (size n) of x by `pad` entries of `value`."""
  x = np.asarray(x)
  for axis, size in enumerate(x.shape):
    if size == n:
      widths = [(0, 0)] * x.ndim
      widths[axis] = (0, pad)
      x = np.pad(x, widths, constant_values=value)
  return x


@pytest.fixture(scope='module')
def padded_labels(truth):
  """Labels of the truth padded by PAD residues (garbage positions, seq_mask 0)."""
  n = len(truth['aatype'])
  pos = _pad(truth['all_atom_positions'], n)
  pos[n:] = np.random.default_rng(3).normal(size=pos[n:].shape)
  return jax.tree_util.tree_map(np.asarray, jax.jit(labels.make_labels)(
      _pad(truth['aatype'], n), pos, _pad(truth['all_atom_mask'], n),
      _pad(truth['seq_mask'], n)))


@pytest.fixture(scope='module')
def made_labels(truth, padded_labels):
  n = len(truth['aatype'])
  return {k: v[:n] for k, v in padded_labels.items()}


# ---------------------------------------------------------------------------
# Labels.


def test_atom14_labels_match_reference(truth, made_labels):
  ref = amber_minimize.make_atom14_positions({k: truth[k] for k in (
      'aatype', 'all_atom_positions', 'all_atom_mask')})
  for key in ('atom14_atom_exists', 'atom14_gt_exists', 'atom14_gt_positions',
              'atom14_alt_gt_positions', 'atom14_alt_gt_exists', 'atom14_atom_is_ambiguous',
              'residx_atom14_to_atom37', 'residx_atom37_to_atom14', 'atom37_atom_exists'):
    np.testing.assert_array_equal(made_labels[key], ref[key], err_msg=key)
  # The swap is real: some residue's alternative positions differ.
  assert np.any(made_labels['atom14_alt_gt_positions'] != made_labels['atom14_gt_positions'])


@jax.jit
def _reference_labels(aatype, positions, mask):
  return (ref_all_atom.atom37_to_frames(aatype, positions, mask),
          ref_all_atom.atom37_to_torsion_angles(aatype[None], positions[None], mask[None]),
          ref_modules.pseudo_beta_fn(aatype, positions, mask))


def _label_spread(truth, compared):
  """Spread of `compared(labels)` under a one-ulp change of the true coordinates."""
  make = jax.jit(labels.make_labels)
  args = [truth[k] for k in ('aatype', 'all_atom_positions', 'all_atom_mask', 'seq_mask')]

  def run(pos):
    return compared(jax.tree_util.tree_map(np.asarray, make(args[0], pos, *args[2:])))

  return tolerance.spread(run, jnp.asarray(args[1]))


def test_frames_chis_backbone_and_pseudo_beta_match_reference(truth, made_labels):
  args = (truth['aatype'], truth['all_atom_positions'], truth['all_atom_mask'])
  ref, tors, (pb, pb_mask) = _reference_labels(*args)
  frame_keys = sorted(ref)
  tolerance.assert_close({k: made_labels[k] for k in frame_keys},
                         {k: np.asarray(ref[k]) for k in frame_keys},
                         _label_spread(truth, lambda m: {k: m[k] for k in frame_keys}),
                         what='frames')
  assert np.any(made_labels['rigidgroups_group_is_ambiguous'])

  chi_mask = np.asarray(tors['torsion_angles_mask'][0, :, 3:])
  np.testing.assert_array_equal(made_labels['chi_mask'], chi_mask)
  assert chi_mask.sum() > 20 and not chi_mask[3].any()
  # NUMERICS: coordinates near 50 Å carry float32 rounding of ~4e-6 Å, which the
  # torsions divide by bond lengths: the spread measures what that gives.
  chis = ('chi_angles_sin_cos', 'alt_chi_angles_sin_cos')
  tolerance.assert_close(
      {k: made_labels[k] * chi_mask[..., None] for k in chis},
      {ours: np.asarray(tors[theirs][0, :, 3:]) * chi_mask[..., None] for ours, theirs in
       zip(chis, ('torsion_angles_sin_cos', 'alt_torsion_angles_sin_cos'))},
      _label_spread(truth, lambda m: {k: m[k] * chi_mask[..., None] for k in chis}),
      what='chi angles')
  sin_cos = made_labels['chi_angles_sin_cos']
  # The same angle two ways (atan2, then sin and cos here): a few roundings at 1.
  unit = tolerance.rounding_atol(1.0, 16)
  np.testing.assert_allclose(np.sin(made_labels['chi_angles']), sin_cos[..., 0], rtol=0,
                             atol=unit)
  np.testing.assert_allclose(np.cos(made_labels['chi_angles']) * chi_mask, sin_cos[..., 1],
                             rtol=0, atol=unit)

  # Backbone affine: the quaternion's rotation is the backbone group's frame.
  bb_mask = made_labels['backbone_affine_mask']
  np.testing.assert_array_equal(bb_mask, ref['rigidgroups_gt_exists'][:, 0])
  assert bb_mask.sum() == len(bb_mask) - 1
  ok = bb_mask > 0

  def rotation(m):
    rot = QuatRigid.from_tensor(jnp.asarray(m['backbone_affine_tensor'])).rotation
    return np.reshape(np.asarray(rot), (-1, 9))[ok]

  ref_bb = np.asarray(ref['rigidgroups_gt_frames'])[:, 0]
  tolerance.assert_close(rotation(made_labels), ref_bb[ok, :9],
                         _label_spread(truth, rotation), what='backbone rotation')
  np.testing.assert_array_equal(made_labels['backbone_affine_tensor'][:, 4:][ok],
                                truth['all_atom_positions'][ok, rc.atom_order['CA']])

  np.testing.assert_array_equal(made_labels['pseudo_beta'], pb)
  np.testing.assert_array_equal(made_labels['pseudo_beta_mask'], pb_mask)


# ---------------------------------------------------------------------------
# A noisy prediction and the losses.


@jax.jit
def _structure_outputs(aatype, positions, mask, backbone_affine, q_noise, t_noise, angle_noise,
                       flip, norm_scale):
  """The structure module's outputs for noisy frames [L, N] and torsions [L, N, 7, 2]."""
  gt = QuatRigid.from_tensor(backbone_affine).to_rigid()
  tors = all_atom.atom37_to_torsion_angles(aatype, positions, mask,
                                           placeholder_for_undefined=True)

  def layer(q, t, noise):
    # The ground-truth quaternion times the noise quaternion: (g ⊗ q) = q_w g + g ⊗ (0, q_xyz).
    g = backbone_affine[:, :4]
    quat = q[:, :1] * g + quaternion_multiply_by_vector(g, q[:, 1:])
    trans = gt.translation + t
    ang = (tors['torsion_angles_sin_cos'] + noise) * flip
    ang = ang / jnp.linalg.norm(ang, axis=-1, keepdims=True)
    group = all_atom.torsion_angles_to_frames(aatype, QuatRigid(quat, trans).to_rigid(), ang)
    return (jnp.concatenate([quat, trans], -1), group.to_flat12(),
            all_atom.frames_and_literature_positions_to_atom14_pos(aatype, group), ang)

  traj, frames, atom_pos, angles = jax.vmap(layer)(q_noise, t_noise, angle_noise)
  return {'traj': traj, 'final_affines': traj[-1], 'final_atom14_positions': atom_pos[-1],
          'final_atom_positions': all_atom.atom14_to_atom37(atom_pos[-1], aatype),
          'sidechains': {'frames': frames, 'atom_pos': atom_pos, 'angles_sin_cos': angles,
                         'unnormalized_angles_sin_cos': angles * norm_scale}}


def _prediction(truth, made_labels, seed=0):
  """Model-shaped outputs: noisy frames per layer, torsions, atoms, random logits."""
  rng = np.random.default_rng(seed)
  n, L = len(truth['aatype']), NUM_LAYER
  layer = np.arange(L)[:, None, None]
  q = np.concatenate([np.ones((L, n, 1)), rng.normal(size=(L, n, 3)) * 0.4 / (1 + layer)], -1)
  q /= np.linalg.norm(q, axis=-1, keepdims=True)
  # Å: the first layers far off (past the 10 Å clamp), two residues of the last one too.
  t = rng.normal(size=(L, n, 3)) * 6.0 / (1 + 2 * layer)
  t[-1, [5, 20]] += 15.0
  # Flip the pi-periodic chi of the first ASP/GLU/TYR by pi: the swapped naming wins there.
  flip = np.ones((n, 7, 1))
  first_sym = int(np.flatnonzero(np.isin(truth['aatype'], [3, 6, 18]))[0])
  flip[first_sym, 3:, 0] = 1.0 - 2.0 * np.asarray(rc.chi_pi_periodic)[truth['aatype'][first_sym]]
  f32 = np.float32
  sm = _structure_outputs(truth['aatype'], truth['all_atom_positions'], truth['all_atom_mask'],
                          made_labels['backbone_affine_tensor'], q.astype(f32), t.astype(f32),
                          rng.normal(scale=0.3, size=(L, n, 7, 2)).astype(f32), flip.astype(f32),
                          rng.uniform(0.5, 1.5, size=(L, n, 7, 1)).astype(f32))
  f32 = np.float32
  return jax.tree_util.tree_map(np.asarray, {
      'structure_module': sm,
      'distogram': {'logits': rng.normal(size=(n, n, 64)).astype(f32),
                    'bin_edges': np.linspace(2.3125, 21.6875, 63).astype(f32)},
      'masked_msa': {'logits': rng.normal(size=(6, n, 23)).astype(f32)},
      'predicted_lddt': {'logits': rng.normal(size=(n, 50)).astype(f32)},
      'experimentally_resolved': {'logits': rng.normal(size=(n, 37)).astype(f32)},
      'predicted_aligned_error_head': {'logits': rng.normal(size=(n, n, 64)).astype(f32),
                                       'breaks': np.linspace(0.0, 31.0, 63).astype(f32)},
  })


def _features(truth, seed=1):
  rng = np.random.default_rng(seed)
  n = len(truth['aatype'])
  return {**truth, 'true_msa': rng.integers(0, 23, size=(6, n)).astype(np.int32),
          'bert_mask': (rng.random((6, n)) < 0.3).astype(np.float32),
          'resolution': np.float32(2.1), 'use_clamped_fape': np.float32(0.9)}


@jax.jit
def _reference_terms(outputs, batch):
  """Every head's loss from the reference, combined as AlphaFoldIteration does."""
  cfg = ref_config.model_config(PRESET).model
  gc = cfg.global_config

  def run():
    heads = cfg.heads
    sm_value = dict(outputs['structure_module'])
    sc = sm_value['sidechains']
    sm_value['sidechains'] = {**sc, 'frames': r3.rigids_from_tensor_flat12(sc['frames']),
                              'atom_pos': r3.vecs_from_tensor(sc['atom_pos'])}
    sm = ref_folding.StructureModule(heads.structure_module, gc).loss(dict(sm_value), batch)
    terms = {'structure_module': sm['loss'], 'fape': sm['fape'],
             'sidechain_fape': sm['sidechain_fape'], 'chi_loss': sm['chi_loss'],
             'angle_norm_loss': sm['angle_norm_loss'], **sm['metrics']}
    # The violation loss on its own, and FAPE without clamping.
    v = ref_folding.find_structural_violations(batch, sm_value['final_atom14_positions'],
                                               heads.structure_module)
    ret = {'loss': 0.0}
    ref_folding.structural_violation_loss(ret, batch, {'violations': v}, heads.structure_module)
    terms['violations'] = ret['loss']
    ret = {'loss': 0.0}
    ref_folding.backbone_loss(ret, {**batch, 'use_clamped_fape': 0.0}, sm_value,
                              heads.structure_module)
    terms['unclamped_fape'] = ret['fape']
    ret = {'structure_module': outputs['structure_module'], **outputs,
           'predicted_aligned_error': outputs['predicted_aligned_error_head']}
    terms['distogram'] = ref_modules.DistogramHead(heads.distogram, gc).loss(
        outputs['distogram'], batch)['loss']
    terms['masked_msa'] = ref_modules.MaskedMsaHead(heads.masked_msa, gc).loss(
        outputs['masked_msa'], batch)['loss']
    terms['experimentally_resolved'] = ref_modules.ExperimentallyResolvedHead(
        heads.experimentally_resolved, gc).loss(outputs['experimentally_resolved'],
                                                batch)['loss']
    terms['predicted_lddt'] = ref_modules.PredictedLDDTHead(heads.predicted_lddt, gc).loss(
        ret, batch)['loss']
    terms['aligned_error'] = ref_modules.PredictedAlignedErrorHead(
        heads.predicted_aligned_error, gc).loss(ret, batch)['loss']
    total = sum(heads[name].weight * terms[key] for name, key in (
        ('structure_module', 'structure_module'), ('distogram', 'distogram'),
        ('masked_msa', 'masked_msa'), ('experimentally_resolved', 'experimentally_resolved'),
        ('predicted_lddt', 'predicted_lddt'), ('predicted_aligned_error', 'aligned_error')))
    alt = ref_folding.compute_renamed_ground_truth(batch, sm_value['final_atom14_positions'])
    return total, terms, alt['alt_naming_is_better']

  return hk.transform(run).apply({}, None)


def _reference_batch(features, made_labels):
  batch = {**features, **made_labels}
  batch['chi_angles'] = made_labels['chi_angles']
  return {k: v for k, v in batch.items() if not k.startswith('chi_angles_sin')}


@pytest.fixture(scope='module')
def setup(truth, made_labels):
  return _features(truth), _prediction(truth, made_labels), model_config(PRESET).model


def _padded(truth, features, outputs, padded_labels):
  """Features with labels and outputs padded by PAD residues and 2 MSA rows, predictions
  there random."""
  n = len(truth['aatype'])
  rng = np.random.default_rng(5)

  def pad_noise(x):
    where = _pad(np.zeros(np.shape(x), np.float32), n, value=1.0)
    return (_pad(x, n) + where * rng.normal(size=where.shape)).astype(np.asarray(x).dtype)

  out = jax.tree_util.tree_map(pad_noise, outputs)
  out['masked_msa']['logits'] = np.pad(out['masked_msa']['logits'], [(0, 2), (0, 0), (0, 0)],
                                       constant_values=1.0)
  batch = {k: _pad(v, n) if np.ndim(v) else v for k, v in features.items()}
  batch['all_atom_positions'][n:] = rng.normal(size=(PAD, 37, 3))
  batch['true_msa'] = np.pad(batch['true_msa'], [(0, 2), (0, 0)], constant_values=5)
  batch['bert_mask'] = np.pad(batch['bert_mask'], [(0, 2), (0, 0)])
  return {**padded_labels, **batch}, out


@functools.partial(jax.jit, static_argnums=2)
def _ours(outputs, batch, cfg):
  """(total, terms) and d total / d outputs."""
  return jax.value_and_grad(losses.alphafold_loss, has_aux=True)(outputs, batch, cfg)


@pytest.fixture(scope='module')
def run(truth, made_labels, padded_labels, setup):
  """Our loss on the padded batch, the reference's on the unpadded one."""
  features, outputs, cfg = setup
  batch, out = _padded(truth, features, outputs, padded_labels)
  ours = _ours(out, batch, ml_collections.FrozenConfigDict(cfg))
  ref = _reference_terms(outputs, _reference_batch(features, made_labels))
  return ours, ref


def test_every_term_and_total_match_reference_with_padding(run):
  """Parity of each term on an unpadded batch (reference) and a padded one (ours)."""
  ((total, terms), _), (ref_total, ref_terms, alt) = run
  assert set(ref_terms) <= set(terms), set(ref_terms) - set(terms)
  for key, value in ref_terms.items():
    np.testing.assert_allclose(terms[key], value, rtol=1e-5, atol=1e-6, err_msg=key)
  np.testing.assert_allclose(total, ref_total, rtol=1e-5)
  # The inputs exercise what they should.
  assert 0 < alt.sum() < len(alt)
  assert terms['unclamped_fape'] > terms['fape'] * 1.01
  for key in ('violations', 'distogram', 'masked_msa', 'predicted_lddt',
              'experimentally_resolved', 'aligned_error', 'chi_loss', 'sidechain_fape'):
    assert terms[key] > 0, key


def test_resolution_filter_and_unclamped_fape(truth, made_labels, padded_labels, setup):
  features, outputs, cfg = setup
  features = {**features, 'resolution': np.float32(3.5), 'use_clamped_fape': np.float32(0.0)}
  batch, out = _padded(truth, features, outputs, padded_labels)
  (total, terms), _ = _ours(out, batch, ml_collections.FrozenConfigDict(cfg))
  ref_total, ref_terms, _ = _reference_terms(outputs, _reference_batch(features, made_labels))
  for key in ('predicted_lddt', 'experimentally_resolved', 'aligned_error'):
    assert terms[key] == 0 and ref_terms[key] == 0, key
  np.testing.assert_allclose(terms['fape'], terms['unclamped_fape'], rtol=1e-6)
  np.testing.assert_allclose(terms['fape'], ref_terms['fape'], rtol=1e-5)
  np.testing.assert_allclose(total, ref_total, rtol=1e-5)


def test_gradients_are_finite_and_stay_off_padding(truth, run):
  (_, grads), _ = run
  n = len(truth['aatype'])
  for path, g in jax.tree_util.tree_leaves_with_path(grads):
    assert np.all(np.isfinite(g)), path
  sm = grads['structure_module']
  for g in (sm['final_atom14_positions'][:n], sm['traj'][:, :n],
            sm['sidechains']['atom_pos'][-1, :n], sm['sidechains']['frames'][-1, :n],
            sm['sidechains']['angles_sin_cos'][:, :n], grads['distogram']['logits'][:n, :n]):
    assert np.abs(g).max() > 0
  for g in (sm['final_atom14_positions'][n:], sm['traj'][:, n:],
            sm['sidechains']['atom_pos'][:, n:], grads['distogram']['logits'][n:],
            grads['masked_msa']['logits'][-2:], grads['predicted_lddt']['logits'][n:]):
    assert not np.any(g)


def test_batch_with_a_recycle_axis_is_an_input_error(truth, made_labels, setup):
  features, outputs, cfg = setup
  stacked = {k: np.stack([v, v]) for k, v in features.items()}
  with pytest.raises(ValueError, match='final_recycle_features'):
    losses.alphafold_loss(outputs, stacked, cfg)
  one = losses.final_recycle_features(stacked, {'num_recycles': jnp.int32(3)})
  np.testing.assert_array_equal(one['true_msa'], features['true_msa'])


def test_missing_labels_are_made_from_atom37(truth, padded_labels, setup):
  features, outputs, cfg = setup
  n = len(truth['aatype'])
  batch = {k: _pad(v, n) if np.ndim(v) else v for k, v in features.items()}
  made = jax.eval_shape(losses.prepare_batch, batch)
  for key, value in padded_labels.items():
    assert made[key].shape == value.shape, key
  assert set(made) >= set(padded_labels)


def test_labels_are_zero_on_padding(truth, padded_labels):
  n = len(truth['aatype'])
  for key in ('atom14_atom_exists', 'atom37_atom_exists', 'rigidgroups_group_exists',
              'atom14_gt_exists', 'rigidgroups_gt_exists', 'backbone_affine_mask', 'chi_mask',
              'pseudo_beta_mask', 'all_atom_mask'):
    assert not np.any(padded_labels[key][n:]), key
    assert np.any(padded_labels[key][:n]), key


def test_loss_reads_the_models_outputs():
  """The tiny model's outputs (traced, not run) carry every name and shape the loss reads."""
  cfg = tiny_config().model
  graphdef, state = nnx.split(nnx.eval_shape(lambda: AlphaFold(cfg, rngs=nnx.Rngs(0))))
  features = random_batch(n_res=12)
  n = 12
  spec = jax.ShapeDtypeStruct
  labels_in = {'all_atom_positions': spec((n, 37, 3), jnp.float32),
               'all_atom_mask': spec((n, 37), jnp.float32), 'resolution': spec((), jnp.float32),
               'true_msa': spec((5, n), jnp.int32), 'bert_mask': spec((5, n), jnp.float32)}

  def loss(state, features, labels_in):
    outputs = nnx.merge(graphdef, state)(features)
    batch = {**losses.final_recycle_features(features, outputs), **labels_in}
    return losses.alphafold_loss(outputs, batch, cfg)

  total, terms = jax.eval_shape(loss, state, features, labels_in)
  assert total.shape == ()
  assert {'fape', 'unclamped_fape', 'sidechain_fape', 'chi_loss', 'angle_norm_loss',
          'violations', 'distogram', 'masked_msa', 'predicted_lddt', 'experimentally_resolved',
          'aligned_error'} <= set(terms)


@functools.partial(jax.jit, static_argnums=2)
def _structure_module_loss(sm, batch, sm_cfg):
  return structure_losses.structure_module_loss(sm, losses.prepare_batch(batch), sm_cfg)


def test_ca_c_n_angle_stddev_key_changes_the_violation_loss(truth, made_labels, setup):
  """heads.structure_module.use_ca_c_n_angle_stddev: AlphaFold 2.3's band by default (the
  parity test above); True widens the CA-C-N band from 12 x 0.014 to 12 x 0.0311 and changes
  only the violation term's CA-C-N part."""
  features, outputs, cfg = setup
  assert cfg.heads.structure_module.use_ca_c_n_angle_stddev is False
  batch, sm = {**features, **made_labels}, outputs['structure_module']
  got = {}
  for flag in (False, True):
    sm_cfg = cfg.heads.structure_module.copy_and_resolve_references()
    sm_cfg.use_ca_c_n_angle_stddev = flag
    got[flag] = _structure_module_loss(sm, batch, ml_collections.FrozenConfigDict(sm_cfg))

  # The CA-C-N flat-bottom loss, mean over the bonded links, in numpy.
  pos = np.asarray(sm['final_atom14_positions'], np.float64)
  ca, c, n_next = pos[:-1, 1], pos[:-1, 2], pos[1:, 0]
  u, v = ca - c, n_next - c
  cos = np.sum(u * v, -1) / np.linalg.norm(u, axis=-1) / np.linalg.norm(v, axis=-1)
  error = np.sqrt(1e-6 + np.square(cos - rc.between_res_cos_angles_ca_c_n[0]))
  bonded = np.diff(truth['residue_index']) == 1
  assert bonded.all()

  def ca_c_n_loss(stddev):
    return np.mean(np.maximum(error - 12.0 * stddev, 0.0))

  af23 = ca_c_n_loss(rc.between_res_bond_length_stddev_c_n[0])
  fixed = ca_c_n_loss(rc.between_res_cos_angles_ca_c_n[1])
  assert 0 < fixed < af23
  np.testing.assert_allclose(got[False]['violations'] - got[True]['violations'], af23 - fixed,
                             rtol=1e-4)
  weight = cfg.heads.structure_module.structural_violation_loss_weight
  np.testing.assert_allclose(got[False]['loss'] - got[True]['loss'],
                             weight * (af23 - fixed), rtol=1e-4)
  for key in ('fape', 'sidechain_fape', 'chi_loss', 'angle_norm_loss'):
    assert got[False][key] == got[True][key], key
