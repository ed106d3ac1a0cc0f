"""Compile ahead of time, from shapes alone: model presets x length buckets x MSA depths.

The provider behind `python -m compile_cache warmup --specs af_jax.run.warmup:specs` and
`run_inference.py --warmup_only`. Each bucket's input shapes come from running the
real feature processing on a one-residue dummy padded to the bucket, so they are
exactly the shapes a folded protein in that bucket produces; no weights are read
and nothing executes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import jax
from absl import logging

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
                msa_depths: Sequence[tuple[int, int]] | None = None, mesh=None) -> list:
  """(label, jitted forward, (abstract params, input shapes)) for each bucket of one config.

  With a `mesh` (a --dap run), the executables are the sharded ones that run uses.
  """
  predictor = Predictor(cfg, None, mesh=mesh)
  place = predictor.abstract
  state = jax.tree_util.tree_map(place, predictor._state)
  out = []
  for num_res in lengths:
    for clusters, extra in (msa_depths or [preset_depths(cfg)]):
      shapes = bucket_shapes(cfg, int(num_res), int(clusters), int(extra))
      out.append((predictor.label(shapes), predictor._forward,
                  (state, jax.tree_util.tree_map(place, shapes))))
  return out


def _as_list(value) -> list[str]:
  if isinstance(value, str):
    return [v for v in value.split(',') if v]
  return [str(v) for v in (value if isinstance(value, (list, tuple)) else [value])]


def specs(model_names='model_1_ptm', lengths='128', msa_depths=None, num_recycle=None,
          overrides: Mapping[str, str] | None = None, dap=1) -> list:
  """Warm-up specs for presets x lengths x MSA depths.

  Args:
    model_names: comma-separated presets (e.g. 'model_1_ptm,model_3_ptm').
    lengths: comma-separated padded lengths (the length buckets to prepare).
    msa_depths: comma-separated 'clusters:extra' pairs (default: each preset's maxima).
    num_recycle: recycles (sets model.num_recycle and data.common.num_recycle).
    overrides: more `config key -> value` overrides, as `--config.*` gives them.
    dap: devices per prediction, as `run_inference.py --dap` (its sharded executables).
  """
  mesh = inference_mesh(int(dap))
  depths = None
  if msa_depths:
    depths = [tuple(int(x) for x in d.split(':')) for d in _as_list(msa_depths)]
  result = []
  for name in _as_list(model_names):
    cfg = model_configs.model_config(name)
    if num_recycle is not None:
      config_overrides.set_num_recycle(cfg, int(num_recycle))
    config_overrides.apply_overrides(cfg, dict(overrides or {}))
    result += model_specs(cfg, [int(n) for n in _as_list(lengths)], depths, mesh=mesh)
  return result


def warmup(options: FoldOptions, targets: Sequence[Target] = (),
           msa_depths: Sequence[tuple[int, int]] | None = None) -> list:
  """Compile every model x length bucket (x MSA depth) into the cache, from shapes alone.

  With targets, only the buckets they fall into; otherwise every length bucket.
  """
  import compile_cache

  lengths = sorted({bucket_lists.bucket_size(len(t.record.sequence), options.length_buckets)
                    for t in targets}) or list(options.length_buckets)
  specs = []
  mesh = inference_mesh(options.dap)
  for name in options.model_names:
    specs += model_specs(model_config(name, options), lengths, msa_depths, mesh=mesh)
  logging.info('warm-up: %d executables (%s x lengths %s)', len(specs),
               ', '.join(options.model_names), lengths)
  return compile_cache.warmup(specs)
