"""Tiny folds on the command line for the stale-result and non-finite fault tests.

One small model_3_ptm (no template stack, one Evoformer block, one structure-module
layer, no recycling, one 32-residue bucket, unchunked), so a run that loads its
executable from the shared compilation cache takes seconds.
"""

import json
import pathlib

import numpy as np

import af_jax
from af_jax.run import options as fold_options
from af_jax import params as af_params
from af_jax.data import features, parsers
from af_jax.model.build import build_model
from tests.cli_runner import run_script, scratch_dir
from tests.model.tiny import TINY

# The runs of both fault files share one compilation cache, kept out of the user's ~/.cache.
CACHE_DIR = scratch_dir('af_jax_test_faults_xla_')

OVERRIDES = {**{k: str(v) for k, v in TINY.items()},
             'model.embeddings_and_evoformer.evoformer_num_block': '1',
             'model.heads.structure_module.num_layer': '1'}
MODEL = 'model_3_ptm'
FLAGS = [f'--config.{k}={v}' for k, v in OVERRIDES.items()] + [
    '--num_recycle=0', '--buckets=32', '--chunk=none']


def run(args, check=True):
  """run_inference.py with the tiny model's flags (the test's own flags come last and win)."""
  return run_script('run_inference.py', [f'--model_names={MODEL}', *FLAGS, *map(str, args)],
                    cache_dir=CACHE_DIR, check=check)


def tiny_flat_params(model_name: str = MODEL, seed: int = 0) -> dict[str, np.ndarray]:
  """Random weights of the tiny model, as a params file would hold them."""
  options = fold_options.FoldOptions(output_dir=pathlib.Path('.'), model_names=(model_name,),
                             config_overrides=OVERRIDES, random_params=True)
  cfg = fold_options.model_config(model_name, options)
  return {k: np.array(v) for k, v in
          af_params.module_to_flat(build_model(cfg.model, seed=seed)).items()}


def save_params(params_dir: pathlib.Path, flat: dict, model_name: str = MODEL) -> pathlib.Path:
  params_dir.mkdir(parents=True, exist_ok=True)
  path = params_dir / f'params_{model_name}.npz'
  af_jax.save_params(path, flat)
  return path


def write_features(path: pathlib.Path, sequence: str, msa_rows: tuple[str, ...] = ()) -> None:
  """A raw features.pkl of `sequence` with extra MSA rows, as the data pipeline writes one."""
  path.parent.mkdir(parents=True, exist_ok=True)
  rows = [sequence, *msa_rows]
  msa = parsers.Msa(sequences=rows, deletion_matrix=[[0] * len(sequence)] * len(rows),
                    descriptions=[f'row{i}' for i in range(len(rows))])
  feats = {**features.make_sequence_features(sequence, path.parent.name, len(sequence)),
           **features.make_msa_features([msa]),
           **features.empty_template_features(len(sequence))}
  features.write_features_pkl(path, feats)


def recorded_job(target_dir: pathlib.Path) -> dict:
  return json.loads((target_dir / 'ranking_debug.json').read_text())['job']


def snapshot(directory: pathlib.Path) -> dict[str, int]:
  """Every file under `directory` (relative name -> mtime in ns)."""
  return {str(p.relative_to(directory)): p.stat().st_mtime_ns
          for p in directory.rglob('*') if p.is_file()}


def strict_json(text: str):
  """json.loads that refuses NaN and Infinity, which are not JSON."""
  def refuse(name):
    raise ValueError(f'{name} is not JSON')
  return json.loads(text, parse_constant=refuse)
