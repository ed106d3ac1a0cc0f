"""Fold FASTA records (or features.pkl files) into AlphaFold's output directories.

The library function behind run_inference.py: targets sorted by length so padded
buckets (and their executables) are reused, one Predictor per model kept for the
whole run, a target whose outputs are complete for the same job skipped (af_jax.job),
any other's old outputs replaced, a prediction with non-finite outputs a failure, and
every stage timed.
"""

from __future__ import annotations

import dataclasses
import errno
import os
import pathlib
import time
from collections.abc import Mapping, Sequence

import numpy as np
from absl import logging

import af_jax
from af_jax import outputs, plots
from af_jax import job as af_job
from af_jax import params as af_params
from af_jax import relax
from af_jax.chunking import ChunkPlan, autochunk
from af_jax.common import files, protein
from af_jax.data import features, names, parsers, pipeline, pipeline_multimer, transforms
from af_jax.data import transforms_multimer
from af_jax.errors import ConfigError, InputError, ParamsError, PredictionError
from configs import buckets as bucket_lists
from configs import model as model_configs
from configs import overrides as config_overrides
from configs.model_multimer import MULTIMER_PRESETS

MODEL_PRESETS = {
    'monomer': tuple(f'model_{i}' for i in range(1, 6)),
    'monomer_ptm': tuple(f'model_{i}_ptm' for i in range(1, 6)),
    'multimer': MULTIMER_PRESETS,
}
FEATURES_FILES = ('features.pkl', 'features.npz')  # in each target's directory


@dataclasses.dataclass(frozen=True)
class Target:
  """One job: a name, its sequence, and where its raw features come from."""

  record: parsers.FastaRecord
  features_path: str | None = None  # a features.pkl/.npz to use instead of the data pipeline
  chains: tuple[parsers.FastaRecord, ...] = ()  # a complex's chains (multimer presets)
  # The features read from features_path, kept so that a pickle is loaded once per run.
  features: Mapping | None = dataclasses.field(default=None, repr=False, compare=False)


@dataclasses.dataclass(frozen=True)
class FoldOptions:
  """Everything a run needs besides its targets (see run_inference.py for each flag)."""

  output_dir: pathlib.Path
  model_names: tuple[str, ...] = MODEL_PRESETS['monomer_ptm']
  params_dir: str | None = None
  random_params: bool = False
  num_recycle: int | None = None
  random_seed: int = 0
  num_seeds: int = 1
  length_buckets: tuple[int, ...] = bucket_lists.LENGTH_BUCKETS
  precision: str = 'float32'
  chunk: str | int = 'auto'  # 'auto' (AutoChunk), 'none', or one chunk size for every op
  memory_budget: int | None = None  # bytes for AutoChunk (None: from the device's memory)
  config_overrides: Mapping[str, str] = dataclasses.field(default_factory=dict)
  pipeline: pipeline.PipelineOptions = dataclasses.field(
      default_factory=pipeline.PipelineOptions)
  models_to_relax: str = 'none'  # 'best', 'all' or 'none': which predictions Amber relaxes
  relax_use_gpu: bool = False  # relax on OpenMM's CUDA platform
  dap: int = 1  # devices (of all processes) that share each prediction (Dynamic Axial Parallelism)
  uniprot_database: str | None = None  # jackhmmer FASTA for a heteromer's pairing MSAs

  @property
  def multimer(self) -> bool:
    """Whether the run's models are AlphaFold-Multimer presets (all of them, or none)."""
    kinds = {name in MULTIMER_PRESETS for name in self.model_names}
    if len(kinds) > 1:
      raise ConfigError(f'--model_names={",".join(self.model_names)} mixes monomer and '
                        'multimer presets; fold monomers and complexes in separate runs')
    return kinds == {True}


