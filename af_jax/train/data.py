"""Training examples and batches from the training chains, in seeded numpy.

Each chain's raw features and labels (`af_jax.train.chains`) are cut to one contiguous
window of `crop_size` residues, padded to it, and processed (MSA clustering, extra MSA,
BERT masking) into one feature slice per recycle, so every batch has the same shapes and
the train step compiles once.

Every random choice derives from `data.seed`:
- the order of epoch e from (seed, e);
- an example's crop, MSA sampling, masking and FAPE clamping from (seed, epoch, chain);
- the recycle count of batch s (shared by its examples) from (seed, s).
So `TrainingData.batch(step)` is a pure function of the step: batches are the same across
runs, worker counts and restarts, and the step is the whole data position to checkpoint.

This module is numpy-only (it runs in loader workers, see af_jax.train.loader).
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Mapping

import ml_collections
import numpy as np
from absl import logging

from af_jax.data import transforms
from af_jax.errors import AfJaxError, ConfigError, InputError
from af_jax.train.chains import TemplateOptions, discover_chains, filter_chains, load_chain

# Keys a batch holds per example, without the recycle axis: labels for the losses and
# what the train step needs to know about the example. Every other key is a processed
# feature of shape [B, R, ...], R = max_recycling_iters + 1 (see TrainingData.batch).
LABEL_KEYS = ('all_atom_positions', 'all_atom_mask', 'resolution')
PER_EXAMPLE_KEYS = LABEL_KEYS + ('num_recycles', 'use_clamped_fape', 'crop_start',
                                 'example_index')

# spawn_key prefixes: independent random streams for the three kinds of choices.
_ORDER, _EXAMPLE, _BATCH = 0, 1, 2


# ---------------------------------------------------------------------------
# One example: a cropped, processed chain.


def processing_config(data: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """The config `transforms.process_features` reads, from a training config's `data`.

  The training sizes take the place of the inference (`eval`) ones, and
  `max_recycling_iters` sets the number of feature slices.
  """
  common, train = data.common, data.train
  return ml_collections.ConfigDict({'data': {
      'common': {
          'masked_msa': common.masked_msa.to_dict(),
          'max_extra_msa': int(train.max_extra_msa),
          'msa_cluster_features': bool(common.msa_cluster_features),
          'num_recycle': int(common.max_recycling_iters),
          'reduce_msa_clusters_by_max_templates':
              bool(common.reduce_msa_clusters_by_max_templates),
          'resample_msa_in_recycling': bool(common.resample_msa_in_recycling),
          'use_templates': bool(common.use_templates),
      },
      'eval': {
          'fixed_size': True,
          'subsample_templates': False,
          'masked_msa_replace_fraction': float(train.masked_msa_replace_fraction),
          'max_msa_clusters': int(train.max_msa_clusters),
          'max_templates': int(train.max_templates),
          'num_ensemble': 1,
      },
  }})


def _child(seed: np.random.SeedSequence, k: int) -> np.random.SeedSequence:
  """Child k of `seed`, without `spawn`'s side effect (calling twice gives the same one)."""
  return np.random.SeedSequence(seed.entropy, spawn_key=tuple(seed.spawn_key) + (k,))


def _int_seed(seed: np.random.SeedSequence) -> int:
  return int(seed.generate_state(1, np.uint64)[0] >> np.uint64(1))


def make_example(raw: Mapping[str, np.ndarray], data: ml_collections.ConfigDict,
                 seed: np.random.SeedSequence,
                 processing: ml_collections.ConfigDict | None = None) -> dict[str, np.ndarray]:
  """One training example: a random contiguous crop of `raw`, processed and padded.

  Args:
    raw: `load_chain`'s output.
    data: the training config's `data` section.
    seed: the example's random stream (crop, MSA sampling and masking, FAPE clamping).
    processing: `processing_config(data)`, when already built.

  Returns:
    process_features' batch ([R, ...] per key, padded to crop_size residues) plus
    all_atom_positions [C, 37, 3], all_atom_mask [C, 37], resolution (), use_clamped_fape
    () float32 and crop_start () int32, C = crop_size.
  """
  crop_size = int(data.train.crop_size)
  crop_seed, msa_seed, clamp_seed = (_child(seed, k) for k in range(3))
  num_res = int(np.shape(raw['aatype'])[0])
  start = transforms.random_crop_start(num_res, crop_size, np.random.default_rng(crop_seed))
  # DIFFERS FROM AF2: the crop is taken before MSA processing (AlphaFold crops after
  # clustering), so nearest-cluster assignment counts agreement inside the crop only;
  # processing then costs in proportion to crop_size rather than to the chain's length.
  cropped = transforms.crop_raw_features(raw, start, crop_size)
  example = transforms.process_features(cropped, processing or processing_config(data),
                                        _int_seed(msa_seed), num_res=crop_size)
  pad = crop_size - int(np.shape(cropped['aatype'])[0])
  example['all_atom_positions'] = np.pad(cropped['all_atom_positions'],
                                         ((0, pad), (0, 0), (0, 0))).astype(np.float32)
  example['all_atom_mask'] = np.pad(cropped['all_atom_mask'], ((0, pad), (0, 0))).astype(
      np.float32)
  example['resolution'] = np.float32(raw['resolution'])
  clamp = np.random.default_rng(clamp_seed).random() < float(data.train.clamp_prob)
  example['use_clamped_fape'] = np.float32(clamp)
  example['crop_start'] = np.int32(start)
  return example


