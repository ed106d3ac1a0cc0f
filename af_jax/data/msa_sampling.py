"""One recycle's MSA: cluster centres, BERT masking, cluster profiles, extra MSA.

Jumper et al. (2021) Suppl. 1.2.7 (MSA clustering) and 1.9.9 (masked MSA
prediction), in the order AlphaFold's input pipeline runs them: sample the
centres (query first), mask them, assign every remaining sequence to its nearest
centre, summarise each cluster, then cut the remainder down to the extra MSA.
Residue types here are AlphaFold's (`residue_constants.restypes_with_x_and_gap`,
20 = X, 21 = gap); the BERT mask token is 22.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import ml_collections
import numpy as np

GAP = 21
MASK_TOKEN = 22
_NUM_MATCH_CLASSES = 21  # clusters agree on amino acids and X; gaps and masks count for nothing
_ONE_HOT_CLASSES = 23  # 20 amino acids, X, gap, mask
_CHUNK_ELEMENTS = 1 << 22  # PERF: extra-MSA rows per clustering matmul, bounded by memory

Permutation = Callable[[np.random.Generator, int], np.ndarray]


def random_permutation(rng: np.random.Generator, n: int) -> np.ndarray:
  """A uniformly random order of range(n): AlphaFold's MSA shuffles."""
  return rng.permutation(n)


def identity_permutation(rng: np.random.Generator, n: int) -> np.ndarray:
  """range(n): no shuffle, so the centres are the first rows (for comparisons)."""
  del rng
  return np.arange(n)


@dataclasses.dataclass(frozen=True)
class MsaSample:
  """The MSA features of one recycle, unpadded.

  Attributes:
    msa_feat: [N_clust, N_res, 49] (25 without cluster features) float32.
    true_msa: [N_clust, N_res] int32, the centres before masking.
    bert_mask: [N_clust, N_res] float32, 1 where a centre residue was masked.
    extra_msa: [N_extra, N_res] int32.
    extra_deletion_matrix: [N_extra, N_res] float32 deletion counts.
  """

  msa_feat: np.ndarray
  true_msa: np.ndarray
  bert_mask: np.ndarray
  extra_msa: np.ndarray
  extra_deletion_matrix: np.ndarray


def hhblits_profile(msa: np.ndarray) -> np.ndarray:
  """[N_res, 22] float32: frequency of each residue type per column, over the whole MSA."""
  num_seq, num_res = msa.shape
  flat = (np.arange(num_res) * 22 + msa).ravel()
  counts = np.bincount(flat, minlength=num_res * 22).reshape(num_res, 22)
  return counts.astype(np.float32) / np.float32(num_seq)


def split_clusters(num_seq: int, max_clusters: int, rng: np.random.Generator,
                   permutation: Permutation = random_permutation
                   ) -> tuple[np.ndarray, np.ndarray]:
  """Row indices of the cluster centres (the query first) and of the rest.

  Args:
    num_seq: MSA depth, query included.
    max_clusters: how many centres to take at most.
    rng: source of the shuffle.
    permutation: `(rng, n) -> order of range(n)`, the shuffle of rows 1..num_seq-1.

  Returns:
    (centre rows [min(num_seq, max_clusters)], remaining rows in shuffled order).
  """
  order = np.concatenate([[0], 1 + np.asarray(permutation(rng, num_seq - 1), np.int64)])
  num_sel = min(max_clusters, num_seq)
  return order[:num_sel], order[num_sel:]