def model_config(model_name: str, options: FoldOptions):
  """The preset's config with the run's recycles, precision and --config overrides."""
  if model_name not in af_jax.PRESETS + MULTIMER_PRESETS:
    raise ConfigError(f'unknown model name {model_name!r}; choose from '
                      f'{", ".join(af_jax.PRESETS + MULTIMER_PRESETS)}')
  cfg = af_jax.model_config(model_name)
  if options.num_recycle is not None:
    if options.num_recycle < 0:
      raise ConfigError(f'--num_recycle={options.num_recycle} must be >= 0')
    config_overrides.set_num_recycle(cfg, options.num_recycle)
  if options.precision not in ('float32', 'bfloat16'):
    raise ConfigError(f'--precision={options.precision!r}: choose float32 or bfloat16')
  cfg.model.global_config.bfloat16 = options.precision == 'bfloat16'
  config_overrides.apply_overrides(cfg, options.config_overrides)
  model_configs.check_values(cfg)  # 0 blocks, heads or channels: one line, not a traceback
  if options.random_params:
    # AlphaFold zero-initialises output layers, which would put every atom at the origin.
    cfg.model.global_config.zero_init = False
  return cfg


def load_model_params(model_name: str, cfg, options: FoldOptions) -> dict[str, np.ndarray]:
  """The model's weights: the published file, or random ones when --random_params."""
  if options.random_params:
    from af_jax.model.build import build_model
    logging.warning('%s: RANDOM weights (--random_params): a smoke test, the structures are '
                    'meaningless', model_name)
    return af_params.module_to_flat(build_model(cfg.model, seed=options.random_seed))
  return af_jax.load_params(_params_file(model_name, options))


def _params_file(model_name: str, options: FoldOptions) -> pathlib.Path:
  if not options.params_dir:
    raise ParamsError(f'no weights for {model_name}: pass --params_dir (the directory with '
                      f'params/params_{model_name}.npz; {af_params.PARAMS_HELP}) or '
                      '--random_params')
  return af_params.params_path(options.params_dir, model_name)


def weights_id(model_name: str, options: FoldOptions) -> str:
  """What the model's weights are, for the job record: the params file's digest (read
  once per run), or random weights and their seed."""
  if options.random_params:
    return f'random (--random_seed={options.random_seed})'
  return af_job.file_digest(_params_file(model_name, options))


