"""Axial chunking: every axial op runs as lax.map over slices (DESIGN decision 5)."""

from af_jax.chunking.axial import ChunkPlan, axial_map

__all__ = ['ChunkPlan', 'axial_map']
