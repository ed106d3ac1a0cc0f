"""Raw feature dicts with AlphaFold's names, dtypes and shapes, and their features.pkl files.

These are what AlphaFold's `DataPipeline.process` returns and `run_alphafold.py` pickles:
sequence features, merged MSA features and template features. Keeping the names lets a
features.pkl from AlphaFold (or ColabFold, Uni-Fold) be folded as-is, and ours be read there.
"""

from __future__ import annotations

import gzip
import os
import pickle
import re
from collections.abc import Sequence

import numpy as np
from absl import logging

from af_jax.common import files
from af_jax.common import residue_constants as rc
from af_jax.data import schema
from af_jax.data.names import shown
from af_jax.data.parsers import Msa
from af_jax.errors import InputError

FeatureDict = dict[str, np.ndarray]


_HHBLITS_LUT = np.full(256, -1, np.int32)
for _letter, _index in rc.HHBLITS_AA_TO_ID.items():
  _HHBLITS_LUT[ord(_letter)] = _index

# A UniProtKB identifier 'tr|ACCESSION|ENTRY_SPECIES' ('sp|' for Swiss-Prot): the species
# mnemonic follows the entry name's underscore. Small BFD appends '_<digits>'; an accession
# may carry an '_<digit>' isoform suffix. Same language as AlphaFold's msa_identifiers.
_UNIPROT_ID = re.compile(
    r'^(?:tr|sp)\|[A-Za-z0-9]{6,10}(?:_\d)?\|[A-Za-z0-9]+_(?P<species>[A-Za-z0-9]{1,5})'
    r'(?:_\d+)?$')


def species_identifier(description: str) -> str:
  """UniProt species mnemonic of an MSA row ('' when it has none), for multimer pairing.

  Args:
    description: the row's header, e.g. 'tr|A0A146SKV9|A0A146SKV9_FUNHE/12-80 text'.

  Returns:
    The species code, e.g. 'FUNHE'.
  """
  words = description.split()
  if not words:
    return ''
  match = _UNIPROT_ID.search(words[0].partition('/')[0].strip())
  return match.group('species') if match else ''


def make_sequence_features(sequence: str, description: str, num_res: int) -> FeatureDict:
  """AlphaFold's sequence features of one chain.

  Args:
    sequence: one-letter residues (20 amino acids and X; others read as X).
    description: the FASTA header, stored as `domain_name`.
    num_res: len(sequence).

  Returns:
    aatype [N_res, 21] int32 one-hot, between_segment_residues [N_res], domain_name [1]
    (bytes), residue_index [N_res] (0-based), seq_length [N_res] (all N_res), sequence [1]
    (bytes).
  """
  if num_res != len(sequence):
    raise InputError(f'num_res={num_res} differs from the length {len(sequence)} of the '
                     f'sequence of {description!r}: pass num_res=len(sequence)')
  try:
    aatype = rc.sequence_to_onehot(sequence, rc.restype_order_with_x, map_unknown_to_x=True)
  except ValueError as e:
    raise InputError(f'sequence of {description!r} cannot be encoded ({e}): pass upper-case '
                     'one-letter residues') from None
  return {
      'aatype': aatype.astype(np.int32),
      'between_segment_residues': np.zeros((num_res,), np.int32),
      'domain_name': np.array([description.encode('utf-8')], dtype=object),
      'residue_index': np.arange(num_res, dtype=np.int32),
      'seq_length': np.full((num_res,), num_res, np.int32),
      'sequence': np.array([sequence.encode('utf-8')], dtype=object),
  }


def _encode_rows(sequences: list[str], where: str) -> np.ndarray:
  """[N_seq, N_res] HHblits indices (gap 21) of equal-length aligned rows."""
  num_res = len(sequences[0])
  for seq in sequences:
    if len(seq) != num_res:
      raise InputError(f'{where} has a row of {len(seq)} columns ({seq[:12]}...), the first '
                       f'row has {num_res}: give MSAs aligned to the same query')
  try:
    raw = ''.join(sequences).encode('ascii')
  except UnicodeEncodeError:
    raise InputError(f'{where} holds non-ASCII letters: pass one-letter residues') from None
  ids = _HHBLITS_LUT[np.frombuffer(raw, np.uint8)].reshape(len(sequences), num_res)
  if (ids < 0).any():
    row, col = (int(v[0]) for v in np.nonzero(ids < 0))
    raise InputError(f'{where} has letter {sequences[row][col]!r} at column {col + 1} of row '
                     f'{row + 1}: MSA rows hold amino-acid letters, X and "-"')
  return ids