def target_job(target: Target, target_dir: pathlib.Path, options: FoldOptions,
               configs: Mapping, weights: Mapping[str, str]) -> dict:
  """The job that folding `target` into target_dir is (af_jax.job.make_job).

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


def read_targets(fasta_paths: Sequence[str], features_paths: Sequence[str] = (), *,
                 multimer: bool = False) -> list[Target]:
  """The targets, sorted by length; names unique.

  Monomer presets: every record of every FASTA file (and every features.pkl or
  features.npz, named by features_target_name) is a target. Multimer presets: every
  FASTA file is one complex (its records, and `A:B` chains within a record), named
  after the file. Every name is checked to be one safe directory name.
  """
  targets = []
  if multimer:
    if features_paths:
      raise InputError('--features_paths holds monomer features; with a multimer preset pass '
                       'each complex as one FASTA file in --fasta_paths')
    for path in fasta_paths:
      cplx = pipeline_multimer.read_complex(path)
      joined = ''.join(r.sequence for r in cplx.chains)
      targets.append(Target(parsers.FastaRecord(cplx.name, cplx.name, joined),
                            chains=cplx.chains))
  for path in fasta_paths if not multimer else ():
    targets += [Target(r) for r in parsers.read_fasta(path)]
  for path in features_paths:
    name = names.check_path_name(
        features_target_name(path), f'--features_paths entry {names.shown(str(path))}',
        'rename the file (<name>.pkl) or the directory holding features.pkl')
    feats = features.load_features(path)
    targets.append(Target(parsers.FastaRecord(name, name, _sequence_of(feats)),
                          features_path=str(path), features=feats))
  if not targets:
    raise InputError('no targets: pass --fasta_paths (or --features_paths)')
  seen: dict[str, int] = {}
  for t in targets:
    seen[t.record.name] = seen.get(t.record.name, 0) + 1
  dupes = sorted(n for n, c in seen.items() if c > 1)
  if dupes:
    raise InputError(f'target names {dupes} occur more than once across the inputs; each '
                     'names an output directory, so rename the records')
  return sorted(targets, key=lambda t: (len(t.record.sequence), t.record.name))


def features_target_name(path: str | os.PathLike) -> str:
  """The target a features file names: the directory holding it for AlphaFold's layout
  (<target>/features.pkl, .pkl.gz or .npz), else the file name up to its first '.'."""
  p = pathlib.Path(os.path.abspath(path))  # './features.pkl' is in a directory with a name
  return p.parent.name if p.name.startswith(FEATURES_FILES) else p.name.split('.')[0]


def _sequence_of(feats: Mapping) -> str:
  if 'sequence' in feats:
    seq = feats['sequence'][0]
    return seq.decode() if isinstance(seq, bytes) else str(seq)
  from af_jax.common import residue_constants as rc
  aatype = np.argmax(feats['aatype'], axis=-1) if np.ndim(feats['aatype']) == 2 else feats['aatype']
  return ''.join(rc.restypes_with_x[int(a)] for a in aatype)


def check_output_dir(output_dir: pathlib.Path) -> None:
  """Fail before any work when the output directory cannot be written."""
  try:
    output_dir.mkdir(parents=True, exist_ok=True)
    probe = output_dir / f'.write-test-{os.getpid()}'
    probe.write_text('')
    probe.unlink()
  except OSError as e:
    raise InputError(f'cannot write to --output_dir={output_dir} ({e.strerror}); choose a '
                     'writable directory') from None


def check_target_dirs(output_dir: pathlib.Path, targets: Sequence[Target]) -> None:
  """Fail before any work when something other than a directory holds a target's name."""
  for t in targets:
    path = output_dir / t.record.name
    if os.path.lexists(path) and not path.is_dir():
      raise InputError(f'{names.shown(str(path))} exists and is not a directory, but target '
                       f'{t.record.name} needs it for its outputs: move it away or choose '
                       'another --output_dir')


_FILE_ERROR_FIXES = {
    errno.ENOSPC: 'free space on that file system, or choose another --output_dir',
    errno.EDQUOT: 'free space within your quota, or choose another --output_dir',
    errno.EFBIG: 'raise the file size limit (ulimit -f), or choose another --output_dir',
    errno.EACCES: 'make it writable, or choose another --output_dir',
    errno.EPERM: 'make it writable, or choose another --output_dir',
    errno.EROFS: 'choose an --output_dir on a writable file system',
    errno.EEXIST: 'move the file in the way, or choose another --output_dir',
    errno.ENOTDIR: 'move the file in the way, or choose another --output_dir',
    errno.EISDIR: 'move the directory in the way, or choose another --output_dir',
}


def file_error(e: OSError, target: str) -> InputError:
  """An OSError while folding `target` as one line: what failed, on which file, the fix.

  Files are written under temporary names (common.files), so nothing partial is left;
  targets folded before stay complete.
  """
  where = f' ({names.shown(os.fsdecode(e.filename))})' if e.filename else ''
  fix = _FILE_ERROR_FIXES.get(e.errno, 'check that file and its file system')
  return InputError(f'target {target}: {e.strerror or e}{where}: {fix}, then run again '
                    '(finished targets are kept)')


