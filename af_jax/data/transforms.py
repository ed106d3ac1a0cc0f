"""Raw AlphaFold features -> the model's processed batch, in seeded numpy.

The same feature names, shapes, dtypes and meanings as AlphaFold's
`RunModel.process_features` (its input pipeline, data_transforms), without
TensorFlow: one slice per recycle on the leading axis (the MSA resampled for
each when `data.common.resample_msa_in_recycling`), every array padded to the
requested residue / cluster / extra-MSA sizes, padding masked out.

# DIFFERS FROM AF2: randomness comes from numpy's PCG64 seeded by
# `random_seed` (AlphaFold uses TensorFlow's Philox), so the sampled rows and
# masks differ from AlphaFold's for the same seed while following the same
# distributions. With the shuffles replaced by `identity_permutation` and
# `masked_msa_replace_fraction=0` the output equals AlphaFold's
# (`random_crop_to_size_seed`, an unused random value, aside).
"""

from __future__ import annotations

from collections.abc import Mapping

import ml_collections
import numpy as np

from af_jax.common import residue_constants as rc
from af_jax.data import msa_sampling
from af_jax.data.msa_sampling import Permutation, random_permutation
from af_jax.errors import ConfigError, InputError

_HHBLITS_TO_OURS = np.asarray(rc.MAP_HHBLITS_AATYPE_TO_OUR_AATYPE, np.int32)
_TEMPLATE_KEYS = ('template_aatype', 'template_all_atom_positions', 'template_all_atom_masks',
                  'template_sum_probs')


def num_slices(config: ml_collections.ConfigDict) -> int:
  """Length of the leading axis: one slice per recycle when the MSA is resampled, else 1."""
  common = config.data.common
  return int(common.num_recycle) + 1 if common.resample_msa_in_recycling else 1


def max_msa_clusters(config: ml_collections.ConfigDict) -> int:
  """Cluster centres sampled at most (AlphaFold leaves room for templates in some presets).

  Raises:
    ConfigError: when the templates' room leaves no cluster for the query.
  """
  data = config.data
  reserved = int(data.eval.max_templates) if data.common.reduce_msa_clusters_by_max_templates else 0
  clusters = int(data.eval.max_msa_clusters) - reserved
  if clusters < 1:
    raise ConfigError(f'data.eval.max_msa_clusters={data.eval.max_msa_clusters} leaves no '
                      f'cluster for the query beside data.eval.max_templates={reserved}: raise '
                      '--config.data.eval.max_msa_clusters above it')
  return clusters


def natural_sizes(raw: Mapping[str, np.ndarray],
                  config: ml_collections.ConfigDict) -> tuple[int, int, int]:
  """(residues, cluster centres, extra-MSA rows) that `raw` fills before padding.

  The smallest num_res / msa_clusters / extra_msa that `process_features`
  accepts; pick buckets at or above these.
  """
  num_res = int(np.shape(raw['aatype'])[0])
  num_seq = int(np.shape(raw['msa'])[0])
  clusters = min(num_seq, max_msa_clusters(config))
  extra = min(num_seq - clusters, int(config.data.common.max_extra_msa))
  return num_res, clusters, extra


def _array(raw: Mapping[str, np.ndarray], key: str, ndim: int, leading: tuple) -> np.ndarray:
  """raw[key] as an array of rank `ndim` whose first dims are `leading` (None = any)."""
  value = np.asarray(raw[key])
  ok = value.ndim == ndim and all(want is None or got == want
                                  for got, want in zip(value.shape, leading))
  if not ok:
    dims = ', '.join('?' if d is None else str(d) for d in leading)
    raise InputError(f'raw feature {key!r} has shape {value.shape}; expected rank {ndim} '
                     f'starting [{dims}]; rebuild the features with the data pipeline')
  return value


