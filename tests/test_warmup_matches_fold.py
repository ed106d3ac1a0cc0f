"""Warm-up and fold agree by construction (issue 27): a FASTA's buckets warmed up with the
fold's own flags (default --chunk=auto) in one process are folded in a second with zero XLA
compilations, AutoChunk's included, and coordinates bit-identical to a cold fold's.

The model is tiny, but its triangle attentions have 16 heads so that AutoChunk's plan at
L=96 on a CPU is chunked (a warm-up that ignored the plan would build another executable),
and the README example's precomputed alignments give an MSA depth that is not the preset's
maximum (a warm-up of the maxima would build another). The weights are a file, as in
real use: --random_params would compile its initialisers in the fold.
"""

import json
import pathlib
import pickle
import subprocess
import sys

import numpy as np

from compile_cache import xla_compilations
from tests.cli_runner import child_env
from tests.model.tiny import TINY, tiny_config

ROOT = pathlib.Path(__file__).resolve().parents[1]
HEADS = {f'model.embeddings_and_evoformer.evoformer.{n}.num_head': 16
         for n in ('triangle_attention_starting_node', 'triangle_attention_ending_node')}
SMALL = {**TINY, **HEADS, 'model.embeddings_and_evoformer.evoformer_num_block': 1,
         'model.heads.structure_module.num_layer': 1, 'data.eval.max_msa_clusters': 16,
         'data.common.max_extra_msa': 32}
MODEL = 'model_3_ptm'


def run(args, cache):
  env = child_env(None, JAX_LOG_COMPILES='1')
  proc = subprocess.run(
      [sys.executable, str(ROOT / 'run_inference.py'), *map(str, args),
       f'--compilation_cache_dir={cache}' if cache else '--nocompilation_cache'],
      cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  return proc.stdout + proc.stderr


def test_warm_up_then_fold_compiles_nothing(tmp_path):
  import af_jax
  from af_jax.model.build import build_model
  cfg = tiny_config(MODEL, **{k: v for k, v in SMALL.items() if k.startswith('model.')})
  cfg.model.num_recycle = 0
  cfg.model.global_config.zero_init = False
  af_jax.save_params(tmp_path / f'params_{MODEL}.npz', build_model(cfg.model, seed=0))
  flags = ['--fasta_paths=examples/2q2k_A.fasta', '--msa_mode=precomputed',
           '--msa_paths=examples/2q2k_A_msas', f'--model_names={MODEL}', '--num_recycle=0',
           '--buckets=96', f'--params_dir={tmp_path}',
           *[f'--config.{k}={v}' for k, v in SMALL.items()]]
  cache = tmp_path / 'cache'

  log = run([*flags, f'--output_dir={tmp_path / "unused"}', '--warmup_only'], cache)
  assert 'jit(_apply)' in xla_compilations(log)  # the bucket, by AutoChunk's search
  assert not (tmp_path / 'unused' / '2q2k_A').exists()  # warm-up folds nothing
  # The MSA depth the README example's alignments give (8 extra rows), not the preset's
  # maximum (32).
  # --progress (the default) executables are labelled apart from --noprogress ones.
  assert f'{MODEL}/L96/msa16x8/r1/progress' in log

  log = run([*flags, f'--output_dir={tmp_path / "warm"}'], cache)
  assert xla_compilations(log) == []
  assert f'executable {MODEL}/L96/msa16x8/r1/progress loaded from the compilation cache' in log
  ranking = json.loads((tmp_path / 'warm' / '2q2k_A' / 'ranking_debug.json').read_text())
  plan = ranking['chunk_plans'][f'{MODEL}_pred_0']
  assert plan['plan'] != 'unchunked', plan  # the test covers a chunked plan
  assert plan['source'] == 'cache', plan  # AutoChunk's peaks were measured by the warm-up

  run([*flags, f'--output_dir={tmp_path / "cold"}'], None)
  name = f'result_{MODEL}_pred_0.pkl'
  warm = pickle.loads((tmp_path / 'warm' / '2q2k_A' / name).read_bytes())
  cold = pickle.loads((tmp_path / 'cold' / '2q2k_A' / name).read_bytes())
  np.testing.assert_array_equal(warm['structure_module']['final_atom_positions'],
                                cold['structure_module']['final_atom_positions'])

  # A --noprogress warm-up adds the other executable; `compile_cache list` shows both apart.
  run([*flags, f'--output_dir={tmp_path / "unused"}', '--warmup_only', '--noprogress'], cache)
  listed = subprocess.run([sys.executable, '-m', 'compile_cache', 'list', f'--cache_dir={cache}'],
                          cwd=ROOT, env=child_env(None), capture_output=True, text=True,
                          timeout=120, check=True).stdout.split()
  assert listed.count(f'{MODEL}/L96/msa16x8/r1/progress') == 1, listed
  assert listed.count(f'{MODEL}/L96/msa16x8/r1') == 1, listed