class Folder:
  """Runs the models over targets; Predictors (and their compiled shapes) live for the run."""

  def __init__(self, options: FoldOptions):
    from af_jax.inference import Predictor
    check_relax_options(options)
    self.options = options
    self._configs = {name: model_config(name, options) for name in options.model_names}
    self._weights = {name: weights_id(name, options) for name in options.model_names}
    self.mesh = inference_mesh(options.dap)
    # Weights are read and checked against each model up front: a missing, corrupt or
    # wrong-preset file fails before hours of MSA search. Nothing compiles yet.
    self._predictors = {}
    for name, cfg in self._configs.items():
      try:
        self._predictors[name] = Predictor(cfg, load_model_params(name, cfg, options),
                                           mesh=self.mesh)
      except ParamsError as e:
        where = af_params.params_path(options.params_dir, name) if options.params_dir else 'random'
        if str(where) in str(e):  # read_npz's messages name the file already
          raise ParamsError(f'{name} weights: {e}') from None
        raise ParamsError(f'{name} weights from {where}: {e}') from None

  @property
  def primary(self) -> bool:
    """Process 0 writes the outputs; the others of a multi-host run compute alongside it."""
    import jax
    return jax.process_index() == 0

  def predictor(self, model_name: str, plan: ChunkPlan | None = None):
    """The model's Predictor, run with `plan` (the same weights for every plan)."""
    base = self._predictors[model_name]
    return base if plan is None else base.with_plan(plan)

  def chunk_plan(self, model_name: str, batch: Mapping) -> tuple[ChunkPlan, dict]:
    """The bucket's ChunkPlan per --chunk, and what to record of it in timings.json."""
    chunk = self.options.chunk
    if chunk == 'none':
      return ChunkPlan(), {'plan': 'unchunked'}
    if chunk != 'auto':
      plan = ChunkPlan(**{f.name: int(chunk) for f in dataclasses.fields(ChunkPlan)})
      return plan, {'plan': autochunk.plan_summary(plan)}
    from af_jax.inference import feature_shapes
    base = self._predictors[model_name]
    budget = self.options.memory_budget or autochunk.default_budget()
    result = autochunk.choose_plan(base, feature_shapes(batch, base.use_templates), budget,
                                   mesh=self.mesh)
    return result.plan, {'plan': autochunk.plan_summary(result.plan),
                         'predicted_peak_bytes': int(result.predicted_peak_bytes),
                         'budget_bytes': int(result.budget_bytes), 'source': result.source}

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
    for i, target in enumerate(targets, 1):
      name, length = target.record.name, len(target.record.sequence)
      target_dir = self.options.output_dir / name
      dirs.append(target_dir)
      if outputs.is_complete(target_dir, self.options.models_to_relax,
                             self.job(target, target_dir)):
        _log_skipped(i, len(targets), target, target_dir)
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
        continue
      except OSError as e:  # a full disk, a permission, a file in the way: not a bug
        raise file_error(e, name) from None
      if self.primary:
        files.remove_stale(target_dir)  # what a killed run of this target left behind
      logging.info('[%d/%d] %s done in %.1f s', i, len(targets), name, time.time() - start)
    if failed:
      others = '; the others are complete' if len(failed) < len(targets) else ''
      raise PredictionError(f'{len(failed)} of {len(targets)} targets failed ({", ".join(failed)})'
                            f' with non-finite outputs (see the errors above){others}')
    return dirs

  def fold_target(self, target: Target, target_dir: pathlib.Path) -> None:
    """Features, every model x seed, outputs and ranking for one target."""
    opts = self.options
    target_dir.mkdir(parents=True, exist_ok=True)
    if target.chains:
      self.fold_complex(target, target_dir)
      return
    timings: dict[str, float] = {}
    start = time.time()
    if target.features is not None:
      raw = target.features
    elif target.features_path:
      raw = features.load_features(target.features_path)
    else:
      raw = pipeline.make_raw_features(target.record, target_dir, opts.pipeline)
    # The inputs are read and checked: only now go the outputs of an earlier job (or an
    # interrupted run), ranking_debug.json first, so bad input leaves an earlier result.
    outputs.remove_outputs(target_dir, keep=_inputs(target))
    write_features(target_dir, raw)
    timings['features'] = time.time() - start
    logging.info('%s: features in %.1f s', target.record.name, timings['features'])

    num_res = len(target.record.sequence)
    scores, proteins, plddts, paes, chunk_plans = {}, {}, {}, {}, {}
    for m, model_name in enumerate(opts.model_names):
      cfg = self._configs[model_name]
      for s in range(opts.num_seeds):
        pred_name = f'{model_name}_pred_{s}'
        seed = opts.random_seed + s * len(opts.model_names) + m
        t0 = time.time()
        batch = transforms.process_features(
            raw, cfg, seed, **bucket_sizes(raw, cfg, opts.length_buckets))
        timings[f'process_features_{pred_name}'] = time.time() - t0
        t0 = time.time()
        plan, chunk_plans[pred_name] = self.chunk_plan(model_name, batch)
        # AutoChunk compiles the plan it picks; the prediction then reuses that executable.
        timings[f'chunk_plan_{pred_name}'] = time.time() - t0
        predictor = self.predictor(model_name, plan)
        compiled = predictor.compile(batch)
        timings[f'compile_{pred_name}'] = compiled.seconds
        logging.info('%s %s: executable %s %s in %.1f s', target.record.name, pred_name,
                     compiled.label, _COMPILE_STATUS[compiled.status], compiled.seconds)
        out = predictor.predict_processed(batch, random_seed=seed)
        timings[f'predict_and_compile_{pred_name}'] = time.time() - t0
        out = outputs.unpad_prediction(out, num_res)
        outputs.check_finite(out, _prediction_name(target, model_name, pred_name, seed))
        plddt = np.asarray(out['plddt'])
        scores[pred_name] = float(plddt.mean())
        plddts[pred_name] = plddt
        if 'predicted_aligned_error' in out:
          paes[pred_name] = out['predicted_aligned_error']
        prot = outputs.prediction_protein(out, raw_aatype(raw), np.arange(num_res))
        proteins[pred_name] = prot
        outputs.write_prediction(target_dir, pred_name, out, prot)
        logging.info('%s %s: mean pLDDT %.2f%s, %d recycles, %.1f s (padded to %d residues)',
                     target.record.name, pred_name, scores[pred_name],
                     f', pTM {float(out["ptm"]):.3f}' if 'ptm' in out else '',
                     int(out['num_recycles']), timings[f'predict_and_compile_{pred_name}'],
                     batch['aatype'].shape[-1])
    order = sorted(scores, key=scores.get, reverse=True)
    relaxed = relax_models(target_dir, outputs.relax_targets(order, opts.models_to_relax),
                           proteins, use_gpu=opts.relax_use_gpu, timings=timings)
    title = f'{target.record.name} ({num_res} residues)'
    if opts.random_params:
      title += ' - RANDOM WEIGHTS, smoke test only'
    plots.plot_plddt(target_dir / 'plddt.png', {k: plddts[k] for k in order}, title)
    if paes:
      plots.plot_pae(target_dir / 'pae.png', {k: paes[k] for k in order if k in paes}, title)
    outputs.write_timings(target_dir, timings, chunk_plans=chunk_plans)
    outputs.write_ranking(target_dir, scores, proteins, random_params=opts.random_params,
                          relaxed=relaxed, job=self.job(target, target_dir))

  def fold_complex(self, target: Target, target_dir: pathlib.Path) -> None:
    """A complex: its features, every multimer model x seed, outputs, ranking by
    0.8 ipTM + 0.2 pTM (AlphaFold-Multimer's ranking_confidence)."""
    opts = self.options
    timings: dict[str, float] = {}
    start = time.time()
    cplx = pipeline_multimer.Complex(target.record.name, target.chains)
    raw = pipeline_multimer.make_complex_features(cplx, target_dir, opts.pipeline,
                                                  uniprot_database=opts.uniprot_database)
    outputs.remove_outputs(target_dir, keep=_inputs(target))  # as fold_target
    write_features(target_dir, raw)
    timings['features'] = time.time() - start
    num_res = transforms_multimer.natural_sizes(raw)[0]
    logging.info('%s: %d chains, %d residues, %d MSA rows; features in %.1f s',
                 target.record.name, len(target.chains), num_res, int(raw['num_alignments']),
                 timings['features'])
    scores, proteins, plddts, paes, chunk_plans = {}, {}, {}, {}, {}
    for m, model_name in enumerate(opts.model_names):
      cfg = self._configs[model_name]
      batch = transforms_multimer.make_batch(
          raw, **complex_bucket_sizes(raw, cfg, opts.length_buckets))
      plan, plan_info = self.chunk_plan(model_name, batch)
      predictor = self.predictor(model_name, plan)
      for s in range(opts.num_seeds):
        pred_name = f'{model_name}_pred_{s}'
        seed = opts.random_seed + s * len(opts.model_names) + m
        chunk_plans[pred_name] = plan_info
        t0 = time.time()
        compiled = predictor.compile(batch)
        timings[f'compile_{pred_name}'] = compiled.seconds
        logging.info('%s %s: executable %s %s in %.1f s', target.record.name, pred_name,
                     compiled.label, _COMPILE_STATUS[compiled.status], compiled.seconds)
        out = outputs.unpad_prediction(predictor.predict_processed(batch, random_seed=seed),
                                       num_res)
        timings[f'predict_and_compile_{pred_name}'] = time.time() - t0
        outputs.check_finite(out, _prediction_name(target, model_name, pred_name, seed))
        prot = outputs.prediction_protein(out, raw['aatype'], raw['residue_index'],
                                          asym_id=raw['asym_id'])
        scores[pred_name] = float(out['ranking_confidence'])
        plddts[pred_name] = np.asarray(out['plddt'])
        paes[pred_name] = out['predicted_aligned_error']
        proteins[pred_name] = prot
        outputs.write_prediction(target_dir, pred_name, out, prot)
        logging.info('%s %s: ipTM %.3f, pTM %.3f, mean pLDDT %.2f, %d recycles (tolerance '
                     '%.2f A), %.1f s (padded to %d residues)', target.record.name, pred_name,
                     float(out['iptm']), float(out['ptm']), float(plddts[pred_name].mean()),
                     int(out['num_recycles']), float(out['tol']),
                     timings[f'predict_and_compile_{pred_name}'], batch['aatype'].shape[0])
    order = sorted(scores, key=scores.get, reverse=True)
    relaxed = relax_models(target_dir, outputs.relax_targets(order, opts.models_to_relax),
                           proteins, use_gpu=opts.relax_use_gpu, timings=timings)
    first = proteins[order[0]]
    lengths = [end - begin for _, begin, end in protein.chain_runs(first)]
    title = f'{target.record.name} ({len(lengths)} chains, {num_res} residues)'
    if opts.random_params:
      title += ' - RANDOM WEIGHTS, smoke test only'
    chains = dict(chain_lengths=lengths, chain_ids=first.chain_ids)
    plots.plot_plddt(target_dir / 'plddt.png', {k: plddts[k] for k in order}, title, **chains)
    plots.plot_pae(target_dir / 'pae.png', {k: paes[k] for k in order}, title, **chains)
    outputs.write_timings(target_dir, timings, chunk_plans=chunk_plans)
    outputs.write_ranking(target_dir, scores, proteins, random_params=opts.random_params,
                          relaxed=relaxed, score_label=outputs.MULTIMER_SCORE_LABEL,
                          job=self.job(target, target_dir))


