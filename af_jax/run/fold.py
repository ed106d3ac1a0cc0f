"""Fold FASTA records (or features.pkl files) into AlphaFold's output directories.

The library function behind run_inference.py: targets sorted by length so padded
buckets (and their executables) are reused, one Predictor per model kept for the
whole run, a target whose outputs are complete for the same job skipped (af_jax.run.job),
any other's old outputs replaced, a prediction with non-finite outputs a failure, and
every stage timed. What the log shows as it goes: the weights as each model's are ready, a
line per recycle of every prediction (`--progress`, reported from inside the compiled
loop: af_jax.model.progress), and after each target the run's count, throughput and ETA.
"""

from __future__ import annotations

import dataclasses
import functools
import pathlib
import time
from collections.abc import Mapping, Sequence

import numpy as np
from absl import logging

from af_jax import autochunk
from af_jax import params as af_params
from af_jax import relax
from af_jax.common import files, protein
from af_jax.data import features
from af_jax.errors import ParamsError, PredictionError
from af_jax.inference import Predictor, feature_shapes
from af_jax.model import progress
from af_jax.run import job as af_job
from af_jax.run import outputs, plots, report
from af_jax.run.options import (FoldOptions, check_relax_options, inference_mesh,
                                load_model_params, model_config, weights_id)
from af_jax.run.targets import (FEATURES_FILES, Target, check_output_dir, check_target_dirs,
                                file_error, read_targets)


def target_job(target: Target, target_dir: pathlib.Path, options: FoldOptions,
               configs: Mapping, weights: Mapping[str, str]) -> dict:
  """The job that folding `target` into target_dir is (af_jax.run.job.make_job).

  Its MSA field reads target_dir/msas as it is now: before a fold, what the fold would
  reuse; after it, what it used.
  """
  data = af_job.data_fields(
      target_dir, options.pipeline, features_path=target.features_path,
      uniprot_database=options.uniprot_database if target.chains else None)
  return af_job.make_job(
      sequences=[c.sequence for c in target.chains] or [target.record.sequence], data=data,
      weights=weights, configs=configs, random_seed=options.random_seed,
      num_seeds=options.num_seeds, precision=options.precision)


@dataclasses.dataclass(frozen=True)
class Prediction:
  """A target's predictions in memory, best first (as ranked_0, ranked_1, ...).

  Attributes:
    directory: the target's output directory (None when it was a temporary one).
    outputs: `<model>_pred_<k>` -> AlphaFold's outputs, numpy arrays cut to the target's
      length (`plddt`, `structure_module.final_atom_positions`, `ptm`, ...).
    proteins: the same keys -> the unrelaxed structure (`af_jax.common.protein.to_pdb`).
    scores: the same keys -> the ranking score (mean pLDDT; a complex's 0.8 ipTM + 0.2 pTM).
  """

  directory: pathlib.Path | None
  outputs: dict[str, dict]
  proteins: dict[str, protein.Protein]
  scores: dict[str, float]


