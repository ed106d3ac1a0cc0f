"""Training examples from mmCIF files and OpenFold-layout alignments, in seeded numpy.

`<alignment_dir>/<pdb_id>_<chain_id>/` holds a chain's MSAs (`*.a3m`, `*.sto`, optionally
gzipped, and `*.hhr` template hits); `<mmcif_dir>/<pdb_id>.cif[.gz]` holds its structure.
Each chain becomes the inference pipeline's raw features (SEQRES sequence features, its
MSAs merged and de-duplicated, optional templates) plus labels (atom37 positions and
mask, resolution); it is cut to one contiguous window of `crop_size` residues, padded to
it, and processed (MSA clustering, extra MSA, BERT masking) into one feature slice per
recycle, so every batch has the same shapes and the train step compiles once.

Every random choice derives from `data.seed`:
- the order of epoch e from (seed, e);
- an example's crop, MSA sampling, masking and FAPE clamping from (seed, epoch, chain);
- the recycle count of batch s (shared by its examples) from (seed, s).
So `TrainingData.batch(step)` is a pure function of the step: batches are the same across
runs, worker counts and restarts, and the step is the whole data position to checkpoint.

This module is numpy-only (it runs in loader workers, see af_jax.train.loader).
"""

from __future__ import annotations

import dataclasses
import datetime
import functools
import hashlib
import json
import os
import pathlib
import threading
from collections.abc import Mapping, Sequence

import ml_collections
import numpy as np
from absl import logging

from af_jax.data import features, mmcif, msa_search, parsers, pipeline, transforms
from af_jax.errors import AfJaxError, ConfigError, InputError

# Keys a batch holds per example, without the recycle axis: labels for the losses and
# what the train step needs to know about the example. Every other key is a processed
# feature of shape [B, R, ...], R = max_recycling_iters + 1 (see TrainingData.batch).
LABEL_KEYS = ('all_atom_positions', 'all_atom_mask', 'resolution')
PER_EXAMPLE_KEYS = LABEL_KEYS + ('num_recycles', 'use_clamped_fape', 'crop_start',
                                 'example_index')

# spawn_key prefixes: independent random streams for the three kinds of choices.
_ORDER, _EXAMPLE, _BATCH = 0, 1, 2
_CIF_SUFFIXES = ('.cif', '.cif.gz')
_NOT_MONOMER_MSAS = ('uniprot_hits', 'hmm_output')


@dataclasses.dataclass(frozen=True)
class ChainEntry:
  """One training chain: where its files are and what filtering needs to know.

  Attributes:
    name: `<pdb_id>_<chain_id>`, its alignment directory's name.
    mmcif_path: its structure, `<mmcif_dir>/<pdb_id>.cif[.gz]`.
    alignment_dir: its MSAs (and template hits).
    sequence: SEQRES, one-letter (from the chain cache or the mmCIF).
    resolution: Å; 0.0 or None when the entry states none (NMR).
    release_date: 'YYYY-MM-DD' or None.
    cluster_size: size of its sequence cluster when the chain cache gives it.
  """

  name: str
  mmcif_path: str
  alignment_dir: str
  sequence: str
  resolution: float | None
  release_date: str | None
  cluster_size: int | None = None

  @property
  def pdb_id(self) -> str:
    return self.name.rsplit('_', 1)[0]

  @property
  def chain_id(self) -> str:
    return self.name.rsplit('_', 1)[1]


@dataclasses.dataclass
class FilterReport:
  """How many chains were found, and which were skipped for what reason."""

  total: int = 0
  skipped: dict[str, list[str]] = dataclasses.field(default_factory=dict)

  def skip(self, name: str, reason: str) -> None:
    self.skipped.setdefault(reason, []).append(name)

  @property
  def kept(self) -> int:
    return self.total - sum(len(names) for names in self.skipped.values())

  def __str__(self) -> str:
    text = f'kept {self.kept} of {self.total} chains'
    for reason, names in sorted(self.skipped.items()):
      shown = ', '.join(names[:3]) + (', ...' if len(names) > 3 else '')
      text += f'; skipped {len(names)} ({shown}): {reason}'
    return text


