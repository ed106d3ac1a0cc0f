"""run_inference.py with the persistent compilation cache, across processes.

--warmup_only fills the cache from shapes alone; a later process folding a protein in
that bucket compiles the model zero times and gives bit-identical results to a process
that compiled it from scratch.
"""

import pickle
import subprocess
import sys

import numpy as np

from tests.cli_runner import child_env, recycle_lines
from tests.model.tiny import TINY
from tests.test_run_inference import ROOT, SCRIPT

SMALL = [f'--config.{k}={v}' for k, v in TINY.items()] + [
    '--num_recycle=1', '--config.data.eval.max_msa_clusters=16',
    '--config.data.common.max_extra_msa=32', '--buckets=48,96', '--random_params',
    '--model_names=model_3_ptm']


def run(args):
  env = child_env(None)
  proc = subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], cwd=ROOT, env=env,
                        capture_output=True, text=True, timeout=900)
  assert proc.returncode == 0, proc.stderr[-3000:]
  return proc.stdout + proc.stderr


def _flatten(tree, prefix=''):
  if isinstance(tree, dict):
    for k, v in tree.items():
      yield from _flatten(v, f'{prefix}/{k}')
  else:
    yield prefix, np.asarray(tree)


def test_warm_cache_means_zero_model_compiles_and_identical_outputs(tmp_path):
  fasta = tmp_path / 't.fasta'
  fasta.write_text('>t1\nMKTAYIAKQRQISFVKSHFSRQLEERLGLIEVQAPILSRVGDGTQDNLSGAE\n')  # 51 aa
  cache = tmp_path / 'cache'
  common = [f'--fasta_paths={fasta}', f'--compilation_cache_dir={cache}', *SMALL]

  log = run([*common, f'--output_dir={tmp_path / "unused"}', '--warmup_only'])
  assert 'model_3_ptm/L96/' in log and 'compiled' in log
  assert not (tmp_path / 'unused' / 't1').exists()  # warm-up folds nothing

  # Second process: the model's executable is loaded (by AutoChunk's check of the plan, then
  # reused for the prediction), never compiled.
  log = run([*common, f'--output_dir={tmp_path / "warm"}'])
  statuses = [line.split('executable ', 1)[1] for line in log.splitlines()
              if ': executable ' in line]
  assert len(statuses) == 1, statuses
  assert 'loaded from the compilation cache' in statuses[0] or 'reused' in statuses[0]
  assert 'compile cache hit: model_3_ptm/L96' in log or 'compile cache hit: autochunk' in log
  assert 'cache miss' not in log
  # The loaded executable reports every recycle (its host callback is this process's).
  assert [(d['target'], d['recycle']) for d in recycle_lines(log)] == [('t1', 0), ('t1', 1)]

  # Warm-up again: already cached, nothing compiled.
  log = run([*common, f'--output_dir={tmp_path / "unused"}', '--warmup_only'])
  assert 'compiled' not in log.split('warm-up:', 1)[1].replace('0 compiled', '')

  # A process that compiles from scratch (no cache) gives bit-identical outputs.
  run([f'--fasta_paths={fasta}', '--nocompilation_cache', *SMALL,
       f'--output_dir={tmp_path / "cold"}'])
  name = 'result_model_3_ptm_pred_0.pkl'
  warm = dict(_flatten(pickle.loads((tmp_path / 'warm' / 't1' / name).read_bytes())))
  cold = dict(_flatten(pickle.loads((tmp_path / 'cold' / 't1' / name).read_bytes())))
  assert warm.keys() == cold.keys()
  for key in warm:
    np.testing.assert_array_equal(warm[key], cold[key], err_msg=key)