def write_features(target_dir: pathlib.Path, raw: Mapping) -> None:
  """features.pkl (AlphaFold's file) and the same features as a pickle-free features.npz."""
  features.write_features_pkl(target_dir / FEATURES_FILES[0], raw)
  features.write_features_npz(target_dir / FEATURES_FILES[1], raw)


def complex_bucket_sizes(raw: Mapping, cfg, length_buckets: Sequence[int]) -> dict[str, int]:
  """Padded sizes of a complex: residues and MSA rows rounded up to buckets, the preset's
  template slots. Every MSA row is kept (the model samples from all of them)."""
  num_res, num_seq, _ = transforms_multimer.natural_sizes(raw)
  return {'num_res': bucket_lists.bucket_size(num_res, length_buckets),
          'num_seq': bucket_lists.bucket_size(num_seq, bucket_lists.MSA_BUCKETS),
          'num_templates': int(cfg.model.embeddings_and_evoformer.template.max_templates)}


def inference_mesh(dap: int):
  """The mesh of a --dap run (one DAP group over the first `dap` devices), None for dap=1."""
  if dap == 1:
    return None
  from af_jax.parallel import make_mesh
  return make_mesh(dap, data=1)


def _scratch_dir(target_dir: pathlib.Path) -> pathlib.Path:
  """Where a non-primary process of a multi-host run puts what it would write.

  Every process decides what to fold from the real output directory (a filesystem
  they all see), so they run the same programs; only process 0's files are kept.
  """
  import jax
  return target_dir.parent / f'.process_{jax.process_index()}' / target_dir.name