# ---------------------------------------------------------------------------
# Discovery and filtering.


def read_chain_cache(path: str | os.PathLike) -> dict[str, dict]:
  """`<pdb_id>_<chain_id>` -> {seq, resolution, release_date, cluster_size} from OpenFold's caches.

  Accepts both of OpenFold's files: `chain_data_cache.json` (keyed by chain, with `seq`)
  and `mmcif_cache.json` (keyed by entry, with `chain_ids` and `seqs`).
  """
  path = os.fspath(path)
  try:
    with open(path) as f:
      cache = json.load(f)
  except FileNotFoundError:
    raise InputError(f'chain cache {path} not found; check --chain_data_cache_path') from None
  except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
    raise InputError(f'chain cache {path} is not readable JSON ({e}); regenerate it') from None
  if not isinstance(cache, dict):
    raise InputError(f'chain cache {path} holds a {type(cache).__name__}, not an object '
                     'keyed by chain or entry; pass chain_data_cache.json or mmcif_cache.json')
  chains = {}
  for key, info in cache.items():
    if isinstance(info, dict) and 'seq' in info:
      chains[key] = {'seq': info['seq'], 'resolution': info.get('resolution'),
                     'release_date': info.get('release_date'),
                     'cluster_size': info.get('cluster_size')}
    elif isinstance(info, dict) and 'chain_ids' in info and 'seqs' in info:
      for chain_id, seq in zip(info['chain_ids'], info['seqs']):
        chains[f'{key}_{chain_id}'] = {'seq': seq, 'resolution': info.get('resolution'),
                                       'release_date': info.get('release_date'),
                                       'cluster_size': None}
    else:
      raise InputError(f'entry {key!r} of chain cache {path} has neither "seq" (OpenFold '
                       'chain_data_cache.json) nor "chain_ids" and "seqs" (mmcif_cache.json); '
                       'regenerate the cache with OpenFold\'s scripts')
  return chains


def write_chain_cache(entries: Sequence[ChainEntry], path: str | os.PathLike) -> None:
  """Writes OpenFold's `chain_data_cache.json` for `entries`, so later runs skip parsing."""
  cache = {e.name: {'release_date': e.release_date, 'seq': e.sequence,
                    'resolution': e.resolution, 'cluster_size': e.cluster_size}
           for e in entries}
  tmp = f'{os.fspath(path)}.tmp'
  with open(tmp, 'w') as f:
    json.dump(cache, f, indent=1, allow_nan=False)
  os.replace(tmp, path)


def _mmcif_files(mmcif_dir: str) -> dict[str, str]:
  """Lower-case PDB id -> its mmCIF path (`.cif` preferred over `.cif.gz`)."""
  files = {}
  for name in sorted(os.listdir(mmcif_dir), reverse=True):  # '.cif' after '.cif.gz' wins
    for suffix in _CIF_SUFFIXES:
      if name.lower().endswith(suffix):
        files[name[:-len(suffix)].lower()] = os.path.join(mmcif_dir, name)
  return files


@functools.lru_cache(maxsize=8)
def _read_mmcif(path: str, file_id: str) -> mmcif.MmcifStructure:
  # An entry's chains, and the chains of a small fine-tuning set, come back often; parsing
  # is most of the cost of an example. Callers must not modify the arrays.
  return mmcif.read(path, file_id=file_id)


def _chain_not_found(chain_id: str, structure: mmcif.MmcifStructure, path: str,
                     alignment_dir: str) -> InputError:
  chains = ', '.join(structure.chains) or 'none'
  return InputError(f'chain {chain_id} is not a protein chain with atoms in {path} (protein '
                    f'chains: {chains}); rename or remove the alignment dir {alignment_dir}')