class Folder:
  """Runs the models over targets; Predictors (and their compiled shapes) live for the run."""

  def __init__(self, options: FoldOptions, predictions: dict | None = None):
    check_relax_options(options)
    self.options = options
    # Filled with target -> Prediction when given (af_jax.fold's results in memory).
    self.predictions = predictions
    self._configs = {name: model_config(name, options) for name in options.model_names}
    self._weights = {name: weights_id(name, options) for name in options.model_names}
    self.mesh = inference_mesh(options.dap)
    # Weights are read and checked against each model up front: a missing, corrupt or
    # wrong-preset file fails before hours of MSA search. Nothing compiles yet.
    self._predictors = {}
    for name, cfg in self._configs.items():
      start = time.time()
      try:
        self._predictors[name] = Predictor(cfg, load_model_params(name, cfg, options),
                                           mesh=self.mesh, report_progress=options.progress)
      except ParamsError as e:
        where = af_params.params_path(options.params_dir, name) if options.params_dir else 'random'
        if str(where) in str(e):  # read_npz's messages name the file already
          raise ParamsError(f'{name} weights: {e}') from None
        raise ParamsError(f'{name} weights from {where}: {e}') from None
      source = ('random weights built (--random_params)' if options.random_params else
                f'weights read from {af_params.params_path(options.params_dir, name)}')
      logging.info('%s: %s and placed on %d device(s) in %.1f s', name, source,
                   max(options.dap, 1), time.time() - start)
    # What differs between monomers and complexes; the run's presets are of one kind
    # (FoldOptions.multimer refuses a mix).
    self.kind = self._predictors[options.model_names[0]].kind

  @property
  def primary(self) -> bool:
    """Process 0 writes the outputs; the others of a multi-host run compute alongside it."""
    import jax
    return jax.process_index() == 0

  def bucket(self, model_name: str, batch: Mapping) -> tuple[Predictor, dict, float]:
    """The model's Predictor for the batch's bucket, run with its ChunkPlan per --chunk;
    what to record of the plan in ranking_debug.json; and the seconds planning spent
    compiling (or loading) the executable the prediction reuses. The warm-up's derivation
    (`autochunk.bucket_predictor`), so a warmed bucket's executable is this one."""
    base = self._predictors[model_name]
    return autochunk.bucket_predictor(base, feature_shapes(batch, base.use_templates),
                                      self.options.chunk, self.options.memory_budget)

  def job(self, target: Target, target_dir: pathlib.Path) -> dict:
    """The target's job with this run's models, weights and settings."""
    return target_job(target, target_dir, self.options, self._configs, self._weights)

  def fold(self, targets: Sequence[Target]) -> list[pathlib.Path]:
    """Fold every target; returns their output directories.

    A target whose recorded job differs from the one asked is folded again; its old
    outputs are removed once the new inputs are read (fold_target). A target whose
    prediction has non-finite outputs fails (one error line, its outputs removed) while
    the others fold.

    Raises:
      PredictionError: after every target, when any failed.
    """
    check_output_dir(self.options.output_dir)
    dirs, failed = [], []
    clock = RunClock([len(t.record.sequence) for t in targets])
    for i, target in enumerate(targets, 1):
      name, length = target.record.name, len(target.record.sequence)
      target_dir = self.options.output_dir / name
      dirs.append(target_dir)
      if outputs.is_complete(target_dir, self.options.models_to_relax,
                             self.job(target, target_dir)):
        _log_skipped(i, len(targets), target, target_dir)
        clock.skipped(length)
        continue
      out_dir = target_dir if self.primary else _scratch_dir(target_dir)
      if self.primary:
        _log_replaced(target, target_dir, self.job(target, target_dir))
      logging.info('[%d/%d] %s (%d residues)', i, len(targets), name, length)
      start = time.time()
      try:
        self.fold_target(target, out_dir)
      except PredictionError as e:
        logging.error('%s', e)
        outputs.remove_outputs(out_dir, keep=_inputs(target))
        failed.append(name)
        clock.folded(length, time.time() - start)
        logging.info('%s', clock.describe())
        continue
      except OSError as e:  # a full disk, a permission, a file in the way: not a bug
        raise file_error(e, name) from None
      if self.primary:
        files.remove_stale(target_dir)  # what a killed run of this target left behind
      logging.info('[%d/%d] %s done in %.1f s', i, len(targets), name, time.time() - start)
      clock.folded(length, time.time() - start)
      logging.info('%s', clock.describe())
    if failed:
      others = '; the others are complete' if len(failed) < len(targets) else ''
      raise PredictionError(f'{len(failed)} of {len(targets)} targets failed ({", ".join(failed)})'
                            f' with non-finite outputs (see the errors above){others}')
    return dirs

  def fold_target(self, target: Target, target_dir: pathlib.Path) -> None:
    """Features, every model x seed, outputs and ranking for one target: a protein, or with
    multimer presets a complex (the presets' ModelKind says what differs)."""
    opts, kind = self.options, self.kind
    target_dir.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    start = time.time()
    if target.features is not None:
      raw = target.features
    elif target.features_path:
      raw = features.load_features(target.features_path)
    else:
      raw = kind.make_raw_features(target.record, target.chains, target_dir, opts.pipeline,
                                   uniprot_database=opts.uniprot_database)
    # The inputs are read and checked: only now go the outputs of an earlier job (or an
    # interrupted run), ranking_debug.json first, so bad input leaves an earlier result.
    outputs.remove_outputs(target_dir, keep=_inputs(target))
    write_features(target_dir, raw)
    timings['features'] = time.time() - start
    logging.info('%s: %sfeatures in %.1f s', target.record.name, kind.describe_features(raw),
                 timings['features'])

    num_res = kind.num_residues(raw)
    scores, proteins, plddts, paes, chunk_plans = {}, {}, {}, {}, {}
    pae_scores, results = {}, {}
    for m, model_name in enumerate(opts.model_names):
      cfg = self._configs[model_name]
      batch = predictor = plan_info = None
      for s in range(opts.num_seeds):
        pred_name = f'{model_name}_pred_{s}'
        seed = opts.random_seed + s * len(opts.model_names) + m
        t0 = time.time()
        if batch is None or kind.batch_per_seed:
          batch = kind.make_batch(raw, cfg, seed, opts.length_buckets)
          timings[f'process_features_{pred_name}'] = time.time() - t0
          t0 = time.time()
          predictor, plan_info, built = self.bucket(model_name, batch)
          # AutoChunk compiles the plan it picks, and the prediction reuses that executable:
          # that compile counts as compiling, not planning.
          timings[f'chunk_plan_{pred_name}'] = time.time() - t0 - built
          t0 = time.time()
        else:
          t0, built = time.time(), 0.0  # a complex's later seeds reuse the executable
        chunk_plans[pred_name] = plan_info
        compiled = predictor.compile(batch)
        timings[f'compile_{pred_name}'] = built + time.time() - t0
        logging.info('%s %s: executable %s %s in %.1f s', target.record.name, pred_name,
                     compiled.label, _COMPILE_STATUS[compiled.status], compiled.seconds)
        t0 = time.time()
        # The executable is shared by every target and seed of the bucket: the listener says
        # whose recycles these are. Process 0 alone logs them (the callback runs from the
        # mesh's first device; without a mesh each process would report its own copy).
        listener = (functools.partial(_log_recycle, target.record.name, pred_name)
                    if self.primary else _ignore)
        with progress.listen(listener):
          out = predictor.predict_processed(batch, random_seed=seed)
        timings[f'predict_{pred_name}'] = time.time() - t0
        t0 = time.time()
        out = outputs.unpad_prediction(out, num_res)
        outputs.check_finite(out, _prediction_name(target, model_name, pred_name, seed))
        scores[pred_name] = kind.ranking_score(out)
        if self.predictions is not None:
          results[pred_name] = out
        plddts[pred_name] = np.asarray(out['plddt'])
        if 'predicted_aligned_error' in out:
          paes[pred_name] = out['predicted_aligned_error']
          pae_scores[pred_name] = _plot_scores(out)
        prot = outputs.prediction_protein(out, **kind.protein_fields(raw))
        proteins[pred_name] = prot
        outputs.write_prediction(target_dir, pred_name, out, prot)
        timings['outputs'] = timings.get('outputs', 0.0) + time.time() - t0
        logging.info('%s %s: %s, %.1f s (padded to %d residues)', target.record.name,
                     pred_name, kind.summary(out), timings[f'predict_{pred_name}'],
                     batch['aatype'].shape[-1])
    order = sorted(scores, key=scores.get, reverse=True)
    relaxed = relax_models(target_dir, outputs.relax_targets(order, opts.models_to_relax),
                           proteins, use_gpu=opts.relax_use_gpu, timings=timings)
    t0 = time.time()
    if self.predictions is not None:
      self.predictions[target.record.name] = Prediction(
          target_dir, {k: results[k] for k in order}, {k: proteins[k] for k in order},
          {k: scores[k] for k in order})
    heading, chains = kind.plot_labels(target.record.name, num_res, proteins[order[0]])
    title = heading + (' - RANDOM WEIGHTS, smoke test only' if opts.random_params else '')
    plots.plot_plddt(target_dir / 'plddt.png', {k: plddts[k] for k in order}, title, **chains)
    if paes:
      plots.plot_pae(target_dir / 'pae.png', {k: paes[k] for k in order if k in paes}, title,
                     scores=pae_scores, **chains)
    timings['outputs'] = timings.get('outputs', 0.0) + time.time() - t0
    outputs.write_timings(target_dir, timings)
    # The ranking's own random-weights note heads the report.
    write_report = lambda ranking: report.write_report(
        target_dir, ranking, kind.score_label, title=heading,
        settings={'models_to_relax': opts.models_to_relax})
    outputs.write_ranking(target_dir, scores, proteins, random_params=opts.random_params,
                          relaxed=relaxed, score_label=kind.score_label,
                          job=self.job(target, target_dir), chunk_plans=chunk_plans,
                          before_ranking_file=write_report)


