"""Dynamic Axial Parallelism gives AlphaFold-Multimer's single-device answers.

Runs on 8 fake CPU devices (tests/conftest.py). The complex has 27 residues (25
real: a homodimer of 9-residue chains and a 7-residue chain, 2 padding), 10 MSA
rows into the Evoformer (8 sampled + 2 template rows) and 15 extra rows: none
divides by 4 and only 10 by 2, so the DAP padding and its masks are exercised;
one template slot is empty. Outputs of padding residues are junk, as in
AlphaFold, and are not compared (they depend on how much padding DAP adds).
Tolerances are multiples of the one-device result's own spread under a one-ulp
change of the parameters (tests/tolerance.py): DAP changes only the order of
float32 operations.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from af_jax.chunking import ChunkPlan
from af_jax.model.alphafold_multimer import AlphaFoldMultimer
from af_jax.data import schema
from af_jax.model.template_multimer import TemplateEmbeddingMultimer
from af_jax.parallel import make_mesh
from tests import tolerance
from tests.model.tiny import random_multimer_batch, tiny_multimer_config

pytestmark = pytest.mark.skipif(jax.device_count() < 8, reason='needs 8 (fake) devices')

CHAINS = (9, 9, 7)
N_REAL = sum(CHAINS)


def _config():
  return tiny_multimer_config(**{'model.global_config.zero_init': False,
                                 'model.recycle_early_stop_tolerance': 0.0})


def _batch():
  batch = random_multimer_batch(seed=1, chain_lengths=CHAINS, entity_ids=(1, 1, 2), n_pad=2,
                                n_seq_pad=3)
  return jax.tree_util.tree_map(jnp.asarray, batch)


@functools.lru_cache(maxsize=None)
def _state():
  return nnx.split(AlphaFoldMultimer(_config().model, rngs=nnx.Rngs(4)))


@functools.lru_cache(maxsize=None)
def _compiled(dap: int, plan: ChunkPlan = ChunkPlan()):
  graphdef, state = _state()
  mesh = make_mesh(dap) if dap > 1 else None

  def apply(state, batch, msa_key, key):
    out = nnx.merge(graphdef, state)(batch, msa_key, plan, key=key, mesh=mesh)
    reps = out['representations']
    n = N_REAL
    return {'pos': out['structure_module']['final_atom_positions'][:n],
            'plddt': out['plddt'][:n], 'pae': out['predicted_aligned_error'][:n, :n],
            'ptm': out['ptm'], 'iptm': out['iptm'], 'single': reps['single'][:n],
            'pair': reps['pair'][:n, :n], 'msa': reps['msa'][:, :n],
            'num_recycles': out['num_recycles']}

  return functools.partial(jax.jit(apply), state)


def _run(dap, plan=ChunkPlan(), key=None):
  out = _compiled(dap, plan)(_batch(), jax.random.key(21), key)
  return jax.tree_util.tree_map(np.asarray, out)


def _spread(key=None):
  """The one-device outputs' spread under a one-ulp change of the parameters."""
  apply = _compiled(1).func  # the jitted function, parameters not yet bound
  return tolerance.spread(lambda state: apply(state, _batch(), jax.random.key(21), key),
                          _state()[1])


def test_template_embedding_matches_one_device():
  """The multimer template stack: rows split over `dap`, templates summed per device."""
  cfg = _config().model.embeddings_and_evoformer
  module = TemplateEmbeddingMultimer(cfg.template, c_z=cfg.pair_channel, zero_init=False,
                                     rngs=nnx.Rngs(2))
  batch = random_multimer_batch(seed=5, chain_lengths=(6, 5), entity_ids=(1, 2), n_templ=3)
  templates = {k: jnp.asarray(batch[k]) for k in schema.MULTIMER_TEMPLATES.names}
  mask_2d = batch['seq_mask'][:, None] * batch['seq_mask'][None, :]
  same_chain = batch['asym_id'][:, None] == batch['asym_id'][None, :]
  pair = jax.random.normal(jax.random.key(6), (13, 13, cfg.pair_channel))
  graphdef, state = nnx.split(module)

  @functools.partial(jax.jit, static_argnums=0)
  def run(mesh, state):
    return nnx.merge(graphdef, state)(pair, templates, mask_2d, same_chain, mesh=mesh)

  want = np.asarray(run(None, state))[:11, :11]
  assert np.abs(want).max() > 0.1
  spread = tolerance.spread(lambda s: run(None, s)[:11, :11], state)
  for dap in (2, 4):
    got = np.asarray(run(make_mesh(dap), state))[:11, :11]
    tolerance.assert_close(got, want, spread, what=f'template embedding dap={dap}')


@pytest.mark.slow  # two compiles of the tiny multimer
def test_whole_model_matches_one_device():
  """Trunk, templates, extra-MSA stack and Evoformer on dap = 2; 3 iterations (dap=4 below)."""
  want = _run(1)
  assert int(want['num_recycles']) == 2
  assert np.abs(want['pos']).max() > 1.0
  tolerance.assert_close(_run(2), want, _spread(), what='dap=2')


@pytest.mark.slow  # two compiles of the tiny multimer, one chunked over 4 devices
def test_dap_with_chunking_and_dropout_matches_one_device():
  """dap=4 with every op chunked and dropout on: each device draws one device's masks."""
  key = jax.random.key(8)
  want = _run(1, key=key)
  assert np.abs(want['pos'] - _run(1)['pos']).max() > 0.1  # dropout is on
  tolerance.assert_close(_run(4, ChunkPlan.uniform(3), key=key), want, _spread(key),
                         what='dap=4 chunked, dropout')
