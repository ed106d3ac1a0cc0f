"""AlphaFold-Multimer's MSA: rows paired across chains by species, then each chain's own rows.

Evans et al. (2021) "Protein complex prediction with AlphaFold-Multimer", section 2.1,
as DeepMind's `feature_processing.pair_and_merge` builds it:
- a heteromer's chains each bring a pairing MSA (UniProt hits, `*_all_seq` features). Rows
  of the same species (`msa_species_identifiers_all_seq`) in two or more chains are put
  side by side, the most query-like first; a chain without that species gets a gap row.
  Paired rows shared by all chains come first. A homomer (one entity) is not paired;
- each chain's unpaired MSA loses the rows already in its paired block, and the two are
  cropped so a chain has at most MSA_CROP_SIZE rows (paired rows at most half of it);
- copies of one entity share their unpaired rows side by side (dense); different entities
  sit block-diagonally, with gaps elsewhere, below the paired block.
MSAs stay in HHblits' alphabet (gap 21) until the end, where they are mapped to AlphaFold's.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from af_jax.common import residue_constants as rc
from af_jax.data import schema

FeatureDict = dict[str, np.ndarray]

GAP = rc.HHBLITS_AA_TO_ID['-']  # 21, also the gap in AlphaFold's order
MSA_CROP_SIZE = 2048  # rows per chain, paired + unpaired
MAX_TEMPLATES = 4  # per chain
MAX_SPECIES_ROWS = 600  # a species with more rows than this in any chain is not paired
# Features of the merged example, as AlphaFold-Multimer's pipeline returns them.
OUTPUT_FEATURES = frozenset({
    'aatype', 'all_atom_mask', 'all_atom_positions', 'assembly_num_chains', 'asym_id',
    'bert_mask', 'cluster_bias_mask', 'deletion_matrix', 'deletion_mean', 'entity_id',
    'entity_mask', 'msa', 'msa_mask', 'num_alignments', 'num_templates', 'residue_index',
    'seq_length', 'seq_mask', 'sym_id', *schema.MULTIMER_TEMPLATES.names})
_RESIDUE_FEATURES = ('aatype', 'residue_index', 'asym_id', 'sym_id', 'entity_id',
                     'entity_mask', 'deletion_mean', 'all_atom_mask', 'all_atom_positions')
_HHBLITS_TO_AF = np.asarray(rc.MAP_HHBLITS_AATYPE_TO_OUR_AATYPE)


# ---------------------------------------------------------------------------
# Pairing by species.


def query_similarity(msa: np.ndarray) -> np.ndarray:
  """[N_seq] float64: fraction of columns where a row equals the query (row 0)."""
  return np.sum(msa == msa[0][None], axis=-1) / float(msa.shape[1])


def _most_similar_first(rows: np.ndarray, similarity: np.ndarray) -> np.ndarray:
  """`rows` by decreasing similarity to the query.

  Ties keep the order that DeepMind's pandas sort (descending, numpy quicksort) leaves
  them in: argsort of the reversed values, reversed back. Equal scores are common, and
  which tied row is paired changes the MSA, so the rule is reproduced exactly.
  """
  backwards = np.arange(len(rows))[::-1]
  order = backwards[similarity[rows][::-1].argsort(kind='quicksort')][::-1]
  return rows[order]


def _species_rows(species: np.ndarray) -> dict[bytes, np.ndarray]:
  """species id -> its rows in MSA order."""
  groups: dict[bytes, list[int]] = {}
  for row, name in enumerate(species):
    groups.setdefault(name, []).append(row)
  return {name: np.asarray(rows) for name, rows in groups.items()}


def pair_rows(species: Sequence[np.ndarray], msas: Sequence[np.ndarray]) -> np.ndarray:
  """Which row of each chain's pairing MSA goes into each paired row.

  Args:
    species: per chain, [N_seq_c] species ids (bytes; b'' = unknown, e.g. the query).
    msas: per chain, [N_seq_c, N_res_c] its pairing MSA (row 0 the query).

  Returns:
    [N_paired, N_chains] int64 row indices, -1 where a chain has no row of that species
    (a gap row). Row 0 pairs the queries. Then, for k from N_chains down to 2, the rows of
    species found in k chains, by increasing product of their indices (a proxy for
    E-value: earlier hits rank higher).
  """
  num_chains = len(msas)
  groups = [_species_rows(s) for s in species]
  similarity = [query_similarity(m) for m in msas]
  by_chain_count: dict[int, list[np.ndarray]] = {k: [] for k in range(2, num_chains + 1)}
  # DIFFERS FROM AF2: it fails when no row has an empty species id; that cannot happen
  # with our MSAs (the query has none), and an input where it does is paired the same way.
  for name in sorted(set().union(*groups) - {b''}):
    present = [g[name] for g in groups if name in g]
    if len(present) < 2 or any(len(rows) > MAX_SPECIES_ROWS for rows in present):
      continue
    take = min(len(rows) for rows in present)
    columns = [_most_similar_first(g[name], sim)[:take] if name in g else np.full(take, -1)
               for g, sim in zip(groups, similarity)]
    by_chain_count[len(present)].extend(np.stack(columns, axis=1).astype(np.int64))
  paired = [np.zeros((1, num_chains), np.int64)]  # the queries, always first
  for count in sorted(by_chain_count, reverse=True):
    if not by_chain_count[count]:
      continue
    rows = np.stack(by_chain_count[count])
    # Sorted with numpy's default (unstable) argsort as AF2 does: ties stay where it puts them.
    rank = np.abs(np.prod(rows, axis=1))
    if count == num_chains:  # the query row (product 0) joins the species found everywhere
      rows = np.concatenate([paired.pop(), rows])
      rank = np.concatenate([[0], rank])
    paired.append(rows[np.argsort(rank)])
  return np.concatenate(paired)


def paired_features(chain: FeatureDict, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """A chain's paired block: its `msa_all_seq` / `deletion_matrix_all_seq` rows, gaps at -1.

  Args:
    chain: per-chain features with msa_all_seq [N_seq, N_res] and float
      deletion_matrix_all_seq.
    rows: [N_paired] indices from `pair_rows`.

  Returns:
    msa [N_paired, N_res] (HHblits alphabet) and deletion_matrix [N_paired, N_res].
  """
  msa, deletions = chain['msa_all_seq'], chain['deletion_matrix_all_seq']
  gap_row = np.full((1, msa.shape[1]), GAP, msa.dtype)
  msa = np.concatenate([msa, gap_row])
  deletions = np.concatenate([deletions, np.zeros((1, msa.shape[1]), deletions.dtype)])
  return msa[rows], deletions[rows]


def unpaired_rows(msa: np.ndarray, paired_msa: np.ndarray) -> np.ndarray:
  """Rows of the unpaired `msa` whose sequence is not in `paired_msa` (the query never is)."""
  seen = {row.tobytes() for row in paired_msa.astype(np.int64)}
  return np.asarray([i for i, row in enumerate(msa.astype(np.int64))
                     if row.tobytes() not in seen], dtype=np.int64)


# ---------------------------------------------------------------------------
# One chain's rows after pairing.


def _crop_sizes(num_unpaired: int, paired_msa: np.ndarray | None) -> tuple[int, int]:
  """(paired, unpaired) rows kept: at most MSA_CROP_SIZE per chain, paired at most half.

  The unpaired budget shrinks by the paired rows that are not all gaps for this chain, so
  each chain keeps about MSA_CROP_SIZE rows of its own.
  """
  if paired_msa is None:
    return 0, min(num_unpaired, MSA_CROP_SIZE)
  num_paired = min(len(paired_msa), MSA_CROP_SIZE // 2)
  informative = int(np.sum(np.any(paired_msa[:num_paired] != GAP, axis=1)))
  return num_paired, min(num_unpaired, max(MSA_CROP_SIZE - informative, 0))


def _chain_arrays(chain: FeatureDict, paired_rows: np.ndarray | None) -> dict[str, np.ndarray]:
  """One chain's cropped MSA blocks, per-residue features and padded templates."""
  msa = chain['msa']
  deletions = np.asarray(chain['deletion_matrix_int'], np.float32)
  out = {
      # Over the whole unpaired MSA, before deduplication and cropping.
      'deletion_mean': np.mean(deletions, axis=0),
      # No structure at inference: the atoms each residue type has, all at the origin.
      'all_atom_mask': rc.STANDARD_ATOM_MASK[chain['aatype']],
      'all_atom_positions': np.zeros(chain['aatype'].shape + (rc.atom_type_num, 3)),
      'entity_mask': (chain['entity_id'] != 0).astype(np.int32),
  }
  for name in ('aatype', 'residue_index', 'asym_id', 'sym_id', 'entity_id'):
    out[name] = chain[name]
  paired_msa = paired_deletions = None
  if paired_rows is not None:
    chain = {**chain, 'deletion_matrix_all_seq': np.asarray(chain['deletion_matrix_int_all_seq'],
                                                            np.float32)}
    paired_msa, paired_deletions = paired_features(chain, paired_rows)
    keep = unpaired_rows(msa, paired_msa)
    msa, deletions = msa[keep], deletions[keep]
  num_paired, num_unpaired = _crop_sizes(len(msa), paired_msa)
  out['msa'], out['deletion_matrix'] = msa[:num_unpaired], deletions[:num_unpaired]
  if paired_msa is not None:
    out['msa_all_seq'] = paired_msa[:num_paired]
    out['deletion_matrix_all_seq'] = paired_deletions[:num_paired]
  num_templates = min(chain['template_aatype'].shape[0], MAX_TEMPLATES)
  out['num_templates'] = np.asarray(num_templates, np.int32)
  for name in schema.MULTIMER_TEMPLATES.names:
    value = chain[name][:num_templates]
    padding = [(0, MAX_TEMPLATES - num_templates)] + [(0, 0)] * (value.ndim - 1)
    out[name] = np.pad(value, padding)
  return out