class RunClock:
  """How far a run is: targets done, throughput and the time left.

  The rate is residues per second over the targets folded so far (skipped ones cost
  nothing and are left out of it); the time left is the residues still to fold at that
  rate. Targets run shortest first and a prediction's cost grows faster than its length,
  so early in a run the estimate is low.

  Args:
    lengths: the run's targets' residue counts.
  """

  def __init__(self, lengths: Sequence[int]):
    self.total = len(lengths)
    self.residues_left = sum(lengths)
    self.done = 0
    self.skipped_count = 0
    self.residues_folded = 0
    self.seconds = 0.0

  def skipped(self, length: int) -> None:
    """A target whose outputs were already complete."""
    self.done += 1
    self.skipped_count += 1
    self.residues_left -= length

  def folded(self, length: int, seconds: float) -> None:
    """A target folded (or failed) in `seconds`."""
    self.done += 1
    self.residues_left -= length
    self.residues_folded += length
    self.seconds += seconds

  def describe(self) -> str:
    """`run: 3/10 targets done (1 skipped), 41.2 residues/s, 95 targets/h, ETA 0:02:10`."""
    skipped = f' ({self.skipped_count} skipped)' if self.skipped_count else ''
    line = f'run: {self.done}/{self.total} targets done{skipped}'
    if self.seconds <= 0 or self.residues_folded == 0:
      return line
    rate = self.residues_folded / self.seconds
    per_hour = 3600.0 * (self.done - self.skipped_count) / self.seconds
    eta = round(self.residues_left / rate)
    return (f'{line}, {rate:.1f} residues/s, {per_hour:.0f} targets/h, '
            f'ETA {eta // 3600}:{eta // 60 % 60:02d}:{eta % 60:02d}')


