"""Residue and atom tables of AlphaFold2 (monomer), as plain numpy.

Names follow AlphaFold's `residue_constants` so its users find them:
residue order (`restypes`), the 37-slot atom layout (`atom_types`), the dense
14-slot layout (`restype_name_to_atom14_names`), chi-angle atoms, and the
idealised atom positions in each residue's 8 rigid groups (Jumper et al. (2021)
Suppl. Table 2), from which the `restype_*` arrays used by the structure module
are derived at import time.

Rigid groups: 0 backbone, 1 pre-omega (empty), 2 phi (empty: hydrogens only),
3 psi, 4..7 chi1..chi4. Atom positions are given in their group's frame, whose
x axis runs along the rotation axis and whose xy plane holds the atom that
defines the dihedral.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

# ---------------------------------------------------------------------------
# Residue types.

# One-letter codes in the order of their alphabetically sorted three-letter codes.
restypes = list('ARNDCQEGHILKMFPSTWYV')
restype_order = {r: i for i, r in enumerate(restypes)}
restype_num = len(restypes)  # 20
unk_restype_index = restype_num  # 20: any unknown residue ('X', 'UNK')
restypes_with_x = restypes + ['X']
restype_order_with_x = {r: i for i, r in enumerate(restypes_with_x)}
restypes_with_x_and_gap = restypes + ['X', '-']

_THREE_LETTER = ('ALA ARG ASN ASP CYS GLN GLU GLY HIS ILE '
                 'LEU LYS MET PHE PRO SER THR TRP TYR VAL').split()
restype_1to3 = dict(zip(restypes, _THREE_LETTER))
restype_3to1 = {v: k for k, v in restype_1to3.items()}
unk_restype = 'UNK'
resnames = _THREE_LETTER + [unk_restype]
resname_to_idx = {r: i for i, r in enumerate(resnames)}

# ---------------------------------------------------------------------------
# Atom layouts.

# The 37 heavy-atom types of the standard residues (atom37 layout).
atom_types = ('N CA C CB O CG CG1 CG2 OG OG1 SG CD CD1 CD2 ND1 ND2 OD1 OD2 SD CE '
              'CE1 CE2 CE3 NE NE1 NE2 OE1 OE2 CH2 NH1 NH2 OH CZ CZ2 CZ3 NZ OXT').split()
atom_order = {a: i for i, a in enumerate(atom_types)}
atom_type_num = len(atom_types)  # 37

# Dense layout: each residue's heavy atoms in 14 slots, backbone first
# (N CA C O), then the side chain; unused slots are ''.
_ATOM14 = {
    'ALA': 'CB',
    'ARG': 'CB CG CD NE CZ NH1 NH2',
    'ASN': 'CB CG OD1 ND2',
    'ASP': 'CB CG OD1 OD2',
    'CYS': 'CB SG',
    'GLN': 'CB CG CD OE1 NE2',
    'GLU': 'CB CG CD OE1 OE2',
    'GLY': '',
    'HIS': 'CB CG ND1 CD2 CE1 NE2',
    'ILE': 'CB CG1 CG2 CD1',
    'LEU': 'CB CG CD1 CD2',
    'LYS': 'CB CG CD CE NZ',
    'MET': 'CB CG SD CE',
    'PHE': 'CB CG CD1 CD2 CE1 CE2 CZ',
    'PRO': 'CB CG CD',
    'SER': 'CB OG',
    'THR': 'CB OG1 CG2',
    'TRP': 'CB CG CD1 CD2 NE1 CE2 CE3 CZ2 CZ3 CH2',
    'TYR': 'CB CG CD1 CD2 CE1 CE2 CZ OH',
    'VAL': 'CB CG1 CG2',
}


def _atom14_names(side_chain: str) -> list[str]:
  names = ['N', 'CA', 'C', 'O'] + side_chain.split()
  return names + [''] * (14 - len(names))


restype_name_to_atom14_names = {r: _atom14_names(s) for r, s in _ATOM14.items()}
restype_name_to_atom14_names[unk_restype] = [''] * 14

# Heavy atoms of each residue (atom14 order; AlphaFold lists them alphabetically,
# only the set matters for the masks built from it).
residue_atoms = {r: [a for a in names if a] for r, names in restype_name_to_atom14_names.items()
                 if r != unk_restype}

# ---------------------------------------------------------------------------
# Chi angles.

# Each chi angle is a dihedral over four consecutive atoms of the side-chain
# torsion chain N-CA-CB-...: chi_k is chain[k:k+4]. Chi5 of ARG (always near 0)
# is not modelled.
_CHI_CHAIN = {
    'ARG': 'CG CD NE CZ', 'ASN': 'CG OD1', 'ASP': 'CG OD1', 'CYS': 'SG',
    'GLN': 'CG CD OE1', 'GLU': 'CG CD OE1', 'HIS': 'CG ND1', 'ILE': 'CG1 CD1',
    'LEU': 'CG CD1', 'LYS': 'CG CD CE NZ', 'MET': 'CG SD CE', 'PHE': 'CG CD1',
    'PRO': 'CG CD', 'SER': 'OG', 'THR': 'OG1', 'TRP': 'CG CD1', 'TYR': 'CG CD1',
    'VAL': 'CG1',
}


def _chis(resname: str) -> list[list[str]]:
  chain = ['N', 'CA', 'CB'] + _CHI_CHAIN.get(resname, '').split()
  return [chain[k:k + 4] for k in range(len(chain) - 3)]


chi_angles_atoms = {r: _chis(r) for r in _THREE_LETTER}
# [20][4] floats: 1 where the chi angle exists (restype order).
chi_angles_mask = [[float(k < len(chi_angles_atoms[r])) for k in range(4)]
                   for r in _THREE_LETTER]

# Chi angles whose rotation by pi leaves the residue unchanged (symmetric
# terminal groups), as zero-based chi index; [21][4] incl. UNK.
_PI_PERIODIC_CHI = {'ASP': 1, 'GLU': 2, 'PHE': 1, 'TYR': 1}
chi_pi_periodic = [[float(_PI_PERIODIC_CHI.get(r) == k) for k in range(4)] for r in resnames]

# Atom37 indices of each chi angle's 4 atoms, [21, 4, 4]; 0 where undefined
# (the UNK row and missing chis).
chi_atom_indices = np.zeros((restype_num + 1, 4, 4), np.int32)
for _i, _r in enumerate(_THREE_LETTER):
  for _k, _atoms in enumerate(chi_angles_atoms[_r]):
    chi_atom_indices[_i, _k] = [atom_order[a] for a in _atoms]
chi_angles_atom_indices = chi_atom_indices[:restype_num]  # [20, 4, 4], AlphaFold's name

# Atoms whose names swap under the pi-periodic chi (naming ambiguity).
residue_atom_renaming_swaps = {
    'ASP': {'OD1': 'OD2'},
    'GLU': {'OE1': 'OE2'},
    'PHE': {'CD1': 'CD2', 'CE1': 'CE2'},
    'TYR': {'CD1': 'CD2', 'CE1': 'CE2'},
}

# ---------------------------------------------------------------------------
# Idealised geometry.

ca_ca = 3.80209737096  # Å, consecutive CA-CA distance for trans omega
# Between-residue C-N bond (general, proline) and cos of the adjacent angles.
between_res_bond_length_c_n = [1.329, 1.341]
between_res_bond_length_stddev_c_n = [0.014, 0.016]
between_res_cos_angles_c_n_ca = [-0.5203, 0.0353]  # 121.352 +- 2.315 degrees
between_res_cos_angles_ca_c_n = [-0.4473, 0.0311]  # 116.568 +- 1.995 degrees
van_der_waals_radius = {'C': 1.7, 'N': 1.55, 'O': 1.52, 'S': 1.8}  # Å

# resname, atom, rigid group, position (Å) in that group's frame.
_RIGID_GROUP_TABLE = """
ALA N   0 -0.525  1.363  0.000
ALA CA  0  0.000  0.000  0.000
ALA C   0  1.526 -0.000 -0.000
ALA CB  0 -0.529 -0.774 -1.205
ALA O   3  0.627  1.062  0.000
ARG N   0 -0.524  1.362 -0.000
ARG CA  0  0.000  0.000  0.000
ARG C   0  1.525 -0.000 -0.000
ARG CB  0 -0.524 -0.778 -1.209
ARG O   3  0.626  1.062  0.000
ARG CG  4  0.616  1.390 -0.000
ARG CD  5  0.564  1.414  0.000
ARG NE  6  0.539  1.357 -0.000
ARG NH1 7  0.206  2.301  0.000
ARG NH2 7  2.078  0.978 -0.000
ARG CZ  7  0.758  1.093 -0.000
ASN N   0 -0.536  1.357  0.000
ASN CA  0  0.000  0.000  0.000
ASN C   0  1.526 -0.000 -0.000
ASN CB  0 -0.531 -0.787 -1.200
ASN O   3  0.625  1.062  0.000
ASN CG  4  0.584  1.399  0.000
ASN ND2 5  0.593 -1.188  0.001
ASN OD1 5  0.633  1.059  0.000
ASP N   0 -0.525  1.362 -0.000
ASP CA  0  0.000  0.000  0.000
ASP C   0  1.527  0.000 -0.000
ASP CB  0 -0.526 -0.778 -1.208
ASP O   3  0.626  1.062 -0.000
ASP CG  4  0.593  1.398 -0.000
ASP OD1 5  0.610  1.091  0.000
ASP OD2 5  0.592 -1.101 -0.003
CYS N   0 -0.522  1.362 -0.000
CYS CA  0  0.000  0.000  0.000
CYS C   0  1.524  0.000  0.000
CYS CB  0 -0.519 -0.773 -1.212
CYS O   3  0.625  1.062 -0.000
CYS SG  4  0.728  1.653  0.000
GLN N   0 -0.526  1.361 -0.000
GLN CA  0  0.000  0.000  0.000
GLN C   0  1.526  0.000  0.000
GLN CB  0 -0.525 -0.779 -1.207
GLN O   3  0.626  1.062 -0.000
GLN CG  4  0.615  1.393  0.000
GLN CD  5  0.587  1.399 -0.000
GLN NE2 6  0.593 -1.189 -0.001
GLN OE1 6  0.634  1.060  0.000
GLU N   0 -0.528  1.361  0.000
GLU CA  0  0.000  0.000  0.000
GLU C   0  1.526 -0.000 -0.000
GLU CB  0 -0.526 -0.781 -1.207
GLU O   3  0.626  1.062  0.000
GLU CG  4  0.615  1.392  0.000
GLU CD  5  0.600  1.397  0.000
GLU OE1 6  0.607  1.095 -0.000
GLU OE2 6  0.589 -1.104 -0.001
GLY N   0 -0.572  1.337  0.000
GLY CA  0  0.000  0.000  0.000
GLY C   0  1.517 -0.000 -0.000
GLY O   3  0.626  1.062 -0.000
HIS N   0 -0.527  1.360  0.000
HIS CA  0  0.000  0.000  0.000
HIS C   0  1.525  0.000  0.000
HIS CB  0 -0.525 -0.778 -1.208
HIS O   3  0.625  1.063  0.000
HIS CG  4  0.600  1.370 -0.000
HIS CD2 5  0.889 -1.021  0.003
HIS ND1 5  0.744  1.160 -0.000
HIS CE1 5  2.030  0.851  0.002
HIS NE2 5  2.145 -0.466  0.004
ILE N   0 -0.493  1.373 -0.000
ILE CA  0  0.000  0.000  0.000
ILE C   0  1.527 -0.000 -0.000
ILE CB  0 -0.536 -0.793 -1.213
ILE O   3  0.627  1.062 -0.000
ILE CG1 4  0.534  1.437 -0.000
ILE CG2 4  0.540 -0.785 -1.199
ILE CD1 5  0.619  1.391  0.000
LEU N   0 -0.520  1.363  0.000
LEU CA  0  0.000  0.000  0.000
LEU C   0  1.525 -0.000 -0.000
LEU CB  0 -0.522 -0.773 -1.214
LEU O   3  0.625  1.063 -0.000
LEU CG  4  0.678  1.371  0.000
LEU CD1 5  0.530  1.430 -0.000
LEU CD2 5  0.535 -0.774  1.200
LYS N   0 -0.526  1.362 -0.000
LYS CA  0  0.000  0.000  0.000
LYS C   0  1.526  0.000  0.000
LYS CB  0 -0.524 -0.778 -1.208
LYS O   3  0.626  1.062 -0.000
LYS CG  4  0.619  1.390  0.000
LYS CD  5  0.559  1.417  0.000
LYS CE  6  0.560  1.416  0.000
LYS NZ  7  0.554  1.387  0.000
MET N   0 -0.521  1.364 -0.000
MET CA  0  0.000  0.000  0.000
MET C   0  1.525  0.000  0.000
MET CB  0 -0.523 -0.776 -1.210
MET O   3  0.625  1.062 -0.000
MET CG  4  0.613  1.391 -0.000
MET SD  5  0.703  1.695  0.000
MET CE  6  0.320  1.786 -0.000
PHE N   0 -0.518  1.363  0.000
PHE CA  0  0.000  0.000  0.000
PHE C   0  1.524  0.000 -0.000
PHE CB  0 -0.525 -0.776 -1.212
PHE O   3  0.626  1.062 -0.000
PHE CG  4  0.607  1.377  0.000
PHE CD1 5  0.709  1.195 -0.000
PHE CD2 5  0.706 -1.196  0.000
PHE CE1 5  2.102  1.198 -0.000
PHE CE2 5  2.098 -1.201 -0.000
PHE CZ  5  2.794 -0.003 -0.001
PRO N   0 -0.566  1.351 -0.000
PRO CA  0  0.000  0.000  0.000
PRO C   0  1.527 -0.000  0.000
PRO CB  0 -0.546 -0.611 -1.293
PRO O   3  0.621  1.066  0.000
PRO CG  4  0.382  1.445  0.000
PRO CD  5  0.477  1.424  0.000
SER N   0 -0.529  1.360 -0.000
SER CA  0  0.000  0.000  0.000
SER C   0  1.525 -0.000 -0.000
SER CB  0 -0.518 -0.777 -1.211
SER O   3  0.626  1.062 -0.000
SER OG  4  0.503  1.325  0.000
THR N   0 -0.517  1.364  0.000
THR CA  0  0.000  0.000  0.000
THR C   0  1.526  0.000 -0.000
THR CB  0 -0.516 -0.793 -1.215
THR O   3  0.626  1.062  0.000
THR CG2 4  0.550 -0.718 -1.228
THR OG1 4  0.472  1.353  0.000
TRP N   0 -0.521  1.363  0.000
TRP CA  0  0.000  0.000  0.000
TRP C   0  1.525 -0.000  0.000
TRP CB  0 -0.523 -0.776 -1.212
TRP O   3  0.627  1.062  0.000
TRP CG  4  0.609  1.370 -0.000
TRP CD1 5  0.824  1.091  0.000
TRP CD2 5  0.854 -1.148 -0.005
TRP CE2 5  2.186 -0.678 -0.007
TRP CE3 5  0.622 -2.530 -0.007
TRP NE1 5  2.140  0.690 -0.004
TRP CH2 5  3.028 -2.890 -0.013
TRP CZ2 5  3.283 -1.543 -0.011
TRP CZ3 5  1.715 -3.389 -0.011
TYR N   0 -0.522  1.362  0.000
TYR CA  0  0.000  0.000  0.000
TYR C   0  1.524 -0.000 -0.000
TYR CB  0 -0.522 -0.776 -1.213
TYR O   3  0.627  1.062 -0.000
TYR CG  4  0.607  1.382 -0.000
TYR CD1 5  0.716  1.195 -0.000
TYR CD2 5  0.713 -1.194 -0.001
TYR CE1 5  2.107  1.200 -0.002
TYR CE2 5  2.104 -1.201 -0.003
TYR OH  5  4.168 -0.002 -0.005
TYR CZ  5  2.791 -0.001 -0.003
VAL N   0 -0.494  1.373 -0.000
VAL CA  0  0.000  0.000  0.000
VAL C   0  1.527 -0.000 -0.000
VAL CB  0 -0.533 -0.795 -1.213
VAL O   3  0.627  1.062 -0.000
VAL CG1 4  0.540  1.429 -0.000
VAL CG2 4  0.533 -0.776  1.203
"""


def _parse_rigid_groups(table: str) -> dict[str, list]:
  out: dict[str, list] = {}
  for line in table.strip().splitlines():
    res, atom, group, x, y, z = line.split()
    out.setdefault(res, []).append([atom, int(group), (float(x), float(y), float(z))])
  return out


# {resname: [[atom name, group index, (x, y, z)], ...]}, AlphaFold's layout.
rigid_group_atom_positions = _parse_rigid_groups(_RIGID_GROUP_TABLE)

# ---------------------------------------------------------------------------
# Sequence encodings.

# HHblits' alphabet: the 20 amino acids in one-letter alphabetical order, X 20,
# gap 21; B, Z, U read as D, E, C and J, O as X.
_HHBLITS_ORDER = 'ACDEFGHIKLMNPQRSTVWYX-'
ID_TO_HHBLITS_AA = dict(enumerate(_HHBLITS_ORDER))
HHBLITS_AA_TO_ID = {a: i for i, a in enumerate(_HHBLITS_ORDER)}
HHBLITS_AA_TO_ID.update({'B': HHBLITS_AA_TO_ID['D'], 'Z': HHBLITS_AA_TO_ID['E'],
                         'U': HHBLITS_AA_TO_ID['C'], 'J': 20, 'O': 20})
# HHblits index -> af_jax/AlphaFold restype index (X 20, gap 21).
MAP_HHBLITS_AATYPE_TO_OUR_AATYPE = tuple(
    restypes_with_x_and_gap.index(ID_TO_HHBLITS_AA[i]) for i in range(len(_HHBLITS_ORDER)))


def sequence_to_onehot(sequence: str, mapping: Mapping[str, int],
                       map_unknown_to_x: bool = False) -> np.ndarray:
  """One-hot encode a sequence.

  Args:
    sequence: amino-acid letters.
    mapping: letter -> index, indices 0..K-1 without gaps.
    map_unknown_to_x: map letters missing from `mapping` to `mapping['X']`
      (only upper-case letters are accepted then).

  Returns:
    [len(sequence), K] int32 one-hot.

  Raises:
    ValueError: if the mapping has gaps or a letter cannot be mapped.
  """
  num = max(mapping.values()) + 1
  if sorted(set(mapping.values())) != list(range(num)):
    raise ValueError(f'mapping must use indices 0..{num - 1} without gaps, got '
                     f'{sorted(mapping.values())}')
  ids = []
  for aa in sequence:
    if map_unknown_to_x:
      if not (aa.isalpha() and aa.isupper()):
        raise ValueError(f'invalid character {aa!r} in sequence; use upper-case letters')
      ids.append(mapping.get(aa, mapping['X']))
    elif aa in mapping:
      ids.append(mapping[aa])
    else:
      raise ValueError(f'residue {aa!r} not in mapping; pass map_unknown_to_x=True')
  onehot = np.zeros((len(sequence), num), np.int32)
  onehot[np.arange(len(ids)), ids] = 1
  return onehot


# ---------------------------------------------------------------------------
# Derived arrays, indexed by restype (21 rows: the 20 amino acids, then UNK
# whose rows stay zero).


def _frame_4x4(ex: np.ndarray, ey: np.ndarray, origin: np.ndarray) -> np.ndarray:
  """Homogeneous [4, 4] frame: x along `ex`, `ey` in the xy plane (Gram-Schmidt)."""
  x = ex / np.linalg.norm(ex)
  y = ey - np.dot(ey, x) * x
  y = y / np.linalg.norm(y)
  m = np.eye(4)
  m[:3, 0], m[:3, 1], m[:3, 2], m[:3, 3] = x, y, np.cross(x, y), origin
  return m


def _rigid_group_tables():
  """Atom -> group maps, masks, literature positions and default frames."""
  n = restype_num + 1
  t = dict(
      atom37_to_rigid_group=np.zeros((n, 37), np.int64),
      atom37_mask=np.zeros((n, 37), np.float32),
      atom37_rigid_group_positions=np.zeros((n, 37, 3), np.float32),
      atom14_to_rigid_group=np.zeros((n, 14), np.int64),
      atom14_mask=np.zeros((n, 14), np.float32),
      atom14_rigid_group_positions=np.zeros((n, 14, 3), np.float32),
      rigid_group_default_frame=np.zeros((n, 8, 4, 4), np.float32),
  )
  for i, res in enumerate(_THREE_LETTER):
    atom14 = restype_name_to_atom14_names[res]
    pos = {}
    for atom, group, xyz in rigid_group_atom_positions[res]:
      a37, a14 = atom_order[atom], atom14.index(atom)
      t['atom37_to_rigid_group'][i, a37] = t['atom14_to_rigid_group'][i, a14] = group
      t['atom37_mask'][i, a37] = t['atom14_mask'][i, a14] = 1
      t['atom37_rigid_group_positions'][i, a37] = xyz
      t['atom14_rigid_group_positions'][i, a14] = xyz
      pos[atom] = np.array(xyz)
    frames = t['rigid_group_default_frame'][i]
    frames[0] = frames[1] = np.eye(4)  # backbone; pre-omega (placeholder)
    # phi frame: rotation axis CA->N, in the backbone frame.
    frames[2] = _frame_4x4(pos['N'] - pos['CA'], np.array([1., 0., 0.]), pos['N'])
    # psi frame: rotation axis CA->C, in the backbone frame.
    frames[3] = _frame_4x4(pos['C'] - pos['CA'], pos['CA'] - pos['N'], pos['C'])
    chis = chi_angles_atoms[res]
    if chis:  # chi1 frame: axis CA->CB, in the backbone frame.
      a, b, c = (pos[x] for x in chis[0][:3])
      frames[4] = _frame_4x4(c - b, a - b, c)
    for k in range(1, len(chis)):
      # chi(k+1) frame in the chi(k) frame: the axis starts at that frame's
      # origin and ends at the axis-end atom, which lives in the chi(k) group.
      end = pos[chis[k][2]]
      frames[4 + k] = _frame_4x4(end, np.array([-1., 0., 0.]), end)
  return t


_T = _rigid_group_tables()
restype_atom37_to_rigid_group = _T['atom37_to_rigid_group']  # [21, 37]
restype_atom37_mask = _T['atom37_mask']  # [21, 37]
restype_atom37_rigid_group_positions = _T['atom37_rigid_group_positions']  # [21, 37, 3]
restype_atom14_to_rigid_group = _T['atom14_to_rigid_group']  # [21, 14]
restype_atom14_mask = _T['atom14_mask']  # [21, 14]
restype_atom14_rigid_group_positions = _T['atom14_rigid_group_positions']  # [21, 14, 3]
restype_rigid_group_default_frame = _T['rigid_group_default_frame']  # [21, 8, 4, 4]
del _T

# Index maps between the layouts, [21, 14] and [21, 37] (0 where absent), as
# AlphaFold's data pipeline builds them.
restype_atom14_to_atom37 = np.array(
    [[atom_order[a] if a else 0 for a in restype_name_to_atom14_names[r]] for r in resnames],
    np.int32)
restype_atom37_to_atom14 = np.array(
    [[restype_name_to_atom14_names[r].index(a) if a in residue_atoms.get(r, ()) else 0
      for a in atom_types] for r in resnames], np.int32)

# [21, 37] int32: which atom37 slots each residue type has (AlphaFold's
# `atom37_atom_exists` per restype).
STANDARD_ATOM_MASK = restype_atom37_mask.astype(np.int32)