def discover_chains(alignment_dir: str | os.PathLike, mmcif_dir: str | os.PathLike,
                    chain_cache_path: str | os.PathLike | None = None
                    ) -> tuple[list[ChainEntry], FilterReport]:
  """The chains of `alignment_dir` matched to their mmCIF files, sorted by name.

  Without a chain cache every mmCIF is parsed here for its sequence, resolution and
  release date (PERF: for a PDB-sized set, write a cache once with
  `write_chain_cache`); with one, only the file's existence is checked.

  Raises:
    InputError: a directory is missing, a chain has no mmCIF, or (without a cache) a
      chain is not in its mmCIF.
  """
  alignment_dir, mmcif_dir = os.fspath(alignment_dir), os.fspath(mmcif_dir)
  for flag, path in (('--alignment_dir', alignment_dir), ('--mmcif_dir', mmcif_dir)):
    if not os.path.isdir(path):
      raise InputError(f'{flag} {path} is not a directory; pass the directory holding '
                       + ('<pdb_id>_<chain_id>/ MSA folders' if 'align' in flag
                          else '<pdb_id>.cif files'))
  cache = read_chain_cache(chain_cache_path) if chain_cache_path else None
  cifs = _mmcif_files(mmcif_dir)
  report = FilterReport()
  entries = []
  for name in sorted(os.listdir(alignment_dir)):
    chain_dir = os.path.join(alignment_dir, name)
    if not os.path.isdir(chain_dir):
      continue
    report.total += 1
    pdb_id, sep, chain_id = name.rpartition('_')
    if not (sep and pdb_id and chain_id):
      report.skip(name, 'directory name is not <pdb_id>_<chain_id>')
      continue
    info = None
    if cache is not None:
      info = cache.get(name) or cache.get(f'{pdb_id.lower()}_{chain_id}')
      if info is None:
        report.skip(name, f'not in the chain cache {chain_cache_path}')
        continue
    cif = cifs.get(pdb_id.lower())
    if cif is None:
      raise InputError(f'no mmCIF for chain {name}: neither {pdb_id}.cif nor {pdb_id}.cif.gz '
                       f'is in --mmcif_dir {mmcif_dir}; add it or remove {chain_dir}')
    if info is not None:
      entries.append(ChainEntry(name, cif, chain_dir, info['seq'], info['resolution'],
                                info['release_date'], info['cluster_size']))
      continue
    structure = _read_mmcif(cif, pdb_id.lower())
    if chain_id not in structure.chains:
      raise _chain_not_found(chain_id, structure, cif, chain_dir)
    header = structure.header
    entries.append(ChainEntry(name, cif, chain_dir, structure.chains[chain_id].seqres,
                              header.resolution, header.release_date))
  return entries, report


def filter_chains(entries: Sequence[ChainEntry], filters: ml_collections.ConfigDict,
                  report: FilterReport) -> list[ChainEntry]:
  """The chains passing `data.filters`; the others are recorded in `report` with the reason.

  AlphaFold's training filters (Jumper et al. (2021) Suppl. 1.2.5): resolution below
  9 Å (entries stating none, such as NMR, pass) and no residue type over 80 % of the
  sequence; plus length and release-date limits.
  """
  max_length = filters.max_length
  kept = []
  for entry in entries:
    seq = entry.sequence
    top = max(seq.count(aa) for aa in set(seq)) / len(seq) if seq else 1.0
    resolution = entry.resolution
    if resolution is not None and resolution > filters.max_resolution:
      reason = f'resolution above max_resolution {filters.max_resolution} Å'
    elif resolution is not None and resolution < filters.min_resolution:
      reason = f'resolution below min_resolution {filters.min_resolution} Å'
    elif len(seq) < filters.min_length:
      reason = f'shorter than min_length {filters.min_length}'
    elif max_length is not None and len(seq) > max_length:
      reason = f'longer than max_length {max_length}'
    elif top > filters.max_single_aa_prop:
      reason = f'one residue type over max_single_aa_prop {filters.max_single_aa_prop}'
    elif entry.release_date and entry.release_date > filters.max_release_date:
      reason = f'released after max_release_date {filters.max_release_date}'
    else:
      kept.append(entry)
      continue
    report.skip(entry.name, reason)
  return kept


# ---------------------------------------------------------------------------
# One chain: raw features and labels, then one cropped, processed example.


