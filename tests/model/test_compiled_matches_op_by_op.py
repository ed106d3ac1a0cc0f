"""The compiled blocks equal the same code run op by op, at sizes where XLA:CPU fuses for real.

Why: jaxlib 0.10.2's XLA:CPU hands fused broadcast + reduce graphs to YNNPACK, which
returns wrong sums once a fusion is large enough to be split across threads
(jax-ml/jax#39103, openxla/xla#49085). For example, `jit(lambda q, k, b: jnp.sum(q[None] *
k[:, :, None, :], -1) + b[..., None])` with q [64, 8, 8], k [256, 64, 8], b [256, 64] is off
by ~25 against float64, while op by op it is right. The parity tests compare against the
reference at a dozen residues, below those sizes, and the reference is compiled by the same
XLA; here each block runs at model_1_ptm's real widths and L = 64 (N_seq = 132, N_extra = 256)
both compiled and under `jax.disable_jit()`, where every primitive runs alone and nothing is
fused.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import af_jax
from af_jax.chunking import ChunkPlan
from af_jax.model.evoformer import EvoformerIteration
from af_jax.model.structure_module import StructureModule

L = 64
TOL = 1e-5
# AutoChunk's CPU plan for model_1_ptm at L = 64 (bench/RESULTS.md): chunked MSA ops and
# transitions, unchunked triangle ops.
PLAN_L64 = ChunkPlan(msa_row_attention=64, msa_column_attention=16, msa_transition=16,
                     outer_product_mean=32, pair_transition=32)


def _perturbed(module, seed: int, scale: float = 0.1):
  """Split `module`, every array + N(0, scale) (AlphaFold's zero inits would hide errors)."""
  graphdef, state = nnx.split(module)
  rng = np.random.default_rng(seed)
  leaves, treedef = jax.tree_util.tree_flatten(state)
  leaves = [jnp.asarray(x + rng.normal(size=x.shape).astype(np.float32) * scale)
            for x in leaves]
  return graphdef, jax.tree_util.tree_unflatten(treedef, leaves)


def _compare(fn, *args):
  compiled = jax.jit(fn)(*args)
  with jax.disable_jit():
    op_by_op = fn(*args)
  for got, want in zip(jax.tree_util.tree_leaves(compiled), jax.tree_util.tree_leaves(op_by_op)):
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    err = np.linalg.norm(got - want) / np.linalg.norm(want)
    assert err <= TOL, f'compiled vs op by op: relative error {err:.2e} > {TOL:.0e}'


@pytest.mark.slow
@pytest.mark.parametrize('is_extra_msa,plan', [(False, PLAN_L64), (True, ChunkPlan())],
                         ids=['evoformer_autochunk_plan', 'extra_msa_unchunked'])
def test_evoformer_block(is_extra_msa, plan):
  e = af_jax.model_config('model_1_ptm').model.embeddings_and_evoformer
  n_seq, c_m = (256, 64) if is_extra_msa else (132, 256)
  block = EvoformerIteration(e.evoformer, c_m=c_m, c_z=128, is_extra_msa=is_extra_msa,
                             zero_init=False, rngs=nnx.Rngs(0))
  graphdef, state = _perturbed(block, seed=1)
  rng = np.random.default_rng(2)
  msa = jnp.asarray(rng.normal(size=(n_seq, L, c_m)), jnp.float32)
  pair = jnp.asarray(rng.normal(size=(L, L, 128)), jnp.float32)
  msa_mask = jnp.asarray(rng.random((n_seq, L)) > 0.1, jnp.float32)
  seq_mask = np.ones(L, np.float32)
  seq_mask[-3:] = 0.0  # padding
  pair_mask = jnp.asarray(seq_mask[:, None] * seq_mask[None])
  _compare(lambda s, m, p: nnx.merge(graphdef, s)(m, p, msa_mask, pair_mask, plan),
           state, msa, pair)


@pytest.mark.slow
def test_structure_module():
  c = af_jax.model_config('model_1_ptm').model.heads.structure_module
  module = StructureModule(c, c_s=384, c_z=128, zero_init=False, rngs=nnx.Rngs(0))
  # A small perturbation: 8 layers amplify rounding (tests/parity/test_structure_module.py).
  graphdef, state = _perturbed(module, seed=3, scale=0.01)
  rng = np.random.default_rng(4)
  single = jnp.asarray(rng.normal(size=(L, 384)), jnp.float32)
  pair = jnp.asarray(rng.normal(size=(L, L, 128)), jnp.float32)
  seq_mask = jnp.asarray(np.r_[np.ones(L - 3), np.zeros(3)], jnp.float32)
  aatype = jnp.asarray(rng.integers(0, 21, L), jnp.int32)

  def fold(s, single, pair):
    out = nnx.merge(graphdef, s)(single, pair, seq_mask, aatype)
    return out['act'], out['final_atom_positions']

  _compare(fold, state, single, pair)
