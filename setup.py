"""af_jax: AlphaFold2 on JAX/XLA. Installs af_jax, compile_cache and configs."""

import pathlib
import re

from setuptools import find_packages, setup

# One version, af_jax.__version__, which every result records (af_jax/run/job.py).
VERSION = re.search(r"^__version__ = '([^']+)'",
                    (pathlib.Path(__file__).parent / 'af_jax' / '__init__.py').read_text(),
                    re.M).group(1)

setup(
    name='af_jax',
    version=VERSION,
    description='AlphaFold2 in JAX/Flax NNX: loads AlphaFold parameters, matches its outputs',
    python_requires='>=3.10',
    # AlphaFold's bond lengths and angles, read by af_jax.common.stereo_chemistry.
    # The report's 3D viewer (3Dmol.js, BSD-3-Clause), inlined into each report.html.
    package_data={'af_jax.common': ['stereo_chemical_props.txt'],
                  'af_jax.run': ['vendor/3Dmol-min.js', 'vendor/3Dmol-LICENSE']},
    packages=find_packages(include=['af_jax', 'af_jax.*', 'compile_cache', 'compile_cache.*',
                                    'configs']),
    install_requires=[
        # Lower bounds are the versions tested here.
        'jax>=0.10.2',
        'jaxlib>=0.10.2',
        'flax>=0.12.8',
        'optax>=0.2.8',
        'chex>=0.1.92',
        'numpy>=2.0',
        'biopython>=1.85',
        'absl-py>=2.1',
        'ml_collections>=1.1.0',
        'matplotlib>=3.8',
        # Training checkpoints (af_jax.train.checkpoint).
        'orbax-checkpoint>=0.12.8',
    ],
    extras_require={
        # Amber relaxation (--models_to_relax): OpenMM and pdbfixer, tested at these versions.
        'relax': ['openmm>=8.6.1', 'pdbfixer>=1.12'],
        'test': [
            'openmm>=8.6.1',
            'pdbfixer>=1.12',
            'pytest>=8',
            # The suite runs on every core (-n auto), a test file per worker.
            'pytest-xdist>=3.8',
            'ruff>=0.6',
            # The reference implementation for parity tests, and what it needs.
            'alphafold-colabfold==2.3.20',
            'dm-haiku>=0.0.13',
            'dm-tree>=0.1.8',
            'immutabledict>=4.0',
            'pandas>=2.0',
            'scipy>=1.11',
            # Reads written PDB/mmCIF files back in tests (a second, independent parser).
            'gemmi>=0.7',
            # ModelCIF's own reader, for the metadata of written mmCIF files.
            'modelcif>=1.8',
        ],
    },
)