@dataclasses.dataclass(frozen=True)
class TemplateOptions:
  """Where template structures are, and how late a template may be released."""

  mmcif_dir: str
  max_hits: int
  max_template_date: str = '9999-12-31'
  release_gap_days: int = 60
  kalign_binary_path: str | None = None
  obsolete_pdbs_path: str | None = None

  def cutoff(self, release_date: str | None) -> str:
    """Latest template date for a chain released on `release_date`."""
    if not release_date:
      return self.max_template_date
    # A template must predate the chain, so that the chain's own entry (or its
    # re-depositions) cannot be its template. AlphaFold 3 uses the same 60-day gap.
    latest = datetime.date.fromisoformat(release_date) - datetime.timedelta(
        days=self.release_gap_days)
    return min(self.max_template_date, latest.isoformat())


def _msa_paths(alignment_dir: str) -> list[pathlib.Path]:
  """The MSA files of a chain, in AlphaFold's stacking order (uniref90, bfd, mgnify, ...).

  As OpenFold, leaves out the Stockholm files of AlphaFold-Multimer's alignment dirs
  that are not monomer MSAs: uniprot_hits (for cross-chain pairing) and hmm_output
  (template hits).
  """
  found = [p for p in pathlib.Path(alignment_dir).iterdir()
           if p.is_file() and p.name.endswith(pipeline.MSA_SUFFIXES)
           and p.name.removesuffix('.gz').removesuffix('.sto') not in _NOT_MONOMER_MSAS]
  rank = {name: i for i, name in enumerate(msa_search.MSA_ORDER)}
  return sorted(found, key=lambda p: (rank.get(p.name, len(rank)), p.name))


def load_chain(entry: ChainEntry,
               templates: TemplateOptions | None = None) -> dict[str, np.ndarray]:
  """Uncropped raw features (AlphaFold names) and labels of one chain.

  Returns:
    make_sequence_features + make_msa_features (+ template features) of the SEQRES,
    and the labels all_atom_positions [N_res, 37, 3] float32 (Å, zero where unobserved),
    all_atom_mask [N_res, 37] float32, resolution () float32.

  Raises:
    InputError: chain not in its mmCIF, SEQRES differing from the chain cache, no MSA,
      or an MSA built for another sequence (each message names the file).
  """
  structure = _read_mmcif(entry.mmcif_path, entry.pdb_id.lower())
  chain = structure.chains.get(entry.chain_id)
  if chain is None:
    raise _chain_not_found(entry.chain_id, structure, entry.mmcif_path, entry.alignment_dir)
  if entry.sequence and chain.seqres != entry.sequence:
    raise InputError(f'SEQRES of chain {entry.chain_id} in {entry.mmcif_path} '
                     f'({len(chain.seqres)} residues) differs from the chain cache\'s '
                     f'({len(entry.sequence)}); regenerate the cache for this mmCIF mirror')
  record = parsers.FastaRecord(name=entry.name, description=entry.name, sequence=chain.seqres)
  paths = _msa_paths(entry.alignment_dir)
  if not paths:
    raise InputError(f'no MSA (*.a3m, *.sto) in {entry.alignment_dir}; add the chain\'s '
                     'alignments or remove the directory')
  msas = pipeline.read_msas(paths, record, log=False)
  # As the inference pipeline, which cuts jackhmmer's files to AlphaFold's limits on reuse.
  msas = [msa.truncate(msa_search.MAX_HITS.get(path.name, len(msa)))
          for path, msa in zip(paths, msas)]
  num_res = len(chain.seqres)
  raw = {**features.make_sequence_features(chain.seqres, entry.name, num_res),
         **features.make_msa_features([pipeline.query_msa(record)] + msas)}
  if templates is not None:
    options = pipeline.PipelineOptions(
        use_templates=True, template_mmcif_dir=templates.mmcif_dir,
        max_template_date=templates.cutoff(structure.header.release_date),
        max_templates=templates.max_hits, kalign_binary_path=templates.kalign_binary_path,
        obsolete_pdbs_path=templates.obsolete_pdbs_path)
    raw.update(pipeline.template_features(record, pathlib.Path(entry.alignment_dir), options))
  raw['all_atom_positions'] = chain.atom_positions.copy()
  raw['all_atom_mask'] = chain.atom_mask.copy()
  raw['resolution'] = np.float32(structure.header.resolution)
  return raw


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
