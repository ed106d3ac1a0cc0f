"""Every ```python block of README.md runs as written, each in a fresh process.

A block runs in a scratch directory laid out as the README assumes (examples/, AlphaFold's
params/ with random weights, run_train.py's alignments/ and pdb_mmcif/ holding 2Q2K chain
A), with the code a user would write. What keeps it fast on a CPU is set up before it, in
PRELUDE: the presets are the tiny model (tests/model/tiny.py) with small MSA depths and
crops, and SUBSTITUTIONS shortens the loops (each must occur in the README, so an edit that
drops one fails here).
"""

import json
import os
import re
import subprocess
import sys

import pytest

from tests.cli_runner import ROOT, scratch_dir
from tests.data.shared_data import CHAIN_2Q2K
from tests.model.tiny import TINY

README = ROOT / 'README.md'
BLOCKS = re.findall(r'^```python\n(.*?)^```', README.read_text(), re.S | re.M)

# Literal text of a block -> what the test runs instead (a long loop made short).
SUBSTITUTIONS = {'num_steps=1000': 'num_steps=2'}

SMALL_DATA = {'data.eval.max_msa_clusters': 16, 'data.common.max_extra_msa': 32}
SMALL_TRAIN = {'data.train.crop_size': 32, 'data.train.max_msa_clusters': 8,
               'data.train.max_extra_msa': 16, 'data.train.max_templates': 2,
               'data.train.max_template_hits': 2, 'data.common.max_recycling_iters': 1,
               'data.data_module.data_loaders.batch_size': 1}

# Runs before a block: the tiny presets wherever a config is made, and params/ holding
# random weights for them (as AlphaFold's params directory holds the published ones).
PRELUDE = r'''
import json, pathlib, sys
import configs, configs.model, configs.train
import af_jax
tiny, small_data, small_train = (json.loads(a) for a in sys.argv[1:4])
_model_config, _train_config = configs.model.model_config, configs.train.train_config

def model_config(name):
  cfg = _model_config(name)
  cfg.update_from_flattened_dict({**tiny, **small_data})
  return cfg

def train_config(name, model_preset=None):
  cfg = _train_config(name, model_preset)
  cfg.update_from_flattened_dict(small_train)
  return cfg

configs.model_config = configs.model.model_config = af_jax.model_config = model_config
configs.train.model_config = model_config
configs.train.train_config = train_config

from af_jax import params as _params
from af_jax.model.build import build_model as _build_model
_cfg = model_config('model_1_ptm')
_cfg.model.global_config.zero_init = False
pathlib.Path('params').mkdir()
af_jax.save_params('params/params_model_1_ptm.npz',
                   _params.module_to_flat(_build_model(_cfg.model, seed=1)))
del _cfg
'''


def test_readme_has_python_blocks_and_every_substitution_applies():
  assert len(BLOCKS) >= 2
  for old in SUBSTITUTIONS:
    assert any(old in block for block in BLOCKS), f'{old!r} is no longer in README.md'


@pytest.mark.parametrize('index', range(len(BLOCKS)))
def test_readme_python_block_runs(index, tmp_path):
  code = BLOCKS[index]
  for old, new in SUBSTITUTIONS.items():
    code = code.replace(old, new)
  (tmp_path / 'examples').symlink_to(ROOT / 'examples')
  (tmp_path / 'alignments').symlink_to(CHAIN_2Q2K / 'alignments')
  (tmp_path / 'pdb_mmcif').symlink_to(CHAIN_2Q2K)
  # `pip install -e .` puts the repository on the path; here PYTHONPATH does. The cache is
  # the command line's default, pointed at a scratch directory; LLVM -O0 as in conftest.py.
  env = {**os.environ, 'PYTHONPATH': str(ROOT), 'JAX_PLATFORMS': 'cpu',
         'COMPILE_CACHE_DIR': scratch_dir('af_jax_test_readme_cache_'),
         'XLA_FLAGS': '--xla_backend_optimization_level=0'}
  args = [json.dumps(d) for d in (TINY, SMALL_DATA, SMALL_TRAIN)]
  proc = subprocess.run([sys.executable, '-c', PRELUDE + code, *args], cwd=tmp_path, env=env,
                        capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, f'README block {index}:\n{code}\n{proc.stderr[-3000:]}'
