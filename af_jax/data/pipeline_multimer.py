"""AlphaFold-Multimer's raw features of a complex: its chains, their MSAs and templates, merged.

The steps of DeepMind's `pipeline_multimer.DataPipeline`, in numpy: chains get ids A, B, ...
in input order; identical sequences are one entity, featurized once, its copies counted by
sym_id; each distinct chain gets the monomer pipeline's features plus, in a heteromer, those
of its pairing MSA (`*_all_seq`); msa_pairing pairs and merges them; the MSA is padded to
MIN_NUM_SEQ rows. Lengths are not padded here (buckets come later). The model samples the
MSA itself, so nothing is clustered.

A chain's alignments come as files in either layout:
- AlphaFold's (`msas/<chain_id>/`): uniref90_hits.sto, bfd_uniref_hits.a3m (or
  bfd_uniclust_hits.a3m, small_bfd_hits.sto), mgnify_hits.sto, and uniprot_hits.sto to pair;
- ColabFold's / Protenix's: non_pairing.a3m, and pairing.a3m to pair (either may be .gz).
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import string
import tempfile
from collections.abc import Mapping, Sequence

import numpy as np
from absl import logging

from af_jax.common import files
from af_jax.common import residue_constants as rc
from af_jax.data import features, msa_pairing, msa_search, names, parsers, pipeline
from af_jax.data.tools import jackhmmer, runner
from af_jax.errors import ConfigError, InputError

FeatureDict = dict[str, np.ndarray]

# The PDB format's one-character chain ids, in AlphaFold's order.
CHAIN_IDS = string.ascii_uppercase + string.ascii_lowercase + string.digits
assert len(CHAIN_IDS) == parsers.MAX_COMPLEX_CHAINS

UNIPROT_STO = 'uniprot_hits.sto'
COLABFOLD_UNPAIRED = 'non_pairing.a3m'
COLABFOLD_PAIRING = 'pairing.a3m'
PAIRING_MSA_NAMES = (UNIPROT_STO, COLABFOLD_PAIRING)
TEMPLATE_HITS_STO = 'pdb_hits.sto'  # AlphaFold-Multimer's hmmsearch template hits, not an MSA
# AlphaFold's limits on Stockholm hits (query included); max_uniprot_hits for pairing.
MAX_HITS = {**msa_search.MAX_HITS, UNIPROT_STO: 50000}
# The merged MSA gets at least this many rows, so the model's extra MSA is never empty.
MIN_NUM_SEQ = 512
CHAIN_ID_MAP = 'chain_id_map.json'
_HHBLITS_TO_AF = np.asarray(rc.MAP_HHBLITS_AATYPE_TO_OUR_AATYPE)


# ---------------------------------------------------------------------------
# Chains, entities and copies.


@dataclasses.dataclass(frozen=True)
class AssemblyChain:
  """Where one input chain sits in the merged features.

  Attributes:
    chain_id: 'A', 'B', ... by input position (the chain_id_map.json key).
    entity_id: 1, 2, ... one per distinct sequence, by first appearance.
    sym_id: 1, 2, ... the copy number within its entity.
    asym_id: 1, 2, ... the chain's place in the merged features, which are ordered by
      entity then copy (so 'A:B:A' gives A, C, B); predicted structures name chains by it.
  """

  chain_id: str
  entity_id: int
  sym_id: int
  asym_id: int


def assembly_chains(sequences: Sequence[str]) -> list[AssemblyChain]:
  """Entity, copy and merged position of each chain, in input order."""
  if len(sequences) > len(CHAIN_IDS):
    raise InputError(f'{len(sequences)} chains given, more than the {len(CHAIN_IDS)} that '
                     'AlphaFold-Multimer can name: fold a sub-complex')
  entity_of: dict[str, int] = {}
  copies: dict[int, int] = {}
  ids = []
  for seq in sequences:
    entity = entity_of.setdefault(seq, len(entity_of) + 1)
    copies[entity] = copies.get(entity, 0) + 1
    ids.append((entity, copies[entity]))
  asym_of = {key: i + 1 for i, key in enumerate(sorted(ids))}
  return [AssemblyChain(CHAIN_IDS[i], entity, sym, asym_of[(entity, sym)])
          for i, (entity, sym) in enumerate(ids)]


def _chain_sequence(feats: Mapping[str, np.ndarray], index: int) -> str:
  """A chain's sequence from its raw features (`sequence`, else one-hot `aatype`)."""
  if 'sequence' in feats:
    seq = np.asarray(feats['sequence']).reshape(-1)[0]
    return seq.decode() if isinstance(seq, bytes) else str(seq)
  if 'aatype' not in feats:
    raise InputError(f'features of chain {CHAIN_IDS[index]} have neither sequence nor aatype: '
                     'pass raw monomer features (features.make_sequence_features)')
  aatype = np.asarray(feats['aatype'])
  aatype = aatype.argmax(-1) if aatype.ndim == 2 else aatype
  return ''.join(rc.restypes_with_x[int(a)] for a in aatype)


