"""AlphaFold-Multimer's training crops of a complex's raw features, in seeded numpy.

Evans et al. (2021) "Protein complex prediction with AlphaFold-Multimer", Suppl. 7.2:
a complex longer than the crop is cut in one of two ways,
- contiguous (Suppl. Alg. 1): the chains, visited in random order, each keep one random
  window, its length drawn so that the crop never exceeds crop_size and the chains not yet
  visited can still fill it;
- spatial (Suppl. Alg. 2): around a random interface residue (its CA within
  INTERFACE_CUTOFF of a CA of another chain; any residue when there is no interface), the
  crop_size residues whose CA is nearest to it.
`crop_complex` draws one (spatial with SPATIAL_CROP_PROB) and cuts every per-residue
feature and label of msa_pairing.OUTPUT_FEATURES at the kept residues, in their original
order; residue_index, asym_id, entity_id and sym_id keep their values, so the model still
sees which chain and position each residue came from.

CA, not pseudo-beta, measures distance: the paper's crop works on CA coordinates, every
residue type has a CA (glycine has no CB), and a residue whose side chain is unresolved
still has a place in space.

# DIFFERS FROM AF2: DeepMind published no multimer training pipeline; this follows the
# paper's algorithms with numpy's PCG64 (a seeded np.random.Generator) as the randomness.
# MSA rows that are all gaps within the crop (another entity's block, when that entity was
# cropped away) are kept: the paper removes none, and the multimer model's MSA sampling
# only sets back rows whose msa_mask is all zero, which gaps do not make. Ties in the
# spatial crop go to the lower residue index (a stable sort: the limit of the paper's
# `distance + index * epsilon` as epsilon -> 0, which never reorders residues at
# different distances).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import numpy as np

from af_jax.common import residue_constants as rc
from af_jax.errors import InputError

# Evans et al. (2021) Suppl. 7.2: interface residues have a CA within 6 Å of a CA of
# another chain. (Uni-Fold and OpenFold default to 10 Å.)
INTERFACE_CUTOFF = 6.0
# AlphaFold-Multimer's fine-tuning drew spatial crops with probability 0.5, contiguous crops
# otherwise (also Uni-Fold's and OpenFold's multimer default).
SPATIAL_CROP_PROB = 0.5

# Residue axis of each per-residue feature or label. Features not listed (cluster_bias_mask
# [N_seq], num_alignments, num_templates, assembly_num_chains, resolution, ...) have none
# and pass through unchanged; seq_length becomes the crop's length.
_RESIDUE_AXIS = {
    'aatype': 0, 'residue_index': 0, 'asym_id': 0, 'entity_id': 0, 'sym_id': 0,
    'seq_mask': 0, 'entity_mask': 0, 'deletion_mean': 0, 'between_segment_residues': 0,
    'all_atom_positions': 0, 'all_atom_mask': 0,
    'msa': 1, 'deletion_matrix': 1, 'deletion_matrix_int': 1, 'msa_mask': 1, 'bert_mask': 1,
    'template_aatype': 1, 'template_all_atom_positions': 1, 'template_all_atom_mask': 1,
    'template_all_atom_masks': 1,
}
_CA = rc.atom_order['CA']
_BLOCK = 1024  # rows of the pairwise CA distances held at once (N_res * 8 KiB each)


@dataclasses.dataclass(frozen=True)
class ChainWindow:
  """One chain's part of a contiguous crop (Suppl. Alg. 1, one loop iteration).

  Attributes:
    chain_start: the chain's first residue in the complex.
    num_res: the chain's residues, N_res_k.
    visit: when the chain was visited (0 = first) in the random order.
    min_length: crop_size_min = min(N_res_k, max(0, crop_size - (n_added + n_remaining))).
    max_length: crop_size_max = min(N_res_k, crop_size - n_added).
    length: residues kept, uniform in [min_length, max_length].
    start: first kept residue within the chain, uniform in [0, num_res - length].
  """

  chain_start: int
  num_res: int
  visit: int
  min_length: int
  max_length: int
  length: int
  start: int


@dataclasses.dataclass(frozen=True)
class Crop:
  """The residues one training crop keeps.

  Attributes:
    kind: 'contiguous', 'spatial', or 'whole' (the complex fits in the crop).
    indices: [N_crop] int64 kept residues of the complex, increasing.
    centre: the spatial crop's centre residue (None for the other kinds).
    windows: the contiguous crop's windows, one per chain in chain order (else empty).
  """

  kind: str
  indices: np.ndarray
  centre: int | None = None
  windows: tuple[ChainWindow, ...] = ()


def _check_crop_size(crop_size: int) -> int:
  if int(crop_size) != crop_size or crop_size < 1:
    raise InputError(f'crop_size={crop_size} must be an integer >= 1; set '
                     'data.train.crop_size')
  return int(crop_size)


def chain_blocks(asym_id: np.ndarray) -> list[tuple[int, int]]:
  """[start, stop) of each chain, in order; chains must be contiguous runs of asym_id.

  Raises:
    InputError: an asym_id comes back after another chain (residues not grouped by chain).
  """
  asym_id = np.asarray(asym_id)
  if asym_id.ndim != 1 or asym_id.size == 0:
    raise InputError(f'asym_id has shape {asym_id.shape}; expected [N_res] with N_res >= 1 '
                     '(build the features with af_jax.data.pipeline_multimer)')
  edges = np.flatnonzero(asym_id[1:] != asym_id[:-1]) + 1
  starts = np.concatenate([[0], edges])
  stops = np.concatenate([edges, [asym_id.size]])
  ids = asym_id[starts]
  if len(np.unique(ids)) != len(ids):
    raise InputError(f'asym_id {asym_id.tolist()[:20]}... has a chain in several runs; '
                     'chains must be contiguous blocks (as pipeline_multimer orders them)')
  return [(int(a), int(b)) for a, b in zip(starts, stops)]


# ---------------------------------------------------------------------------
# Contiguous crop.


def contiguous_windows(chain_lengths: Sequence[int], crop_size: int,
                       rng: np.random.Generator) -> tuple[ChainWindow, ...]:
  """One window per chain, at most crop_size residues in all. Suppl. Alg. 1.

  When the chains hold more than crop_size residues, the windows hold exactly crop_size
  (the last chain visited takes what is left); otherwise every chain is kept whole.

  Args:
    chain_lengths: N_res_k of each chain, in chain order.
    crop_size: N_res of the crop.
    rng: draws the visiting order, then each chain's length and start.

  Returns:
    The windows in chain order (not visiting order).
  """
  crop_size = _check_crop_size(crop_size)
  lengths = [int(n) for n in chain_lengths]
  starts = np.cumsum([0] + lengths[:-1])
  n_added, n_remaining = 0, sum(lengths)  # Alg. 1 lines 1-2
  windows = {}
  for visit, k in enumerate(rng.permutation(len(lengths))):  # line 3
    n_k = lengths[k]
    n_remaining -= n_k  # line 4
    crop_max = min(n_k, crop_size - n_added)  # line 5
    crop_min = min(n_k, max(0, crop_size - (n_added + n_remaining)))  # line 6
    length = int(rng.integers(crop_min, crop_max + 1))  # line 7
    n_added += length  # line 8
    start = int(rng.integers(0, n_k - length + 1))  # line 9
    windows[int(k)] = ChainWindow(int(starts[k]), n_k, visit, crop_min, crop_max, length,
                                  start)
  return tuple(windows[k] for k in range(len(lengths)))


def contiguous_crop(asym_id: np.ndarray, crop_size: int, rng: np.random.Generator) -> Crop:
  """A contiguous crop of the complex whose chains `asym_id` [N_res] marks."""
  blocks = chain_blocks(asym_id)
  windows = contiguous_windows([b - a for a, b in blocks], crop_size, rng)
  indices = np.concatenate([np.arange(w.length) + w.chain_start + w.start for w in windows])
  return Crop('contiguous', indices.astype(np.int64), windows=windows)


# ---------------------------------------------------------------------------
# Spatial crop.


def ca_coordinates(features: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
  """(CA positions [N_res, 3] float64, CA present [N_res] bool) from the atom37 labels.

  Raises:
    InputError: all_atom_positions / all_atom_mask missing or misshapen, or every CA at
      one point (the inference pipeline's placeholder: no experimental structure).
  """
  num_res = int(np.shape(features['aatype'])[0])
  missing = [k for k in ('all_atom_positions', 'all_atom_mask') if k not in features]
  if missing:
    raise InputError(f'a spatial crop needs coordinates but the features lack {missing}; '
                     'add the structure\'s atom37 all_atom_positions [N_res, 37, 3] and '
                     'all_atom_mask [N_res, 37], or pass spatial_prob=0')
  positions = np.asarray(features['all_atom_positions'], np.float64)
  mask = np.asarray(features['all_atom_mask'])
  if positions.shape != (num_res, rc.atom_type_num, 3) or mask.shape != (num_res,
                                                                          rc.atom_type_num):
    raise InputError(f'all_atom_positions {positions.shape} / all_atom_mask {mask.shape} do '
                     f'not match {num_res} residues; expected [{num_res}, 37, 3] and '
                     f'[{num_res}, 37]')
  ca, present = positions[:, _CA], mask[:, _CA] > 0
  if present.sum() > 1 and np.ptp(ca[present], axis=0).max() == 0:
    raise InputError('every CA of all_atom_positions is at the same point (as the inference '
                     'pipeline leaves them): put the experimental structure\'s coordinates '
                     'there, or pass spatial_prob=0')
  return ca, present


def interface_residues(ca: np.ndarray, present: np.ndarray, asym_id: np.ndarray,
                       cutoff: float = INTERFACE_CUTOFF) -> np.ndarray:
  """[N_res] bool: residues whose CA is within `cutoff` Å of a CA of another chain.

  Args:
    ca: [N_res, 3] CA positions.
    present: [N_res] bool, the CA was observed (others are never interface residues).
    asym_id: [N_res] chain of each residue.
    cutoff: in Å (strictly closer counts).
  """
  ca = np.asarray(ca, np.float64)
  asym_id = np.asarray(asym_id)
  squared = np.sum(ca * ca, axis=-1)
  out = np.zeros(len(ca), bool)
  for lo in range(0, len(ca), _BLOCK):
    rows = slice(lo, lo + _BLOCK)
    # |a - b|^2 = |a|^2 + |b|^2 - 2 a.b, one block of rows at a time.
    d2 = squared[rows, None] + squared[None] - 2.0 * ca[rows] @ ca.T
    near = (d2 < cutoff * cutoff) & (asym_id[rows, None] != asym_id[None]) & present[None]
    out[rows] = near.any(axis=1) & present[rows]
  return out


def spatial_crop(ca: np.ndarray, present: np.ndarray, asym_id: np.ndarray, crop_size: int,
                 rng: np.random.Generator, cutoff: float = INTERFACE_CUTOFF) -> Crop:
  """The crop_size residues nearest a random interface residue. Suppl. Alg. 2.

  Residues without a CA rank after every residue with one (by index), so they fill the
  crop only when fewer than crop_size CAs were observed.

  Args:
    ca: [N_res, 3] CA positions.
    present: [N_res] bool, the CA was observed.
    asym_id: [N_res] chain of each residue.
    crop_size: N_res of the crop.
    rng: draws the centre.
    cutoff: interface distance in Å.

  Raises:
    InputError: no residue has a CA.
  """
  crop_size = _check_crop_size(crop_size)
  present = np.asarray(present, bool)
  if not present.any():
    raise InputError('no residue has a CA in all_atom_mask, so there is no centre for a '
                     'spatial crop; check the labels or pass spatial_prob=0')
  interface = interface_residues(ca, present, asym_id, cutoff)
  candidates = np.flatnonzero(interface if interface.any() else present)  # Alg. 2 lines 2-3
  centre = int(candidates[rng.integers(len(candidates))])
  ca = np.asarray(ca, np.float64)
  distance = np.where(present, np.linalg.norm(ca - ca[centre], axis=-1), np.inf)  # line 4
  nearest = np.argsort(distance, kind='stable')[:crop_size]  # lines 5-6; ties by index
  return Crop('spatial', np.sort(nearest).astype(np.int64), centre=centre)


# ---------------------------------------------------------------------------
# Choosing and applying a crop.


def choose_crop(features: Mapping[str, np.ndarray], crop_size: int, rng: np.random.Generator,
                spatial_prob: float = SPATIAL_CROP_PROB,
                interface_cutoff: float = INTERFACE_CUTOFF) -> Crop:
  """Which residues of a complex a training crop keeps.

  Args:
    features: a complex's features (aatype, asym_id; all_atom_positions and all_atom_mask
      when spatial_prob > 0).
    crop_size: residues kept at most.
    rng: drives every choice: spatial or contiguous, then the crop's own draws.
    spatial_prob: probability of a spatial crop, else contiguous.
    interface_cutoff: CA-CA distance (Å) that makes a residue an interface residue.

  Returns:
    The crop; kind 'whole' (no draw made) when the complex has <= crop_size residues.

  Raises:
    InputError: crop_size < 1, spatial_prob outside [0, 1], missing asym_id, or (whenever
      spatial_prob > 0, whether or not a spatial crop is drawn) no usable coordinates.
  """
  crop_size = _check_crop_size(crop_size)
  if not 0.0 <= spatial_prob <= 1.0:
    raise InputError(f'spatial_prob={spatial_prob} must be in [0, 1] (AlphaFold-Multimer: '
                     f'{SPATIAL_CROP_PROB})')
  for key in ('aatype', 'asym_id'):
    if key not in features:
      raise InputError(f'features lack {key!r}; crop the complex features that '
                       'af_jax.data.pipeline_multimer builds')
  asym_id = np.asarray(features['asym_id'])
  num_res = int(np.shape(features['aatype'])[0])
  if asym_id.shape != (num_res,):
    raise InputError(f'asym_id has shape {asym_id.shape} for {num_res} residues; rebuild the '
                     'features with af_jax.data.pipeline_multimer')
  chain_blocks(asym_id)
  coordinates = ca_coordinates(features) if spatial_prob > 0 else None
  if num_res <= crop_size:
    return Crop('whole', np.arange(num_res, dtype=np.int64))
  if rng.random() < spatial_prob:
    return spatial_crop(*coordinates, asym_id, crop_size, rng, interface_cutoff)
  return contiguous_crop(asym_id, crop_size, rng)


def take_residues(features: Mapping[str, np.ndarray],
                  indices: np.ndarray) -> dict[str, np.ndarray]:
  """Every per-residue feature and label at `indices`, on its residue axis.

  MSA, deletion, mask and template columns are taken with the residues, so features and
  labels stay aligned; MSA rows and template slots are all kept. Features without a
  residue axis are the same objects; seq_length becomes len(indices).

  Args:
    features: a complex's features (msa_pairing.OUTPUT_FEATURES, plus labels).
    indices: [N_crop] residues to keep, increasing (as Crop.indices).

  Raises:
    InputError: an index outside the complex, or a per-residue feature whose residue
      axis does not have N_res entries.
  """
  num_res = int(np.shape(features['aatype'])[0])
  indices = np.asarray(indices, np.int64)
  if indices.ndim != 1 or (indices.size and (indices.min() < 0 or indices.max() >= num_res)):
    raise InputError(f'crop indices {indices[:10].tolist()}... (shape {indices.shape}) are '
                     f'not residues of the {num_res}-residue complex; use choose_crop')
  out = dict(features)
  for key, axis in _RESIDUE_AXIS.items():
    if key not in features:
      continue
    value = np.asarray(features[key])
    if value.ndim <= axis or value.shape[axis] != num_res:
      raise InputError(f'feature {key!r} has shape {value.shape}; expected {num_res} '
                       f'residues on axis {axis}; rebuild the features with the data pipeline')
    out[key] = np.take(value, indices, axis=axis)
  if 'seq_length' in features:
    value = np.asarray(features['seq_length'])
    shape = value.shape if value.ndim == 0 else (indices.size,)  # monomer form: [N_res]
    out['seq_length'] = np.full(shape, indices.size, value.dtype)
  return out


def crop_complex(features: Mapping[str, np.ndarray], crop_size: int, rng: np.random.Generator,
                 spatial_prob: float = SPATIAL_CROP_PROB,
                 interface_cutoff: float = INTERFACE_CUTOFF) -> dict[str, np.ndarray]:
  """A random training crop of a complex: choose_crop, then take_residues.

  Args:
    features: msa_pairing.OUTPUT_FEATURES of the complex with its experimental
      all_atom_positions [N_res, 37, 3] and all_atom_mask [N_res, 37].
    crop_size: residues kept (exactly, when the complex is longer).
    rng: a seeded np.random.Generator; the same seed gives the same crop.
    spatial_prob: probability of a spatial crop (AlphaFold-Multimer: 0.5), else contiguous.
    interface_cutoff: CA-CA distance (Å) of the spatial crop's interface.

  Returns:
    A new dict with the kept residues in their original order.
  """
  crop = choose_crop(features, crop_size, rng, spatial_prob, interface_cutoff)
  return take_residues(features, crop.indices)