# ---------------------------------------------------------------------------
# Merging the chains.


def block_diagonal(blocks: Sequence[np.ndarray], fill: float) -> np.ndarray:
  """Blocks [R_i, C_i] on the diagonal of a [sum R, sum C] array, `fill` elsewhere."""
  dtype = np.result_type(*blocks)
  out = np.full((sum(b.shape[0] for b in blocks), sum(b.shape[1] for b in blocks)), fill, dtype)
  r = c = 0
  for block in blocks:
    out[r:r + block.shape[0], c:c + block.shape[1]] = block
    r, c = r + block.shape[0], c + block.shape[1]
  return out


def _entity_blocks(chains: Sequence[dict[str, np.ndarray]], name: str) -> list[np.ndarray]:
  """Per entity, its copies' unpaired `name` rows side by side (copies share their rows)."""
  blocks: dict[int, list[np.ndarray]] = {}
  for chain in chains:
    blocks.setdefault(int(chain['entity_id'][0]), []).append(chain[name])
  for entity_id, copies in blocks.items():
    assert len({c.shape[0] for c in copies}) == 1, f'copies of entity {entity_id} differ'
  return [np.concatenate(copies, axis=1) for copies in blocks.values()]


def pair_and_merge(chains: Sequence[FeatureDict]) -> FeatureDict:
  """The merged features of a complex from its chains' features.

  Args:
    chains: per chain, in asym_id order (grouped by entity, entities in increasing id):
      aatype [N_res] int, residue_index, asym_id/sym_id/entity_id [N_res], msa
      [N_seq, N_res] (HHblits alphabet), deletion_matrix_int, template_aatype [T, N_res]
      (AlphaFold's alphabet), template_all_atom_positions, template_all_atom_mask; a
      heteromer's chains also msa_all_seq, deletion_matrix_int_all_seq and
      msa_species_identifiers_all_seq (the pairing MSA).

  Returns:
    OUTPUT_FEATURES with N the total residues and M the rows: msa [M, N] int32 (AlphaFold's
    alphabet), deletion_matrix [M, N] float32, msa_mask/bert_mask [M, N] float32 (bert_mask 0
    off the diagonal blocks), cluster_bias_mask [M] (1 for the first row), num_alignments
    = M, seq_length = N, templates [MAX_TEMPLATES, N, ...] per chain side by side,
    num_templates (the first chain's), per-residue features concatenated.
  """
  entity_ids = [int(c['entity_id'][0]) for c in chains]
  assert entity_ids == sorted(entity_ids), 'chains must be grouped by entity, in id order'
  heteromer = len(set(entity_ids)) > 1
  paired = None
  if heteromer:
    paired = pair_rows([c['msa_species_identifiers_all_seq'] for c in chains],
                       [c['msa_all_seq'] for c in chains])
  merged = [_chain_arrays(c, None if paired is None else paired[:, i])
            for i, c in enumerate(chains)]

  out = {name: np.concatenate([c[name] for c in merged]) for name in _RESIDUE_FEATURES}
  for name in schema.MULTIMER_TEMPLATES.names:
    out[name] = np.concatenate([c[name] for c in merged], axis=1)
  msa_blocks = _entity_blocks(merged, 'msa')
  msa = block_diagonal(msa_blocks, GAP)
  deletions = block_diagonal(_entity_blocks(merged, 'deletion_matrix'), 0)
  bert_mask = block_diagonal([np.ones(b.shape, np.float32) for b in msa_blocks], 0)
  if heteromer:
    paired_msa = np.concatenate([c['msa_all_seq'] for c in merged], axis=1)
    msa = np.concatenate([paired_msa, msa])
    deletions = np.concatenate(
        [np.concatenate([c['deletion_matrix_all_seq'] for c in merged], axis=1), deletions])
    bert_mask = np.concatenate([np.ones(paired_msa.shape, np.float32), bert_mask])
  num_seq, num_res = msa.shape
  cluster_bias_mask = np.zeros(num_seq)  # the first row (the queries) is always a centre
  cluster_bias_mask[0] = 1
  seq_mask = (out['entity_id'] > 0).astype(np.float32)
  out.update({
      'msa': _HHBLITS_TO_AF[msa].astype(np.int32),
      'deletion_matrix': deletions,
      'msa_mask': np.ones(msa.shape, np.float32) * seq_mask[None],
      'bert_mask': bert_mask,
      'cluster_bias_mask': cluster_bias_mask,
      'seq_mask': seq_mask,
      'num_alignments': np.asarray(num_seq, np.int32),
      'seq_length': np.asarray(num_res, np.int32),
      'num_templates': merged[0]['num_templates'],
      'assembly_num_chains': np.asarray(len(chains)),
  })
  assert set(out) == OUTPUT_FEATURES, set(out) ^ OUTPUT_FEATURES
  return out
