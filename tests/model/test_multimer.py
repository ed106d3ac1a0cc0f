"""AlphaFold-Multimer on a tiny config: chunking, recycling and padding change nothing.

A random complex (chains A and B a homodimer, C another entity; padding residues
with seq_mask 0 and asym_id 0, padding MSA rows with msa_mask 0, two templates of
which the last slot is empty) runs through the whole model, recycling inside the
compiled loop. Outputs of padding residues are junk, as in AlphaFold, and are not
compared. Two ways of computing one thing are compared within a multiple of the
result's own spread under a one-ulp change of the parameters (tests/tolerance.py).
"""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from af_jax.chunking import ChunkPlan
from af_jax.data import schema
from af_jax.model import template_multimer
from af_jax.model.alphafold import recycled_state
from af_jax.model.alphafold_multimer import AlphaFoldMultimer, recycle_key
from tests import tolerance as tol_lib
from tests.model.tiny import random_multimer_batch, tiny_multimer_config

CHAINS = (9, 9, 7)  # A, B: one entity; C: another
N_REAL = sum(CHAINS)
MSA_KEY = jax.random.key(11)
COMPARED = ('pos', 'plddt', 'pae', 'ptm', 'iptm', 'single', 'pair', 'msa', 'num_recycles')


def _config(**overrides):
  # Tolerance 0: every recycle runs, unless a test asks for early stop.
  return tiny_multimer_config(**{'model.global_config.zero_init': False,
                                 'model.recycle_early_stop_tolerance': 0.0, **overrides})


def _batch(n_pad=2, n_seq_pad=3):
  return random_multimer_batch(seed=0, chain_lengths=CHAINS, entity_ids=(1, 1, 2),
                               n_pad=n_pad, n_seq_pad=n_seq_pad)


@functools.lru_cache(maxsize=None)
def _model(tolerance: float = 0.0):
  # The same seed: the same parameters whatever the early-stop tolerance.
  return AlphaFoldMultimer(_config(**{'model.recycle_early_stop_tolerance': tolerance}).model,
                           rngs=nnx.Rngs(3))


@functools.lru_cache(maxsize=None)
def _compiled(tolerance: float, plan: ChunkPlan):
  """One executable per (model, plan): the plan is static, closed over."""
  graphdef, state = nnx.split(_model(tolerance))

  def apply(state, batch, msa_key):
    out = nnx.merge(graphdef, state)(batch, msa_key, plan)
    reps = out['representations']
    return {'pos': out['structure_module']['final_atom_positions'], 'plddt': out['plddt'],
            'pae': out['predicted_aligned_error'], 'ptm': out['ptm'], 'iptm': out['iptm'],
            'ranking_confidence': out['ranking_confidence'], 'single': reps['single'],
            'pair': reps['pair'], 'msa': reps['msa'],
            'num_recycles': out['num_recycles'], 'tol': out['tol']}

  return functools.partial(jax.jit(apply), state)


def _run(batch, plan=ChunkPlan(), msa_key=MSA_KEY, tolerance=0.0):
  out = _compiled(tolerance, plan)(jax.tree_util.tree_map(jnp.asarray, batch), msa_key)
  return jax.tree_util.tree_map(np.asarray, out)


def _real(out, n=N_REAL):
  """The outputs of the real residues (scalars whole)."""
  per_residue = {'pos', 'plddt', 'single'}
  pairwise = {'pae', 'pair'}
  return {k: v[:n] if k in per_residue else v[:n, :n] if k in pairwise else
          v[:, :n] if k == 'msa' else v for k, v in out.items()}


@functools.lru_cache(maxsize=None)
def _plain():
  return _run(_batch())


@functools.lru_cache(maxsize=None)
def _spread(tolerance: float = 0.0) -> dict[str, float]:
  """The unchunked, unpadded outputs' spread under a one-ulp change of the parameters."""
  apply = _compiled(tolerance, ChunkPlan()).func  # parameters not yet bound
  batch = jax.tree_util.tree_map(jnp.asarray, _batch())

  def run(state):
    out = _real(jax.tree_util.tree_map(np.asarray, apply(state, batch, MSA_KEY)))
    return {k: out[k] for k in COMPARED}

  return tol_lib.spread(run, nnx.split(_model(tolerance))[1])


def _assert_outputs_close(got, want, what):
  tol_lib.assert_close({k: got[k] for k in COMPARED}, {k: want[k] for k in COMPARED},
                       _spread(), what=what)


def test_outputs_are_a_real_prediction():
  out = _plain()
  n = _batch()['aatype'].shape[0]
  assert out['pos'].shape == (n, 37, 3) and out['pae'].shape == (n, n)
  assert np.isfinite(out['pos']).all() and np.abs(out['pos'][:N_REAL]).max() > 1.0
  assert 0 < float(out['ptm']) <= 1 and 0 < float(out['iptm']) <= 1
  np.testing.assert_allclose(out['ranking_confidence'], 0.8 * out['iptm'] + 0.2 * out['ptm'],
                             rtol=1e-6)


def _small_plan() -> ChunkPlan:
  # 4 leaves a remainder over every axis here (27 residues, 8 MSA + 2 template rows,
  # 15 extra rows); the multimer averages its templates (no point-wise attention).
  plan = ChunkPlan(**{f.name: 4 for f in dataclasses.fields(ChunkPlan)})
  assert all(getattr(plan, f.name) for f in dataclasses.fields(ChunkPlan))
  return plan


