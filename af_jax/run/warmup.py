"""Compile ahead of time, from shapes alone: model presets x length buckets x MSA depths.

The provider behind `python -m compile_cache warmup --specs af_jax.run.warmup:specs` and
`run_inference.py --warmup_only`. Each bucket's input shapes come from running the
real feature processing on a one-residue dummy padded to the bucket, so they are
exactly the shapes a folded protein in that bucket produces; no weights are read
and nothing executes.
"""

from __future__ import annotations

import pathlib
from collections.abc import Iterable, Mapping, Sequence

import jax
from absl import logging

from af_jax import autochunk
from af_jax.data import features, pipeline
from af_jax.inference import Predictor, feature_shapes
from af_jax.model import kind
from af_jax.run.options import FoldOptions, inference_mesh, model_config
from af_jax.run.targets import Target
from configs import buckets as bucket_lists
from configs import model as model_configs
from configs import overrides as config_overrides


def bucket_shapes(cfg, num_res: int, msa_clusters: int,
                  extra_msa: int) -> dict[str, jax.ShapeDtypeStruct]:
  """The model inputs' shapes for one bucket, as data.transforms pads them.

  A multimer bucket has one MSA depth, `msa_clusters` (all rows; the model
  samples them itself); `extra_msa` is then ignored.
  """
  batch = kind.for_config(cfg.model).dummy_batch(cfg, num_res, msa_clusters, extra_msa)
  return feature_shapes(batch, bool(cfg.model.embeddings_and_evoformer.template.enabled))


def preset_depths(cfg) -> tuple[int, int]:
  """The preset's own MSA depths (cluster centres, extra rows): what a deep MSA fills.

  Multimer: (the rows it can read, sampled + extra, rounded up to an MSA bucket; 0).
  """
  return kind.for_config(cfg.model).preset_depths(cfg)


def model_specs(cfg, lengths: Iterable[int],
                msa_depths: Sequence[tuple[int, int]] | None = None, mesh=None, *,
                chunk: str | int = 'auto', memory_budget: int | None = None,
                progress: bool = True) -> list:
  """(label, jitted forward, (abstract params, input shapes)) for each bucket of one config.

  With a `mesh` (a --dap run), the executables are the sharded ones that run uses; each
  bucket's chunk plan is the fold's (`autochunk.bucket_predictor`, per --chunk and
  --memory_budget; with 'auto', AutoChunk's search compiles and caches here). `progress`:
  the executables report every recycle, as a fold's with --progress (the default).
  """
  return bucket_specs(cfg, [(int(n), int(c), int(e)) for n in lengths
                            for c, e in (msa_depths or [preset_depths(cfg)])],
                      mesh, chunk=chunk, memory_budget=memory_budget, progress=progress)


def bucket_specs(cfg, sizes: Iterable[tuple[int, int, int]], mesh=None, *,
                 chunk: str | int = 'auto', memory_budget: int | None = None,
                 progress: bool = True) -> list:
  """`model_specs` for explicit (residues, clusters, extra rows) buckets, each once."""
  base = Predictor(cfg, None, mesh=mesh, report_progress=progress)
  out, seen = [], set()
  for num_res, clusters, extra in sizes:
    if (num_res, clusters, extra) in seen:
      continue
    seen.add((num_res, clusters, extra))
    shapes = bucket_shapes(cfg, num_res, clusters, extra)
    predictor, _, _ = autochunk.bucket_predictor(base, shapes, chunk, memory_budget)
    place = predictor.abstract
    out.append((predictor.label(shapes), predictor._forward,
                (jax.tree_util.tree_map(place, predictor._state),
                 jax.tree_util.tree_map(place, shapes))))
  return out


def default_depths(cfg, options: FoldOptions) -> list[tuple[int, int]]:
  """The MSA depths to warm up when a target's are not known: the query alone in
  single-sequence mode (a complex's MSA padded to the multimer pipeline's minimum), else
  the preset's maxima (what a deep MSA fills)."""
  if options.pipeline.msa_mode == 'single_sequence':
    return [kind.for_config(cfg.model).single_sequence_depths()]
  return [preset_depths(cfg)]