def _query_pairing_features(feats: Mapping[str, np.ndarray]) -> FeatureDict:
  """A pairing MSA of the query alone: such a chain pairs only its query row."""
  return {'msa_all_seq': np.asarray(feats['msa'])[:1],
          'deletion_matrix_int_all_seq': np.zeros_like(np.asarray(feats['msa'])[:1]),
          'msa_species_identifiers_all_seq': np.array([b''], dtype=object)}


def multimer_chain_features(feats: Mapping[str, np.ndarray], chain: AssemblyChain,
                            pairing: bool) -> FeatureDict:
  """One chain's raw monomer features in the multimer model's form, with its ids.

  aatype becomes indices; template_aatype indices in AlphaFold's alphabet (int64, as
  DeepMind's conversion leaves it); template_all_atom_masks is renamed
  template_all_atom_mask; asym_id, sym_id and entity_id are per-residue float64 (as there).

  Args:
    feats: raw monomer features (msa in HHblits' alphabet, one-hot aatype and
      template_aatype) and, when `pairing`, the `*_all_seq` ones (a chain without them
      pairs only its query).
    chain: its ids.
    pairing: whether the complex is a heteromer.
  """
  where = f'features of chain {chain.chain_id}'
  mask_name = ('template_all_atom_masks' if 'template_all_atom_masks' in feats
               else 'template_all_atom_mask')
  required = ('aatype', 'residue_index', 'msa', 'deletion_matrix_int', 'template_aatype',
              'template_all_atom_positions', mask_name)
  missing = [k for k in required if k not in feats]
  if missing:
    raise InputError(f'{where} lack {", ".join(missing)}: pass raw monomer features with '
                     'template features (features.empty_template_features for none)')
  aatype = np.asarray(feats['aatype'])
  template_aatype = np.asarray(feats['template_aatype'])
  if aatype.ndim != 2 or template_aatype.ndim != 3:
    raise InputError(f'{where} have aatype {aatype.shape} and template_aatype '
                     f'{template_aatype.shape}: pass the one-hot monomer features [N_res, 21] '
                     'and [T, N_res, 22]')
  num_res = aatype.shape[0]
  out = {
      'aatype': aatype.argmax(-1).astype(np.int32),
      'residue_index': np.asarray(feats['residue_index']),
      'msa': np.asarray(feats['msa']),
      'deletion_matrix_int': np.asarray(feats['deletion_matrix_int']),
      'template_aatype': _HHBLITS_TO_AF[template_aatype.argmax(-1).astype(np.int32)],
      'template_all_atom_positions': np.asarray(feats['template_all_atom_positions']),
      'template_all_atom_mask': np.asarray(feats[mask_name]),
      'asym_id': np.full(num_res, chain.asym_id, np.float64),
      'sym_id': np.full(num_res, chain.sym_id, np.float64),
      'entity_id': np.full(num_res, chain.entity_id, np.float64),
  }
  if pairing:
    if 'msa_all_seq' in feats:
      pair = feats
    else:
      logging.warning('chain %s has no pairing MSA (msa_all_seq): only its query is paired',
                      chain.chain_id)
      pair = _query_pairing_features(feats)
    for name in ('msa_all_seq', 'deletion_matrix_int_all_seq',
                 'msa_species_identifiers_all_seq'):
      out[name] = np.asarray(pair[name])
  if out['msa'].shape[1:] != (num_res,) or out['msa'].shape != out['deletion_matrix_int'].shape:
    raise InputError(f'{where} have msa {out["msa"].shape} and deletion_matrix_int '
                     f'{out["deletion_matrix_int"].shape} for {num_res} residues: pass '
                     'unmodified raw features')
  return out


