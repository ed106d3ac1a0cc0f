"""AutoChunk: the fastest ChunkPlan whose compiled peak memory fits a budget.

Chunking an axial op bounds its live activations to `chunk` slices but costs speed (a
sequential loop instead of one batched computation), so the best plan chunks only the ops
that must be chunked, and no more than they must. Nothing runs: the analytic model's
ladder (`activations.ActivationModel`) gives the first guess, the guess is compiled and
XLA's buffer assignment (`measure.compiled_memory`) is the figure that must fit; if it
does not, the model's error on that rung corrects the next guess: a handful of compiles
at most. On a CPU the fastest plan is the cache-sized one and the run-time scratch the
buffer assignment does not show is added to the compiled peak (`cpu=`).

Each rung's measured peak is cached on disk (`measure.read_peaks`), so a bucket pays the
search once, and a later run whose budget lies on the same side of those peaks gets the
same plan without a compile. When even the smallest chunks do not fit, InputError is
raised before anything runs (the pre-flight check).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping
from typing import Any

import jax
from absl import logging

from af_jax.autochunk import measure
from af_jax.autochunk.activations import FIELDS, ActivationModel
from af_jax.autochunk.budget import default_budget, format_bytes, parse_memory
from af_jax.chunking import ChunkPlan
from af_jax.errors import ConfigError, InputError
from af_jax.inference import Predictor


@dataclasses.dataclass(frozen=True)
class AutoChunkResult:
  """The chosen plan and the figures behind it.

  `predicted_peak_bytes` is the compiler's figure for the plan (its buffer
  assignment, nothing ran), on a CPU plus the model's `scratch_bytes`; `source`
  is 'compiled' (searched now), 'cache' (settled by peaks cached on disk, no compile) or
  'analytic' (the model's guess, `max_compiles=0`). `executable_seconds` is the part
  of the search spent compiling (or loading) the chosen plan's `executable`, which
  inference then reuses: a compile, not planning, in a run's timings.
  """

  plan: ChunkPlan
  predicted_peak_bytes: int
  budget_bytes: int
  source: str
  analytic_peak_bytes: int = 0
  compiles: int = 0
  executable: Any = dataclasses.field(default=None, compare=False, repr=False)
  executable_seconds: float = dataclasses.field(default=0.0, compare=False)

  def summary(self) -> str:
    return (f'AutoChunk plan {plan_summary(self.plan)}: predicted peak '
            f'{format_bytes(self.predicted_peak_bytes)}, budget {format_bytes(self.budget_bytes)}'
            f' ({self.source}, {self.compiles} compile(s))')


def plan_summary(plan: ChunkPlan) -> str:
  """`triangle_attention=16 msa_row_attention=64` or `unchunked`."""
  parts = [f'{f}={getattr(plan, f)}' for f in FIELDS if getattr(plan, f) is not None]
  return ' '.join(parts) or 'unchunked'


def parse_chunk(value: str | int, name: str = '--chunk') -> str | int:
  """'auto', 'none' or a positive chunk size from what a user wrote (`name` says where)."""
  text = str(value).strip().lower()
  if text in ('auto', 'none'):
    return text
  if not isinstance(value, bool) and text.isdigit() and int(text) > 0:
    return int(text)
  raise ConfigError(f'{name}={value!r}: write auto, none or a positive chunk size')


def chunk_plan(predictor: Predictor, shapes: Mapping[str, Any], chunk: str | int,
               memory_budget: int | str | None = None) -> tuple[ChunkPlan, dict, float]:
  """The bucket's ChunkPlan for a `--chunk` value, what to record of it (ranking_debug.json's
  `chunk_plan`), and the seconds planning spent compiling (or loading) the executable the
  prediction reuses. The command line's fold and warm-up and the public Predictor all call it.

  With 'auto', AutoChunk's plan for these shapes within `memory_budget` (None: the
  device's default budget, which does not drift between runs on one machine); its
  decision is cached on disk and its compiles go through the compilation cache.
  """
  chunk = parse_chunk(chunk)
  if chunk == 'none':
    return ChunkPlan(), {'plan': 'unchunked'}, 0.0
  if chunk != 'auto':
    plan = ChunkPlan.uniform(chunk)
    return plan, {'plan': plan_summary(plan)}, 0.0
  result = choose_plan(predictor, shapes, memory_budget or default_budget())
  return result.plan, {'plan': plan_summary(result.plan),
                       'predicted_peak_bytes': int(result.predicted_peak_bytes),
                       'budget_bytes': int(result.budget_bytes), 'source': result.source}, \
      result.executable_seconds


def bucket_predictor(predictor: Predictor, shapes: Mapping[str, Any], chunk: str | int,
                     memory_budget: int | str | None = None) -> tuple[Predictor, dict, float]:
  """`predictor` with the bucket's chunk plan fixed: the one that compiles `shapes`.

  An executable is keyed by its input shapes (the length and MSA-depth buckets), the chunk
  plan, the mesh, the model config and the compile profile; the config and mesh come with
  `predictor`, the profile with the compile cache, and the plan is this one derivation
  (`chunk_plan`), which the command line's fold and warm-up and the public Predictor all
  call. A fold and a warm-up given the same options therefore build the same executables:
  a warmed bucket loads, it never compiles again.

  Returns:
    The bucket's Predictor, what to record of its plan (ranking_debug.json's
    `chunk_plan`), and the seconds planning spent compiling (or loading) the executable
    it reuses (`chunk_plan`'s).
  """
  plan, info, seconds = chunk_plan(predictor, shapes, chunk, memory_budget)
  return predictor.with_plan(plan), info, seconds


def _too_big(n_res: int, needed: int, budget: int) -> InputError:
  return InputError(
      f'sequence length {n_res} needs {format_bytes(needed)} even at the smallest chunk sizes '
      f'(compiled peak) but the memory budget is {format_bytes(budget)}; try '
      '--precision=bfloat16, --dap=N to split it over N devices, or a larger --memory_budget')



def choose_plan(predictor: Predictor, shapes: Mapping[str, Any], budget_bytes: int | str, *,
                cache_dir: str | os.PathLike | None = None, device_kind: str | None = None,
                max_compiles: int = 4, use_cache: bool = True,
                cpu: bool | None = None) -> AutoChunkResult:
  """The fastest ChunkPlan for `predictor` at `shapes` whose compiled peak fits the budget.

  Each plan is compiled as `predictor.with_plan(plan)` (on its mesh, whose `dap` axis
  divides the analytic activations); the decision is logged in one line and cached.

  Args:
    predictor: the Predictor to plan for (weights or abstract; only its shapes count).
    shapes: the bucket's model inputs (`warmup.bucket_shapes`), arrays or
      ShapeDtypeStructs, leading recycle axis included.
    budget_bytes: bytes, or text such as '1.5GB' (`parse_memory`).
    cache_dir: the cache of measured peaks (default: `measure.default_cache_dir()`).
    device_kind: part of the cache key (default: the first device's kind).
    max_compiles: compiles the search may spend before settling on the best plan
      confirmed so far (one more may go to the smallest plan, to tell whether anything
      fits).
    use_cache: read and write the decision cache.
    cpu: XLA:CPU's rules (default: whether the first device is a CPU).

  Returns:
    The AutoChunkResult.

  Raises:
    InputError: not even the smallest chunks fit (the pre-flight check).
    ConfigError: a budget that is not a size.
  """
  model = ActivationModel.from_config(predictor.config, shapes, dap=predictor.dap)
  key = measure.program_key(predictor.config, shapes, device_kind=device_kind,
                            mesh=predictor.mesh) if use_cache else None

  def lower(plan: ChunkPlan) -> jax.stages.Lowered:
    return predictor.with_plan(plan).lower(shapes)

  return plan_program(lower, model, budget_bytes, cache_key=key, cache_dir=cache_dir,
                      max_compiles=max_compiles, cpu=cpu)


def plan_program(lower: Callable[[ChunkPlan], jax.stages.Lowered], model: ActivationModel,
                 budget_bytes: int | str, *, cache_key: Mapping | None = None,
                 cache_dir: str | os.PathLike | None = None, max_compiles: int = 4,
                 cpu: bool | None = None) -> AutoChunkResult:
  """The search of `choose_plan` for any program a ChunkPlan shapes (one Evoformer block
  benchmarked alone, the trunk in tests): `lower(plan)` lowers it, `model` is its
  analytic model, `cache_key` (`measure.program_key`; None: no cache) identifies it.
  """
  budget = parse_memory(budget_bytes)
  cpu = jax.devices()[0].platform == 'cpu' if cpu is None else bool(cpu)
  ladder = model.ladder(cpu)
  path = key = None
  known: dict[int, int] = {}
  static = None
  if cache_key is not None:
    key = measure.decision_key(cache_key, cpu)
    path = measure.cache_path(cache_dir, key)
    static, peaks = measure.read_peaks(path, key)
    known = {i: peaks[plan_summary(p)] for i, p in enumerate(ladder) if plan_summary(p) in peaks}
    decided = _decided(known, len(ladder), budget)
    if decided is not None and static is not None:
      if decided < 0:
        raise _too_big(model.n_res, known[len(ladder) - 1], budget)
      analytic = int(static + model.activation_bytes(ladder[decided])
                     + (model.scratch_bytes(ladder[decided]) if cpu else 0))
      result = AutoChunkResult(ladder[decided], known[decided], budget, 'cache', analytic, 0)
      _log_decision(result, model.n_res)
      return result

  result, needed, static, peaks = _search(model, lower, budget, max_compiles, cpu, known)
  if path is not None:
    measure.write_peaks(path, key, static,
                        {plan_summary(ladder[i]): peak for i, peak in peaks.items()})
  if result is None:
    raise _too_big(model.n_res, needed, budget)
  _log_decision(result, model.n_res)
  return result


def _log_decision(result: AutoChunkResult, n_res: int) -> None:
  """One short INFO line (the figures); the plan itself, which can be long, at DEBUG (and
  in the caller's records)."""
  chunked = sum(getattr(result.plan, f) is not None for f in FIELDS)
  logging.info('AutoChunk L=%d: %d of %d op kinds chunked, predicted peak %s, budget %s (%s, %d '
               'compile(s))', n_res, chunked, len(FIELDS),
               format_bytes(result.predicted_peak_bytes), format_bytes(result.budget_bytes),
               result.source, result.compiles)
  logging.debug('%s, L=%d', result.summary(), n_res)


def _decided(known: Mapping[int, int], n: int, budget: int) -> int | None:
  """The rung the measured peaks `known` settle for `budget`: the least chunked one that
  fits when the rung before it does not (or it is the first); -1 when not even the
  smallest fits; None when a compile must tell."""
  fitting = [i for i, peak in known.items() if peak <= budget]
  if fitting:
    i = min(fitting)
    return i if i == 0 or known.get(i - 1, 0) > budget else None
  return -1 if n - 1 in known else None


def _search(model: ActivationModel, lower, budget: int, max_compiles: int, cpu: bool = False,
            known: Mapping[int, int] | None = None
            ) -> tuple[AutoChunkResult | None, int, int, dict[int, int]]:
  """Walk the ladder with compiles, `known` rung peaks (from the cache) taken as measured.

  Returns:
    (result or None, peak of the smallest plan measured, the program's argument and output
    bytes, every rung's peak measured so far).
  """
  ladder = model.ladder(cpu)
  scratch = [int(model.scratch_bytes(p)) if cpu else 0 for p in ladder]
  act = [model.activation_bytes(p) + x for p, x in zip(ladder, scratch)]
  first = lower(ladder[0])
  static = measure.io_bytes(first)  # parameters, features and outputs: the same for every plan
  predicted = [int(static + a) for a in act]
  lowered = {0: first}
  measured: dict[int, dict] = {i: {'peak': int(peak)} for i, peak in (known or {}).items()}
  executables: dict[int, Any] = {}
  seconds: dict[int, float] = {}
  compiles = 0

  def measure_rung(i: int) -> int:
    nonlocal compiles
    if i in measured:
      return measured[i]['peak']
    compiles += 1
    lo = lowered.pop(i, None) or lower(ladder[i])
    compiled, measured[i], seconds[i] = measure.compile_program(plan_summary(ladder[i]), lo)
    peak = measured[i]['peak'] = measured[i]['peak'] + scratch[i]
    if peak <= budget and (not executables or i < min(executables)):
      executables.clear()  # keep only the executable of the best fitting plan
      executables[i] = compiled
    logging.debug('AutoChunk: rung %d/%d %s: compiled peak %s%s (analytic %s), budget %s', i,
                  len(ladder) - 1, plan_summary(ladder[i]), format_bytes(peak),
                  f' incl. {format_bytes(scratch[i])} run-time scratch' if cpu else '',
                  format_bytes(predicted[i]), format_bytes(budget))
    return peak

  def first_fitting(lo: int, hi: int, delta: float) -> int | None:
    return next((j for j in range(lo, hi) if predicted[j] + delta <= budget), None)

  if max_compiles <= 0:
    i = first_fitting(0, len(ladder), 0)
    i = len(ladder) - 1 if i is None else i
    return (AutoChunkResult(ladder[i], predicted[i], budget, 'analytic', predicted[i], 0), 0,
            static, {})

  bad, fit = -1, None  # largest rung known not to fit; smallest rung known to fit
  i = first_fitting(0, len(ladder), 0)
  i = len(ladder) - 1 if i is None else i
  while True:
    peak = measure_rung(i)
    if peak <= budget:
      fit = i if fit is None else min(fit, i)
    else:
      bad = max(bad, i)
    if fit is not None and fit == bad + 1:
      break  # the boundary is found
    delta = peak - predicted[i]  # the model's error here corrects the next guess
    hi = fit if fit is not None else len(ladder)
    j = first_fitting(bad + 1, hi, delta)
    if j is None:
      if fit is not None:
        break  # nothing less chunked than the known fit is predicted to fit
      j = len(ladder) - 1  # does anything fit at all?
      if j in measured:
        break
    if compiles >= max_compiles:
      if fit is not None:
        break  # out of compiles: settle on the best plan confirmed so far
      j = len(ladder) - 1  # but always learn whether anything fits at all
      if j in measured:
        break
    i = j
  peaks = {i: m['peak'] for i, m in measured.items()}
  if fit is None:
    smallest = len(ladder) - 1
    needed = measured[smallest]['peak'] if smallest in measured else predicted[smallest]
    return None, int(needed), static, peaks
  return (AutoChunkResult(ladder[fit], measured[fit]['peak'], budget,
                          'compiled' if compiles else 'cache', predicted[fit], compiles,
                          executables.get(fit), seconds[fit] if fit in executables else 0.0),
          measured[fit]['peak'], static, peaks)
