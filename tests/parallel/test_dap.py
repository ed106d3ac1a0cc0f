"""Dynamic Axial Parallelism gives the single-device answers, with the designed collectives.

Runs on 8 fake CPU devices (tests/conftest.py sets
`--xla_force_host_platform_device_count=8`). Sizes are chosen not to divide by the
DAP size, so the padding and its masks are exercised too. DAP changes only the order
of float32 operations: tolerances are multiples of the one-device result's own
spread under a one-ulp change of the parameters (tests/tolerance.py).
"""

import functools
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from af_jax.chunking import ChunkPlan
from af_jax.model.build import build_model
from af_jax.model import stack
from af_jax.model.evoformer import EvoformerIteration
from af_jax.model.template import TemplateEmbedding
from af_jax.parallel import dap as dap_lib
from af_jax.parallel import make_mesh
from tests import tolerance
from tests.model.tiny import random_batch, tiny_config

pytestmark = pytest.mark.skipif(jax.device_count() < 8, reason='needs 8 (fake) devices')

N_SEQ, N_RES, N_PAD = 11, 13, 2


def _config():
  return tiny_config('model_1_ptm', **{'model.global_config.zero_init': False})


def _msa_pair(seed, n_seq=N_SEQ, n_res=N_RES, c_m=32, c_z=16):
  k = jax.random.split(jax.random.key(seed), 4)
  msa = jax.random.normal(k[0], (n_seq, n_res, c_m))
  pair = jax.random.normal(k[1], (n_res, n_res, c_z))
  # The last two residues are bucket padding, masked in the MSA and the pair alike
  # (their own rows are junk, as in AlphaFold, and are not compared).
  res_mask = jnp.arange(n_res) < n_res - N_PAD
  msa_mask = ((jax.random.uniform(k[2], (n_seq, n_res)) > 0.2) & res_mask).astype(jnp.float32)
  pair_mask = (res_mask[:, None] & res_mask[None, :]).astype(jnp.float32)
  return msa, pair, msa_mask, pair_mask


def _real(msa, pair):
  """The residues that are not padding."""
  n = pair.shape[0] - N_PAD
  return {'msa': msa[:, :n], 'pair': pair[:n, :n]}


@functools.lru_cache(maxsize=None)
def _stack(is_extra_msa):
  e = _config().model.embeddings_and_evoformer
  c_m = e.extra_msa_channel if is_extra_msa else e.msa_channel
  return stack.create(
      lambda r: EvoformerIteration(e.evoformer, c_m=c_m, c_z=e.pair_channel,
                                   is_extra_msa=is_extra_msa, zero_init=False, rngs=r), 2,
      nnx.Rngs(1))


@functools.lru_cache(maxsize=None)
def _stack_fn(is_extra_msa, dap, plan=ChunkPlan()):
  """The two-block stack jitted on `dap` devices (1: no mesh); parameters are an argument."""
  graphdef, _ = nnx.split(_stack(is_extra_msa))
  mesh = make_mesh(dap) if dap > 1 else None

  @jax.jit
  def run(state, msa, pair, msa_mask, pair_mask, keys):
    blocks = nnx.merge(graphdef, state)

    def apply(dap, m, p, mm, pm):
      body = lambda block, carry, k: block(*carry, mm, pm, plan, k, dap)  # noqa: E731
      return stack.scan(blocks, body, (m, p), keys)

    return dap_lib.evoformer_stack(apply, mesh, msa, pair, msa_mask, pair_mask)

  return run


def _run_stack(is_extra_msa, dap, inputs, keys, plan=ChunkPlan(), state=None):
  """{'msa', 'pair'} of the real residues; `state` replaces the stack's parameters."""
  if state is None:
    state = nnx.split(_stack(is_extra_msa))[1]
  return _real(*_stack_fn(is_extra_msa, dap, plan)(state, *inputs, keys))


def _stack_spread(is_extra_msa, inputs, keys):
  state = nnx.split(_stack(is_extra_msa))[1]
  return tolerance.spread(lambda s: _run_stack(is_extra_msa, 1, inputs, keys, state=s), state)


@pytest.mark.parametrize('is_extra_msa,training', [(False, True), (True, False)],
                         ids=['evoformer_with_dropout', 'extra_msa'])
def test_msa_stacks_match_one_device(is_extra_msa, training):
  c_m = 16 if is_extra_msa else 32
  inputs = _msa_pair(3, c_m=c_m)
  # With dropout, every device must draw the mask one device would draw.
  keys = jax.random.split(jax.random.key(7), 2) if training else None
  want = _run_stack(is_extra_msa, 1, inputs, keys)
  assert np.abs(np.asarray(want['pair'] - _real(*inputs[:2])['pair'])).max() > 0.1  # changed
  spread = _stack_spread(is_extra_msa, inputs, keys)
  for dap in (2, 4, 8):
    tolerance.assert_close(_run_stack(is_extra_msa, dap, inputs, keys), want, spread,
                           what=f'dap={dap}')


