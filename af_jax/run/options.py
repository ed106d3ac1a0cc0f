"""What a folding run is asked to do: FoldOptions and what follows from them alone.

`from_flags` is the one conversion from run_inference.py's flag values to FoldOptions: the
command line and `af_jax.fold(**flags)` both call it, so they accept and reject the same
values with the same messages. The model configs (a preset, the run's recycles, precision
and `--config` overrides), the weights (the published file or random ones), the mesh of a
`--dap` run and the relaxation settings, each checked before any work so that a bad option
is one error line at once.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from absl import logging

from af_jax import autochunk
from af_jax import params as af_params
from af_jax import relax
from af_jax.data import msa_search, pipeline
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
    return is_multimer(self.model_names)


def is_multimer(model_names: Sequence[str], spell: Callable[[str], str] = '--{}'.format) -> bool:
  """Whether the models are AlphaFold-Multimer presets (ConfigError when they mix both;
  `spell` names the flag as in `from_flags`)."""
  kinds = {name in MULTIMER_PRESETS for name in model_names}
  if len(kinds) > 1:
    raise ConfigError(f'{spell("model_names")}={",".join(model_names)} mixes monomer and '
                      'multimer presets; fold monomers and complexes in separate runs')
  return kinds == {True}


MSA_FILE_SUFFIXES = pipeline.MSA_SUFFIXES + ('.hhr',)

# run_inference.py's flags that become FoldOptions, by kind of value. The string flags'
# empty value means the flag unset (its default), as absl users expect.
_STRINGS = {
    'output_dir', 'params_dir', 'template_mmcif_dir', 'max_template_date',
    'obsolete_pdbs_path', 'kalign_binary_path', 'uniprot_database_path', 'chunk',
    'memory_budget'}
_ENUMS = {'model_preset': tuple(MODEL_PRESETS), 'msa_mode': msa_search.MODES,
          'precision': ('float32', 'bfloat16'), 'models_to_relax': ('best', 'all', 'none')}
_LISTS = {'model_names', 'msa_paths', 'buckets'}
_INTEGERS = {'num_recycle', 'random_seed', 'num_seeds', 'num_multimer_predictions_per_model',
             'n_cpu', 'dap'}
# The integer flags' smallest values, checked where the flag's spelling is known.
_MINIMUMS = {'num_recycle': 0, 'dap': 1}
_BOOLEANS = {'random_params', 'use_templates', 'relax_use_gpu', 'progress'}
# --<name>_database_path and --<tool>_binary_path -> msa_search.Databases fields.
_DATABASES = {**{f'{n}_database_path': n for n in (
    'uniref90', 'mgnify', 'small_bfd', 'bfd', 'uniref30', 'pdb70')},
    'mmseqs_database_path': 'mmseqs_db',
    **{f'{t}_binary_path': f'{t}_binary' for t in ('jackhmmer', 'hhblits', 'hhsearch', 'mmseqs')}}
FLAG_NAMES = frozenset(_STRINGS | set(_ENUMS) | _LISTS | _INTEGERS | _BOOLEANS |
                       set(_DATABASES) | {'search_timeout', 'config'})


def from_flags(flags: Mapping[str, Any], spell: Callable[[str], str] = '--{}'.format
               ) -> FoldOptions:
  """FoldOptions from run_inference.py's flag values by flag name.

  A flag left out (or None, or an empty string flag) takes its default. Values are what
  absl parses them to or their Python equivalents: a list flag takes a list or a
  comma-separated string (as on the command line), `config` a mapping of `--config.*`
  keys to values, `output_dir` is required.

  Args:
    flags: flag name -> value (names in FLAG_NAMES).
    spell: how an error message names a flag, as its user wrote it: `--chunk` on the
      command line, `chunk` for `af_jax.fold(chunk=...)`.

  Raises:
    ConfigError: an unknown flag name or a bad value, the flag named by `spell`.
  """
  unknown = sorted(set(flags) - FLAG_NAMES)
  if unknown:
    raise ConfigError(f'unknown flags {unknown}; choose from {", ".join(sorted(FLAG_NAMES))}')
  given = {k: _value(k, v, spell) for k, v in flags.items()}
  given = {k: v for k, v in given.items() if v is not None}
  if 'output_dir' not in given:
    raise ConfigError(f'{spell("output_dir")} is required')
  model_names = tuple(given.get('model_names') or
                      MODEL_PRESETS[given.get('model_preset', 'monomer_ptm')])
  multimer = is_multimer(model_names, spell)
  databases = msa_search.Databases(**{_DATABASES[k]: given[k] for k in _DATABASES if k in given})
  pipe = {k: given[k] for k in ('msa_mode', 'use_templates', 'template_mmcif_dir',
                                'max_template_date', 'kalign_binary_path',
                                'obsolete_pdbs_path', 'n_cpu') if k in given}
  if 'search_timeout' in given:
    pipe['timeout'] = given['search_timeout']
  pipe = pipeline.PipelineOptions(databases=databases,
                                  msa_paths=msa_files(given.get('msa_paths', ())), **pipe)
  fields = {k: given[k] for k in ('params_dir', 'random_params', 'num_recycle', 'random_seed',
                                  'num_seeds', 'precision', 'models_to_relax',
                                  'relax_use_gpu', 'dap', 'progress') if k in given}
  if 'buckets' in given:
    text = ','.join(given['buckets'])
    try:
      fields['length_buckets'] = bucket_lists.parse_buckets(text)
    except ConfigError as e:
      raise ConfigError(f'{spell("buckets")}={text!r}: {e}') from None
  if 'chunk' in given:
    fields['chunk'] = autochunk.parse_chunk(given['chunk'], spell('chunk'))
  if 'memory_budget' in given:
    try:
      fields['memory_budget'] = autochunk.parse_memory(given['memory_budget'])
    except ConfigError as e:
      raise ConfigError(f'{spell("memory_budget")}={given["memory_budget"]!r}: {e}') from None
  options = FoldOptions(
      output_dir=pathlib.Path(given['output_dir']), model_names=model_names,
      uniprot_database=given.get('uniprot_database_path'), pipeline=pipe,
      config_overrides=dict(given.get('config', {})), **fields)
  # AlphaFold's flag for a complex's predictions per model, ours for a monomer's.
  seeds_flag = 'num_multimer_predictions_per_model' if multimer else 'num_seeds'
  if multimer:
    options = dataclasses.replace(options, num_seeds=given.get(seeds_flag, 5))
  if options.num_seeds < 1:
    raise ConfigError(f'{spell(seeds_flag)}={options.num_seeds}: pass at least 1 prediction '
                      'per model')
  return options


def _value(name: str, value: Any, spell: Callable[[str], str]) -> Any:
  """One flag's value as FoldOptions takes it; None when unset."""
  if value is None:
    return None
  shown = f'{spell(name)}={value!r}'
  if isinstance(value, os.PathLike):
    value = str(value)
  if name in _ENUMS:
    if value not in _ENUMS[name]:
      raise ConfigError(f'{shown}: choose from {", ".join(_ENUMS[name])}')
    return value
  if name in _STRINGS or name in _DATABASES:
    numeric = name in ('chunk', 'memory_budget') and isinstance(value, int)
    if not (isinstance(value, str) or numeric) or isinstance(value, bool):
      raise ConfigError(f'{shown}: pass a string')
    return None if value == '' else value
  if name in _LISTS:
    if isinstance(value, str):  # as absl reads a list flag
      value = [v.strip() for v in value.split(',')] if value else []
    if not isinstance(value, Sequence) or isinstance(value, bytes):
      raise ConfigError(f'{shown}: pass a list or comma-separated values')
    return [str(v) for v in value]
  if name in _INTEGERS or name == 'search_timeout':
    kind = int if name in _INTEGERS else float
    try:
      if isinstance(value, bool) or (kind is int and isinstance(value, float)):
        raise TypeError(name)
      value = kind(value)
    except (TypeError, ValueError):
      raise ConfigError(f'{shown}: pass {"an integer" if kind is int else "a number"}') from None
    if name in _MINIMUMS and value < _MINIMUMS[name]:
      raise ConfigError(f'{shown} must be >= {_MINIMUMS[name]}')
    return value
  if name in _BOOLEANS:
    if not isinstance(value, bool):
      raise ConfigError(f'{shown}: pass True or False')
    return value
  # config: --config.<key>=<value> overrides, each value as the command line writes it.
  if not isinstance(value, Mapping):
    raise ConfigError(f'{shown}: pass a mapping of config keys to values')
  return {str(k): str(v).lower() if isinstance(v, bool) else str(v) for k, v in value.items()}


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
