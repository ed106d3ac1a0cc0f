"""`af_jax.fold`: run_inference.py from Python, with its flags as keywords.

The same fold (`af_jax.run.fold.fold`): the same targets, options, chunk plans, compile
cache and output files, plus each target's predictions in memory. Without an output
directory the files go to a temporary one that is removed afterwards.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import tempfile
from collections.abc import Mapping, Sequence
from typing import Any

from af_jax import autochunk
from af_jax.data import msa_search, names
from af_jax.data import pipeline as af_pipeline
from af_jax.errors import ConfigError, InputError
from af_jax.predictor import use_compile_cache
from af_jax.run import fold as af_fold
from af_jax.run.options import MODEL_PRESETS, FoldOptions, msa_files
from configs import buckets as bucket_lists

# Flags named as run_inference.py's whose FoldOptions field has another name.
_RENAMED = {'buckets': 'length_buckets', 'uniprot_database_path': 'uniprot_database'}
_FOLD_FIELDS = {f.name for f in dataclasses.fields(FoldOptions)} - {
    'output_dir', 'pipeline', 'config_overrides', *_RENAMED.values()}
_PIPELINE_FIELDS = {f.name for f in dataclasses.fields(af_pipeline.PipelineOptions)} - {
    'databases', 'msa_paths', 'timeout', 'max_templates'}
# --<name>_database_path and --<tool>_binary_path -> msa_search.Databases fields.
_DATABASES = {**{f'{n}_database_path': n for n in (
    'uniref90', 'mgnify', 'small_bfd', 'bfd', 'uniref30', 'pdb70')},
    'mmseqs_database_path': 'mmseqs_db',
    **{f'{t}_binary_path': f'{t}_binary' for t in ('jackhmmer', 'hhblits', 'hhsearch', 'mmseqs')}}
_OTHERS = {'model_preset', 'num_multimer_predictions_per_model', 'msa_paths', 'search_timeout',
           'config', 'compilation_cache', 'compilation_cache_dir'}
KEYWORDS = frozenset(_FOLD_FIELDS | _PIPELINE_FIELDS | set(_RENAMED) | set(_DATABASES) | _OTHERS)


def fold(sequences: str | os.PathLike | Sequence[str | os.PathLike] | Mapping[str, str] = (),
         output_dir: str | os.PathLike | None = None, *,
         features_paths: Sequence[str | os.PathLike] = (),
         **flags: Any) -> dict[str, af_fold.Prediction]:
  """Fold sequences as `run_inference.py` does; returns each target's predictions.

  Example::

    results = af_jax.fold({'query': 'MKTAYIAKQR'}, params_dir='/data/alphafold',
                          model_names=['model_1_ptm'])
    best = next(iter(results['query'].outputs.values()))  # best first: ranked_0
    best['plddt'].mean()

  Args:
    sequences: a FASTA path (or several), or `{name: sequence}`. With multimer presets
      each FASTA file, or each entry (`'SEQA:SEQB'` or chains joined by ':'), is one
      complex.
    output_dir: where each target gets AlphaFold's output directory (as --output_dir; a
      target whose outputs there record the same job is skipped and has no predictions
      in memory). None: a temporary directory, removed on return.
    features_paths: raw features files to fold as they are (--features_paths).
    **flags: run_inference.py's flags by name with Python values (`model_names=['model_1_ptm']`,
      `msa_mode='precomputed'`, `msa_paths='msas/'`, `num_recycle=1`, `chunk='auto'`,
      `buckets=[64, 128]`, `random_params=True`, ...; `config={'model.num_recycle': 1}`
      for --config.* overrides); each defaults to the flag's default, and the compilation
      cache is the command line's (`compilation_cache=False` turns it off).

  Returns:
    target name -> Prediction (`directory`, then `outputs`, `proteins` and `scores` per
    prediction, best first), for every target folded by this call.

  Raises:
    ConfigError: an unknown keyword or a bad value. InputError, ParamsError, ToolError:
    as run_inference.py reports them (PredictionError after all targets when any failed).
  """
  unknown = sorted(set(flags) - KEYWORDS)
  if unknown:
    raise ConfigError(f'af_jax.fold() got unknown keywords {unknown}; it takes '
                      f'run_inference.py\'s flags: {", ".join(sorted(KEYWORDS))}')
  cache = flags.pop('compilation_cache', True)
  cache_dir = flags.pop('compilation_cache_dir', None)
  with tempfile.TemporaryDirectory(prefix='af_jax_fold_') as scratch:
    fasta_paths = _fasta_paths(sequences, pathlib.Path(scratch), _is_multimer(flags))
    options = fold_options(pathlib.Path(output_dir or pathlib.Path(scratch) / 'out'), flags)
    if options.pipeline.msa_paths and len(fasta_paths) != 1:
      raise ConfigError('msa_paths belongs to one target: pass one sequence (or one FASTA '
                        'file with one record)')
    if cache:
      use_compile_cache(cache_dir or True)
    predictions: dict[str, af_fold.Prediction] = {}
    af_fold.fold(fasta_paths, options, [str(p) for p in features_paths], predictions)
    if output_dir is None:
      predictions = {k: dataclasses.replace(v, directory=None) for k, v in predictions.items()}
    return predictions


def fold_options(output_dir: pathlib.Path, flags: Mapping[str, Any]) -> FoldOptions:
  """FoldOptions from run_inference.py's flag names and Python values (checked as the
  command line checks them)."""
  flags = dict(flags)
  model_names = tuple(flags.pop('model_names', None) or
                      MODEL_PRESETS[_preset(flags.pop('model_preset', 'monomer_ptm'))])
  databases = msa_search.Databases(**{_DATABASES[k]: str(flags.pop(k)) for k in _DATABASES
                                      if flags.get(k) is not None})
  msa_paths = flags.pop('msa_paths', ())
  msa_paths = [msa_paths] if isinstance(msa_paths, (str, os.PathLike)) else list(msa_paths)
  pipe = {k: flags.pop(k) for k in _PIPELINE_FIELDS if k in flags}
  if 'search_timeout' in flags:
    pipe['timeout'] = float(flags.pop('search_timeout'))
  pipe = af_pipeline.PipelineOptions(databases=databases, msa_paths=msa_files(msa_paths), **pipe)
  overrides = {k: str(v).lower() if isinstance(v, bool) else str(v)
               for k, v in flags.pop('config', {}).items()}
  fields = {_RENAMED.get(k, k): v for k, v in flags.items()
            if k not in ('num_multimer_predictions_per_model',)}
  if 'length_buckets' in fields:
    given = fields['length_buckets']
    fields['length_buckets'] = bucket_lists.parse_buckets(
        given if isinstance(given, str) else ','.join(str(b) for b in given))
  if 'chunk' in fields:
    fields['chunk'] = autochunk.parse_chunk(fields['chunk'], 'chunk')
  if fields.get('memory_budget') is not None:
    fields['memory_budget'] = autochunk.parse_memory(fields['memory_budget'])
  options = FoldOptions(output_dir=output_dir, model_names=model_names, pipeline=pipe,
                        config_overrides=overrides, **fields)
  if options.multimer:  # as run_inference.py: a complex's predictions per model
    options = dataclasses.replace(
        options, num_seeds=int(flags.get('num_multimer_predictions_per_model', 5)))
  if options.num_seeds < 1:
    raise ConfigError(f'{options.num_seeds} predictions per model: pass at least 1')
  return options


def _preset(name: str) -> str:
  if name not in MODEL_PRESETS:
    raise ConfigError(f'model_preset={name!r}: choose from {", ".join(MODEL_PRESETS)}')
  return name


def _is_multimer(flags: Mapping[str, Any]) -> bool:
  names = flags.get('model_names') or MODEL_PRESETS.get(flags.get('model_preset',
                                                                  'monomer_ptm'), ())
  return FoldOptions(output_dir=pathlib.Path('.'), model_names=tuple(names)).multimer


def _fasta_paths(sequences, scratch: pathlib.Path, multimer: bool) -> list[str]:
  """FASTA files for `sequences`: the paths given, or `{name: sequence}` written to
  `scratch` (one file per complex with multimer presets, named after it)."""
  if isinstance(sequences, (str, os.PathLike)):
    return [str(sequences)]
  if not isinstance(sequences, Mapping):
    return [str(p) for p in sequences]
  for name, seq in sequences.items():
    if not isinstance(name, str) or not isinstance(seq, str) or not name or \
        any(c in name + seq for c in '\r\n>'):
      raise InputError(f'sequence {name!r}: {{name: sequence}} takes one-line strings (no '
                       'newline or ">"); pass a FASTA file for anything else')
  if not multimer:
    path = scratch / 'sequences.fasta'
    path.write_text(''.join(f'>{n}\n{s}\n' for n, s in sequences.items()))
    return [str(path)]
  paths = []
  for i, (name, seq) in enumerate(sequences.items()):
    names.check_path_name(name, f'complex {names.shown(name)}', 'rename it')
    (scratch / str(i)).mkdir()
    path = scratch / str(i) / f'{name}.fasta'
    path.write_text(f'>{name}\n{seq}\n')
    paths.append(str(path))
  return paths
