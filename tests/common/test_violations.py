"""Structural violations against AlphaFold's `folding`/`residue_constants`/`amber_minimize`."""

import types

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from alphafold.model import folding as ref_folding
from alphafold.relax import amber_minimize

from af_jax.common import protein
from af_jax.common import residue_constants as rc
from af_jax.common import violations
from tests.data.shared_data import SHARED_DATA

PDB_5NMU = SHARED_DATA / 'structures_only' / 'alphafold2_testdata' / '5nmu.pdb'
GLUCAGON = SHARED_DATA / 'structures_only' / 'alphafold2_testdata' / 'glucagon.pdb'


@pytest.fixture(scope='module')
def chain():
  """5NMU chain B (208 residues, every heavy atom resolved), residues 10-69."""
  prot = protein.from_pdb_string(PDB_5NMU.read_text(), 'B')
  sl = slice(10, 70)
  return types.SimpleNamespace(
      atom_positions=prot.atom_positions[sl].astype(np.float32), atom_mask=prot.atom_mask[sl],
      aatype=prot.aatype[sl], residue_index=prot.residue_index[sl],
      b_factors=prot.b_factors[sl])


def _atom14(prot):
  """atom14 positions and type-based existence of a Protein-like object."""
  idx = rc.restype_atom14_to_atom37[prot.aatype]
  pos = np.take_along_axis(prot.atom_positions, idx[..., None], axis=1)
  exists = rc.restype_atom14_mask[prot.aatype].astype(np.float32)
  return (pos * exists[..., None]).astype(np.float32), exists


@jax.jit
def _reference_violations(batch, atom14_pred_positions):
  """AlphaFold's checks and metrics, compiled (op by op they take seconds)."""
  cfg = ml_collections.ConfigDict({'violation_tolerance_factor': 12.0,
                                   'clash_overlap_tolerance': 1.5})
  v = ref_folding.find_structural_violations(batch, atom14_pred_positions, cfg)
  return v, ref_folding.compute_violation_metrics(batch, atom14_pred_positions, v)