def _log_recycle(target: str, pred_name: str, info: progress.RecycleProgress) -> None:
  logging.info('%s %s: %s', target, pred_name, info.describe())


def _ignore(info: progress.RecycleProgress) -> None:
  del info


def write_features(target_dir: pathlib.Path, raw: Mapping) -> None:
  """features.pkl (AlphaFold's file) and the same features as a pickle-free features.npz."""
  features.write_features_pkl(target_dir / FEATURES_FILES[0], raw)
  features.write_features_npz(target_dir / FEATURES_FILES[1], raw)


def _scratch_dir(target_dir: pathlib.Path) -> pathlib.Path:
  """Where a non-primary process of a multi-host run puts what it would write.

  Every process decides what to fold from the real output directory (a filesystem
  they all see), so they run the same programs; only process 0's files are kept.
  """
  import jax
  return target_dir.parent / f'.process_{jax.process_index()}' / target_dir.name


def relax_models(target_dir: pathlib.Path, names: Sequence[str],
                 proteins: Mapping[str, protein.Protein], *, use_gpu: bool = False,
                 timings: dict[str, float] | None = None) -> dict[str, tuple]:
  """Amber-relax the named predictions into relaxed_<name>.pdb/.cif and relax_metrics.json.

  A relaxation that fails is logged and reported in relax_metrics.json; its
  unrelaxed files stay, and it is ranked unrelaxed.

  Returns:
    name -> (relaxed PDB text, relaxed Protein), for write_ranking.
  """
  relaxed, metrics = {}, {}
  for name in names:
    t0 = time.time()
    try:
      # A complex relaxes as one system that keeps its chains.
      result = relax.relax_protein(proteins[name], use_gpu=use_gpu)
    except relax.RelaxError as e:
      logging.warning('%s: Amber relaxation failed, keeping the unrelaxed model: %s', name, e)
      metrics[name] = {'error': str(e)}
      continue
    finally:
      if timings is not None:
        timings[f'relax_{name}'] = time.time() - t0
    relaxed_protein = protein.join_chains(result.chains)
    outputs.write_relaxed(target_dir, name, result.pdb_string, relaxed_protein)
    relaxed[name] = (result.pdb_string, relaxed_protein)
    metrics[name] = result.metrics()
    logging.info('%s: relaxed in %.1f s, energy %.1f -> %.1f kcal/mol, RMSD %.2f A to the '
                 'unrelaxed model, %d residues still in violation', name, result.seconds,
                 result.initial_energy, result.final_energy, result.rmsd,
                 result.num_residue_violations)
  if names:
    outputs.write_relax_metrics(target_dir, metrics)
  return relaxed