def target_msa(target: Target, options: FoldOptions) -> dict | None:
  """A monomer target's sequence and MSA features as the fold will make them, when its MSA
  is known without a search (single-sequence mode, or precomputed alignments); else None."""
  mode = options.pipeline.msa_mode
  record = target.record
  if target.features is not None or target.features_path or target.chains:
    return None
  if mode == 'single_sequence':
    paths = []
  elif mode == 'precomputed':
    given = options.pipeline.msa_paths
    msa_dir = options.output_dir / record.name / 'msas'
    if given:
      paths = [pathlib.Path(p) for p in given]
    elif msa_dir.is_dir():
      paths = sorted(msa_dir.iterdir())
    else:
      return None
  else:
    return None  # a search: the depth is known only after it
  msas = [pipeline.query_msa(record)] + pipeline.read_msas(paths, record, log=False)
  return {**features.make_sequence_features(record.sequence, record.description,
                                            len(record.sequence)),
          **features.make_msa_features(msas)}


def _as_list(value) -> list[str]:
  if isinstance(value, str):
    return [v for v in value.split(',') if v]
  return [str(v) for v in (value if isinstance(value, (list, tuple)) else [value])]


def specs(model_names='model_1_ptm', lengths='128', msa_depths=None, num_recycle=None,
          overrides: Mapping[str, str] | None = None, dap=1, chunk='auto',
          memory_budget=None, progress=True) -> list:
  """Warm-up specs for presets x lengths x MSA depths.

  Args:
    model_names: comma-separated presets (e.g. 'model_1_ptm,model_3_ptm').
    lengths: comma-separated padded lengths (the length buckets to prepare).
    msa_depths: comma-separated 'clusters:extra' pairs (default: each preset's maxima).
    num_recycle: recycles (sets model.num_recycle and data.common.num_recycle).
    overrides: more `config key -> value` overrides, as `--config.*` gives them.
    dap: devices per prediction, as `run_inference.py --dap` (its sharded executables).
    chunk: as `run_inference.py --chunk` ('auto', 'none' or a chunk size).
    memory_budget: as `run_inference.py --memory_budget` (e.g. '16GB'; default: the device's).
    progress: as `run_inference.py --progress` (default on; 'false' for --noprogress).
  """
  from af_jax.autochunk import parse_memory
  mesh = inference_mesh(int(dap))
  budget = parse_memory(memory_budget) if memory_budget else None
  depths = None
  if msa_depths:
    depths = [tuple(int(x) for x in d.split(':')) for d in _as_list(msa_depths)]
  result = []
  for name in _as_list(model_names):
    cfg = model_configs.model_config(name)
    if num_recycle is not None:
      config_overrides.set_num_recycle(cfg, int(num_recycle))
    config_overrides.apply_overrides(cfg, dict(overrides or {}))
    result += model_specs(cfg, [int(n) for n in _as_list(lengths)], depths, mesh=mesh,
                          chunk=str(chunk).lower(), memory_budget=budget,
                          progress=str(progress).lower() not in ('false', '0', 'no'))
  return result


def warmup(options: FoldOptions, targets: Sequence[Target] = (),
           msa_depths: Sequence[tuple[int, int]] | None = None) -> list:
  """Compile every model x length bucket (x MSA depth) into the cache, from shapes alone.

  With targets, only the buckets they fall into: a monomer's MSA depth is the one the fold
  will pad it to when its alignments are known without a search (`target_msa`), else
  `msa_depths` (default: the preset's maxima). Without targets, every length bucket. Each
  bucket's chunk plan is the fold's (`autochunk.bucket_predictor`).
  """
  import compile_cache

  lengths = sorted({bucket_lists.bucket_size(len(t.record.sequence), options.length_buckets)
                    for t in targets}) or list(options.length_buckets)
  specs = []
  mesh = inference_mesh(options.dap)
  # A complex's MSA depth comes from pairing its chains' MSAs: the depths given, or the defaults.
  known = not msa_depths and not options.multimer
  msas = {t.record.name: target_msa(t, options) if known else None for t in targets}
  for name in options.model_names:
    cfg = model_config(name, options)
    depths = list(msa_depths or default_depths(cfg, options))
    sizes = []
    for raw in msas.values():
      if raw is not None:  # the fold's own bucket_sizes, on the same MSA rows
        b = kind.bucket_sizes(raw, cfg, options.length_buckets)
        sizes.append((b['num_res'], b['msa_clusters'], b['extra_msa']))
    unknown = sorted({bucket_lists.bucket_size(len(t.record.sequence), options.length_buckets)
                      for t in targets if msas[t.record.name] is None}) if targets else lengths
    sizes += [(n, c, e) for n in unknown for c, e in depths]
    specs += bucket_specs(cfg, sorted(sizes), mesh, chunk=options.chunk,
                          memory_budget=options.memory_budget, progress=options.progress)
  logging.info('warm-up: %d executables (%s x lengths %s)', len(specs),
               ', '.join(options.model_names), lengths)
  return compile_cache.warmup(specs)
