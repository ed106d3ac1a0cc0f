"""What a folding run is asked to do: FoldOptions and what follows from them alone.

The model configs (a preset, the run's recycles, precision and `--config` overrides), the
weights (the published file or random ones), the mesh of a `--dap` run and the relaxation
settings, each checked before any work so that a bad option is one error line at once.
"""

from __future__ import annotations

import dataclasses
import pathlib
from collections.abc import Mapping, Sequence

import numpy as np
from absl import logging

from af_jax import params as af_params
from af_jax import relax
from af_jax.data import pipeline
from af_jax.errors import ConfigError, ParamsError
from af_jax.run import job as af_job
from configs import buckets as bucket_lists
from configs import model as model_configs
from configs import overrides as config_overrides
from configs.model_multimer import MULTIMER_PRESETS

MODEL_PRESETS = {
    'monomer': tuple(f'model_{i}' for i in range(1, 6)),
    'monomer_ptm': tuple(f'model_{i}_ptm' for i in range(1, 6)),
    'multimer': MULTIMER_PRESETS,
}


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
  progress: bool = True  # a log line per recycle, from inside the compiled program

  @property
  def multimer(self) -> bool:
    """Whether the run's models are AlphaFold-Multimer presets (all of them, or none)."""
    kinds = {name in MULTIMER_PRESETS for name in self.model_names}
    if len(kinds) > 1:
      raise ConfigError(f'--model_names={",".join(self.model_names)} mixes monomer and '
                        'multimer presets; fold monomers and complexes in separate runs')
    return kinds == {True}


MSA_FILE_SUFFIXES = pipeline.MSA_SUFFIXES + ('.hhr',)


def msa_files(paths: Sequence[str | pathlib.Path]) -> tuple[str, ...]:
  """--msa_paths as files: a directory stands for the alignments (and .hhr) in it."""
  files = []
  for given in paths:
    path = pathlib.Path(given)
    files += sorted(str(p) for p in path.iterdir() if p.name.endswith(MSA_FILE_SUFFIXES)) \
        if path.is_dir() else [str(given)]
  return tuple(files)


def model_config(model_name: str, options: FoldOptions):
  """The preset's config with the run's recycles, precision and --config overrides."""
  if model_name not in model_configs.PRESETS + MULTIMER_PRESETS:
    raise ConfigError(f'unknown model name {model_name!r}; choose from '
                      f'{", ".join(model_configs.PRESETS + MULTIMER_PRESETS)}')
  cfg = model_configs.model_config(model_name)
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
  return af_params.read_npz(params_file(model_name, options))


def params_file(model_name: str, options: FoldOptions) -> pathlib.Path:
  """The model's params file in --params_dir (ParamsError when none is given or found)."""
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
  return af_job.file_digest(params_file(model_name, options))


def check_relax_options(options: FoldOptions) -> None:
  """Before any work: a valid --models_to_relax, and OpenMM installed when it relaxes."""
  if options.models_to_relax not in ('best', 'all', 'none'):
    raise ConfigError(f'--models_to_relax={options.models_to_relax!r}: choose best, all or none')
  if options.models_to_relax != 'none':
    relax.require_openmm(options.relax_use_gpu)


def inference_mesh(dap: int):
  """The mesh of a --dap run (one DAP group over the first `dap` devices), None for dap=1."""
  if dap == 1:
    return None
  from af_jax.parallel import make_mesh
  return make_mesh(dap, data=1)
