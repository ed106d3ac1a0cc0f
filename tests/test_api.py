"""The Python API: af_jax.fold, af_jax.process_features and af_jax.Predictor's defaults.

af_jax.fold and the default Predictor turn on the process-wide persistent cache, so they
run in a child process (its cache in a scratch directory), never in the test process.
"""

import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

import af_jax
from af_jax.data import features, parsers
from af_jax.errors import ConfigError, InputError
from tests.cli_runner import ROOT, scratch_dir
from tests.model.tiny import TINY

SEQUENCE = 'MDKKETKHLLKIKKEDYPQIFDFL'  # 24 residues of 2Q2K chain A
SMALL = {**TINY, 'data.eval.max_msa_clusters': 16, 'data.common.max_extra_msa': 32}

# One fold through af_jax.fold, then the same target through process_features and a
# default af_jax.Predictor, in a fresh process as a user would run them.
CHILD = r'''
import json, pathlib, sys
import numpy as np
import af_jax
from af_jax.model.build import build_model
from af_jax import params as af_params
import compile_cache

tmp, sequence, small = pathlib.Path(sys.argv[1]), sys.argv[2], json.loads(sys.argv[3])
cfg = af_jax.model_config('model_1_ptm')
cfg.update_from_flattened_dict(small)
cfg.model.global_config.zero_init = False  # random weights that fold to something
(tmp / 'params').mkdir()
af_jax.save_params(tmp / 'params' / 'params_model_1_ptm.npz',
                   af_params.module_to_flat(build_model(cfg.model, seed=1)))

results = af_jax.fold({'query': sequence}, tmp / 'out', params_dir=tmp / 'params',
                      model_names=['model_1_ptm'], buckets=[32], config=small)
folded = results['query']
name, out = next(iter(folded.outputs.items()))

predictor = af_jax.Predictor(cfg, af_jax.load_params(tmp / 'params' / 'params_model_1_ptm.npz'))
batch = af_jax.process_features(tmp / 'out' / 'query' / 'features.npz', cfg, length_buckets=[32])
again = predictor.predict_processed(batch)
n = len(sequence)
ranking = json.loads((tmp / 'out' / 'query' / 'ranking_debug.json').read_text())

in_temp = af_jax.fold({'query': sequence}, params_dir=tmp / 'params', model_names=['model_1_ptm'],
                      buckets=[32], config=small)['query']
print(json.dumps({
    'name': name, 'directory': str(folded.directory), 'num_res': int(out['plddt'].shape[0]),
    'plddt_diff': float(np.abs(out['plddt'] - again['plddt'][:n]).max()),
    'pos_diff': float(np.abs(out['structure_module']['final_atom_positions']
                             - again['structure_module']['final_atom_positions'][:n]).max()),
    'temp_diff': float(np.abs(out['plddt'] - in_temp.outputs[name]['plddt']).max()),
    'temp_directory': in_temp.directory,
    'padded': int(batch['aatype'].shape[-1]),
    'fold_plan': ranking['chunk_plans'][name]['plan'],
    'predictor_plan': predictor.bucket(batch)[1],
    'cache_root': str(compile_cache.current().root),
}))
'''


