"""Restrained Amber minimisation of one structure with OpenMM.

AlphaFold's recipe (Jumper et al. 2021, Methods, "Amber relaxation"): the amber99sb
force field without cutoff or solvent, bonds to hydrogen constrained, a harmonic
restraint 0.5 k |x - x0|^2 on every heavy atom towards where it started (residues
in `exclude_residues` are free), and OpenMM's L-BFGS until the root-mean-square
force component is below `tolerance` (kcal/mol/nm).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection

import numpy as np
import openmm
from absl import logging
from openmm import app, unit

from af_jax.errors import RelaxError

ENERGY = unit.kilocalories_per_mole
LENGTH = unit.angstroms
# The stopping tolerance's unit: per nanometre, not per LENGTH (AlphaFold's 2.39 is
# OpenMM's default, 10 kJ/mol/nm).
FORCE_TOLERANCE = ENERGY / unit.nanometers
FORCE_FIELD = 'amber99sb.xml'


@dataclasses.dataclass(frozen=True)
class Minimized:
  """Result of one restrained minimisation.

  Attributes:
    positions: [N_atoms, 3] in Å, hydrogens included.
    initial_energy: kcal/mol at the start (the restraint term is then zero).
    final_energy: kcal/mol after minimising, restraint term included.
    attempts: minimisations tried (an OpenMM numerical failure is retried).
  """

  positions: np.ndarray
  initial_energy: float
  final_energy: float
  attempts: int


def platform_name(use_gpu: bool) -> str:
  """OpenMM platform AlphaFold uses: CUDA for the GPU, else the multithreaded CPU one."""
  return 'CUDA' if use_gpu else 'CPU'


def restraint_force(topology: app.Topology, positions: np.ndarray, stiffness: float,
                    exclude_residues: Collection[int]) -> openmm.CustomExternalForce:
  """Harmonic wells of stiffness kcal/mol/Å² holding heavy atoms to `positions` (Å)."""
  force = openmm.CustomExternalForce('0.5 * k * ((x - x0)^2 + (y - y0)^2 + (z - z0)^2)')
  force.addGlobalParameter('k', stiffness * ENERGY / LENGTH**2)
  for name in ('x0', 'y0', 'z0'):
    force.addPerParticleParameter(name)
  reference = positions * 0.1  # nm, OpenMM's length unit
  for atom in topology.atoms():
    if atom.residue.index in exclude_residues:
      continue
    if atom.element is not None and atom.element.symbol != 'H':
      force.addParticle(atom.index, reference[atom.index].tolist())
  return force


def minimize(topology: app.Topology, positions: np.ndarray, *, max_iterations: int,
             tolerance: float, stiffness: float, exclude_residues: Collection[int],
             use_gpu: bool, max_attempts: int = 3) -> Minimized:
  """Minimise the restrained Amber energy from `positions`.

  Args:
    topology: the complete structure (heavy atoms and hydrogens), from cleanup.fix.
    positions: [N_atoms, 3] in Å.
    max_iterations: L-BFGS iterations; 0 runs until converged.
    tolerance: kcal/mol/nm; L-BFGS stops once the root-mean-square force component
      is below it.
    stiffness: kcal/mol/Å², restraint spring constant (0: no restraints).
    exclude_residues: residue indices (over all chains) whose atoms are not restrained.
    use_gpu: run on OpenMM's CUDA platform instead of the CPU.
    max_attempts: tries when OpenMM fails numerically (GPU runs are not deterministic).

  Raises:
    RelaxError: Amber has no template for a residue, the platform is missing, or every
      attempt failed.
  """
  try:
    system = app.ForceField(FORCE_FIELD).createSystem(
        topology, nonbondedMethod=app.NoCutoff, constraints=app.HBonds)
  except ValueError as e:  # e.g. 'No template found for residue ...'
    raise RelaxError(f'{FORCE_FIELD} cannot parametrise the structure: {e}') from None
  if stiffness > 0:
    system.addForce(restraint_force(topology, positions, stiffness, exclude_residues))
  try:
    platform = openmm.Platform.getPlatformByName(platform_name(use_gpu))
  except openmm.OpenMMException:
    raise RelaxError(f'OpenMM has no {platform_name(use_gpu)} platform') from None
  start = positions * LENGTH
  # DIFFERS FROM AF2: AlphaFold retries any exception up to 100 times; a CPU minimisation
  # is deterministic, so only a few retries of OpenMM's own numerical failures are kept.
  for attempt in range(1, max_attempts + 1):
    try:
      # The integrator never steps; a Simulation needs one.
      simulation = app.Simulation(topology, system, openmm.LangevinIntegrator(0, 0.01, 0.0),
                                  platform)
      simulation.context.setPositions(start)
      initial = simulation.context.getState(getEnergy=True).getPotentialEnergy()
      # A force, as google-deepmind/alphafold c77d8b5 has it. AlphaFold 2.3 passed an energy
      # (2.39 kcal/mol): older OpenMM read the number it converts to, 10, as kJ/mol/nm (the
      # same stop as here); current OpenMM refuses it.
      simulation.minimizeEnergy(tolerance=tolerance * FORCE_TOLERANCE,
                                maxIterations=max_iterations)
      state = simulation.context.getState(getEnergy=True, getPositions=True)
      final = state.getPotentialEnergy().value_in_unit(ENERGY)
      if not np.isfinite(final):
        raise openmm.OpenMMException(f'energy is {final} after minimising')
      return Minimized(positions=state.getPositions(asNumpy=True).value_in_unit(LENGTH),
                       initial_energy=initial.value_in_unit(ENERGY), final_energy=final,
                       attempts=attempt)
    except openmm.OpenMMException as e:
      logging.warning('Amber minimisation attempt %d/%d failed: %s', attempt, max_attempts, e)
      error = e
  raise RelaxError(f'Amber minimisation failed {max_attempts} times: {error}')
