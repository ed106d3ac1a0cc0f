"""residue_constants equals AlphaFold's tables, value for value."""

import numpy as np
import pytest
from alphafold.common import residue_constants as ref

from af_jax.common import residue_constants as rc

_SAME = ['restypes', 'restype_order', 'restype_num', 'unk_restype_index', 'restypes_with_x',
         'restype_order_with_x', 'restypes_with_x_and_gap', 'restype_1to3', 'restype_3to1',
         'resnames', 'resname_to_idx', 'atom_types', 'atom_order', 'atom_type_num',
         'restype_name_to_atom14_names', 'chi_angles_atoms', 'chi_angles_mask',
         'chi_pi_periodic', 'residue_atom_renaming_swaps', 'van_der_waals_radius', 'ca_ca',
         'between_res_bond_length_c_n', 'between_res_bond_length_stddev_c_n',
         'between_res_cos_angles_c_n_ca', 'between_res_cos_angles_ca_c_n',
         'HHBLITS_AA_TO_ID', 'ID_TO_HHBLITS_AA', 'MAP_HHBLITS_AATYPE_TO_OUR_AATYPE']

_ARRAYS = ['restype_atom37_to_rigid_group', 'restype_atom37_mask',
           'restype_atom37_rigid_group_positions', 'restype_atom14_to_rigid_group',
           'restype_atom14_mask', 'restype_atom14_rigid_group_positions',
           'restype_rigid_group_default_frame', 'STANDARD_ATOM_MASK', 'chi_angles_atom_indices']


@pytest.mark.parametrize('name', _SAME)
def test_tables_equal_alphafold(name):
  ours, theirs = getattr(rc, name), getattr(ref, name)
  if isinstance(theirs, (list, tuple)):
    ours, theirs = list(ours), list(theirs)
  assert ours == theirs


def test_rigid_group_atom_positions_equal_alphafold():
  assert rc.rigid_group_atom_positions.keys() == ref.rigid_group_atom_positions.keys()
  for res, atoms in ref.rigid_group_atom_positions.items():
    assert [[a, g, tuple(p)] for a, g, p in rc.rigid_group_atom_positions[res]] == \
        [[a, g, tuple(p)] for a, g, p in atoms], res


@pytest.mark.parametrize('name', _ARRAYS)
def test_derived_arrays_equal_alphafold(name):
  ours, theirs = getattr(rc, name), np.asarray(getattr(ref, name))
  assert ours.shape == theirs.shape
  np.testing.assert_array_equal(ours, theirs)


def test_residue_atoms_and_index_maps():
  assert {k: set(v) for k, v in rc.residue_atoms.items()} == \
      {k: set(v) for k, v in ref.residue_atoms.items()}
  np.testing.assert_array_equal(rc.chi_atom_indices[:20], ref.chi_angles_atom_indices)
  assert not rc.chi_atom_indices[20].any()
  # atom14 -> atom37 -> atom14 is the identity on existing atoms.
  for i in range(21):
    for j in np.flatnonzero(rc.restype_atom14_mask[i]):
      assert rc.restype_atom37_to_atom14[i, rc.restype_atom14_to_atom37[i, j]] == j


def test_sequence_to_onehot():
  onehot = rc.sequence_to_onehot('ARX', rc.restype_order_with_x)
  np.testing.assert_array_equal(onehot, ref.sequence_to_onehot('ARX', ref.restype_order_with_x))
  np.testing.assert_array_equal(
      rc.sequence_to_onehot('AZB', rc.restype_order_with_x, map_unknown_to_x=True),
      ref.sequence_to_onehot('AZB', ref.restype_order_with_x, map_unknown_to_x=True))
  with pytest.raises(ValueError, match='not in mapping'):
    rc.sequence_to_onehot('AZ', rc.restype_order_with_x)