def test_dap_with_chunking_matches():
  inputs = _msa_pair(4)
  want = _run_stack(False, 1, inputs, None)
  plan = ChunkPlan(*([2] * len(ChunkPlan.__dataclass_fields__)))
  got = _run_stack(False, 4, inputs, None, plan)
  tolerance.assert_close(got, want, _stack_spread(False, inputs, None), what='dap=4 chunked')


def test_template_embedding_matches_one_device():
  cfg = _config().model.embeddings_and_evoformer
  module = TemplateEmbedding(cfg.template, c_z=cfg.pair_channel, zero_init=False,
                             rngs=nnx.Rngs(2))
  batch = random_batch(seed=5, n_res=N_RES, n_templ=3, n_slices=1)
  templates = {k: jnp.asarray(v[0]) for k, v in batch.items() if k.startswith('template_')}
  templates['template_mask'] = jnp.array([1.0, 1.0, 0.0])  # one template missing
  _, pair, _, pair_mask = _msa_pair(6, c_z=cfg.pair_channel)
  graphdef, state = nnx.split(module)

  @functools.partial(jax.jit, static_argnums=0)
  def run(mesh, state, pair, templates, pair_mask):
    return nnx.merge(graphdef, state)(pair, templates, pair_mask, mesh=mesh)

  n = N_RES - N_PAD
  want = run(None, state, pair, templates, pair_mask)[:n, :n]
  assert np.abs(np.asarray(want)).max() > 0.1
  spread = tolerance.spread(lambda s: run(None, s, pair, templates, pair_mask)[:n, :n], state)
  for dap in (2, 8):
    got = run(make_mesh(dap), state, pair, templates, pair_mask)[:n, :n]
    tolerance.assert_close(got, want, spread, what=f'template embedding dap={dap}')


def test_whole_model_matches_one_device():
  # model_3 has no templates (test_template_embedding_matches_one_device covers them);
  # one recycle runs the recycling embedder on sharded outputs.
  cfg = tiny_config('model_3_ptm', **{'model.global_config.zero_init': False,
                                      'model.num_recycle': 1})
  model = build_model(cfg.model, seed=4)
  graphdef, state = nnx.split(model)
  batch = jax.tree_util.tree_map(jnp.asarray, random_batch(seed=8, n_res=N_RES, n_seq=5,
                                                            n_extra=9, n_slices=2))

  @functools.partial(jax.jit, static_argnums=0)
  def run(mesh, state, batch):
    out = nnx.merge(graphdef, state)(batch, mesh=mesh)
    return {'pos': out['structure_module']['final_atom_positions'], 'plddt': out['plddt'],
            'pae': out['predicted_aligned_error'], 'ptm': out['ptm'],
            'pair': out['representations']['pair'], 'msa': out['representations']['msa']}

  want = run(None, state, batch)
  assert np.abs(np.asarray(want['pos'])).max() > 1.0
  spread = tolerance.spread(lambda s: run(None, s, batch), state)
  for dap in (2, 4, 8):
    tolerance.assert_close(run(make_mesh(dap), state, batch), want, spread, what=f'dap={dap}')


def _collectives(hlo: str) -> dict[str, int]:
  # `%x = f32[..] all-gather(...)` or, for tuple results, `%x = (f32[..], ..) all-to-all(...)`.
  kinds = re.findall(r'\s(all-to-all|all-gather|all-reduce|reduce-scatter|collective-permute)'
                     r'(?:-start)?\(', hlo)
  return {k: kinds.count(k) for k in sorted(set(kinds))}


def test_one_block_has_the_designed_collectives():
  """Per Evoformer block: 6 all-gathers and 6 all-to-alls, no all-reduce (FastFold's DAP)."""
  e = _config().model.embeddings_and_evoformer
  block = EvoformerIteration(e.evoformer, c_m=e.msa_channel, c_z=e.pair_channel,
                             is_extra_msa=False, zero_init=False, rngs=nnx.Rngs(0))
  graphdef, state = nnx.split(block)
  mesh = make_mesh(4)

  def run(state, msa, pair, msa_mask, pair_mask):
    blk = nnx.merge(graphdef, state)
    return dap_lib.evoformer_stack(lambda dap, *a: blk(*a, dap=dap), mesh, msa, pair,
                                   msa_mask, pair_mask)

  args = _msa_pair(0, n_seq=8, n_res=16)
  hlo = jax.jit(run).lower(state, *args).compile().as_text()
  assert _collectives(hlo) == {'all-gather': 6, 'all-to-all': 6}