def pad_msa(feats: FeatureDict, min_num_seq: int = MIN_NUM_SEQ) -> FeatureDict:
  """The MSA features grown to `min_num_seq` rows of zeros (masked out); num_alignments kept."""
  feats = dict(feats)
  missing = min_num_seq - feats['msa'].shape[0]
  if missing > 0:
    for name in ('msa', 'deletion_matrix', 'bert_mask', 'msa_mask'):
      feats[name] = np.pad(feats[name], ((0, missing), (0, 0)))
    feats['cluster_bias_mask'] = np.pad(feats['cluster_bias_mask'], (0, missing))
  return feats


def assemble(chain_features: Sequence[Mapping[str, np.ndarray]], *,
             min_num_seq: int = MIN_NUM_SEQ) -> FeatureDict:
  """The multimer features of a complex from each chain's raw monomer features.

  Args:
    chain_features: per chain in input order (chain A first), raw monomer features as
      pipeline.make_raw_features or a features.pkl gives them; in a heteromer also the
      pairing MSA's `msa_all_seq`, `deletion_matrix_int_all_seq`,
      `msa_species_identifiers_all_seq`.
    min_num_seq: pad the MSA to at least this many rows (0: no padding).

  Returns:
    msa_pairing.OUTPUT_FEATURES, chains ordered by asym_id (see AssemblyChain).
  """
  if not chain_features:
    raise InputError('no chains given: pass at least one chain')
  chains = assembly_chains([_chain_sequence(f, i) for i, f in enumerate(chain_features)])
  heteromer = len({c.entity_id for c in chains}) > 1
  merged_order = sorted(zip(chains, chain_features), key=lambda pair: pair[0].asym_id)
  per_chain = [multimer_chain_features(f, c, heteromer) for c, f in merged_order]
  return pad_msa(msa_pairing.pair_and_merge(per_chain), min_num_seq)


# ---------------------------------------------------------------------------
# Chains from alignment files.


@dataclasses.dataclass(frozen=True)
class ChainInput:
  """One chain of a complex and its inputs.

  Attributes:
    record: the chain's FASTA record.
    msa_paths: unpaired MSAs (.a3m/.sto, optionally .gz), stacked in this order; none
      means the query alone.
    pairing_msa_path: the MSA whose species pair rows across chains (uniprot_hits.sto or
      ColabFold's pairing.a3m); None pairs only the query. Read only in heteromers.
    template_features: raw template features (templates.TemplateFeaturizer); None for none.
  """

  record: parsers.FastaRecord
  msa_paths: tuple[pathlib.Path, ...] = ()
  pairing_msa_path: pathlib.Path | None = None
  template_features: Mapping[str, np.ndarray] | None = dataclasses.field(
      default=None, compare=False, repr=False)

  @classmethod
  def from_dir(cls, record: parsers.FastaRecord, msa_dir: str | pathlib.Path,
               template_features: Mapping[str, np.ndarray] | None = None) -> ChainInput:
    """A chain whose alignments are the files in `msa_dir` (see `find_chain_msas`)."""
    unpaired, pairing = find_chain_msas(msa_dir)
    return cls(record, unpaired, pairing, template_features)


def _base_name(path: pathlib.Path) -> str:
  return path.name[:-3] if path.name.endswith('.gz') else path.name


def find_chain_msas(msa_dir: str | pathlib.Path
                    ) -> tuple[tuple[pathlib.Path, ...], pathlib.Path | None]:
  """The unpaired MSAs (AlphaFold's stacking order, then by name) and pairing MSA in a dir.

  Raises:
    InputError: the directory is missing, holds no unpaired MSA, or two pairing MSAs.
  """
  msa_dir = pathlib.Path(msa_dir)
  if not msa_dir.is_dir():
    raise InputError(f'MSA directory {msa_dir} does not exist: put the chain\'s alignments '
                     'there or fix the path')
  found = [p for p in msa_dir.iterdir() if p.is_file() and p.name.endswith(
      pipeline.MSA_SUFFIXES) and _base_name(p) != TEMPLATE_HITS_STO]
  pairing = sorted(p for p in found if _base_name(p) in PAIRING_MSA_NAMES)
  if len(pairing) > 1:
    raise InputError(f'{msa_dir} holds {len(pairing)} pairing MSAs '
                     f'({", ".join(p.name for p in pairing)}): keep one')
  rank = {name: i for i, name in enumerate(msa_search.MSA_ORDER + (COLABFOLD_UNPAIRED,))}
  unpaired = sorted((p for p in found if p not in pairing),
                    key=lambda p: (rank.get(_base_name(p), len(rank)), p.name))
  if not unpaired:
    raise InputError(f'no unpaired MSA (*.a3m, *.sto) in {msa_dir}: add e.g. '
                     f'uniref90_hits.sto or {COLABFOLD_UNPAIRED}')
  return tuple(unpaired), (pairing[0] if pairing else None)


