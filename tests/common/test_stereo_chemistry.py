"""The stereochemistry tables against AlphaFold's `residue_constants`."""

import numpy as np
from alphafold.common import residue_constants as ref_rc

from af_jax.common import stereo_chemistry


def test_stereo_chemical_tables_match_reference():
  bonds, virtual, angles = stereo_chemistry.load_stereo_chemical_props()
  ref_bonds, ref_virtual, ref_angles = ref_rc.load_stereo_chemical_props()
  for ours, ref in ((bonds, ref_bonds), (virtual, ref_virtual), (angles, ref_angles)):
    assert sorted(ours) == sorted(ref)
    for resname in ref:
      np.testing.assert_allclose(np.array([b[-2:] for b in ours[resname]]).reshape(-1),
                                 np.array([b[-2:] for b in ref[resname]]).reshape(-1),
                                 rtol=1e-12, err_msg=resname)
      assert [b[:-2] for b in ours[resname]] == [b[:-2] for b in ref[resname]]
  for tol, factor in ((1.5, 12.0), (0.5, 15.0)):
    ours = stereo_chemistry.make_atom14_dists_bounds(tol, factor)
    ref = ref_rc.make_atom14_dists_bounds(tol, factor)
    for key in ('lower_bound', 'upper_bound', 'stddev'):
      np.testing.assert_allclose(ours[key], ref[key], rtol=1e-6, err_msg=key)