def test_find_structural_violations_matches_reference(chain):
  """Noisy real geometry (many violations of every kind), padded, with a numbering gap."""
  rng = np.random.default_rng(0)
  pos, exists = _atom14(chain)
  pos = pos + rng.normal(scale=0.25, size=pos.shape).astype(np.float32) * exists[..., None]
  n, pad = pos.shape[0], 6
  residue_index = chain.residue_index.copy()
  residue_index[n // 2:] += 3  # a chain break
  batch = {'aatype': chain.aatype, 'residue_index': residue_index, 'atom14_atom_exists': exists,
           'residx_atom14_to_atom37': rc.restype_atom14_to_atom37[chain.aatype],
           'seq_mask': np.ones(n, np.float32)}
  ref, ref_metrics = _reference_violations(batch, pos)

  def padded(x, value=0):
    return np.concatenate([x, np.full((pad,) + x.shape[1:], value, x.dtype)])

  @jax.jit
  def ours(pos, aatype, residue_index, exists, seq_mask):
    v = violations.find_structural_violations(pos, aatype=aatype, residue_index=residue_index,
                                              atom14_atom_exists=exists)
    m = violations.compute_violation_metrics(pos, v, atom14_atom_exists=exists,
                                             residue_index=residue_index, seq_mask=seq_mask)
    return v, m

  pad_pos = padded(pos)
  pad_pos[n:] = rng.normal(size=pad_pos[n:].shape)  # padding holds garbage, not zeros
  got, got_metrics = ours(pad_pos, padded(chain.aatype), padded(residue_index),
                          padded(exists), padded(batch['seq_mask']))
  got = jax.tree_util.tree_map(lambda x: x[:n] if x.ndim else x, got)
  assert jax.tree_util.tree_structure(got) == jax.tree_util.tree_structure(ref)
  for path, value in jax.tree_util.tree_leaves_with_path(got):
    want = ref
    for key in path:
      want = want[key.key]
    value, want = np.asarray(value), np.asarray(want)
    if path[-1].key == 'connections_per_residue_loss_sum':
      # Ours leaves out the (unmasked, in AlphaFold) loss across the break.
      brk = [n // 2 - 1, n // 2]
      assert np.all(value[brk] <= want[brk] + 1e-6) and np.any(value[brk] < want[brk])
      value, want = np.delete(value, brk), np.delete(want, brk)
    np.testing.assert_allclose(value, want, rtol=1e-5, atol=1e-5, err_msg=str(path))
  for key, value in ref_metrics.items():
    np.testing.assert_allclose(got_metrics[key], value, rtol=1e-6, atol=1e-7, err_msg=key)
  # The noise trips every kind of check.
  assert ref['between_residues']['connections_per_residue_violation_mask'].sum() > 0
  assert ref['between_residues']['clashes_per_atom_clash_mask'].sum() > 0
  assert ref['within_residues']['per_atom_violations'].sum() > 0


def test_protein_violations_matches_amber_minimize():
  """glucagon: two residues with intra-residue violations in the deposited model."""
  prot = protein.from_pdb_string(GLUCAGON.read_text())
  got = violations.protein_violations(prot)
  # amber_minimize.find_violations, compiled.
  batch = amber_minimize.make_atom14_positions({
      'aatype': prot.aatype, 'all_atom_positions': prot.atom_positions.astype(np.float32),
      'all_atom_mask': prot.atom_mask.astype(np.float32), 'residue_index': prot.residue_index,
      'seq_mask': np.ones(prot.aatype.shape, np.float32)})
  ref_v, ref = _reference_violations(batch, batch['atom14_gt_positions'])
  ref_mask = np.asarray(ref_v['total_per_residue_violations_mask'])
  assert got['num_residue_violations'] == ref_mask.sum() == 2
  np.testing.assert_array_equal(got['residue_violations'], np.flatnonzero(ref_mask))
  np.testing.assert_array_equal(got['per_residue_violation_mask'], ref_mask > 0)
  for key in ('violations_per_residue', 'violations_within_residue',
              'violations_between_residue_bond', 'violations_between_residue_clash',
              'violations_extreme_ca_ca_distance'):
    np.testing.assert_allclose(got['metrics'][key], ref[key], atol=1e-7, err_msg=key)
  assert got['within_residue_violations'] > 0
  assert got['bond_length_violations'] == got['bond_angle_violations'] == got['clashes'] == 0


def _stretch_and_clash(chain):
  """The chain with peptide bond k->k+1 stretched by 0.5 Å, and one atom pushed into another."""
  pos = chain.atom_positions.copy()
  mask = chain.atom_mask
  n_atom, c_atom = rc.atom_order['N'], rc.atom_order['C']
  k = 30
  step = pos[k + 1, n_atom] - pos[k, c_atom]
  # A rigid shift of everything after the bond along it: only that bond changes
  # (the angles at C and N keep their directions).
  pos[k + 1:] += 0.5 * step / np.linalg.norm(step)

  # Push a side-chain atom of residue i to 1.2 Å from an atom of residue j,
  # choosing a pair where nothing else comes near the moved atom.
  flat = pos.reshape(-1, 3)
  res_of = np.repeat(np.arange(len(pos)), 37)
  observed = mask.reshape(-1) > 0
  is_backbone = np.isin(np.tile(np.arange(37), len(pos)), [0, 1, 2, 4])
  for a in np.flatnonzero(observed & ~is_backbone):
    i = res_of[a]
    if abs(i - k) <= 2 or abs(i - k - 1) <= 2:
      continue
    d = np.linalg.norm(flat - flat[a], axis=-1)
    for b in np.flatnonzero(observed & (np.abs(res_of - i) >= 3) & (d > 3.5) & (d < 6.0)):
      j = res_of[b]
      if abs(j - k) <= 2 or abs(j - k - 1) <= 2:
        continue
      new = flat[b] + (flat[a] - flat[b]) / d[b] * 1.2
      others = observed & (res_of != i) & (np.arange(len(flat)) != b)
      # Clashes need d < r1 + r2 - 1.5 Å <= 2.1 Å (S-S).
      if np.min(np.linalg.norm(flat[others] - new, axis=-1)) > 2.3:
        pos.reshape(-1, 3)[a] = new
        return pos, k, int(i), int(j)
  raise AssertionError('no atom pair to clash')


def test_real_structure_stretched_bond_and_clash(chain):
  clean = violations.protein_violations(chain)
  assert clean['num_residue_violations'] == 0, clean['residue_violations']

  pos, k, i, j = _stretch_and_clash(chain)
  broken = types.SimpleNamespace(**{**vars(chain), 'atom_positions': pos})
  got = violations.protein_violations(broken)
  assert sorted(got['residue_violations']) == sorted({k, k + 1, i, j})
  assert got['bond_length_violations'] == 1
  assert got['bond_angle_violations'] == 0
  assert got['clashes'] == 1
  np.testing.assert_array_equal(np.flatnonzero(got['per_residue_bond_mask']), [k, k + 1])
  np.testing.assert_array_equal(np.flatnonzero(got['per_residue_clash_mask']), sorted([i, j]))
  # The moved atom left its bonds: residue i's own geometry is violated too.
  np.testing.assert_array_equal(np.flatnonzero(got['per_residue_within_mask']), [i])


def test_chain_break_between_chains_is_not_a_bond(chain):
  """Two chains whose numbering runs on: no peptide bond across the chain change."""
  n = len(chain.aatype)
  far = chain.atom_positions.copy()
  far[n // 2:] += np.float32(100.0)  # the second half moved far away
  two_chains = types.SimpleNamespace(**{**vars(chain), 'atom_positions': far,
                                        'residue_index': np.arange(n),
                                        'chain_index': (np.arange(n) >= n // 2).astype(int)})
  assert violations.protein_violations(two_chains)['num_residue_violations'] == 0
  one_chain = types.SimpleNamespace(**{**vars(two_chains), 'chain_index': np.zeros(n, int)})
  got = violations.protein_violations(one_chain)
  np.testing.assert_array_equal(got['residue_violations'], [n // 2 - 1, n // 2])
  assert got['bond_length_violations'] == 1


def test_chain_aware_residue_index():
  idx = violations.chain_aware_residue_index(np.array([5, 6, 7, 9, 10, 10, 1, 2]),
                                             np.array([0, 0, 0, 0, 0, 0, 1, 1]))
  assert np.all(np.diff(idx) > 0)
  np.testing.assert_array_equal(np.diff(idx) == 1, [True, True, False, True, False, False, True])


# The CA-C-N hard bands (cosine), AlphaFold 2.3's and the corrected one.
CA_C_N_BAND_AF23 = 12.0 * rc.between_res_bond_length_stddev_c_n[0]
CA_C_N_BAND = 12.0 * rc.between_res_cos_angles_ca_c_n[1]


def _open_ca_c_n(pos: np.ndarray, k: int, cos_error: float) -> np.ndarray:
  """atom37 positions with the CA(k)-C(k)-N(k+1) angle opened until its cosine is
  `cos_error` below the literature value: residues after k turn rigidly about C(k),
  around the normal of the angle's plane, so the C-N bond and C-N-CA keep theirs."""
  n_atom, ca_atom, c_atom = (rc.atom_order[a] for a in ('N', 'CA', 'C'))
  pivot = pos[k, c_atom].astype(np.float64)
  u, v = pos[k, ca_atom] - pivot, pos[k + 1, n_atom] - pivot
  axis = np.cross(u, v) / np.linalg.norm(np.cross(u, v))
  angle = np.arccos(np.dot(u, v) / np.linalg.norm(u) / np.linalg.norm(v))
  delta = np.arccos(rc.between_res_cos_angles_ca_c_n[0] - cos_error) - angle
  # Rodrigues' rotation matrix; turning about u x v by +delta moves v away from u.
  cross = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
  rot = np.eye(3) + np.sin(delta) * cross + (1 - np.cos(delta)) * cross @ cross
  out = pos.astype(np.float64).copy()
  out[k + 1:] = (out[k + 1:] - pivot) @ rot.T + pivot
  return out.astype(np.float32)


def _ca_c_n_cos(pos: np.ndarray, k: int) -> float:
  n_atom, ca_atom, c_atom = (rc.atom_order[a] for a in ('N', 'CA', 'C'))
  u, v = pos[k, ca_atom] - pos[k, c_atom], pos[k + 1, n_atom] - pos[k, c_atom]
  return float(np.dot(u, v) / np.linalg.norm(u) / np.linalg.norm(v))


def test_ca_c_n_band_uses_the_angle_stddev_when_asked():
  """An angle between the two bands violates AlphaFold 2.3's band only."""
  assert CA_C_N_BAND_AF23 < 0.27 < CA_C_N_BAND
  # Two bonded residues: CA-C along -x, C-N at the angle whose cosine is 0.27 off.
  cos = rc.between_res_cos_angles_ca_c_n[0] - 0.27
  c_n = rc.between_res_bond_length_c_n[0]
  pos = np.zeros((2, 14, 3), np.float32)
  pos[0, 1] = [-1.52, 0.0, 0.0]  # CA
  pos[1, 0] = [-c_n * cos, c_n * np.sqrt(1 - cos**2), 0.0]  # N, bonded to C at the origin
  mask = np.zeros((2, 14), np.float32)
  mask[0, [1, 2]] = mask[1, 0] = 1.0  # CA, C of the first residue; N of the second
  args = (jnp.asarray(pos), jnp.asarray(mask), jnp.arange(2), jnp.zeros(2, jnp.int32))

  af23 = violations.between_residue_bond_loss(*args)
  fixed = violations.between_residue_bond_loss(*args, use_ca_c_n_angle_stddev=True)
  np.testing.assert_array_equal(af23['ca_c_n_violation_mask'], [1.0])
  np.testing.assert_allclose(af23['ca_c_n_loss_mean'], 0.27 - CA_C_N_BAND_AF23, rtol=1e-3)
  np.testing.assert_array_equal(fixed['ca_c_n_violation_mask'], [0.0])
  np.testing.assert_array_equal(fixed['per_residue_violation_mask'], [0.0, 0.0])
  assert fixed['ca_c_n_loss_mean'] == 0.0
  # The C-N bond and the (absent) C-N-CA angle are untouched either way.
  for got in (af23, fixed):
    assert got['c_n_violation_mask'][0] == got['c_n_ca_violation_mask'][0] == 0.0


def test_relaxation_check_frees_no_residue_for_an_angle_inside_the_corrected_band(chain):
  """A real chain with one CA-C-N angle opened between the two bands: relaxation's check
  (the default) passes it; AlphaFold 2.3's flags both residues, as the reference does."""
  k = 55
  pos = _open_ca_c_n(chain.atom_positions, k, cos_error=0.27)
  assert CA_C_N_BAND_AF23 < rc.between_res_cos_angles_ca_c_n[0] - _ca_c_n_cos(pos, k) \
      < CA_C_N_BAND
  opened = types.SimpleNamespace(**{**vars(chain), 'atom_positions': pos})

  got = violations.protein_violations(opened)
  assert got['num_residue_violations'] == 0, got['residue_violations']
  af23 = violations.protein_violations(opened, use_ca_c_n_angle_stddev=False)
  np.testing.assert_array_equal(af23['residue_violations'], [k, k + 1])
  assert af23['bond_angle_violations'] == 1
  assert af23['bond_length_violations'] == af23['clashes'] == 0
  assert af23['within_residue_violations'] == 0

  # AlphaFold 2.3's own check (alphafold-colabfold) agrees with ours under its band.
  batch = amber_minimize.make_atom14_positions({
      'aatype': chain.aatype, 'all_atom_positions': pos,
      'all_atom_mask': chain.atom_mask.astype(np.float32),
      'residue_index': chain.residue_index, 'seq_mask': np.ones(len(chain.aatype), np.float32)})
  ref_v, _ = _reference_violations(batch, batch['atom14_gt_positions'])
  np.testing.assert_array_equal(np.flatnonzero(ref_v['total_per_residue_violations_mask']),
                                [k, k + 1])