def read_chain_msa(path: pathlib.Path, record: parsers.FastaRecord) -> parsers.Msa:
  """An MSA file of a chain, checked against its sequence and cut to AlphaFold's hit limit."""
  msa = parsers.read_msa(path)
  parsers.check_msa_query(msa, record.sequence, str(path), target=record.name)
  limit = MAX_HITS.get(_base_name(pathlib.Path(path)))
  if limit is not None and len(msa) > limit:
    msa = msa.truncate(limit)
  logging.debug('%s: %d sequences from %s', record.name, len(msa), pathlib.Path(path).name)
  return msa


def make_chain_features(chain: ChainInput, *, pairing: bool) -> FeatureDict:
  """One distinct chain's raw monomer features, and its pairing MSA's when `pairing`.

  Args:
    chain: the chain and its files.
    pairing: whether the complex is a heteromer (homomers are not paired).

  Returns:
    features.make_sequence_features + make_msa_features (query first) + template
    features; with `pairing` also msa_all_seq, deletion_matrix_int_all_seq and
    msa_species_identifiers_all_seq from the pairing MSA alone (the query if none).
  """
  record = chain.record
  msas = [pipeline.query_msa(record)] + [read_chain_msa(pathlib.Path(p), record)
                                         for p in chain.msa_paths]
  num_res = len(record.sequence)
  feats = {**features.make_sequence_features(record.sequence, record.description, num_res),
           **features.make_msa_features(msas)}
  feats.update(chain.template_features or features.empty_template_features(num_res))
  if pairing:
    pairing_msa = (read_chain_msa(pathlib.Path(chain.pairing_msa_path), record)
                   if chain.pairing_msa_path else pipeline.query_msa(record))
    paired = features.make_msa_features([pairing_msa])
    for name in ('msa', 'deletion_matrix_int', 'msa_species_identifiers'):
      feats[f'{name}_all_seq'] = paired[name]
  return feats


def make_multimer_features(chains: Sequence[ChainInput], *,
                           min_num_seq: int = MIN_NUM_SEQ) -> FeatureDict:
  """AlphaFold-Multimer's raw features of a complex from its chains' files.

  A sequence given twice is featurized once, from its first chain's files (as AlphaFold).

  Args:
    chains: in order (chain A first).
    min_num_seq: pad the merged MSA to at least this many rows (0: no padding).

  Returns:
    msa_pairing.OUTPUT_FEATURES; `assembly_chains` says where each chain sits.
  """
  if not chains:
    raise InputError('no chains given: pass at least one chain')
  assembly_chains([c.record.sequence for c in chains])  # checks the count first
  heteromer = len({c.record.sequence for c in chains}) > 1
  by_sequence: dict[str, tuple[ChainInput, FeatureDict]] = {}
  per_chain = []
  for chain in chains:
    seq = chain.record.sequence
    if seq not in by_sequence:
      by_sequence[seq] = (chain, make_chain_features(chain, pairing=heteromer))
    first, feats = by_sequence[seq]
    if (chain.msa_paths, chain.pairing_msa_path) != (first.msa_paths, first.pairing_msa_path):
      logging.warning('%s repeats the sequence of %s: its copy uses %s\'s alignments',
                      chain.record.name, first.record.name, first.record.name)
    per_chain.append(feats)
  return assemble(per_chain, min_num_seq=min_num_seq)


# ---------------------------------------------------------------------------
# A complex from a FASTA file, with searched or precomputed alignments.


@dataclasses.dataclass(frozen=True)
class Complex:
  """One complex: `name` (the FASTA file's stem) names its output directory."""

  name: str
  chains: tuple[parsers.FastaRecord, ...]


def read_complex(path: str | pathlib.Path) -> Complex:
  """The complex in a FASTA file: all records, ColabFold's 'A:B' split (see parsers)."""
  path = pathlib.Path(path)
  name = names.check_path_name(
      pathlib.Path(_base_name(path)).stem, f'FASTA file {names.shown(str(path))} (a complex, '
      'named after its file)', 'rename the file (its name without .fasta names the complex)')
  return Complex(name, tuple(parsers.read_complex_fasta(str(path))))