# ---------------------------------------------------------------------------
# The data set: batches as a pure function of the step.


def _check_config(data: ml_collections.ConfigDict, batch_size: int, shard_index: int,
                  shard_count: int, template_mmcif_dir: str | None) -> None:
  train = data.train
  checks = [
      (int(train.crop_size) >= 1, f'data.train.crop_size={train.crop_size} must be >= 1'),
      (int(data.common.max_recycling_iters) >= 0,
       f'data.common.max_recycling_iters={data.common.max_recycling_iters} must be >= 0'),
      (0.0 <= float(train.clamp_prob) <= 1.0,
       f'data.train.clamp_prob={train.clamp_prob} must be in [0, 1]'),
      (batch_size >= 1, f'batch_size={batch_size} must be >= 1'),
      (0 <= shard_index < shard_count,
       f'shard_index={shard_index} must be in [0, shard_count={shard_count})'),
      (not data.common.use_templates or template_mmcif_dir is not None,
       'data.common.use_templates=True needs template_mmcif_dir (--template_mmcif_dir)'),
  ]
  for ok, message in checks:
    if not ok:
      raise ConfigError(f'{message}; fix the training config or flags')


class TrainingData:
  """Training chains and their batches, `batch(step)` a pure function of the step.

  The examples are an endless stream: epoch e visits every kept chain once in a
  seeded order, and batch s takes the stream's examples [s * G, (s + 1) * G), G the
  global batch (batch_size * shard_count); shard i of shard_count (one per host)
  returns its batch_size of them.
  """

  def __init__(self, alignment_dir: str | os.PathLike, mmcif_dir: str | os.PathLike,
               data: ml_collections.ConfigDict, *,
               chain_cache_path: str | os.PathLike | None = None,
               template_mmcif_dir: str | None = None, kalign_binary_path: str | None = None,
               obsolete_pdbs_path: str | None = None, batch_size: int | None = None,
               shard_index: int = 0, shard_count: int = 1):
    """Finds and filters the chains.

    Args:
      alignment_dir: `<pdb_id>_<chain_id>/` folders of MSAs (OpenFold's layout).
      mmcif_dir: `<pdb_id>.cif[.gz]` files.
      data: the training config's `data` section (configs/train.py).
      chain_cache_path: OpenFold's chain_data_cache.json or mmcif_cache.json, to filter
        without parsing every mmCIF.
      template_mmcif_dir, kalign_binary_path, obsolete_pdbs_path: for templates, read
        when data.common.use_templates.
      batch_size: examples per batch on this host (default
        data.data_module.data_loaders.batch_size; pass per-device size times local
        devices).
      shard_index, shard_count: this host's share of each global batch.

    Raises:
      InputError, ConfigError: bad inputs or config, or no chain left after filtering.
    """
    batch_size = int(data.data_module.data_loaders.batch_size if batch_size is None
                     else batch_size)
    _check_config(data, batch_size, shard_index, shard_count, template_mmcif_dir)
    self.data = data
    self.seed = int(data.seed)
    self.batch_size, self.shard_index, self.shard_count = batch_size, shard_index, shard_count
    entries, self.report = discover_chains(alignment_dir, mmcif_dir, chain_cache_path)
    self.entries = filter_chains(entries, data.filters, self.report)
    logging.info('training chains in %s: %s', alignment_dir, self.report)
    if not self.entries:
      raise InputError(f'no training chain left in {alignment_dir}: {self.report}; relax '
                       'data.filters or add chains')
    self.processing = processing_config(data)
    self.templates = None
    if data.common.use_templates:
      train = data.train
      self.templates = TemplateOptions(
          mmcif_dir=template_mmcif_dir, max_hits=int(train.max_template_hits),
          max_template_date=train.max_template_date,
          release_gap_days=int(train.template_release_gap_days),
          kalign_binary_path=kalign_binary_path, obsolete_pdbs_path=obsolete_pdbs_path)
    self._orders: dict[int, np.ndarray] = {}
    self._lock = threading.Lock()

  def __getstate__(self) -> dict:
    # Sent once to each process worker: without the lock, which cannot be pickled.
    state = dict(self.__dict__)
    del state['_lock']
    state['_orders'] = {}
    return state

  def __setstate__(self, state: dict) -> None:
    self.__dict__.update(state)
    self._lock = threading.Lock()

  def __len__(self) -> int:
    return len(self.entries)

  @property
  def global_batch_size(self) -> int:
    return self.batch_size * self.shard_count

  def epoch_order(self, epoch: int) -> np.ndarray:
    """Chain indices in the order epoch `epoch` visits them."""
    with self._lock:
      order = self._orders.get(epoch)
      if order is None:
        rng = np.random.default_rng(np.random.SeedSequence(self.seed, spawn_key=(_ORDER, epoch)))
        order = rng.permutation(len(self.entries))
        if len(self._orders) > 4:  # batches straddle at most two epochs
          self._orders.pop(min(self._orders))
        self._orders[epoch] = order
      return order

  def positions(self, step: int) -> list[tuple[int, int]]:
    """(epoch, chain index) of each example of this shard's batch `step`."""
    if step < 0:
      raise InputError(f'step={step} is negative; batches are numbered from 0')
    first = step * self.global_batch_size + self.shard_index * self.batch_size
    n = len(self.entries)
    return [(p // n, int(self.epoch_order(p // n)[p % n]))
            for p in range(first, first + self.batch_size)]

  def names(self, step: int) -> list[str]:
    """The chains of batch `step`, for logs."""
    return [self.entries[i].name for _, i in self.positions(step)]

  def num_recycles(self, step: int) -> int:
    """Recycles of batch `step`: uniform in [0, max_recycling_iters] (AlphaFold's training)."""
    most = int(self.data.common.max_recycling_iters)
    if not self.data.train.uniform_recycling:
      return most
    seed = np.random.SeedSequence(self.seed, spawn_key=(_BATCH, step))
    return int(np.random.default_rng(seed).integers(0, most + 1))

  def example(self, epoch: int, index: int) -> dict[str, np.ndarray]:
    """Chain `index`'s example in epoch `epoch` (make_example's output).

    Raises:
      InputError: bad inputs, the message starting with the chain's name.
      RuntimeError: any other failure, naming the chain and its files.
    """
    entry = self.entries[index]
    seed = np.random.SeedSequence(self.seed, spawn_key=(_EXAMPLE, epoch, index))
    try:
      raw = load_chain(entry, self.templates)
      return make_example(raw, self.data, seed, self.processing)
    except AfJaxError as e:
      raise type(e)(f'training chain {entry.name}: {e}') from None
    except Exception as e:
      raise RuntimeError(f'training chain {entry.name} ({entry.mmcif_path}, '
                         f'{entry.alignment_dir}) failed: {type(e).__name__}: {e}') from e

  def batch(self, step: int) -> dict[str, np.ndarray]:
    """This shard's batch `step`: a dict of numpy arrays with a leading batch axis B.

    Keys:
      - process_features' keys, [B, R, ...] with R = max_recycling_iters + 1 slices and
        crop_size residues (padding masked by seq_mask, msa_mask, ...); true_msa and
        bert_mask are the masked-MSA targets;
      - labels: all_atom_positions [B, C, 37, 3], all_atom_mask [B, C, 37], resolution [B];
      - num_recycles [B] int32, the same for the whole batch: run iterations
        0..num_recycles-1 without gradients on slices 0..num_recycles-1, then the last
        one with gradients on slice num_recycles (later slices are unused);
      - use_clamped_fape [B] float32, crop_start [B] int32, example_index [B] int32
        (into `entries`).
    """
    positions = self.positions(step)
    examples = [self.example(epoch, index) for epoch, index in positions]
    out = {key: np.stack([ex[key] for ex in examples]) for key in examples[0]}
    out['num_recycles'] = np.full(len(examples), self.num_recycles(step), np.int32)
    out['example_index'] = np.array([index for _, index in positions], np.int32)
    return out

  def digest(self) -> str:
    """Fingerprint of the kept chains, so a saved position is not resumed on other data."""
    return hashlib.sha256('\n'.join(e.name for e in self.entries).encode()).hexdigest()[:16]

  def position(self, step: int) -> dict:
    """The data position before batch `step`, for a checkpoint (see `check_position`)."""
    return {'step': int(step), 'seed': self.seed, 'num_chains': len(self.entries),
            'chains_digest': self.digest(), 'global_batch_size': self.global_batch_size}

  def check_position(self, state: Mapping) -> int:
    """The step to resume at from `position`'s dict; ConfigError if it was for other data."""
    if 'step' not in state:
      raise ConfigError(f'data position {dict(state)} has no step; pass the dict that '
                        'position() (or BatchLoader.state_dict()) returned')
    mine = self.position(int(state['step']))
    different = [k for k in mine if k != 'step' and k in state and state[k] != mine[k]]
    if different:
      saved = ', '.join(f'{k}={state[k]!r}' for k in different)
      now = ', '.join(f'{k}={mine[k]!r}' for k in different)
      raise ConfigError(f'the saved data position has {saved} but this run has {now}; resume '
                        'with the same data.seed, batch size, directories and filters')
    return int(state['step'])


def split_batch(batch: Mapping[str, np.ndarray]) -> tuple[dict, dict]:
  """(model features [B, R, ...], per-example labels and flags [B, ...]) of a batch."""
  model = {k: v for k, v in batch.items() if k not in PER_EXAMPLE_KEYS}
  rest = {k: v for k, v in batch.items() if k in PER_EXAMPLE_KEYS}
  return model, rest