_COMPILE_STATUS = {
    'compiled': 'compiled (cache miss; stored)', 'loaded': 'loaded from the compilation cache',
    'in_process': 'reused', 'uncached': 'compiled (no persistent cache)',
    'skipped': 'already cached'}


def _plot_scores(out: Mapping) -> dict[str, float]:
  """pTM (and ipTM for a complex) of a prediction, for its PAE panel's title."""
  return {label: float(out[key]) for key, label in (('ptm', 'pTM'), ('iptm', 'ipTM'))
          if key in out}


def _log_skipped(i: int, n: int, target: Target, target_dir: pathlib.Path) -> None:
  logging.info('[%d/%d] %s (%d residues): outputs complete in %s, skipped', i, n,
               target.record.name, len(target.record.sequence), target_dir)


def _inputs(target: Target) -> list[str]:
  """Input files that may sit where an output would (--features_paths=<target>/features.pkl)."""
  return [target.features_path] if target.features_path else []


def _prediction_name(target: Target, model_name: str, pred_name: str, seed: int) -> str:
  return f'target {target.record.name}, model {model_name}, seed {seed} ({pred_name})'


def _log_replaced(target: Target, target_dir: pathlib.Path, asked: Mapping) -> None:
  """Say why a target with outputs is folded again: a WARNING when they are another job's."""
  ranking = outputs.read_ranking(target_dir)
  if ranking is None:
    return  # nothing finished there: at most an interrupted run's partial files
  recorded = ranking.get(outputs.JOB_KEY)
  if not isinstance(recorded, Mapping):
    logging.warning('%s: the outputs in %s record no job (an older af_jax made them); folding '
                    'again and replacing them', target.record.name, target_dir)
    return
  changed = af_job.changed_fields(recorded, asked)
  if changed:
    logging.warning('%s: the outputs in %s were made by another job (changed: %s); folding '
                    'again and replacing them', target.record.name, target_dir,
                    ', '.join(changed))
  else:
    logging.info('%s: the outputs in %s are incomplete (a file missing, or relaxation now '
                 'asked for); folding again', target.record.name, target_dir)


def fold(fasta_paths: Sequence[str], options: FoldOptions,
         features_paths: Sequence[str] = (), predictions: dict | None = None
         ) -> list[pathlib.Path]:
  """Read the targets, check the outputs and weights, fold them all.

  `predictions`, when given, gets target name -> Prediction for every target folded (not
  for one skipped because its outputs are complete).
  """
  check_relax_options(options)
  targets = read_targets(fasta_paths, features_paths, multimer=options.multimer)
  check_output_dir(options.output_dir)
  check_target_dirs(options.output_dir, targets)
  logging.info('%d targets, models %s, %d seed(s) each', len(targets),
               ', '.join(options.model_names), options.num_seeds)
  configs = {name: model_config(name, options) for name in options.model_names}
  weights = {name: weights_id(name, options) for name in options.model_names}
  if all(outputs.is_complete(
      options.output_dir / t.record.name, options.models_to_relax,
      target_job(t, options.output_dir / t.record.name, options, configs, weights))
         for t in targets):
    # Nothing to fold: do not even load the weights.
    for i, t in enumerate(targets, 1):
      _log_skipped(i, len(targets), t, options.output_dir / t.record.name)
    return [options.output_dir / t.record.name for t in targets]
  return Folder(options, predictions).fold(targets)
