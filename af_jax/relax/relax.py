"""Amber relaxation of a predicted structure, repeated while violations remain.

AlphaFold's loop (alphafold/relax/amber_minimize.run_pipeline): complete the
structure (missing atoms, hydrogens), minimise with heavy atoms restrained, find
structural violations with the code the training loss uses; while some remain and
outer iterations are left, free the violating residues from their restraints and
minimise again from where the last run ended.

OpenMM and pdbfixer are optional dependencies (`pip install 'af_jax[relax]'`):
this module imports them only when a relaxation runs.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Collection, Sequence

import numpy as np
from absl import logging

from af_jax.common import protein
from af_jax.errors import RelaxError

INSTALL_HINT = "pip install 'af_jax[relax]'"
# A residue-number jump wider than any bond, so violation checks see chain ends.
CHAIN_GAP = 200


def require_openmm(use_gpu: bool = False) -> None:
  """Fail early, in one line, when OpenMM, pdbfixer or the GPU platform is missing.

  Raises:
    RelaxError: naming what to install.
  """
  try:
    import openmm
    import pdbfixer  # noqa: F401
  except ImportError as e:
    raise RelaxError(f'Amber relaxation needs OpenMM and pdbfixer ({e}): {INSTALL_HINT}, or '
                     'skip relaxation (--models_to_relax=none)') from None
  if use_gpu:
    names = [openmm.Platform.getPlatform(i).getName()
             for i in range(openmm.Platform.getNumPlatforms())]
    if 'CUDA' not in names:
      raise RelaxError(f'relaxing on the GPU needs OpenMM\'s CUDA platform; this OpenMM has '
                       f'{names}: pip install \'openmm[cuda12]\' (or [cuda13]), or relax on '
                       'the CPU (no --relax_use_gpu)')


@dataclasses.dataclass(frozen=True)
class RelaxResult:
  """A relaxed structure and what the relaxation did.

  Attributes:
    pdb_string: the relaxed structure with hydrogens (OpenMM's names), the input's
      per-residue B-factor (pLDDT) on every atom.
    chains: the relaxed heavy atoms (OXT included) as atom37 chains, one per input chain.
    initial_energy: kcal/mol, Amber energy of the completed input.
    final_energy: kcal/mol, after the last minimisation (restraint term included).
    rmsd: Å, heavy atoms of the input against the same atoms relaxed (no superposition:
      the restraints keep the frame).
    violations_per_residue: [N_res] bool over all chains in order: residues with a
      bond-length, bond-angle or clash violation left after relaxing.
    violations: the remaining violations' summary from protein_violations (no arrays).
    outer_iterations: minimisations run (at most max_outer_iterations).
    attempts: minimisation attempts in all (retries of OpenMM numerical failures).
    added_heavy_atoms: heavy atoms the input lacked and pdbfixer built (OXT included).
    seconds: wall time of the whole relaxation.
  """

  pdb_string: str
  chains: tuple[protein.Protein, ...]
  initial_energy: float
  final_energy: float
  rmsd: float
  violations_per_residue: np.ndarray
  violations: dict
  outer_iterations: int
  attempts: int
  added_heavy_atoms: int
  seconds: float

  @property
  def protein(self) -> protein.Protein:
    """The relaxed chain, when one was relaxed."""
    if len(self.chains) != 1:
      raise ValueError(f'{len(self.chains)} chains were relaxed; use .chains')
    return self.chains[0]

  @property
  def num_residue_violations(self) -> int:
    return int(np.sum(self.violations_per_residue))

  def metrics(self) -> dict:
    """AlphaFold 2.3's relax_metrics.json entry, plus the energies, RMSD and time."""
    return {
        'remaining_violations': [float(v) for v in self.violations_per_residue],
        'remaining_violations_count': float(self.num_residue_violations),
        'initial_energy': round(self.initial_energy, 3),
        'final_energy': round(self.final_energy, 3),
        'rmsd': round(self.rmsd, 4),
        'outer_iterations': self.outer_iterations,
        'added_heavy_atoms': self.added_heavy_atoms,
        'seconds': round(self.seconds, 3),
    }


def relax_protein(prot: protein.Protein | Sequence[protein.Protein], *,
                  max_iterations: int = 0, tolerance: float = 2.39, stiffness: float = 10.0,
                  max_outer_iterations: int = 3, use_gpu: bool = False,
                  exclude_residues: Collection[int] = (), max_attempts: int = 3) -> RelaxResult:
  """Relax one chain, or several chains together (a complex keeps its chains).

  A Protein with several chains (`chain_index`) is relaxed as those chains.

  The defaults are AlphaFold 2.3's (run_alphafold.py).

  Args:
    prot: a Protein, or a sequence of them with distinct chain ids. Residues need not
      have all their atoms: missing heavy atoms are built first.
    max_iterations: L-BFGS iterations per minimisation; 0 runs until converged.
    tolerance: kcal/mol/nm; L-BFGS stops once the root-mean-square force component is
      below it (2.39 is OpenMM's default, 10 kJ/mol/nm).
    stiffness: kcal/mol/Å², spring constant of the heavy-atom restraints.
    max_outer_iterations: minimisations at most, each freeing the residues still in
      violation after the previous one.
    use_gpu: minimise on OpenMM's CUDA platform.
    exclude_residues: residue indices (0-based, over all chains in order) never restrained.
    max_attempts: tries per minimisation when OpenMM fails numerically.

  Returns:
    The relaxed structure and its report.

  Raises:
    RelaxError: OpenMM or pdbfixer missing, a residue Amber cannot model (UNK, no
      atoms), or a minimisation that failed.
  """
  start = time.time()
  require_openmm(use_gpu)
  from af_jax.relax import amber, cleanup
  # A multi-chain Protein (a predicted complex) relaxes as its chains together.
  chains = (tuple(protein.split_chains(prot)) if isinstance(prot, protein.Protein)
            else tuple(prot))
  cleanup.check_chains(chains)
  if min(max_outer_iterations, max_attempts) < 1:
    raise RelaxError(f'{max_outer_iterations=} and {max_attempts=} must be at least 1')
  exclude = set(int(i) for i in exclude_residues)
  current, first, attempts, added = chains, None, 0, None
  for outer in range(1, max_outer_iterations + 1):
    # Hydrogens are placed again each time, on the heavy atoms of the last minimisation.
    fixed = cleanup.fix(current, amber.platform_name(use_gpu))
    added = fixed.added_heavy_atoms if added is None else added
    result = amber.minimize(fixed.topology, fixed.positions, max_iterations=max_iterations,
                            tolerance=tolerance, stiffness=stiffness, exclude_residues=exclude,
                            use_gpu=use_gpu, max_attempts=max_attempts)
    first = first or result
    attempts += result.attempts
    current = cleanup.to_chains(fixed.topology, result.positions, chains)
    violations = find_violations(current)
    per_residue = np.asarray(violations['per_residue_violation_mask'], bool)
    logging.info('Amber relax iteration %d: energy %.1f -> %.1f kcal/mol, %d residues in '
                 'violation, %d unrestrained', outer, result.initial_energy,
                 result.final_energy, int(per_residue.sum()), len(exclude))
    if not per_residue.any():
      break
    exclude |= set(np.flatnonzero(per_residue).tolist())
  b_factors = np.concatenate([cleanup.residue_b_factors(c) for c in chains])
  return RelaxResult(
      pdb_string=cleanup.to_pdb_with_hydrogens(fixed.topology, result.positions, b_factors),
      chains=current, initial_energy=first.initial_energy, final_energy=result.final_energy,
      rmsd=heavy_atom_rmsd(chains, current), violations_per_residue=per_residue,
      violations={k: v for k, v in violations.items() if isinstance(v, int)},
      outer_iterations=outer, attempts=attempts, added_heavy_atoms=added,
      seconds=time.time() - start)


def merge_chains(chains: Sequence[protein.Protein]) -> protein.Protein:
  """One Protein of all chains, numbered so that chain ends are residue-number gaps.

  Violation checks bond consecutive residue numbers only; this keeps chains apart
  for bonds and angles while clashes between chains still count.
  """
  index, offset = [], 0
  for chain in chains:
    numbers = np.asarray(chain.residue_index) - int(chain.residue_index[0]) + offset
    index.append(numbers)
    offset = int(numbers[-1]) + CHAIN_GAP
  return protein.Protein(
      atom_positions=np.concatenate([c.atom_positions for c in chains]),
      atom_mask=np.concatenate([c.atom_mask for c in chains]),
      aatype=np.concatenate([c.aatype for c in chains]),
      residue_index=np.concatenate(index).astype(np.int32),
      b_factors=np.concatenate([c.b_factors for c in chains]), chain_id=chains[0].chain_id)


def find_violations(chains: Sequence[protein.Protein]) -> dict:
  """Structural violations of chains (one report over all residues, in order)."""
  from af_jax.common.violations import protein_violations
  # The CA-C-N band in the angle's own standard deviation, as DeepMind's relaxation
  # checks since their 2025 correction (AlphaFold 2.3's is 2.2x tighter).
  return protein_violations(merge_chains(chains), use_ca_c_n_angle_stddev=True)


def heavy_atom_rmsd(before: Sequence[protein.Protein], after: Sequence[protein.Protein]) -> float:
  """Å over the heavy atoms present in both, in place (no superposition)."""
  # DIFFERS FROM AF2: AlphaFold's debug RMSD includes the hydrogens it added itself; the
  # heavy atoms are what the unrelaxed model and the user have.
  sq, n = 0.0, 0
  for a, b in zip(before, after):
    both = (np.asarray(a.atom_mask) > 0.5) & (np.asarray(b.atom_mask) > 0.5)
    diff = np.asarray(a.atom_positions, np.float64) - np.asarray(b.atom_positions, np.float64)
    sq += float(np.sum(np.square(diff)[both]))
    n += int(both.sum())
  return float(np.sqrt(sq / max(n, 1)))