def make_msa_features(msas: Sequence[Msa]) -> FeatureDict:
  """AlphaFold's MSA features of several MSAs of one query, merged.

  Rows are taken in order; a row whose aligned sequence was already seen (in any MSA) is
  dropped, keeping its first occurrence, as DeepMind's AlphaFold does.

  Args:
    msas: MSAs whose first rows are the same query (e.g. uniref90, bfd, mgnify).

  Returns:
    msa [N_seq, N_res] int32 (HHblits order, gap 21), deletion_matrix_int [N_seq, N_res]
    int32, num_alignments [N_res] int32 (all N_seq), msa_species_identifiers [N_seq] bytes.
  """
  if not msas:
    raise InputError('no MSA given: pass at least one MSA (a query-only MSA folds without '
                     'homologues)')
  sequences, deletions, species = [], [], []
  seen = set()
  for msa_index, msa in enumerate(msas):
    if not len(msa):
      raise InputError(f'MSA {msa_index} holds no sequences: pass MSAs whose first row is '
                       'the query')
    # DIFFERS FROM the alphafold-colabfold package (the parity reference): it keeps
    # duplicates; DeepMind's AlphaFold, which we follow, drops them.
    for seq, dels, desc in zip(msa.sequences, msa.deletion_matrix, msa.descriptions):
      if seq in seen:
        continue
      seen.add(seq)
      if len(dels) != len(seq):
        raise InputError(f'MSA {msa_index} row {desc[:40]!r} has {len(dels)} deletion counts '
                         f'for {len(seq)} columns: pass a parsed Msa')
      sequences.append(seq)
      deletions.append(dels)
      species.append(species_identifier(desc).encode('utf-8'))
  msa = _encode_rows(sequences, f'MSA rows ({len(msas)} MSAs)')
  num_seq, num_res = msa.shape
  return {
      'deletion_matrix_int': np.array(deletions, dtype=np.int32).reshape(num_seq, num_res),
      'msa': msa.astype(np.int32),
      'num_alignments': np.full((num_res,), num_seq, np.int32),
      'msa_species_identifiers': np.array(species, dtype=object),
  }


def empty_template_features(num_res: int) -> FeatureDict:
  """Template features of zero templates.

  Args:
    num_res: number of residues.

  Returns:
    AlphaFold's template features with T = 0: template_aatype [0, N_res, 22],
    template_all_atom_masks [0, N_res, 37], template_all_atom_positions [0, N_res, 37, 3],
    template_domain_names [0], template_sequence [0], template_sum_probs [0, 1].
  """
  # DIFFERS FROM AF2: AlphaFold gives shape (0,) for every feature when no hit is found;
  # full shapes with T = 0 let later stages pad or stack without special cases.
  return schema.RAW_TEMPLATES.zeros(num_templates=0, num_res=num_res)


# ---------------------------------------------------------------------------
# features.pkl files.

_RENAMED = {'template_all_atom_mask': 'template_all_atom_masks'}  # multimer-style name
_PROCESSED_ONLY = ('msa_feat', 'target_feat', 'extra_msa', 'seq_mask')
_REQUIRED = ('aatype', 'residue_index', 'msa', 'deletion_matrix_int')


def _dense_deletions(sparse: object, path: str) -> np.ndarray:
  """Uni-Fold's COO 'sparse_deletion_matrix_int' {shape, row, col, data} as a dense matrix."""
  try:
    shape = tuple(int(n) for n in sparse['shape'])
    rows, cols, data = (np.asarray(sparse[k]) for k in ('row', 'col', 'data'))
    dense = np.zeros(shape, np.int32)
    np.add.at(dense, (rows, cols), data.astype(np.int32))
  except (KeyError, TypeError, ValueError, IndexError) as e:
    raise InputError(f'sparse_deletion_matrix_int in {path} is not a COO dict with shape, row, '
                     f'col and data ({e}): rewrite it as dense deletion_matrix_int') from None
  return dense


