"""AutoChunk, the planner: the fastest ChunkPlan for a Predictor whose compiled peak memory
fits a budget (the axial chunking it plans, `axial_map` and `ChunkPlan`, lives below the
model in `af_jax.chunking`).

- `budget`: memory sizes as people write them, and the default budget of a device;
- `activations`: the analytic model of each chunked op's live bytes, and its ladder of plans;
- `measure`: compiled peak memory, and the decision cache on disk;
- `search`: `choose_plan` (a Predictor), `plan_program` (any program a plan shapes),
  `chunk_plan`, a bucket's plan for a `--chunk` value ('auto', 'none' or a size), and
  `bucket_predictor`, the Predictor that runs the bucket with it.
"""

from af_jax.autochunk.activations import (CPU_CHUNK_BYTES, CPU_TRANSITION_CHUNK_BYTES, FIELDS,
                                          ActivationModel, Site, cpu_cap_bytes)
from af_jax.autochunk.budget import (available_host_memory, coarse, default_budget, format_bytes,
                                     parse_memory)
from af_jax.autochunk.measure import compiled_memory, io_bytes, program_key
from af_jax.autochunk.search import (AutoChunkResult, bucket_predictor, choose_plan, chunk_plan,
                                     parse_chunk, plan_program, plan_summary)

__all__ = ['CPU_CHUNK_BYTES', 'CPU_TRANSITION_CHUNK_BYTES', 'FIELDS', 'ActivationModel',
           'AutoChunkResult', 'Site', 'available_host_memory', 'bucket_predictor', 'choose_plan',
           'chunk_plan',
           'coarse', 'compiled_memory', 'cpu_cap_bytes', 'default_budget', 'format_bytes',
           'io_bytes', 'parse_chunk', 'parse_memory', 'plan_program', 'plan_summary',
           'program_key']