def _sequence_features(raw: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
  """Checked per-residue and MSA arrays in AlphaFold's residue order."""
  for key in ('aatype', 'msa'):
    if key not in raw:
      raise InputError(f'raw features lack {key!r}; pass the data pipeline\'s feature dict '
                       '(make_sequence_features + make_msa_features)')
  aatype = _array(raw, 'aatype', 2, (None, rc.restype_num + 1))
  num_res = aatype.shape[0]
  if num_res == 0:
    raise InputError('raw feature \'aatype\' is empty; the query sequence needs >= 1 residue')
  msa = _array(raw, 'msa', 2, (None, num_res)).astype(np.int64)
  if msa.shape[0] == 0 or msa.min() < 0 or msa.max() > msa_sampling.GAP:
    raise InputError(f'raw feature \'msa\' (shape {msa.shape}) must hold >= 1 row of HHblits '
                     'residue ids 0..21 (query first); rebuild it with make_msa_features')
  if 'deletion_matrix_int' in raw:
    deletion = _array(raw, 'deletion_matrix_int', 2, msa.shape)
  elif 'deletion_matrix' in raw:
    deletion = _array(raw, 'deletion_matrix', 2, msa.shape)
  else:
    raise InputError('raw features lack \'deletion_matrix_int\'; pass the data pipeline\'s '
                     'feature dict (make_msa_features)')
  residue_index = (_array(raw, 'residue_index', 1, (num_res,)) if 'residue_index' in raw
                   else np.arange(num_res))
  breaks = (_array(raw, 'between_segment_residues', 1, (num_res,))
            if 'between_segment_residues' in raw else np.zeros(num_res))
  if 'seq_length' in raw and int(np.ravel(raw['seq_length'])[0]) != num_res:
    raise InputError(f'raw feature \'seq_length\' says {int(np.ravel(raw["seq_length"])[0])} '
                     f'but \'aatype\' has {num_res} residues; rebuild the features')
  return dict(aatype=np.argmax(aatype, axis=-1).astype(np.int32),
              residue_index=residue_index.astype(np.int32),
              between_segment_residues=breaks,
              msa=_HHBLITS_TO_OURS[msa], deletion_matrix=deletion.astype(np.float32))


def _atom_layout_features(aatype: np.ndarray) -> dict[str, np.ndarray]:
  """Per-residue atom14/atom37 existence and index maps (AlphaFold's make_atom14_masks)."""
  return dict(atom14_atom_exists=rc.restype_atom14_mask[aatype].astype(np.float32),
              residx_atom14_to_atom37=rc.restype_atom14_to_atom37[aatype],
              residx_atom37_to_atom14=rc.restype_atom37_to_atom14[aatype],
              atom37_atom_exists=rc.restype_atom37_mask[aatype].astype(np.float32))


def pseudo_beta(aatype: np.ndarray, positions: np.ndarray, masks: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray]:
  """CB position and mask per residue, CA for glycine (which has no CB).

  Args:
    aatype: [..., N_res] AlphaFold residue types.
    positions: [..., N_res, 37, 3] atom37 coordinates.
    masks: [..., N_res, 37] atom37 mask.

  Returns:
    (pseudo_beta [..., N_res, 3], pseudo_beta_mask [..., N_res] float32).
  """
  is_gly = aatype == rc.restype_order['G']
  ca, cb = rc.atom_order['CA'], rc.atom_order['CB']
  position = np.where(is_gly[..., None], positions[..., ca, :], positions[..., cb, :])
  mask = np.where(is_gly, masks[..., ca], masks[..., cb]).astype(np.float32)
  return position, mask


def _template_features(raw: Mapping[str, np.ndarray], num_res: int,
                       max_templates: int) -> dict[str, np.ndarray]:
  """The first `max_templates` templates in AlphaFold's residue order, with pseudo-beta.

  A raw dict without template features counts as zero templates.
  """
  if 'template_aatype' not in raw:
    empty = {'template_aatype': np.zeros((0, num_res, 22), np.float32),
             'template_all_atom_positions': np.zeros((0, num_res, 37, 3), np.float32),
             'template_all_atom_masks': np.zeros((0, num_res, 37), np.float32),
             'template_sum_probs': np.zeros((0, 1), np.float32)}
    raw = {**raw, **empty}
  missing = [k for k in _TEMPLATE_KEYS if k not in raw]
  if missing:
    raise InputError(f'raw features have \'template_aatype\' but lack {missing}; pass all '
                     'template features from the template featurizer, or none')
  one_hot = _array(raw, 'template_aatype', 3, (None, num_res, 22))
  count = one_hot.shape[0]
  positions = _array(raw, 'template_all_atom_positions', 4, (count, num_res, 37, 3))
  masks = np.asarray(raw['template_all_atom_masks'])
  if masks.ndim == 4 and masks.shape[-1] == 1:
    masks = masks[..., 0]
  masks = _array({'template_all_atom_masks': masks}, 'template_all_atom_masks', 3,
                 (count, num_res, 37))
  sum_probs = np.asarray(raw['template_sum_probs'])
  if sum_probs.size != count:
    raise InputError(f'raw feature \'template_sum_probs\' has shape {sum_probs.shape}; '
                     f'expected one value for each of the {count} templates')
  sum_probs = sum_probs.reshape(count, 1)
  aatype = _HHBLITS_TO_OURS[np.argmax(one_hot, axis=-1)]
  beta, beta_mask = pseudo_beta(aatype, positions, masks)
  keep = slice(0, max_templates)
  return dict(template_aatype=aatype[keep].astype(np.int32),
              template_all_atom_masks=masks[keep].astype(np.float32),
              template_all_atom_positions=positions[keep].astype(np.float32),
              template_mask=np.ones(count, np.float32)[keep],
              template_pseudo_beta=beta[keep].astype(np.float32),
              template_pseudo_beta_mask=beta_mask[keep],
              template_sum_probs=sum_probs[keep].astype(np.float32))


def _pad(x: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
  """Zero-pad `x` at the end of each axis up to `shape`."""
  if x.shape == tuple(shape):
    return x
  return np.pad(x, [(0, want - have) for have, want in zip(x.shape, shape)])


def _check_config(config: ml_collections.ConfigDict) -> None:
  data = config.data
  if int(data.eval.num_ensemble) != 1:
    # DIFFERS FROM AF2: no evaluation-time ensembling; the model takes one slice per recycle.
    raise ConfigError(f'data.eval.num_ensemble={data.eval.num_ensemble} is not supported; '
                      'set --config.data.eval.num_ensemble=1')
  if data.eval.subsample_templates:
    raise ConfigError('data.eval.subsample_templates=True is not supported; '
                      'set --config.data.eval.subsample_templates=false')
  max_msa_clusters(config)  # raises when no cluster is left for the query


def _padded_size(name: str, requested: int | None, natural: int, default: int) -> int:
  size = default if requested is None else int(requested)
  if size < natural:
    raise InputError(f'{name}={size} is smaller than the {natural} the features fill; '
                     f'pass a bucket >= {natural} (see configs.bucket_size)')
  return size


def process_features(raw: Mapping[str, np.ndarray], config: ml_collections.ConfigDict,
                     random_seed: int, *, num_res: int | None = None,
                     msa_clusters: int | None = None, extra_msa: int | None = None,
                     permutation: Permutation = random_permutation) -> dict[str, np.ndarray]:
  """The model's processed batch from AlphaFold's raw feature dict.

  Args:
    raw: raw features (aatype one-hot, msa in HHblits ids, deletion_matrix_int,
      residue_index, between_segment_residues, optional template_*), as built by
      AlphaFold's DataPipeline or af_jax.data.
    config: the full model config (`af_jax.model_config(name)`); its `data`
      section sets depths, masking and recycling.
    random_seed: non-negative seed of every random choice.
    num_res: residues after padding (None: the sequence length).
    msa_clusters: cluster rows after padding (None: as AlphaFold, the
      config's maximum, less max_templates when reduce_msa_clusters_by_max_templates).
    extra_msa: extra-MSA rows after padding (None: as AlphaFold,
      data.common.max_extra_msa).
    permutation: `(rng, n) -> order of range(n)` for the MSA shuffles;
      `msa_sampling.identity_permutation` takes rows in file order.

  Returns:
    {name: array} with a leading axis of `num_slices(config)`; names, dtypes and
    meanings as AlphaFold's RunModel.process_features.
  """
  _check_config(config)
  if int(random_seed) < 0:
    raise InputError(f'random_seed={random_seed} is negative; pass a seed >= 0')
  data = config.data
  common = data.common
  seq = _sequence_features(raw)
  n_res, n_clusters, n_extra = natural_sizes(raw, config)
  res_size = _padded_size('num_res', num_res, n_res, n_res)
  cluster_size = _padded_size('msa_clusters', msa_clusters, n_clusters, max_msa_clusters(config))
  extra_size = _padded_size('extra_msa', extra_msa, n_extra, int(common.max_extra_msa))

  crop_seed, *slice_seeds = np.random.SeedSequence(int(random_seed)).spawn(1 + num_slices(config))
  int32 = np.iinfo(np.int32)
  static = {
      'aatype': seq['aatype'],
      'residue_index': seq['residue_index'],
      'seq_length': np.asarray(n_res, np.int32),
      'seq_mask': np.ones(n_res, np.float32),
      'is_distillation': np.asarray(0.0, np.float32),
      # Not used by the model; kept so the batch has AlphaFold's keys.
      'random_crop_to_size_seed': np.random.default_rng(crop_seed).integers(
          int32.min, int32.max, size=2, dtype=np.int32),
      'target_feat': np.concatenate(
          [np.clip(seq['between_segment_residues'].astype(np.float32), 0.0, 1.0)[:, None],
           np.eye(rc.restype_num + 1, dtype=np.float32)[seq['aatype']]], axis=-1),
      **_atom_layout_features(seq['aatype']),
  }
  if common.use_templates:
    static.update(_template_features(raw, n_res, int(data.eval.max_templates)))

  profile = msa_sampling.hhblits_profile(seq['msa'])
  slices = []
  for seed in slice_seeds:
    sample = msa_sampling.sample_msa(seq['msa'], seq['deletion_matrix'], profile, data,
                                     n_clusters, seed, permutation)
    rows = sample.true_msa.shape[0]
    one = {'msa_feat': sample.msa_feat, 'true_msa': sample.true_msa,
           'bert_mask': sample.bert_mask, 'msa_mask': np.ones((rows, n_res), np.float32),
           'msa_row_mask': np.ones(rows, np.float32)}
    if int(common.max_extra_msa):
      extra = sample.extra_deletion_matrix
      one.update(extra_msa=sample.extra_msa,
                 extra_msa_mask=np.ones(extra.shape, np.float32),
                 extra_msa_row_mask=np.ones(extra.shape[0], np.float32),
                 extra_has_deletion=np.clip(extra, 0.0, 1.0),
                 extra_deletion_value=msa_sampling.deletion_value(extra))
    slices.append(one)

  sizes = {'R': res_size, 'C': cluster_size, 'E': extra_size, 'T': int(data.eval.max_templates)}
  batch = {}
  for key, value in static.items():
    batch[key] = np.stack([_pad_feature(key, value, sizes)] * len(slices))
  for key in slices[0]:
    batch[key] = np.stack([_pad_feature(key, one[key], sizes) for one in slices])
  return batch


# Which leading axes of each feature are residues (R), cluster rows (C), extra rows (E)
# or templates (T); the remaining axes keep their size. AlphaFold's eval.feat schema.
_SCHEMA = {
    'aatype': 'R', 'residue_index': 'R', 'seq_mask': 'R', 'target_feat': 'R',
    'atom14_atom_exists': 'R', 'residx_atom14_to_atom37': 'R',
    'residx_atom37_to_atom14': 'R', 'atom37_atom_exists': 'R',
    'seq_length': '', 'is_distillation': '', 'random_crop_to_size_seed': '',
    'msa_feat': 'CR', 'true_msa': 'CR', 'bert_mask': 'CR', 'msa_mask': 'CR', 'msa_row_mask': 'C',
    'extra_msa': 'ER', 'extra_msa_mask': 'ER', 'extra_has_deletion': 'ER',
    'extra_deletion_value': 'ER', 'extra_msa_row_mask': 'E',
    'template_aatype': 'TR', 'template_all_atom_masks': 'TR', 'template_all_atom_positions': 'TR',
    'template_mask': 'T', 'template_pseudo_beta': 'TR', 'template_pseudo_beta_mask': 'TR',
    'template_sum_probs': 'T',
}


def _pad_feature(key: str, value: np.ndarray, sizes: Mapping[str, int]) -> np.ndarray:
  axes = _SCHEMA[key]
  return _pad(value, tuple(sizes[a] for a in axes) + value.shape[len(axes):])


# ---------------------------------------------------------------------------
# Training crops of raw features.

# Residue axis of each raw feature (and training label) that has one. Features not listed
# (domain_name, msa_species_identifiers, template_domain_names, template_sum_probs,
# resolution, ...) are not per-residue and pass through unchanged.
_RAW_RESIDUE_AXIS = {
    'aatype': 0, 'between_segment_residues': 0, 'residue_index': 0, 'seq_length': 0,
    'num_alignments': 0, 'msa': 1, 'deletion_matrix_int': 1, 'deletion_matrix': 1,
    'template_aatype': 1, 'template_all_atom_masks': 1, 'template_all_atom_positions': 1,
    'all_atom_positions': 0, 'all_atom_mask': 0,
}
# One string per chain / template, cropped like the residues they spell.
_RAW_STRINGS = ('sequence', 'template_sequence')


def random_crop_start(num_res: int, crop_size: int, rng: np.random.Generator) -> int:
  """First residue of a contiguous crop: uniform over every window that fits (0 if none cut).

  AlphaFold's `random_crop_to_size` (Jumper et al. (2021) Suppl. 1.2.8): the start
  is drawn uniformly from [0, num_res - crop_size]. (OpenFold's two nested uniform
  draws favour starts near the N-terminus; we follow AlphaFold.)
  """
  if crop_size < 1:
    raise ConfigError(f'crop_size={crop_size} must be >= 1; set data.train.crop_size')
  return int(rng.integers(0, num_res - crop_size + 1)) if num_res > crop_size else 0


def crop_raw_features(raw: Mapping[str, np.ndarray], start: int,
                      size: int) -> dict[str, np.ndarray]:
  """Residues [start, start + size) of every per-residue raw feature and label.

  MSA and template columns, deletion counts, atom positions and masks are cut
  from the same window, so features and labels stay aligned; `residue_index`
  keeps its original numbering (relative positions are what the model sees) and
  `seq_length`/`num_alignments` keep one entry per kept residue, with
  `seq_length` set to the new length.

  Args:
    raw: raw features (AlphaFold names) plus optional labels `all_atom_positions`
      [N_res, 37, 3] and `all_atom_mask` [N_res, 37].
    start: first kept residue.
    size: residues kept at most (fewer when the chain ends first).

  Returns:
    A new dict; features without a residue axis are the same objects.
  """
  num_res = int(np.shape(raw['aatype'])[0])
  if not 0 <= start < num_res or size < 1:
    raise InputError(f'crop [{start}, {start + size}) is outside the {num_res} residues; pass '
                     '0 <= start < num_res and size >= 1 (see random_crop_start)')
  stop = min(start + size, num_res)
  out = dict(raw)
  for key, axis in _RAW_RESIDUE_AXIS.items():
    if key in raw:
      value = np.asarray(raw[key])
      if value.shape[axis] != num_res:
        raise InputError(f'raw feature {key!r} has shape {value.shape}; expected {num_res} '
                         f'residues on axis {axis}; rebuild the features with the data pipeline')
      out[key] = value[(slice(None),) * axis + (slice(start, stop),)]
  if 'seq_length' in out:
    out['seq_length'] = np.full_like(out['seq_length'], stop - start)
  for key in _RAW_STRINGS:
    if key in raw:
      out[key] = np.array([s[start:stop] for s in np.asarray(raw[key]).reshape(-1)], dtype=object)
  return out