def _normalize(features: dict, path: str) -> FeatureDict:
  """Known variants of the raw features renamed/re-encoded to AlphaFold's monomer ones."""
  feats = dict(features)
  if 'asym_id' in feats:
    # Their msa is in af_jax's residue order, not HHblits', among other differences.
    raise InputError(f'{path} holds AlphaFold-Multimer features (asym_id): pass a monomer '
                     'features.pkl, or the FASTA and MSAs to rebuild it')
  processed = [k for k in _PROCESSED_ONLY if k in feats]
  if processed:
    raise InputError(f'{path} holds processed model inputs ({", ".join(processed)}), not raw '
                     'features: pass the features.pkl written before feature processing')
  for old, new in _RENAMED.items():
    if old in feats and new not in feats:
      feats[new] = feats.pop(old)
  if 'deletion_matrix_int' not in feats:
    if 'sparse_deletion_matrix_int' in feats:  # Uni-Fold
      feats['deletion_matrix_int'] = _dense_deletions(feats.pop('sparse_deletion_matrix_int'),
                                                      path)
    elif 'deletion_matrix' in feats:  # ColabFold / multimer: float counts
      counts = np.asarray(feats.pop('deletion_matrix'))
      if not np.array_equal(counts, np.round(counts)) or (counts < 0).any():
        raise InputError(f'deletion_matrix in {path} holds values that are not counts: pass '
                         'raw features (deletion_matrix_int)')
      feats['deletion_matrix_int'] = counts.astype(np.int32)
  missing = [k for k in _REQUIRED if k not in feats]
  if missing:
    raise InputError(f'{path} lacks the raw features {", ".join(missing)}: pass a features.pkl '
                     'written by AlphaFold, ColabFold or af_jax')
  aatype = np.asarray(feats['aatype'])
  if aatype.ndim == 1:  # residue indices, not one-hot
    aatype = np.eye(rc.restype_num + 1, dtype=np.int32)[aatype]
  feats['aatype'] = aatype.astype(np.int32)
  num_res = aatype.shape[0]
  feats['msa'] = np.asarray(feats['msa']).astype(np.int32)  # Uni-Fold stores uint8
  feats['deletion_matrix_int'] = np.asarray(feats['deletion_matrix_int']).astype(np.int32)
  num_seq = feats['msa'].shape[0]
  feats['residue_index'] = np.asarray(feats['residue_index']).astype(np.int32)
  # Per-residue copies of per-chain counts (multimer dicts store them as scalars).
  for name, value in (('seq_length', num_res), ('num_alignments', num_seq)):
    given = np.asarray(feats.get(name, value)).reshape(-1)
    if given.size and int(given[0]) != value:
      raise InputError(f'{name}={int(given[0])} in {path} disagrees with the arrays '
                       f'({value}): pass an unmodified features.pkl')
    feats[name] = np.full((num_res,), value, np.int32)
  feats.setdefault('between_segment_residues', np.zeros((num_res,), np.int32))
  for name in ('sequence', 'domain_name'):
    if name in feats:
      feats[name] = np.asarray(feats[name], dtype=object).reshape(-1)
  if not any(k.startswith('template_') for k in feats):
    feats.update(empty_template_features(num_res))
  _check_shapes(feats, num_res, num_seq, path)
  _check_values(feats, path)
  return feats


