"""AutoChunk: analytic model, plan search against compiled figures, pre-flight, cache.

Most tests search plans for the tiny config's trunk (embeddings, templates,
extra-MSA stack, Evoformer: every chunked op, and a few seconds to compile) at
L=128, where chunking moves its compiled peak from about 51 MB to 31 MB; one
test goes through a whole abstract Predictor. Nothing here runs a model:
`Compiled.__call__` is patched to fail. The tests run on a CPU, so the search
follows XLA:CPU's rules (cache-sized chunks first, run-time scratch added to the
compiled peak) unless a test asks for `cpu=False` (an accelerator's rules).
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import af_jax
from af_jax import autochunk
from af_jax.autochunk import ActivationModel, choose_plan, parse_memory, plan_program
from af_jax.chunking import ChunkPlan
from af_jax.errors import ConfigError, InputError
from af_jax.inference import Predictor
from af_jax.model.evoformer import EmbeddingsAndEvoformer, EvoformerIteration
from af_jax.run.warmup import bucket_shapes
from tests.model.tiny import tiny_config


def _cfg():
  cfg = tiny_config(**{'model.num_recycle': 0, 'data.common.num_recycle': 0})
  return cfg


def _trunk_lower_fn(cfg, shapes):
  """plan -> Lowered for the trunk alone (what chunking changes), abstract parameters."""
  e = cfg.model.embeddings_and_evoformer
  graphdef, state = nnx.split(nnx.eval_shape(
      lambda: EmbeddingsAndEvoformer(e, cfg.model.global_config, rngs=nnx.Rngs(0))))

  def lower(plan):
    def trunk(state, batch):
      one = jax.tree_util.tree_map(lambda x: x[0], batch)
      n = one['aatype'].shape[0]
      prev = {'prev_msa_first_row': jnp.zeros((n, e.msa_channel)),
              'prev_pair': jnp.zeros((n, n, e.pair_channel)),
              'prev_pos': jnp.zeros((n, 37, 3))}
      return nnx.merge(graphdef, state)(one, prev, plan)['pair']
    return jax.jit(trunk).lower(state, shapes)
  return lower


class _Counter:
  def __init__(self):
    self.n = 0


@pytest.fixture
def compile_count(monkeypatch):
  """Counts Lowered.compile calls; running any compiled program fails the test."""
  counter = _Counter()
  real = jax.stages.Lowered.compile

  def counting(self, *a, **k):
    counter.n += 1
    return real(self, *a, **k)

  def no_run(self, *a, **k):
    raise AssertionError('AutoChunk ran a compiled program')

  monkeypatch.setattr(jax.stages.Lowered, 'compile', counting)
  monkeypatch.setattr(jax.stages.Compiled, '__call__', no_run)
  return counter


def _cpu_peak(model, lower, plan):
  """The peak the search compares with the budget on a CPU: compiled + run-time scratch."""
  return autochunk.compiled_memory(lower(plan).compile())['peak'] + int(model.scratch_bytes(plan))


@pytest.fixture(scope='module')
def trunk():
  """(config, shapes, lower_fn, peak of the fastest CPU plan, peak at the smallest plan)."""
  cfg = _cfg()
  shapes = bucket_shapes(cfg, 128, 16, 32)
  lower = _trunk_lower_fn(cfg, shapes)
  model = ActivationModel.from_config(cfg, shapes)
  ladder = model.ladder(cpu=True)
  peaks = [_cpu_peak(model, lower, p) for p in (ladder[0], ladder[-1])]
  assert peaks[1] < 0.8 * peaks[0]  # chunking matters at these shapes
  return cfg, shapes, lower, peaks[0], peaks[1]


def _search(trunk, budget, tmp_path, **kw):
  cfg, shapes, lower, _, _ = trunk
  return plan_program(lower, ActivationModel.from_config(cfg, shapes), budget,
                      cache_key=autochunk.program_key(cfg, shapes, program='trunk'),
                      cache_dir=tmp_path, **kw)


# ----------------------------------------------------------------------------
# The analytic model.


@pytest.mark.parametrize('preset,length', [('tiny', 32), ('tiny', 128), ('model_1_ptm', 256),
                                           ('model_1_ptm', 1024)])
def test_analytic_model_is_monotone_in_chunk_size(preset, length):
  cfg = _cfg() if preset == 'tiny' else af_jax.model_config(preset)
  model = ActivationModel.from_config(cfg, bucket_shapes(cfg, length, 32, 64))
  assert set(model.fields()) == {f.name for f in dataclasses.fields(ChunkPlan)}
  for field in model.fields():
    cands = model.candidates(field)
    assert cands[0] is None and cands[-1] >= 1
    live = [model.op_bytes(field, c) for c in cands]
    assert all(a >= b for a, b in zip(live, live[1:])), (field, live)
    assert live[0] > live[-1], field  # every op's chunking saves something
    # The smallest chunk tried is within 3% of chunk 1's bytes; the one before it is not
    # (smaller chunks would cost speed for nothing).
    least = model.op_bytes(field, 1)
    assert live[-1] <= 1.03 * least < live[-2], (field, cands, live)
  ladder = model.ladder()
  assert ladder[0] == ChunkPlan()
  assert all(getattr(ladder[-1], f) == model.candidates(f)[-1] for f in model.fields())
  act = [model.activation_bytes(p) for p in ladder]
  assert all(a >= b for a, b in zip(act, act[1:]))
  # Longer sequences need more memory.
  if preset == 'model_1_ptm':
    shorter = ActivationModel.from_config(cfg, bucket_shapes(cfg, length // 2, 32, 64))
    assert shorter.activation_bytes(ChunkPlan()) < act[0]


@pytest.mark.parametrize('length', [256, 1024])
def test_cpu_plans_keep_each_chunk_cache_sized(length):
  """XLA:CPU's ladder starts at the cache-sized plan: every op at the largest power-of-two
  chunk whose chunk-dependent bytes fit the cap (or chunk 1), and only shrinks from there."""
  cfg = af_jax.model_config('model_1_ptm')
  model = ActivationModel.from_config(cfg, bucket_shapes(cfg, length, 128, 1024))
  ladder = model.ladder(cpu=True)
  first = ladder[0]
  for site in model.sites:
    chunk = getattr(first, site.field)
    assert chunk is not None, site.field  # at real dimensions every op is over the cap
    assert chunk == model.cpu_chunk_cap(site.field)
    assert chunk == 1 or site.chunk_bytes(chunk) <= autochunk.cpu_cap_bytes(site.field)
  for field in model.fields():
    sites = [s for s in model.sites if s.field == field]
    chunk = getattr(first, field)
    cap = autochunk.cpu_cap_bytes(field)
    assert chunk == 1 or all(s.chunk_bytes(chunk) <= cap for s in sites)
    assert any(s.chunk_bytes(2 * chunk) > cap for s in sites), field
  act = [model.activation_bytes(p) for p in ladder]
  assert all(a >= b for a, b in zip(act, act[1:]))
  assert ladder[-1] == model.capped(model.ladder()[-1])
  # Every rung is a capped rung of the accelerator ladder.
  assert set(ladder) <= {model.capped(p) for p in model.ladder()}
  # The transitions' chunks are capped lower than the other ops'.
  assert autochunk.cpu_cap_bytes('msa_transition') < autochunk.cpu_cap_bytes('triangle_attention')
  # The scratch the model adds on a CPU is the largest op's chunk of intermediates.
  assert model.scratch_bytes(first) == max(s.chunk_bytes(getattr(first, s.field))
                                           for s in model.sites)
  assert model.scratch_bytes(ChunkPlan()) > 10 * model.scratch_bytes(first)


def test_analytic_model_splits_activations_over_dap():
  cfg = af_jax.model_config('model_1_ptm')
  shapes = bucket_shapes(cfg, 256, 64, 128)
  one = ActivationModel.from_config(cfg, shapes).activation_bytes(ChunkPlan())
  four = ActivationModel.from_config(cfg, shapes, dap=4).activation_bytes(ChunkPlan())
  assert four == pytest.approx(one / 4)


# ----------------------------------------------------------------------------
# The search, the pre-flight check and the cache.


def test_generous_budget_takes_the_cache_sized_plan_and_caches(trunk, tmp_path, compile_count):
  cfg, shapes = trunk[:2]
  model = ActivationModel.from_config(cfg, shapes)
  result = _search(trunk, 10 * trunk[3], tmp_path)
  assert result.plan == model.ladder(cpu=True)[0]
  assert result.source == 'compiled' and result.predicted_peak_bytes == trunk[3]
  assert compile_count.n == 1  # the analytic pick, confirmed by one compile
  again = _search(trunk, 10 * trunk[3], tmp_path)
  assert compile_count.n == 1  # the decision came from disk
  assert again.source == 'cache'
  assert (again.plan, again.predicted_peak_bytes) == (result.plan, result.predicted_peak_bytes)
  # The cache holds measured peaks, not one budget's decision: any budget the fastest plan
  # fits gets it without a compile.
  other = _search(trunk, 20 * trunk[3], tmp_path)
  assert compile_count.n == 1
  assert (other.plan, other.source) == (result.plan, 'cache')


def test_budget_between_peaks_gets_a_chunked_plan_that_fits(trunk, tmp_path, compile_count):
  cfg, shapes, _, fastest, smallest = trunk
  model = ActivationModel.from_config(cfg, shapes)
  ladder = model.ladder(cpu=True)
  budget = (fastest + smallest) // 2
  result = _search(trunk, budget, tmp_path)
  assert result.plan != ladder[0]
  assert result.source == 'compiled' and 1 <= result.compiles <= 5
  assert compile_count.n == result.compiles
  # The compiler's own figure for the chosen executable, plus the run-time scratch the
  # model adds on a CPU, fits the budget.
  peak = autochunk.compiled_memory(result.executable)['peak']
  scratch = int(model.scratch_bytes(result.plan))
  assert 0 < scratch and peak + scratch == result.predicted_peak_bytes <= budget
  # Less chunking than the smallest plan: the search did not just give up on speed.
  assert result.plan != ladder[-1]
  # A budget a little off (free memory drifts between runs) is settled by the cached peaks
  # when it stays on the same side of them: the same plan, no compile.
  n = compile_count.n
  again = _search(trunk, budget - (budget - result.predicted_peak_bytes) // 2, tmp_path)
  assert (again.plan, again.source, compile_count.n) == (result.plan, 'cache', n)


def test_accelerator_rules_use_the_compiled_figure_alone(trunk, tmp_path, compile_count):
  """cpu=False (a GPU's rules): unchunked is the fastest plan and nothing is added to
  the buffer assignment's peak."""
  result = _search(trunk, 10 * trunk[3], tmp_path, cpu=False)
  assert result.plan == ChunkPlan() and compile_count.n == 1
  assert result.predicted_peak_bytes == autochunk.compiled_memory(result.executable)['peak']
  # A decision under the CPU's rules is another cache entry.
  assert _search(trunk, 10 * trunk[3], tmp_path).plan != ChunkPlan()
  assert compile_count.n == 2


def test_budget_below_the_smallest_plan_fails_before_running(trunk, tmp_path, compile_count):
  _, _, _, _, smallest = trunk
  budget = smallest // 2
  with pytest.raises(InputError) as err:
    _search(trunk, budget, tmp_path)
  msg = str(err.value)
  assert '\n' not in msg
  assert 'length 128' in msg
  assert autochunk.format_bytes(smallest) in msg  # needed at the smallest chunks
  assert autochunk.format_bytes(budget) in msg
  assert 'bfloat16' in msg and '--dap' in msg and '--memory_budget' in msg
  n = compile_count.n
  with pytest.raises(InputError):  # the verdict is cached too
    _search(trunk, budget, tmp_path)
  assert compile_count.n == n


def test_predictor_generous_budget_is_unchunked(tmp_path, compile_count):
  """Through a whole abstract Predictor: one compile, then the cache."""
  cfg = _cfg()
  shapes = bucket_shapes(cfg, 16, 8, 8)
  predictor = Predictor(cfg, None)
  result = choose_plan(predictor, shapes, '8GB', cache_dir=tmp_path)
  assert result.plan == ChunkPlan() and compile_count.n == 1
  assert 0 < result.predicted_peak_bytes <= 8e9
  assert choose_plan(predictor, shapes, '8GB', cache_dir=tmp_path).source == 'cache'
  assert compile_count.n == 1


# ----------------------------------------------------------------------------
# Budgets.


@pytest.mark.parametrize('text,want', [
    ('1.5GB', 1_500_000_000), ('800MB', 800_000_000), ('512MiB', 512 * 2**20),
    ('2GiB', 2 * 2**30), (' 3 gb ', 3 * 10**9), ('1024', 1024), (4096, 4096), ('64kB', 64_000),
])
def test_parse_memory(text, want):
  assert parse_memory(text) == want


@pytest.mark.parametrize('text', ['', 'lots', '1.5XB', '-1GB', '0', '0MB', 'GB', '1e9', -5])
def test_parse_memory_rejects(text):
  with pytest.raises(ConfigError, match='1.5GB'):
    parse_memory(text)


def test_default_budget():
  budget = autochunk.default_budget()
  assert 0 < budget <= autochunk.available_host_memory()

  class FakeGpu:
    def memory_stats(self):
      return {'bytes_limit': 10 * 2**30, 'bytes_in_use': 0}

  # On a CPU the budget is a coarse step (2**k or 1.5 * 2**k bytes): the free memory of an
  # idle machine drifts by a few percent between runs, the budget (and the plan) does not.
  assert autochunk.coarse(budget) == budget
  gb = 10**9
  assert {autochunk.coarse(int(x * gb)) for x in (10.67, 9.75, 10.32)} == {8 * 2**30}
  assert [autochunk.coarse(n) for n in (1, 2, 3, 5, 6, 7, 8, 11, 12)] == [1, 2, 3, 4, 6, 6, 8,
                                                                           8, 12]

  assert autochunk.default_budget(FakeGpu()) == int(0.9 * 10 * 2**30)
  assert autochunk.default_budget(FakeGpu(), fraction=0.5) == 5 * 2**30
  np.testing.assert_equal(parse_memory(autochunk.format_bytes(1.5e9)), 1_500_000_000)


def test_chunked_block_holds_the_pair_about_twice():
  """A chunked Evoformer block at real dimensions (c_m=256, c_z=128, L=128) adds each update
  into the pair and MSA in place: its compiled temporaries are the pair stream and the
  triangle multiplication's right projection (2.09 pair-sized buffers at chunk 4), where
  a separate update and updated copy made 3.09."""
  e = af_jax.model_config('model_1_ptm').model.embeddings_and_evoformer
  n_res, n_seq = 128, 32
  block = nnx.eval_shape(lambda: EvoformerIteration(
      e.evoformer, c_m=256, c_z=128, is_extra_msa=False, zero_init=False, rngs=nnx.Rngs(0)))
  graphdef, state = nnx.split(block)
  shapes = [jax.ShapeDtypeStruct(s, jnp.float32)
            for s in ((n_seq, n_res, 256), (n_res, n_res, 128), (n_seq, n_res), (n_res, n_res))]
  pair_bytes = n_res * n_res * 128 * 4

  def temp_bytes(plan):
    fn = jax.jit(lambda s, m, p, mm, pm: nnx.merge(graphdef, s)(m, p, mm, pm, plan))
    return fn.lower(state, *shapes).compile().memory_analysis().temp_size_in_bytes

  assert temp_bytes(ChunkPlan()) > 10 * pair_bytes  # unchunked: logits and hidden layers
  assert temp_bytes(ChunkPlan.uniform(4)) < 2.5 * pair_bytes