def run_child(tmp: pathlib.Path, cache: str) -> dict:
  # One CPU device (as a user's process has), LLVM at -O0 as every test (conftest.py).
  env = {**os.environ, 'JAX_PLATFORMS': 'cpu', 'COMPILE_CACHE_DIR': cache,
         'XLA_FLAGS': '--xla_backend_optimization_level=0'}
  proc = subprocess.run([sys.executable, '-c', CHILD, str(tmp), SEQUENCE, json.dumps(SMALL)],
                        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  return json.loads(proc.stdout.strip().splitlines()[-1])


def test_fold_then_the_same_target_through_process_features_and_predictor(tmp_path):
  cache = scratch_dir('af_jax_test_api_cache_')
  got = run_child(tmp_path, cache)
  assert got['name'] == 'model_1_ptm_pred_0'
  assert got['directory'] == str(tmp_path / 'out' / 'query')
  assert (tmp_path / 'out' / 'query' / 'ranked_0.pdb').is_file()
  # Predictions come back cut to the target's length; the batch is padded to the bucket.
  assert got['num_res'] == len(SEQUENCE) and got['padded'] == 32
  # The documented Python path is the command line's: the same batch, plan and numbers.
  assert got['plddt_diff'] < 1e-4 and got['pos_diff'] < 1e-3
  assert got['predictor_plan']['plan'] == got['fold_plan']
  assert got['predictor_plan']['source'] in ('cache', 'compiled')  # AutoChunk planned it
  # The persistent cache is on by default, at the command line's default directory.
  assert got['cache_root'] == cache
  assert (pathlib.Path(cache) / 'autochunk').is_dir()
  assert any(p.name.startswith('default') for p in pathlib.Path(cache).iterdir())
  # Without output_dir: a temporary directory, removed; the same predictions.
  assert got['temp_directory'] is None and got['temp_diff'] < 1e-4


def _raw(seq: str) -> dict:
  msa = parsers.Msa(sequences=[seq], deletion_matrix=[[0] * len(seq)], descriptions=['q'])
  return {**features.make_sequence_features(seq, 'q', len(seq)),
          **features.make_msa_features([msa]), **features.empty_template_features(len(seq))}


def test_process_features_from_a_dict_or_a_file(tmp_path):
  cfg = af_jax.model_config('model_1_ptm')
  raw = _raw(SEQUENCE)
  batch = af_jax.process_features(raw, cfg, length_buckets=[16, 32, 64])
  # One slice per recycle, padded to the smallest bucket that holds the target.
  assert batch['aatype'].shape == (cfg.data.common.num_recycle + 1, 32)
  assert batch['seq_mask'][0].sum() == len(SEQUENCE)
  features.write_features_npz(tmp_path / 'features.npz', raw)
  again = af_jax.process_features(tmp_path / 'features.npz', cfg, length_buckets=[16, 32, 64])
  assert sorted(again) == sorted(batch)
  for k in batch:
    np.testing.assert_array_equal(again[k], batch[k], err_msg=k)


def test_fold_refuses_unknown_keywords_and_bad_values_before_any_work(tmp_path):
  with pytest.raises(ConfigError, match=r"unknown keywords \['num_recycles'\]"):
    af_jax.fold({'q': SEQUENCE}, tmp_path, num_recycles=1)
  with pytest.raises(ConfigError, match='chunk='):
    af_jax.fold({'q': SEQUENCE}, tmp_path, chunk='some')
  with pytest.raises(InputError, match='one-line strings'):
    af_jax.fold({'q': 'MK\n>other\nMK'}, tmp_path)
  with pytest.raises(ConfigError, match='model_preset='):
    af_jax.fold({'q': SEQUENCE}, tmp_path, model_preset='monomer_xl')


def test_predictor_needs_weights_and_a_valid_chunk():
  cfg = af_jax.model_config('model_1_ptm')
  with pytest.raises(InputError, match='needs weights'):
    af_jax.Predictor(cfg, None, compilation_cache=False)
  with pytest.raises(ConfigError, match="chunk='0'"):
    af_jax.Predictor(cfg, {}, chunk='0', compilation_cache=False)


def test_fold_keywords_become_the_command_lines_options(tmp_path):
  from af_jax.run.options import from_flags
  opts = from_flags({'output_dir': tmp_path, 'model_preset': 'multimer', 'buckets': [256, 64],
                     'msa_mode': 'precomputed', 'msa_paths': ROOT / 'examples' / '2q2k_A_msas',
                     'uniref90_database_path': '/db/u90.fasta', 'search_timeout': 5,
                     'chunk': '32', 'memory_budget': '1GB',
                     'config': {'model.global_config.bfloat16': True}}, spell=str)
  # As run_inference.py: a complex's predictions per model default to 5, not --num_seeds.
  assert opts.multimer and opts.num_seeds == 5 and opts.length_buckets == (64, 256)
  assert opts.chunk == 32 and opts.memory_budget == 10**9
  assert opts.pipeline.databases.uniref90 == '/db/u90.fasta' and opts.pipeline.timeout == 5.0
  # A directory stands for the alignments in it, as --msa_paths=DIR.
  assert [pathlib.Path(p).name for p in opts.pipeline.msa_paths] == [
      'bfd_uniclust_hits.a3m', 'mgnify_hits.sto', 'uniref90_hits.sto']
  assert opts.config_overrides == {'model.global_config.bfloat16': 'true'}
  one = from_flags({'output_dir': tmp_path, 'model_names': ['model_1_multimer_v3'],
                    'num_multimer_predictions_per_model': 1}, spell=str)
  assert one.num_seeds == 1


def test_fold_writes_a_complex_per_entry_as_one_fasta_file(tmp_path):
  from af_jax.run.api import _fasta_paths
  from af_jax.run.targets import read_targets
  paths = _fasta_paths({'dimer': 'MKTAYIAK:GSHMDKKE', 'mono': 'MKTAYIAK'}, tmp_path, True)
  targets = read_targets(paths, multimer=True)
  assert [(t.record.name, len(t.chains)) for t in targets] == [('mono', 1), ('dimer', 2)]
  with pytest.raises(InputError, match='path separator'):
    _fasta_paths({'a/b': 'MKTAYIAK'}, tmp_path, True)
