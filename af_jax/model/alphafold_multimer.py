"""AlphaFold-Multimer with recycling inside the compiled program.

Evans et al. (2021). The heads and the recycling loop are the monomer's
(`alphafold.AlphaFold`); the trunk samples its MSA from the raw features with a
fresh key every recycle (the one trunk with `evoformer_multimer`'s parts), the
structure module is the one module with Multimer's frame convention
(`structure_module_multimer.RIGID_FRAMES`), and the confidence adds the interface
pTM and ranks by 0.8 ipTM + 0.2 pTM.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.sharding import Mesh

from af_jax.chunking import ChunkPlan
from af_jax.common import confidence
from af_jax.model.alphafold import AlphaFold
from af_jax.model.evoformer_multimer import EmbeddingsAndEvoformerMultimer
from af_jax.model.structure_module_multimer import StructureModuleMultimer


def recycle_key(key: jax.Array, r: jax.Array | int) -> jax.Array:
  """The sampling key of recycling iteration `r` (0 is the first pass)."""
  return jax.random.fold_in(key, r)


class AlphaFoldMultimer(AlphaFold):
  """AlphaFold-Multimer's `alphafold_iteration` plus recycling.

  Args:
    config: the `model` sub-config of a multimer preset
      (configs.model_config('model_1_multimer_v3').model).
    rngs: random streams for initialisation.
  """

  trunk_class = EmbeddingsAndEvoformerMultimer
  structure_module_class = StructureModuleMultimer

  def iteration(self, batch: dict, prev: dict, msa_key: jax.Array,
                plan: ChunkPlan = ChunkPlan(), key: jax.Array | None = None,
                mesh: Mesh | None = None) -> tuple[dict, dict]:
    """One recycling iteration: sample the MSA with `msa_key`, trunk, structure module."""
    k_trunk, k_structure = jax.random.split(key) if key is not None else (None, None)
    reps = self.evoformer(batch, prev, msa_key, plan, k_trunk, mesh)
    sm = self.structure_module(reps['single'], reps['pair'], batch['seq_mask'], batch['aatype'],
                               key=k_structure)
    reps['structure_module'] = sm.pop('act')
    return reps, sm

  def apply_heads(self, reps: dict, sm: dict, seq_mask: jax.Array,
                  asym_id: jax.Array | None = None) -> dict:
    """The monomer's heads and metrics plus `iptm`; ranking_confidence = 0.8 ipTM + 0.2 pTM."""
    out = super().apply_heads(reps, sm, seq_mask)
    pae = out['predicted_aligned_error_head']
    out['iptm'] = confidence.predicted_tm_score(pae['logits'], pae['breaks'], seq_mask, asym_id)
    out['ranking_confidence'] = 0.8 * out['iptm'] + 0.2 * out['ptm']
    return out

  def __call__(self, batch: dict, msa_key: jax.Array, plan: ChunkPlan = ChunkPlan(),
               key: jax.Array | None = None, mesh: Mesh | None = None, *,
               report_progress: bool = False) -> dict:
    """Recycle until the structure stops moving, then predict.

    Args:
      batch: raw multimer features (data.schema.MULTIMER), no recycle axis: each
        recycle samples its own MSA.
      msa_key: the prediction's sampling key; recycle r uses `recycle_key(msa_key, r)`.
      plan, key, mesh, report_progress: as for the monomer (`key` enables dropout; the
        progress lines add ipTM).

    Returns:
      AlphaFold's outputs plus `iptm`, `num_recycles` and `tol` (Å).
    """
    n_res = batch['aatype'].shape[0]
    seq_mask = batch['seq_mask'].astype(jnp.float32)

    def run(r, prev):
      k = jax.random.fold_in(key, r) if key is not None else None
      return self.iteration(batch, prev, recycle_key(msa_key, r), plan, k, mesh)

    metrics = ((lambda reps: self.recycle_metrics(reps, seq_mask, batch['asym_id']))
               if report_progress else None)
    done, reps, sm, tol = self.recycle(run, n_res, seq_mask, metrics, mesh)
    out = self.apply_heads(reps, sm, seq_mask, batch['asym_id'])
    out['num_recycles'] = done - 1
    out['tol'] = tol
    return out