def _check_values(feats: FeatureDict, path: str) -> None:
  """Values each feature can hold; a damaged file (a pickle has no checksum) fails here.

  aatype and template_aatype one-hot, msa in HHblits' 22 codes, deletion counts and
  template masks not negative, template coordinates finite.
  """
  def refuse(name: str, what: str):
    raise InputError(f'{name} in {shown(path)} {what}: the file is damaged or not raw '
                     'features; regenerate it from the FASTA and MSAs')

  for name in ('aatype', 'template_aatype'):
    if name in feats and feats[name].size:
      onehot = np.asarray(feats[name])
      if not (np.isin(onehot, (0, 1)).all() and (onehot.sum(-1) == 1).all()):
        refuse(name, 'is not one-hot (one 1 per residue, zeros elsewhere)')
  msa = np.asarray(feats['msa'])
  if msa.size and (msa.min() < 0 or msa.max() >= len(rc.restypes_with_x_and_gap)):
    refuse('msa', f'holds codes outside 0..{len(rc.restypes_with_x_and_gap) - 1}')
  for name in ('deletion_matrix_int', 'template_all_atom_masks'):
    if name in feats and np.size(feats[name]) and np.min(feats[name]) < 0:
      refuse(name, 'holds negative values')
  positions = feats.get('template_all_atom_positions')
  if positions is not None and not np.isfinite(positions).all():
    refuse('template_all_atom_positions', 'holds NaN or infinite coordinates')


def _check_shapes(feats: FeatureDict, num_res: int, num_seq: int, path: str) -> None:
  """Every known feature has AlphaFold's shape for N_res residues, N_seq rows, T templates."""
  num_templates = np.shape(feats.get('template_aatype', ()))[:1] or (0,)
  t = num_templates[0]
  expected = {
      'aatype': (num_res, rc.restype_num + 1),
      'between_segment_residues': (num_res,),
      'residue_index': (num_res,),
      'msa': (num_seq, num_res),
      'deletion_matrix_int': (num_seq, num_res),
      'msa_species_identifiers': (num_seq,),
      **schema.RAW_TEMPLATES.shapes(num_templates=t, num_res=num_res),
  }
  for name in schema.RAW_TEMPLATES.names:
    if name not in feats and name not in ('template_domain_names', 'template_sequence'):
      raise InputError(f'{path} has template features but lacks {name}: pass all of '
                       f'{", ".join(schema.RAW_TEMPLATES.names)} or none')
  for name, shape in expected.items():
    if name in feats and np.shape(feats[name]) != shape:
      raise InputError(f'{name} in {path} has shape {np.shape(feats[name])}, expected {shape} '
                       f'for {num_res} residues, {num_seq} MSA rows and {t} templates: pass an '
                       'unmodified features.pkl')


def load_features(path: str | os.PathLike) -> FeatureDict:
  """Raw features from a features.npz (by its name: never unpickled) or a features.pkl.

  See load_features_npz and load_features_pkl.
  """
  path = str(path)
  return load_features_npz(path) if path.endswith('.npz') else load_features_pkl(path)


def load_features_pkl(path: str | os.PathLike) -> FeatureDict:
  """A raw features.pkl (plain or .gz) from AlphaFold, ColabFold, Uni-Fold or af_jax.

  The pickle is trusted input: unpickling can run code, so only load files you or a
  pipeline you trust wrote (load_features_npz reads the pickle-free features.npz that
  af_jax writes beside each features.pkl). Known variants are normalized to AlphaFold's
  monomer names: float `deletion_matrix` and Uni-Fold's sparse deletion matrix become
  `deletion_matrix_int`, `template_all_atom_mask` becomes `template_all_atom_masks`,
  uint8 `msa` becomes int32, index `aatype` becomes one-hot; missing template features
  become zero templates. AlphaFold-Multimer dicts are refused.

  Args:
    path: the file; gzip-compressed files are recognized by their content.

  Returns:
    The feature dict, AlphaFold's raw names, dtypes and shapes.

  Raises:
    InputError: unreadable file, not a dict, processed or multi-chain features, or a
      missing or mis-shaped feature (named).
  """
  path = str(path)
  try:
    with open(path, 'rb') as f:
      gzipped = f.read(2) == b'\x1f\x8b'
    with (gzip.open(path, 'rb') if gzipped else open(path, 'rb')) as f:
      features = pickle.load(f)
  except FileNotFoundError:
    raise InputError(f'features file {shown(path)} does not exist: check the path') from None
  except MemoryError:
    raise  # a genuine out-of-memory, not a corrupt file
  except Exception as e:  # noqa: BLE001 - a corrupt pickle can raise almost anything
    raise InputError(f'cannot unpickle features file {shown(path)} ({type(e).__name__}: '
                     f'{shown(str(e)[:200])}): pass a features.pkl written by AlphaFold, '
                     'ColabFold or af_jax, or its features.npz') from None
  if not isinstance(features, dict):
    raise InputError(f'{shown(path)} holds a {type(features).__name__}, not a feature dict: '
                     'pass a features.pkl')
  return _normalize(features, path)


