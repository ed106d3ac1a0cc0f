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

from af_jax.data import names
from af_jax.errors import ConfigError, InputError
from af_jax.predictor import use_compile_cache
from af_jax.run import fold as af_fold
from af_jax.run import options

KEYWORDS = (options.FLAG_NAMES - {'output_dir'}) | {'compilation_cache', 'compilation_cache_dir'}


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
      for --config.* overrides); each defaults to the flag's default (so does an empty
      string flag, as on the command line), each is checked by the command line's own
      conversion (`options.from_flags`), and the compilation cache is the command line's
      (`compilation_cache=False` turns it off).

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
    # The command line's conversion, its messages naming the keyword (`chunk=`).
    fold_options = options.from_flags(
        {**flags, 'output_dir': output_dir or pathlib.Path(scratch) / 'out'}, spell=str)
    fasta_paths = _fasta_paths(sequences, pathlib.Path(scratch), fold_options.multimer)
    if fold_options.pipeline.msa_paths and len(fasta_paths) != 1:
      raise ConfigError('msa_paths belongs to one target: pass one sequence (or one FASTA '
                        'file with one record)')
    if cache:
      use_compile_cache(cache_dir or True)
    predictions: dict[str, af_fold.Prediction] = {}
    af_fold.fold(fasta_paths, fold_options, [str(p) for p in features_paths], predictions)
    if output_dir is None:
      predictions = {k: dataclasses.replace(v, directory=None) for k, v in predictions.items()}
    return predictions


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
