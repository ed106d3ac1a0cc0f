"""Axial chunking: every axial op runs as lax.map over slices (DESIGN decision 5).

`autochunk.choose_plan` picks the fastest ChunkPlan whose compiled peak memory
fits a budget (imported from `af_jax.chunking.autochunk`, not here: it pulls in
the compilation cache, which the model modules do not need).
"""

from af_jax.chunking.axial import ChunkPlan, axial_map

__all__ = ['ChunkPlan', 'axial_map']