def check_relax_options(options: FoldOptions) -> None:
  """Before any work: a valid --models_to_relax, and OpenMM installed when it relaxes."""
  if options.models_to_relax not in ('best', 'all', 'none'):
    raise ConfigError(f'--models_to_relax={options.models_to_relax!r}: choose best, all or none')
  if options.models_to_relax != 'none':
    relax.require_openmm(options.relax_use_gpu)


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


def bucket_sizes(raw: Mapping, cfg, length_buckets: Sequence[int]) -> dict[str, int]:
  """Padded sizes for a target: its length and MSA depths rounded up to buckets.

  MSA depths use configs.MSA_BUCKETS, capped at the preset's own maxima (which
  are then the bucket), so a set of proteins needs a handful of executables.
  """
  num_res, clusters, extra = transforms.natural_sizes(raw, cfg)
  return {
      'num_res': bucket_lists.bucket_size(num_res, length_buckets),
      'msa_clusters': min(bucket_lists.bucket_size(clusters, bucket_lists.MSA_BUCKETS),
                          transforms.max_msa_clusters(cfg)),
      'extra_msa': min(bucket_lists.bucket_size(extra, bucket_lists.MSA_BUCKETS),
                       max(int(cfg.data.common.max_extra_msa), 1)),
  }


_COMPILE_STATUS = {
    'compiled': 'compiled (cache miss; stored)', 'loaded': 'loaded from the compilation cache',
    'in_process': 'reused', 'uncached': 'compiled (no persistent cache)',
    'skipped': 'already cached'}


