"""Reference geometry the violation checks compare against, per residue type (numpy).

Literature bond lengths and angles (Engh & Huber, from AlphaFold's
`stereo_chemical_props.txt`), the intra-residue atom14 distance bounds built from them
and the van der Waals radii, and each atom14 slot's radius. Kept apart from the checks
in `af_jax.common.violations` because these are tables, built once, with no JAX.
"""

from __future__ import annotations

import functools
import os
from typing import NamedTuple

import numpy as np

from af_jax.common import residue_constants as rc

STEREO_CHEMICAL_PROPS_PATH = os.path.join(os.path.dirname(__file__),
                                          'stereo_chemical_props.txt')


class Bond(NamedTuple):
  atom1_name: str
  atom2_name: str
  length: float
  stddev: float


class BondAngle(NamedTuple):
  atom1_name: str
  atom2_name: str
  atom3name: str
  angle_rad: float
  stddev: float


def _parse_section(lines, n_atoms: int) -> dict[str, list[tuple]]:
  """Rows 'A-B[-C] RES value stddev' until a line '-'; keyed by residue name."""
  table = {}
  next(lines)  # column header
  for line in lines:
    if line.strip() == '-':
      break
    atoms, resname, value, stddev = line.split()
    names = atoms.split('-')
    assert len(names) == n_atoms, line
    table.setdefault(resname, []).append((*names, float(value), float(stddev)))
  return table


@functools.lru_cache(maxsize=1)
def load_stereo_chemical_props() -> tuple[dict[str, list[Bond]], dict[str, list[Bond]],
                                          dict[str, list[BondAngle]]]:
  """Bond lengths, bond angles, and the angles as 1-3 distances ("virtual bonds").

  The data file `stereo_chemical_props.txt` beside this module is AlphaFold's
  (google-deepmind/alphafold, `alphafold/common/stereo_chemical_props.txt`,
  Apache-2.0), copied unchanged from the PyPI wheel alphafold-colabfold==2.3.20 as
  listed under "Resources" in the shared data's MANIFEST.md (PROVENANCE.tsv has no
  row for it). The figures are Engh & Huber's, in OpenStructure's format.

  Returns:
    (bonds, virtual_bonds, angles): resname -> list, with an empty list for UNK.
    A virtual bond spans the outer atoms of an angle; its length follows from the
    law of cosines, its stddev from first-order error propagation of the two
    bond lengths and the angle (uncorrelated).
  """
  with open(STEREO_CHEMICAL_PROPS_PATH, encoding='utf-8') as f:
    lines = iter(f.read().splitlines())
  bonds = {r: [Bond(*row) for row in rows] for r, rows in _parse_section(lines, 2).items()}
  next(lines)  # blank line between the sections
  angles = {r: [BondAngle(a, b, c, v / 180.0 * np.pi, s / 180.0 * np.pi)
                for a, b, c, v, s in rows]
            for r, rows in _parse_section(lines, 3).items()}
  bonds[rc.unk_restype] = []
  angles[rc.unk_restype] = []

  virtual = {}
  for resname, res_angles in angles.items():
    by_pair = {frozenset((b.atom1_name, b.atom2_name)): b for b in bonds[resname]}
    virtual[resname] = []
    for ang in res_angles:
      b1 = by_pair[frozenset((ang.atom1_name, ang.atom2_name))].length
      s1 = by_pair[frozenset((ang.atom1_name, ang.atom2_name))].stddev
      b2 = by_pair[frozenset((ang.atom2_name, ang.atom3name))].length
      s2 = by_pair[frozenset((ang.atom2_name, ang.atom3name))].stddev
      g = ang.angle_rad
      length = np.sqrt(b1**2 + b2**2 - 2 * b1 * b2 * np.cos(g))
      # d(length)/d(angle), d/d(b1), d/d(b2).
      d_g = b1 * b2 * np.sin(g) / length
      d_b1 = (b1 - b2 * np.cos(g)) / length
      d_b2 = (b2 - b1 * np.cos(g)) / length
      stddev = np.sqrt((d_g * ang.stddev)**2 + (d_b1 * s1)**2 + (d_b2 * s2)**2)
      virtual[resname].append(Bond(ang.atom1_name, ang.atom3name, length, stddev))
  return bonds, virtual, angles


@functools.lru_cache(maxsize=8)
def make_atom14_dists_bounds(overlap_tolerance: float = 1.5,
                             bond_length_tolerance_factor: float = 15.0
                             ) -> dict[str, np.ndarray]:
  """Allowed intra-residue atom14 pair distances per residue type.

  Non-bonded pairs: at least the sum of van der Waals radii minus
  `overlap_tolerance`. Bonded and 1-3 (angle) pairs: literature length within
  `bond_length_tolerance_factor` standard deviations.

  Returns:
    lower_bound, upper_bound, stddev: [21, 14, 14] float32 (0 for absent atoms).
  """
  lower = np.zeros((21, 14, 14), np.float32)
  upper = np.zeros((21, 14, 14), np.float32)
  stddev = np.zeros((21, 14, 14), np.float32)
  bonds, virtual, _ = load_stereo_chemical_props()
  for restype, letter in enumerate(rc.restypes):
    resname = rc.restype_1to3[letter]
    names = rc.restype_name_to_atom14_names[resname]
    for i, a in enumerate(names):
      for j, b in enumerate(names):
        if a and b and i != j:
          lower[restype, i, j] = (rc.van_der_waals_radius[a[0]] + rc.van_der_waals_radius[b[0]]
                                  - overlap_tolerance)
          upper[restype, i, j] = 1e10
    for bond in bonds[resname] + virtual[resname]:
      i, j = names.index(bond.atom1_name), names.index(bond.atom2_name)
      for x, y in ((i, j), (j, i)):
        lower[restype, x, y] = bond.length - bond_length_tolerance_factor * bond.stddev
        upper[restype, x, y] = bond.length + bond_length_tolerance_factor * bond.stddev
        stddev[restype, x, y] = bond.stddev
  return {'lower_bound': lower, 'upper_bound': upper, 'stddev': stddev}


def _atom14_radius_table() -> np.ndarray:
  """[21, 14] van der Waals radius of each atom14 slot (element = first letter)."""
  table = np.zeros((21, 14), np.float32)
  for restype, letter in enumerate(rc.restypes):
    for i, name in enumerate(rc.restype_name_to_atom14_names[rc.restype_1to3[letter]]):
      if name:
        table[restype, i] = rc.van_der_waals_radius[name[0]]
  return table


# [21, 14]: the van der Waals radius of each residue type's atom14 slots.
ATOM14_RADIUS = _atom14_radius_table()


__all__ = ['ATOM14_RADIUS', 'Bond', 'BondAngle', 'STEREO_CHEMICAL_PROPS_PATH',
           'load_stereo_chemical_props', 'make_atom14_dists_bounds']
