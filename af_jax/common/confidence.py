"""Confidence metrics from head logits: pLDDT, predicted aligned error, pTM.

Jumper et al. (2021) Suppl. 1.9.6-1.9.7. Written with jax.numpy so they run
inside the compiled model and on host arrays alike.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def plddt(logits: jax.Array) -> jax.Array:
  """Expected lDDT-Ca in [0, 100] per residue from [N_res, N_bins] logits."""
  num_bins = logits.shape[-1]
  centers = (jnp.arange(num_bins) + 0.5) / num_bins
  return 100.0 * jnp.sum(jax.nn.softmax(logits, axis=-1) * centers, axis=-1)


def _error_bin_centers(breaks: jax.Array) -> jax.Array:
  """Bin centres from the N_bins-1 inner edges; the last bin is open-ended."""
  step = breaks[1] - breaks[0]
  centers = breaks + step / 2
  return jnp.concatenate([centers, centers[-1:] + step])


def predicted_aligned_error(logits: jax.Array, breaks: jax.Array) -> dict:
  """Expected aligned error [N_res, N_res] (Å), its per-bin probabilities and the max value."""
  probs = jax.nn.softmax(logits, axis=-1)
  centers = _error_bin_centers(breaks)
  return {'aligned_confidence_probs': probs,
          'predicted_aligned_error': jnp.sum(probs * centers, axis=-1),
          'max_predicted_aligned_error': centers[-1]}


def predicted_tm_score(logits: jax.Array, breaks: jax.Array,
                       residue_weights: jax.Array | None = None,
                       asym_id: jax.Array | None = None) -> jax.Array:
  """pTM: the best over alignment frames of the expected TM-score. Suppl. eq. 40.

  With `asym_id` it is the interface pTM (ipTM, Evans et al. (2021) eq. 2):
  each frame scores the residues of the other chains only.

  Args:
    logits: [N_res, N_res, N_bins] aligned-error logits.
    breaks: [N_bins - 1] bin edges.
    residue_weights: [N_res] in [0, 1] (the sequence mask); all ones if None.
    asym_id: [N_res] chain index, for ipTM; None for pTM.
  """
  n_res = logits.shape[0]
  if residue_weights is None:
    residue_weights = jnp.ones((n_res,), logits.dtype)
  centers = _error_bin_centers(breaks)
  # Yang & Skolnick (2004) d0, with N clipped at 19 so it stays positive.
  n_eff = jnp.maximum(jnp.sum(residue_weights), 19)
  d0 = 1.24 * (n_eff - 15) ** (1.0 / 3) - 1.8
  tm_per_bin = 1.0 / (1 + jnp.square(centers) / jnp.square(d0))
  expected_tm = jnp.sum(jax.nn.softmax(logits, axis=-1) * tm_per_bin, axis=-1)
  pair_weights = residue_weights[None, :] * residue_weights[:, None]
  if asym_id is not None:
    other_chain = (asym_id[:, None] != asym_id[None, :]).astype(expected_tm.dtype)
    expected_tm = expected_tm * other_chain
    pair_weights = pair_weights * other_chain
  normed = pair_weights / (1e-8 + jnp.sum(pair_weights, axis=-1, keepdims=True))
  per_frame = jnp.sum(expected_tm * normed, axis=-1)
  return jnp.max(per_frame * residue_weights)


def chain_pair_tm_scores(logits: jax.Array, breaks: jax.Array, chain_index: jax.Array,
                         num_chains: int,
                         residue_weights: jax.Array | None = None) -> jax.Array:
  """pTM of each chain (diagonal) and ipTM of each pair of chains (off-diagonal).

  predicted_tm_score's formula on sub-complexes. Entry (i, i) is the pTM of chain
  i alone: predicted_tm_score with residue_weights restricted to chain i. Entry
  (i, j) is the ipTM of chains i and j alone, aligned on the frames of chain i: the
  best over residues r of chain i of the expected TM-score of chain j's residues
  in r's frame, with d0 of the |i| + |j| residues. The matrix is not symmetric;
  max(M[i, j], M[j, i]) is predicted_tm_score(logits, breaks, weights of chains i
  and j, asym_id), the ipTM of the two chains over both chains' frames, and for a
  complex of two chains it is the model's ipTM. (AlphaFold 3's chain_pair_iptm
  takes that max over both chains' frames.)

  Args:
    logits: [N_res, N_res, N_bins] aligned-error logits.
    breaks: [N_bins - 1] bin edges.
    chain_index: [N_res] 0-based chain of each residue; residues outside
      [0, num_chains) (padding) count in no chain.
    num_chains: N_chains.
    residue_weights: [N_res] 0/1 sequence mask; all ones if None.

  Returns:
    [N_chains, N_chains]; 0 for a chain without residues.
  """
  n_res = logits.shape[0]
  if residue_weights is None:
    residue_weights = jnp.ones((n_res,), logits.dtype)
  members = jax.nn.one_hot(chain_index, num_chains, dtype=logits.dtype)
  members = members * residue_weights[:, None]  # [N_res, N_chains]
  n_chain = jnp.sum(members, axis=0)
  # Residues scored for a pair: both chains; for the diagonal, the chain once.
  n_pair = n_chain[:, None] + n_chain[None, :] - jnp.diag(n_chain)
  centers = _error_bin_centers(breaks)
  n_eff = jnp.maximum(n_pair, 19)
  d0 = 1.24 * (n_eff - 15) ** (1.0 / 3) - 1.8
  tm_per_bin = 1.0 / (1 + jnp.square(centers) / jnp.square(d0)[..., None])  # [C, C, B]
  probs = jax.nn.softmax(logits, axis=-1)
  # Bin probabilities in frame r averaged over the residues s of chain j.
  scored = jnp.einsum('rsb,sj->rjb', probs, members) / (1e-8 + n_chain)[None, :, None]
  per_frame = jnp.einsum('rjb,ijb->rij', scored, tm_per_bin)
  return jnp.max(per_frame * members[:, :, None], axis=0)


def ca_distance_change(prev_pos: jax.Array, pos: jax.Array, mask: jax.Array) -> jax.Array:
  """RMS change of CA-CA distances between two structures (Å), over masked pairs.

  The early-stop criterion of recycling (as ColabFold, after AF2Complex).
  """
  def dists(x):
    ca = x[:, 1]
    return jnp.sqrt(jnp.sum(jnp.square(ca[:, None] - ca[None, :]), axis=-1))

  mask_2d = mask[:, None] * mask[None, :]
  sq = jnp.square(dists(prev_pos) - dists(pos))
  return jnp.sqrt(jnp.sum(sq * mask_2d) / jnp.sum(mask_2d) + 1e-8)
