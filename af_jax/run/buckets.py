"""What keys a bucket's executable, derived in one place for the fold and the warm-up.

An executable is keyed by its input shapes (the length and MSA-depth buckets), the chunk
plan, the mesh, the model config (precision and `--config` overrides included) and the
compile profile. The config and mesh come with the Predictor (`options.model_config`,
`options.inference_mesh`), the profile with the compile cache's settings; the chunk plan
for a bucket's shapes is `chunk_plan`'s (`autochunk.chunk_plan`, which the public
`af_jax.Predictor` calls too). A fold and a warm-up given the same options therefore build
the same executables: a warmed bucket loads, it never compiles again.
"""

from __future__ import annotations

from collections.abc import Mapping

import jax

from af_jax.autochunk import chunk_plan
from af_jax.inference import Predictor

__all__ = ['bucket_predictor', 'chunk_plan']


def bucket_predictor(predictor: Predictor, shapes: Mapping[str, jax.ShapeDtypeStruct],
                     chunk: str | int, memory_budget: int | None = None
                     ) -> tuple[Predictor, dict]:
  """`predictor` with the bucket's chunk plan fixed (the one that compiles `shapes`), and
  the plan's record (`chunk_plan`)."""
  plan, info, _ = chunk_plan(predictor, shapes, chunk, memory_budget)
  return predictor.with_plan(plan), info
