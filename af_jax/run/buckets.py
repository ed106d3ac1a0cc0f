"""What keys a bucket's executable, derived in one place for the fold and the warm-up.

An executable is keyed by its input shapes (the length and MSA-depth buckets), the chunk
plan, the mesh, the model config (precision and `--config` overrides included) and the
compile profile. The config and mesh come with the Predictor (`options.model_config`,
`options.inference_mesh`), the profile with the compile cache's settings; the chunk plan
for a bucket's shapes is `bucket_predictor`'s. A fold and a warm-up given the same options
therefore build the same executables: a warmed bucket loads, it never compiles again.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import jax

from af_jax import autochunk
from af_jax.chunking import ChunkPlan
from af_jax.inference import Predictor


def chunk_plan(predictor: Predictor, shapes: Mapping[str, jax.ShapeDtypeStruct], chunk: str | int,
               memory_budget: int | None = None) -> tuple[ChunkPlan, dict, float]:
  """The bucket's ChunkPlan per --chunk, what to record of it in ranking_debug.json, and
  the seconds planning spent compiling (or loading) the executable the prediction reuses.

  With 'auto', AutoChunk's plan for these shapes within `memory_budget` (None: the
  device's default budget, which does not drift between runs on one machine); its
  decision is cached on disk and its compiles go through the compilation cache.
  """
  chunk = str(chunk)
  if chunk == 'none':
    return ChunkPlan(), {'plan': 'unchunked'}, 0.0
  if chunk != 'auto':
    plan = ChunkPlan(**{f.name: int(chunk) for f in dataclasses.fields(ChunkPlan)})
    return plan, {'plan': autochunk.plan_summary(plan)}, 0.0
  budget = memory_budget or autochunk.default_budget()
  result = autochunk.choose_plan(predictor, shapes, budget)
  return result.plan, {'plan': autochunk.plan_summary(result.plan),
                       'predicted_peak_bytes': int(result.predicted_peak_bytes),
                       'budget_bytes': int(result.budget_bytes), 'source': result.source}, \
      result.executable_seconds


def bucket_predictor(predictor: Predictor, shapes: Mapping[str, jax.ShapeDtypeStruct],
                     chunk: str | int, memory_budget: int | None = None
                     ) -> tuple[Predictor, dict]:
  """`predictor` with the bucket's chunk plan fixed (the one that compiles `shapes`), and
  the plan's record (`chunk_plan`)."""
  plan, info, _ = chunk_plan(predictor, shapes, chunk, memory_budget)
  return predictor.with_plan(plan), info