def _search_uniprot(record: parsers.FastaRecord, msa_dir: pathlib.Path,
                    options: pipeline.PipelineOptions,
                    uniprot_database: str | None) -> pathlib.Path | None:
  """uniprot_hits.sto in msa_dir (searched with jackhmmer unless there), else None."""
  out = msa_dir / UNIPROT_STO
  if out.exists():
    logging.info('Reusing %s (delete it to search again)', files.short_path(out))
    return out
  if not uniprot_database:
    logging.warning('%s: no UniProt database given, so no pairing MSA: only the chains\' '
                    'queries are paired', record.name)
    return None
  tool = jackhmmer.Jackhmmer(
      binary_path=runner.find_binary('jackhmmer', options.databases.jackhmmer_binary),
      database_path=uniprot_database, flag='--uniprot_database_path', n_cpu=options.n_cpu,
      timeout=options.timeout)
  with tempfile.TemporaryDirectory(prefix='.af_jax_uniprot_', dir=msa_dir) as tmp:
    query = pathlib.Path(tmp) / 'query.fasta'
    query.write_text(f'>{record.name}\n{record.sequence}\n')
    # AlphaFold keeps the whole result and reads its first MAX_HITS[UNIPROT_STO] rows.
    return tool.search(query, out)


def _chain_input(record: parsers.FastaRecord, msa_dir: pathlib.Path,
                 options: pipeline.PipelineOptions, pairing: bool,
                 uniprot_database: str | None) -> ChainInput:
  """A distinct chain's alignments (searched, or found in msa_dir) and templates."""
  msa_dir.mkdir(parents=True, exist_ok=True)
  if options.msa_mode == 'precomputed':
    unpaired, pairing_path = find_chain_msas(msa_dir)
  else:
    name = f'chain_{msa_dir.name}'
    paths = msa_search.search_msas(
        record.sequence, name, msa_dir, options.msa_mode, options.databases,
        n_cpu=options.n_cpu, timeout=options.timeout, search_templates=options.use_templates)
    unpaired = tuple(p for p in paths if p.name.endswith(pipeline.MSA_SUFFIXES))
    pairing_path = None
    if pairing and options.msa_mode != 'single_sequence':
      pairing_path = _search_uniprot(record, msa_dir, options, uniprot_database)
  return ChainInput(record, unpaired, pairing_path,
                    pipeline.template_features(record, msa_dir, options))


def make_complex_features(complex_: Complex, target_dir: str | pathlib.Path,
                          options: pipeline.PipelineOptions, *,
                          uniprot_database: str | None = None,
                          min_num_seq: int = MIN_NUM_SEQ) -> FeatureDict:
  """AlphaFold-Multimer's raw features of a complex; alignments in target_dir/msas/<chain_id>.

  Each distinct sequence has one directory, named after its first chain, as AlphaFold
  writes them; msas/chain_id_map.json records every chain's sequence and description.

  Args:
    complex_: the chains (read_complex).
    target_dir: the complex's output directory.
    options: as for the monomer pipeline; precomputed mode reads each chain's files
      from its directory (AlphaFold or ColabFold names, find_chain_msas).
    uniprot_database: UniProt FASTA that jackhmmer searches for a heteromer's pairing MSA;
      without it (and no uniprot_hits.sto there) only the queries are paired.
    min_num_seq: pad the merged MSA to at least this many rows.
  """
  if options.msa_paths:
    raise ConfigError('--msa_paths names one chain\'s files; for a complex put each chain\'s '
                      'alignments in <output_dir>/<name>/msas/<chain_id>/ and use '
                      '--msa_mode=precomputed')
  assembly_chains([r.sequence for r in complex_.chains])  # checks the count first
  msa_root = pathlib.Path(target_dir) / 'msas'
  msa_root.mkdir(parents=True, exist_ok=True)
  chain_map = {CHAIN_IDS[i]: {'description': r.description, 'sequence': r.sequence}
               for i, r in enumerate(complex_.chains)}
  (msa_root / CHAIN_ID_MAP).write_text(json.dumps(chain_map, indent=4, sort_keys=True,
                                                  allow_nan=False))
  pairing = len({r.sequence for r in complex_.chains}) > 1
  first_of: dict[str, ChainInput] = {}
  inputs = []
  for i, record in enumerate(complex_.chains):
    if record.sequence not in first_of:
      first_of[record.sequence] = _chain_input(record, msa_root / CHAIN_IDS[i], options,
                                               pairing, uniprot_database)
    inputs.append(dataclasses.replace(first_of[record.sequence], record=record))
  return make_multimer_features(inputs, min_num_seq=min_num_seq)
