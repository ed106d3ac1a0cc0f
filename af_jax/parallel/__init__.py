"""Many devices for one protein: the (data, dap) mesh, logical axis rules and DAP collectives."""

from af_jax.parallel.dap import NO_DAP, Dap
from af_jax.parallel.mesh import DAP_AXIS, DATA_AXIS, make_mesh

__all__ = ['DAP_AXIS', 'DATA_AXIS', 'NO_DAP', 'Dap', 'make_mesh']
