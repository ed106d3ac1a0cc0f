"""Amber relaxation of predicted structures (AlphaFold's alphafold/relax), with OpenMM.

`relax_protein(prot)` completes a structure, minimises it with heavy atoms
restrained and repeats while structural violations remain. OpenMM and pdbfixer
are optional (`pip install 'af_jax[relax]'`); importing this package needs neither.
"""

from af_jax.relax.relax import (
    INSTALL_HINT,
    RelaxError,
    RelaxResult,
    find_violations,
    heavy_atom_rmsd,
    merge_chains,
    relax_protein,
    require_openmm,
)

__all__ = ['INSTALL_HINT', 'RelaxError', 'RelaxResult', 'find_violations', 'heavy_atom_rmsd',
           'merge_chains', 'relax_protein', 'require_openmm']
