"""Chain pTM and chain-pair ipTM against their definition and the model's pTM/ipTM."""

import numpy as np
import pytest

from af_jax.common import confidence

BREAKS = np.linspace(0.0, 31.0, 63).astype(np.float32)  # the PAE head's


def _logits(n, seed):
  """Random logits leaning to small errors, so TM-scores spread over (0, 1)."""
  rng = np.random.default_rng(seed)
  return (rng.normal(size=(n, n, 64))
          - np.linspace(0, 40, 64) * rng.uniform(0, 1, (n, n, 1))).astype(np.float32)


def _direct(logits, chain_index, num_chains):
  """Entry (i, j) by its definition, with loops: best frame r in chain i of the mean over
  residues s of chain j (i != j) or of chain i (i == j) of the expected TM term."""
  probs = np.exp(logits - logits.max(-1, keepdims=True))
  probs /= probs.sum(-1, keepdims=True)
  step = BREAKS[1] - BREAKS[0]
  centers = np.append(BREAKS + step / 2, BREAKS[-1] + 1.5 * step)
  out = np.zeros((num_chains, num_chains))
  for i in range(num_chains):
    for j in range(num_chains):
      frames = np.flatnonzero(chain_index == i)
      scored = np.flatnonzero(chain_index == j)
      n = len(frames) + (len(scored) if i != j else 0)
      d0 = 1.24 * (max(n, 19) - 15) ** (1 / 3) - 1.8
      f = 1 / (1 + centers ** 2 / d0 ** 2)
      out[i, j] = max(np.mean([probs[r, s] @ f for s in scored]) for r in frames)
  return out


def test_chain_pair_tm_scores_match_definition():
  # Chains long enough that d0 (and so each entry) depends on which chains are scored.
  chain_index = np.array([0] * 20 + [1] * 30 + [2] * 25)
  logits = _logits(len(chain_index), 0)
  got = np.asarray(confidence.chain_pair_tm_scores(logits, BREAKS, chain_index, 3))
  want = _direct(logits, chain_index, 3)
  np.testing.assert_allclose(got, want, rtol=2e-5)
  assert 0.2 < want.min() and want.max() < 0.9
  assert not np.allclose(got, got.T)  # frames of chain i: not symmetric


def test_chain_pair_tm_scores_reproduce_ptm_and_iptm():
  chain_index = np.array([0] * 24 + [1] * 13 + [2] * 30)
  logits = _logits(len(chain_index), 1)
  m = np.asarray(confidence.chain_pair_tm_scores(logits, BREAKS, chain_index, 3))
  for i in range(3):
    in_i = (chain_index == i).astype(np.float32)
    # Diagonal: the pTM of the chain alone.
    np.testing.assert_allclose(m[i, i], confidence.predicted_tm_score(logits, BREAKS, in_i),
                               rtol=1e-5)
    for j in range(i + 1, 3):
      # Over both chains' frames: the ipTM of the two chains alone.
      in_ij = in_i + (chain_index == j)
      iptm = confidence.predicted_tm_score(logits, BREAKS, in_ij, chain_index)
      np.testing.assert_allclose(max(m[i, j], m[j, i]), iptm, rtol=1e-5)
  # Two chains: the model's ipTM; one chain: its pTM.
  two = np.array([0] * 20 + [1] * 32)
  logits = _logits(52, 2)
  m = np.asarray(confidence.chain_pair_tm_scores(logits, BREAKS, two, 2))
  np.testing.assert_allclose(max(m[0, 1], m[1, 0]),
                             confidence.predicted_tm_score(logits, BREAKS, asym_id=two + 1),
                             rtol=1e-5)
  one = np.asarray(confidence.chain_pair_tm_scores(logits, BREAKS, np.zeros(52, int), 1))
  np.testing.assert_allclose(one[0, 0], confidence.predicted_tm_score(logits, BREAKS), rtol=1e-5)


@pytest.mark.parametrize('weights', [False, True])
def test_chain_pair_tm_scores_ignore_padding(weights):
  chain_index = np.array([0] * 17 + [1] * 29)
  logits = _logits(50, 3)
  want = confidence.chain_pair_tm_scores(logits[:46, :46], BREAKS, chain_index, 2)
  # Padded residues: asym_id 0 (chain index -1) or masked out by residue_weights.
  padded_index = np.append(chain_index, [-1] * 4) if not weights else np.append(chain_index,
                                                                                 [1] * 4)
  mask = np.append(np.ones(46), np.zeros(4)).astype(np.float32) if weights else None
  got = confidence.chain_pair_tm_scores(logits, BREAKS, padded_index, 2, mask)
  np.testing.assert_allclose(got, want, rtol=1e-5)