def mask_msa(msa: np.ndarray, profile: np.ndarray, masked_msa: ml_collections.ConfigDict,
             replace_fraction: float, rng: np.random.Generator
             ) -> tuple[np.ndarray, np.ndarray]:
  """BERT-style corruption of the cluster centres (Suppl. 1.9.9).

  Each residue is picked with probability `replace_fraction`; a picked residue
  becomes a uniformly random amino acid (uniform_prob), a type drawn from the
  column profile (profile_prob), itself (same_prob), or the mask token (the rest).

  Args:
    msa: [N_clust, N_res] centres, values 0..21.
    profile: [N_res, 22] column frequencies over the full MSA.
    masked_msa: config with uniform_prob, profile_prob, same_prob.
    replace_fraction: probability that a residue is picked.
    rng: source of the picks and replacements.

  Returns:
    (masked msa [N_clust, N_res] int32, bert_mask [N_clust, N_res] float32).
  """
  uniform, from_profile, same = (float(masked_msa.uniform_prob), float(masked_msa.profile_prob),
                                 float(masked_msa.same_prob))
  mask_prob = 1.0 - uniform - from_profile - same
  assert mask_prob >= 0.0, 'masked_msa probabilities sum past 1'
  picked = np.zeros(msa.shape, bool)
  out = msa.astype(np.int32, copy=True)
  if replace_fraction > 0:
    picked = rng.random(msa.shape) < replace_fraction
    rows, cols = np.nonzero(picked)
    probs = np.zeros((rows.size, _ONE_HOT_CLASSES))
    probs[:, :20] = uniform / 20
    probs[:, :22] += from_profile * profile[cols]
    probs[np.arange(rows.size), msa[rows, cols]] += same
    probs[:, MASK_TOKEN] = mask_prob
    cdf = np.cumsum(probs, axis=-1)
    threshold = rng.random(rows.size) * cdf[:, -1]
    # The first class whose cumulative probability passes the threshold (never a 0-prob class).
    out[rows, cols] = np.minimum((cdf <= threshold[:, None]).sum(-1), MASK_TOKEN)
  return out, picked.astype(np.float32)