# The keys of a features.npz whose arrays were object arrays of bytes or str (AlphaFold's
# sequence, domain_name, template_domain_names, ...), stored as fixed-width byte or unicode
# arrays so that no pickle is needed, and turned back into object arrays when loaded.
_OBJECT_KEYS = '__object_arrays__'


def _without_objects(features: FeatureDict) -> tuple[dict[str, np.ndarray], list[str]]:
  """Arrays savable without pickle; object arrays of text re-encoded, others left out."""
  arrays, object_keys = {}, []
  for key, value in features.items():
    array = np.asarray(value)
    if array.dtype == object:
      items = array.reshape(-1).tolist()
      if all(isinstance(x, bytes) for x in items):
        array = array.astype(bytes)
      elif all(isinstance(x, str) for x in items):
        array = array.astype(str)
      else:
        logging.warning('features.npz leaves out %r: its objects are not text', key)
        continue
      object_keys.append(key)
    arrays[key] = array
  return arrays, object_keys


def write_features_npz(path: str | os.PathLike, features: FeatureDict) -> None:
  """The raw features as a compressed .npz that loads without pickle (load_features_npz).

  Object arrays of bytes or text (sequence, domain_name, template names, species
  identifiers) are stored as fixed-width arrays and restored on load; written under a
  temporary name and renamed, like features.pkl.
  """
  arrays, object_keys = _without_objects(features)
  arrays[_OBJECT_KEYS] = np.array(object_keys, dtype=str)
  with files.writing(path) as tmp, open(tmp, 'wb') as f:
    np.savez_compressed(f, **arrays)


def load_features_npz(path: str | os.PathLike) -> FeatureDict:
  """Raw features from a features.npz (write_features_npz), read without unpickling.

  Normalized and checked as load_features_pkl's.

  Raises:
    InputError: missing, truncated or corrupt file, object arrays (which would need
      pickle), or a missing or mis-shaped feature (named).
  """
  path = str(path)
  try:
    with np.load(path, allow_pickle=False) as data:
      arrays = {k: data[k] for k in data.files}
  except FileNotFoundError:
    raise InputError(f'features file {shown(path)} does not exist: check the path') from None
  except MemoryError:
    raise
  except Exception as e:  # noqa: BLE001 - zipfile, zlib and numpy each raise their own
    raise InputError(f'cannot read features file {shown(path)} ({type(e).__name__}: '
                     f'{shown(str(e)[:200])}): pass a complete features.npz written by af_jax '
                     '(object arrays are refused: they would need pickle)') from None
  for key in arrays.pop(_OBJECT_KEYS, np.array([], str)).tolist():
    if key in arrays:
      arrays[key] = arrays[key].astype(object)
  return _normalize(arrays, path)


def write_features_pkl(path: str | os.PathLike, features: FeatureDict) -> None:
  """Pickles `features` to `path` atomically, as AlphaFold's features.pkl (protocol 4).

  Written to a temporary file in the same directory and renamed when complete, so a
  crash never leaves a truncated features.pkl that a later run would trust.

  Args:
    path: destination; gzip-compressed when it ends in .gz.
    features: the raw feature dict.
  """
  with files.writing(path) as tmp, open(tmp, 'wb') as raw:
    if str(path).endswith('.gz'):
      with gzip.GzipFile(fileobj=raw, mode='wb') as f:
        pickle.dump(dict(features), f, protocol=4)
    else:
      pickle.dump(dict(features), raw, protocol=4)
