"""Axial chunking: every axial op runs as lax.map over slices (DESIGN decision 5).

The planner that picks a ChunkPlan for a bucket (AutoChunk) sits above inference, in
`af_jax.autochunk`.
"""

from af_jax.chunking.axial import ChunkPlan, axial_map

__all__ = ['ChunkPlan', 'axial_map']