@pytest.mark.slow  # two compiles of the tiny multimer: about a minute on 2 CPU cores
def test_chunked_equals_unchunked():
  """Every op kind chunked at once (trunk, extra-MSA stack, template stack) changes nothing."""
  want = _real(_plain())
  got = _real(_run(_batch(), _small_plan()))
  _assert_outputs_close(got, want, 'chunked')


def test_template_embedding_chunked_equals_unchunked():
  """The multimer template stack alone (13 residues, 2 padding; 3 slots, one empty)."""
  cfg = _config().model.embeddings_and_evoformer
  module = template_multimer.TemplateEmbeddingMultimer(cfg.template, c_z=cfg.pair_channel,
                                                       zero_init=False, rngs=nnx.Rngs(2))
  batch = random_multimer_batch(seed=4, chain_lengths=(6, 5), entity_ids=(1, 2), n_templ=3)
  templates = {k: jnp.asarray(batch[k]) for k in schema.MULTIMER_TEMPLATES.names}
  mask_2d = batch['seq_mask'][:, None] * batch['seq_mask'][None, :]
  same_chain = batch['asym_id'][:, None] == batch['asym_id'][None, :]
  pair = jax.random.normal(jax.random.key(6), (13, 13, cfg.pair_channel))
  graphdef, state = nnx.split(module)

  @functools.partial(jax.jit, static_argnums=0)
  def run(plan, state):
    return nnx.merge(graphdef, state)(pair, templates, mask_2d, same_chain, plan)

  want = np.asarray(run(ChunkPlan(), state))[:11, :11]
  assert np.abs(want).max() > 0.1
  spread = tol_lib.spread(lambda s: run(ChunkPlan(), s)[:11, :11], state)
  got = np.asarray(run(ChunkPlan.uniform(4), state))[:11, :11]  # 4 + 4 + 4 + 1
  tol_lib.assert_close(got, want, spread, what='template embedding chunk 4')


def test_recycling_runs_every_iteration_and_the_msa_key_decides_the_sample():
  out = _plain()
  assert int(out['num_recycles']) == 2  # model.num_recycle of the tiny config
  assert np.isfinite(out['tol']) and float(out['tol']) >= 0
  # The same key: the same sample and prediction, bit for bit.
  again = _run(_batch())
  for k in out:
    np.testing.assert_array_equal(again[k], out[k], err_msg=k)
  # Another key: another MSA sample (rows and BERT mask), another prediction.
  other = _run(_batch(), msa_key=jax.random.key(12))
  assert np.abs(other['pos'][:N_REAL] - out['pos'][:N_REAL]).max() > 0.1
  assert np.abs(other['plddt'][:N_REAL] - out['plddt'][:N_REAL]).max() > 0.01
  sample = jax.jit(_model().evoformer.sample)
  batch = jax.tree_util.tree_map(jnp.asarray, _batch())
  samples = [sample(batch, recycle_key(k, r)) for k in (MSA_KEY, jax.random.key(12))
             for r in (0, 1)]
  for a, b in zip(samples, samples[1:]):  # each recycle and each key draws its own
    assert not np.array_equal(a['msa'], b['msa'])
    assert not np.array_equal(a['bert_mask'], b['bert_mask'])


def test_early_stop_after_two_iterations_equals_two_python_iterations():
  """Tolerance 1e6 stops after the second iteration, whose structure is returned.

  Driving `iteration` from Python with `recycle_key(msa_key, r)` gives the same
  positions: the compiled loop samples the MSA of recycle r with that key.
  """
  batch = jax.tree_util.tree_map(jnp.asarray, _batch())
  out = _run(batch, tolerance=1e6)
  assert int(out['num_recycles']) == 1
  model = _model(1e6)
  graphdef, state = nnx.split(model)
  step = jax.jit(lambda s, b, p, k: nnx.merge(graphdef, s).iteration(b, p, k))
  prev = model._initial_prev(batch['aatype'].shape[0])
  for r in range(2):
    reps, sm = step(state, batch, prev, recycle_key(MSA_KEY, r))
    prev = recycled_state(reps, sm)
  loop_pos = np.asarray(sm['final_atom_positions'])[:N_REAL]
  tol_lib.assert_close(loop_pos, out['pos'][:N_REAL], _spread(1e6)['pos'],
                       what='early stop vs Python loop pos')
  # Not the outputs of the full loop (3 iterations).
  assert np.abs(out['pos'][:N_REAL] - _plain()['pos'][:N_REAL]).max() > 0.1


def test_padding_residues_and_msa_rows_change_nothing():
  """The complex padded by 7 more residues and 9 more MSA rows: the same real outputs.

  The MSA sample, the BERT mask and the extra rows are drawn with
  padding-consistent randoms (embedders_multimer.padding_consistent_uniform), and
  padding rows sort last, so the sample of the real rows is the same; every op
  masks the rest. The padded extra MSA also has one more (masked) row.
  """
  want = _real(_plain())
  padded = _batch(n_pad=9, n_seq_pad=12)
  assert padded['aatype'].shape[0] == N_REAL + 9 and padded['msa'].shape[0] == 32
  got = _real(_run(padded))
  # float32 rounding only: the sums over masked rows and residues change their order.
  _assert_outputs_close(got, want, 'padded')
