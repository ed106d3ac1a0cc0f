"""The AlphaFold2 monomer model with recycling inside the compiled program.

Jumper et al. (2021) Suppl. Alg. 2 "Inference". One recycling iteration is
trunk (embeddings, extra-MSA stack, Evoformer) + structure module; the
iterations run in a `lax.while_loop`, so the executable is the same whatever the
number of recycles, and the loop can stop early when the CA positions settle.
The heads run once, on the last iteration's representations.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx
from jax.sharding import Mesh

from af_jax.chunking import ChunkPlan
from af_jax.common import confidence, tracing
from af_jax.errors import InputError
from af_jax.model import heads, primitives, progress
from af_jax.model.evoformer import EmbeddingsAndEvoformer
from af_jax.model.structure_module import StructureModule


class AlphaFold(nnx.Module):
  """AlphaFold's `alphafold_iteration` plus recycling.

  Args:
    config: the `model` sub-config of a preset (configs.model_config(name).model).
    rngs: random streams for initialisation.
  """

  trunk_class = EmbeddingsAndEvoformer
  structure_module_class = StructureModule

  def __init__(self, config, *, rngs: nnx.Rngs):
    e = config.embeddings_and_evoformer
    gc = config.global_config
    hc = config.heads
    zi = gc.zero_init
    # NUMERICS: the big heads compute in the trunk's dtype (float32 logits);
    # the structure module and the per-residue heads are always float32.
    dt = primitives.compute_dtype(gc)
    self.config = config
    self.evoformer = self.trunk_class(e, gc, rngs=rngs)
    self.structure_module = self.structure_module_class(
        hc.structure_module, c_s=e.seq_channel, c_z=e.pair_channel, zero_init=zi, rngs=rngs)
    self.distogram_head = heads.DistogramHead(hc.distogram, c_z=e.pair_channel, zero_init=zi,
                                              dtype=dt, rngs=rngs)
    self.masked_msa_head = heads.MaskedMsaHead(hc.masked_msa, c_m=e.msa_channel, zero_init=zi,
                                               dtype=dt, rngs=rngs)
    self.predicted_lddt_head = heads.PredictedLDDTHead(
        hc.predicted_lddt, c_s=hc.structure_module.num_channel, zero_init=zi, rngs=rngs)
    self.experimentally_resolved_head = heads.ExperimentallyResolvedHead(
        hc.experimentally_resolved, c_s=e.seq_channel, zero_init=zi, rngs=rngs)
    self.predicted_aligned_error_head = (
        heads.PredictedAlignedErrorHead(hc.predicted_aligned_error, c_z=e.pair_channel,
                                        zero_init=zi, dtype=dt, rngs=rngs)
        if hc.predicted_aligned_error.weight else None)

  def iteration(self, batch: dict, prev: dict, plan: ChunkPlan = ChunkPlan(),
                key: jax.Array | None = None, mesh: Mesh | None = None) -> tuple[dict, dict]:
    """One recycling iteration: trunk + structure module.

    Returns:
      (representations, structure module outputs).
    """
    k_trunk, k_structure = jax.random.split(key) if key is not None else (None, None)
    reps = self.evoformer(batch, prev, plan, k_trunk, mesh)
    sm = self.structure_module(reps['single'], reps['pair'], batch['seq_mask'], batch['aatype'],
                               key=k_structure)
    reps['structure_module'] = sm.pop('act')
    return reps, sm

  @jax.named_scope('heads')
  def apply_heads(self, reps: dict, sm: dict, seq_mask: jax.Array) -> dict:
    """Every head plus the confidence metrics, with AlphaFold's output names."""
    out = {
        'structure_module': sm,
        'representations': reps,
        'distogram': self.distogram_head(reps['pair']),
        'masked_msa': self.masked_msa_head(reps['msa']),
        'experimentally_resolved': self.experimentally_resolved_head(reps['single']),
        'predicted_lddt': self.predicted_lddt_head(reps['structure_module']),
    }
    out['plddt'] = confidence.plddt(out['predicted_lddt']['logits'])
    out['mean_plddt'] = jnp.sum(out['plddt'] * seq_mask) / jnp.sum(seq_mask)
    out['ranking_confidence'] = out['mean_plddt']
    if self.predicted_aligned_error_head is not None:
      pae = self.predicted_aligned_error_head(reps['pair'])
      out['predicted_aligned_error_head'] = pae
      out.update(confidence.predicted_aligned_error(pae['logits'], pae['breaks']))
      out['ptm'] = confidence.predicted_tm_score(pae['logits'], pae['breaks'], seq_mask)
    return out

  def recycle_metrics(self, reps: dict, seq_mask: jax.Array,
                      asym_id: jax.Array | None = None) -> dict:
    """What a progress line shows of one iteration: mean pLDDT, pTM (with the PAE head) and,
    given a complex's `asym_id`, ipTM; only the heads these need."""
    logits = self.predicted_lddt_head(reps['structure_module'])['logits']
    metrics = {'mean_plddt': jnp.sum(confidence.plddt(logits) * seq_mask) / jnp.sum(seq_mask)}
    if self.predicted_aligned_error_head is not None:
      pae = self.predicted_aligned_error_head(reps['pair'])
      metrics['ptm'] = confidence.predicted_tm_score(pae['logits'], pae['breaks'], seq_mask)
      if asym_id is not None:
        metrics['iptm'] = confidence.predicted_tm_score(pae['logits'], pae['breaks'], seq_mask,
                                                        asym_id)
    return metrics

  def __call__(self, batch: dict, plan: ChunkPlan = ChunkPlan(),
               key: jax.Array | None = None, mesh: Mesh | None = None, *,
               report_progress: bool = False) -> dict:
    """Recycle and predict.

    Args:
      batch: processed features with a leading axis of one slice per recycle
        (AlphaFold's `RunModel.process_features` output), or of length 1 to
        reuse the same features at every recycle.
      plan: chunk sizes per op.
      key: dropout key (training) or None.
      mesh: a mesh with a `dap` axis to run the trunk's stacks with Dynamic Axial
        Parallelism (`parallel.dap`), or None for one device.
      report_progress: report every iteration's confidence and CA change to the host as
        it ends (`model.progress`); the outputs are the same either way.

    Returns:
      AlphaFold's outputs (see `apply_heads`) plus `num_recycles` (recycles run)
      and `tol` (CA distance change of the last recycle, Å).
    """
    c = self.config
    num_iters = int(c.num_recycle) + 1
    n_slices = batch['aatype'].shape[0]
    if n_slices != 1 and n_slices < num_iters:
      raise InputError(
          f'batch has {n_slices} recycle slices but model.num_recycle={c.num_recycle} needs '
          f'{num_iters}; process the features with data.common.num_recycle >= {c.num_recycle}')
    n_res = batch['aatype'].shape[1]
    seq_mask = batch['seq_mask'][0]

    def take(r):
      idx = jnp.minimum(r, n_slices - 1)
      return jax.tree_util.tree_map(lambda x: jax.lax.dynamic_index_in_dim(x, idx, 0, False),
                                    batch)

    def run(r, prev):
      k = jax.random.fold_in(key, r) if key is not None else None
      return self.iteration(take(r), prev, plan, k, mesh)

    metrics = (lambda reps: self.recycle_metrics(reps, seq_mask)) if report_progress else None
    done, reps, sm, tol = self.recycle(run, n_res, seq_mask, metrics, mesh)
    out = self.apply_heads(reps, sm, seq_mask)
    out['num_recycles'] = done - 1
    out['tol'] = tol
    return out

  def recycle(self, run, n_res: int, seq_mask: jax.Array, metrics=None,
              mesh: Mesh | None = None):
    """`run(r, prev) -> (reps, sm)` for r = 0, 1, ... in a `lax.while_loop`.

    Up to `num_recycle + 1` iterations; after the second, it stops once the CA
    distances move less than `recycle_early_stop_tolerance` (Å). With `metrics`
    (`reps -> scalars`, `recycle_metrics`), each iteration reports them and its CA change
    to the host (`progress.report`, from `mesh`'s first device); they feed nothing else.

    Returns:
      (iterations run, the last iteration's reps and sm, its CA distance change).
    """
    c = self.config
    num_iters = int(c.num_recycle) + 1
    tolerance = float(c.get('recycle_early_stop_tolerance', 0.0))
    prev0 = self._initial_prev(n_res)
    # PERF: Python traces one iteration once. Its jaxpr gives the loop carry's shapes and
    # is replayed as the loop body; tracing `run` again (the module code) would double the
    # tracing time of a cold process.
    run_traced, shapes = tracing.trace_once(run, jnp.int32(0), prev0)
    outputs0 = jax.tree_util.tree_map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)

    def cond(carry):
      done, _, _, tol = carry
      return (done < num_iters) & ~((done > 1) & (tol < tolerance))

    def body(carry):
      done, prev, _, _ = carry
      reps, sm = run_traced(done, prev)
      new_prev = recycled_state(reps, sm)
      tol = confidence.ca_distance_change(prev['prev_pos'], new_prev['prev_pos'], seq_mask)
      if metrics is not None:
        progress.report(done, num_iters - 1, metrics(reps), tol, mesh)
      return done + 1, new_prev, (reps, sm), tol

    carry = (jnp.int32(0), prev0, outputs0, jnp.float32(jnp.inf))
    done, _, (reps, sm), tol = jax.lax.while_loop(cond, body, carry)
    return done, reps, sm, tol

  def _initial_prev(self, n_res: int) -> dict:
    e = self.config.embeddings_and_evoformer
    return {'prev_msa_first_row': jnp.zeros((n_res, e.msa_channel), jnp.float32),
            'prev_pair': jnp.zeros((n_res, n_res, e.pair_channel), jnp.float32),
            'prev_pos': jnp.zeros((n_res, 37, 3), jnp.float32)}

  def forward_train(self, batch: dict, num_recycles: jax.Array, plan: ChunkPlan = ChunkPlan(),
                    key: jax.Array | None = None, mesh: Mesh | None = None) -> dict:
    """Training forward: gradients flow through the last recycling iteration only.

    AlphaFold's training recipe (Jumper et al. (2021) Suppl. 1.10): iterations
    0..num_recycles-1 run without gradients (their weights and outputs are
    stopped, so the loop's trip count may depend on data), then iteration
    `num_recycles` runs differentiably and the heads read it.

    Args:
      batch: processed features with a leading axis of recycle slices; slice r
        feeds iteration r (the loss reads slice `num_recycles`).
      num_recycles: int32 scalar, sampled per batch by the data pipeline.
      plan, key, mesh: as for `__call__`; `key` enables dropout in every iteration.

    Returns:
      The outputs of `apply_heads` for the last iteration, plus `num_recycles`.
    """
    n_slices = batch['aatype'].shape[0]
    n_res = batch['aatype'].shape[1]
    num_recycles = jnp.minimum(jnp.asarray(num_recycles, jnp.int32), n_slices - 1)

    def take(r):
      return jax.tree_util.tree_map(lambda x: jax.lax.dynamic_index_in_dim(x, r, 0, False), batch)

    def key_for(r):
      return jax.random.fold_in(key, r) if key is not None else None

    # Stopped weights: the loop below has no tangents, so reverse mode never meets it.
    graphdef, state = nnx.split(self)
    frozen = nnx.merge(graphdef, jax.lax.stop_gradient(state))

    def body(r, prev):
      reps, sm = frozen.iteration(take(r), prev, plan, key_for(r), mesh)
      return jax.lax.stop_gradient(recycled_state(reps, sm))

    prev = jax.lax.fori_loop(0, num_recycles, body, self._initial_prev(n_res))
    reps, sm = self.iteration(take(num_recycles), prev, plan, key_for(num_recycles), mesh)
    out = self.apply_heads(reps, sm, batch['seq_mask'][0])
    out['num_recycles'] = num_recycles
    return out


def recycled_state(reps: dict, sm: dict) -> dict:
  """What one iteration passes to the next (Alg. 2 lines 4-6 and 31-32)."""
  return {'prev_msa_first_row': reps['msa_first_row'], 'prev_pair': reps['pair'],
          'prev_pos': sm['final_atom_positions']}