def warmup(options: FoldOptions, targets: Sequence[Target] = (),
           msa_depths: Sequence[tuple[int, int]] | None = None) -> list:
  """Compile every model x length bucket (x MSA depth) into the cache, from shapes alone.

  With targets, only the buckets they fall into; otherwise every length bucket.
  """
  import compile_cache

  from af_jax import warmup as af_warmup
  lengths = sorted({bucket_lists.bucket_size(len(t.record.sequence), options.length_buckets)
                    for t in targets}) or list(options.length_buckets)
  specs = []
  mesh = inference_mesh(options.dap)
  for name in options.model_names:
    specs += af_warmup.model_specs(model_config(name, options), lengths, msa_depths, mesh=mesh)
  logging.info('warm-up: %d executables (%s x lengths %s)', len(specs),
               ', '.join(options.model_names), lengths)
  return compile_cache.warmup(specs)


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


def raw_aatype(raw: Mapping) -> np.ndarray:
  """Residue type indices from the raw one-hot aatype."""
  aatype = np.asarray(raw['aatype'])
  return np.argmax(aatype, axis=-1).astype(np.int32) if aatype.ndim == 2 else aatype


def fold(fasta_paths: Sequence[str], options: FoldOptions,
         features_paths: Sequence[str] = ()) -> list[pathlib.Path]:
  """Read the targets, check the outputs and weights, fold them all."""
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
  return Folder(options).fold(targets)