def nearest_clusters(centres: np.ndarray, others: np.ndarray) -> np.ndarray:
  """[N_other] int32: for each sequence, the centre it agrees with at most positions.

  Agreement counts identical amino acids (or X); gaps and mask tokens never
  agree. Ties go to the lowest centre index. The counts are integers, exact in
  float32, so the choice does not depend on summation order.
  """
  num_clusters, num_res = centres.shape
  if others.shape[0] == 0:
    return np.zeros([0], np.int32)
  # One [N_res, N_clust] indicator per residue type: agreement = sum_aa 1[other=aa] @ 1[centre=aa].
  centre_is = [np.ascontiguousarray((centres == aa).T, np.float32)
               for aa in range(_NUM_MATCH_CLASSES)]
  chunk = max(1, _CHUNK_ELEMENTS // num_res)
  assignment = []
  for start in range(0, others.shape[0], chunk):
    part = others[start:start + chunk]
    agreement = np.zeros((part.shape[0], num_clusters), np.float32)
    for aa, is_aa in enumerate(centre_is):
      agreement += (part == aa).astype(np.float32) @ is_aa
    assignment.append(np.argmax(agreement, axis=1))
  return np.concatenate(assignment).astype(np.int32)


def summarize_clusters(centres: np.ndarray, deletion: np.ndarray, others: np.ndarray,
                       other_deletion: np.ndarray, assignment: np.ndarray
                       ) -> tuple[np.ndarray, np.ndarray]:
  """Residue-type profile and mean deletion count of each cluster, centre included.

  Args:
    centres: [N_clust, N_res] (masked) centre rows.
    deletion: [N_clust, N_res] float32 deletion counts of the centres.
    others: [N_other, N_res] the non-centre rows.
    other_deletion: [N_other, N_res] float32 their deletion counts.
    assignment: [N_other] centre index of each row.

  Returns:
    (cluster_profile [N_clust, N_res, 23], cluster_deletion_mean [N_clust, N_res]), float32.
  """
  num_clusters, num_res = centres.shape
  cells = (assignment[:, None].astype(np.int64) * num_res + np.arange(num_res)).ravel()
  # NUMERICS: integer-valued sums, exact in float64 and in float32 (AlphaFold's) alike.
  counts = np.bincount(cells, minlength=num_clusters * num_res).reshape(num_clusters, num_res)
  type_cells = cells * _ONE_HOT_CLASSES + others.ravel()
  type_counts = np.bincount(type_cells, minlength=num_clusters * num_res * _ONE_HOT_CLASSES)
  type_counts = type_counts.reshape(num_clusters, num_res, _ONE_HOT_CLASSES).astype(np.float32)
  type_counts += np.eye(_ONE_HOT_CLASSES, dtype=np.float32)[centres]
  del_sums = np.bincount(cells, weights=other_deletion.ravel(),
                         minlength=num_clusters * num_res).reshape(num_clusters, num_res)
  del_sums = del_sums.astype(np.float32) + deletion
  # The centre's own mask (1) plus its members; 1e-6 as AlphaFold, so the division is safe.
  size = 1e-6 + np.ones(centres.shape, np.float32) + counts.astype(np.float32)
  return type_counts / size[:, :, None], del_sums / size


def deletion_value(deletion: np.ndarray) -> np.ndarray:
  """Deletion counts squashed into [0, 1): 2/pi * arctan(d / 3) (Suppl. Table 1)."""
  return np.arctan(deletion / 3.0) * (2.0 / np.pi)


def sample_msa(msa: np.ndarray, deletion: np.ndarray, profile: np.ndarray,
               data_config: ml_collections.ConfigDict, max_clusters: int,
               seed: np.random.SeedSequence,
               permutation: Permutation = random_permutation) -> MsaSample:
  """The MSA features of one recycle.

  Args:
    msa: [N_seq, N_res] int32 full MSA, query first, AlphaFold residue order.
    deletion: [N_seq, N_res] float32 deletion counts.
    profile: [N_res, 22] `hhblits_profile(msa)`.
    data_config: the `data` section of the model config.
    max_clusters: number of cluster centres to sample at most.
    seed: this recycle's seed; the centre shuffle, the masking and the extra-MSA
      shuffle each draw from their own child, so turning masking off does not
      change which rows are sampled.
    permutation: `(rng, n) -> order of range(n)` used for both shuffles.

  Returns:
    The unpadded features; see MsaSample.
  """
  common = data_config.common
  shuffle_seed, mask_seed, extra_seed = seed.spawn(3)
  centre_rows, other_rows = split_clusters(msa.shape[0], max_clusters,
                                           np.random.default_rng(shuffle_seed), permutation)
  true_msa = msa[centre_rows]
  centre_deletion = deletion[centre_rows]
  others, other_deletion = msa[other_rows], deletion[other_rows]

  masked, bert_mask = true_msa, np.zeros(true_msa.shape, np.float32)
  if 'masked_msa' in common:
    masked, bert_mask = mask_msa(true_msa, profile, common.masked_msa,
                                 float(data_config.eval.masked_msa_replace_fraction),
                                 np.random.default_rng(mask_seed))

  features = [np.eye(_ONE_HOT_CLASSES, dtype=np.float32)[masked],
              np.clip(centre_deletion, 0.0, 1.0)[..., None],
              deletion_value(centre_deletion)[..., None]]
  if common.msa_cluster_features:
    # Clustering sees the whole remainder, before the extra MSA is cut down.
    assignment = nearest_clusters(masked, others)
    cluster_profile, deletion_mean = summarize_clusters(masked, centre_deletion, others,
                                                        other_deletion, assignment)
    features += [cluster_profile, deletion_value(deletion_mean)[..., None]]

  max_extra = int(common.max_extra_msa)
  keep = np.asarray(permutation(np.random.default_rng(extra_seed), others.shape[0]),
                    np.int64)[:max_extra]
  return MsaSample(msa_feat=np.concatenate(features, axis=-1).astype(np.float32),
                   true_msa=true_msa.astype(np.int32), bert_mask=bert_mask,
                   extra_msa=others[keep].astype(np.int32),
                   extra_deletion_matrix=other_deletion[keep].astype(np.float32))
