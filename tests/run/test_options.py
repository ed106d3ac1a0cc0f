"""One conversion from flags to FoldOptions: run_inference.py and af_jax.fold agree.

The command line's side runs in a child process (run_inference.py defines its flags on
absl's global FLAGS), parsing each case's argv as a user's would be parsed; the Python side
calls af_jax.fold for values it must refuse (it refuses before any work) and the
conversion af_jax.fold makes for values it accepts.
"""

import json
import subprocess
import sys

import pytest

import af_jax
from af_jax.errors import ConfigError
from af_jax.run import options as fold_options
from tests.cli_runner import ROOT

# Each case: flags by name with the values a Python caller passes; the command line gets
# the same values as --flag=value (a bool as --flag or --noflag, a list comma-joined).
GOOD = [
    {},
    {'memory_budget': ''},  # empty: unset, AutoChunk's default budget
    {'memory_budget': '1.5GB', 'chunk': 'auto'},
    {'chunk': '32'},
    {'chunk': 'none', 'params_dir': ''},
    {'chunk': ''},  # empty: unset, 'auto'
    {'buckets': ['256', '64']},
    {'buckets': '128,32'},
    {'model_preset': 'multimer', 'num_multimer_predictions_per_model': 2},
    {'model_names': ['model_1_ptm', 'model_3_ptm'], 'num_seeds': 3},
    {'model_names': 'model_2'},
    {'num_recycle': 1, 'precision': 'bfloat16', 'random_seed': 7, 'dap': 2},
    {'progress': False, 'random_params': True, 'models_to_relax': 'best'},
    {'msa_mode': 'jackhmmer', 'uniref90_database_path': '/db/u90.fasta', 'n_cpu': 4,
     'search_timeout': 5, 'jackhmmer_binary_path': ''},
    {'use_templates': True, 'template_mmcif_dir': '/db/mmcif', 'max_template_date': '2020-01-01'},
    {'uniprot_database_path': '/db/uniprot.fasta', 'model_preset': 'multimer'},
]
BAD = [
    {'memory_budget': 'lots'},
    {'memory_budget': '0'},
    {'memory_budget': '-1GB'},
    {'chunk': 'some'},
    {'chunk': '0'},
    {'buckets': 'a,b'},
    {'buckets': '64,64'},
    {'buckets': ''},
    {'num_seeds': 0},
    {'model_preset': 'multimer', 'num_multimer_predictions_per_model': 0},
    {'model_names': 'model_1_ptm,model_1_multimer_v3'},
    {'num_recycle': 'x'},
    {'num_recycle': -1},
    {'dap': 0},
    {'search_timeout': 'soon'},
    # absl refuses these on the command line with its own message.
    {'model_preset': 'monomer_xl'},
    {'precision': 'float16'},
    {'msa_mode': 'blast'},
    {'models_to_relax': 'some'},
]

CHILD = r'''
import json, sys
sys.path.insert(0, sys.argv[1])
import run_inference
from absl import flags
from af_jax.errors import ConfigError
out = []
for argv in json.loads(sys.argv[2]):
  flags.FLAGS.unparse_flags()
  try:
    flags.FLAGS(['run_inference.py', *argv])
    out.append({'options': repr(run_inference.options_from_flags())})
  except flags.Error as e:
    out.append({'absl': str(e)})
  except ConfigError as e:
    out.append({'error': str(e)})
print(json.dumps(out))
'''


def _argv(case: dict, output_dir: str) -> list[str]:
  argv = [f'--output_dir={output_dir}']
  for name, value in case.items():
    if isinstance(value, bool):
      argv.append(f'--{name}' if value else f'--no{name}')
    else:
      argv.append(f'--{name}={",".join(value) if isinstance(value, list) else value}')
  return argv


@pytest.fixture(scope='module')
def command_line(tmp_path_factory):
  """What run_inference.py makes of each case in GOOD + BAD, in order."""
  out = str(tmp_path_factory.mktemp('out'))
  cases = [_argv(case, out) for case in GOOD + BAD]
  proc = subprocess.run([sys.executable, '-c', CHILD, str(ROOT), json.dumps(cases)],
                        capture_output=True, text=True, timeout=300, check=False)
  assert proc.returncode == 0, proc.stderr[-3000:]
  results = json.loads(proc.stdout.strip().splitlines()[-1])
  return out, dict(zip(range(len(GOOD + BAD)), results))


@pytest.mark.parametrize('index', range(len(GOOD)))
def test_both_accept_good_values_as_the_same_options(command_line, index):
  out, results = command_line
  assert 'options' in results[index], results[index]
  python = fold_options.from_flags({**GOOD[index], 'output_dir': out}, spell=str)
  assert repr(python) == results[index]['options']


@pytest.mark.parametrize('index', range(len(BAD)))
def test_both_refuse_bad_values_with_the_same_message(command_line, tmp_path, index):
  _, results = command_line
  case = BAD[index]
  with pytest.raises(ConfigError) as python:
    af_jax.fold({'q': 'MKTAYIAKQR'}, tmp_path, **case)
  # Each message names the flag as its user wrote it: --chunk= there, chunk= here.
  assert any(str(python.value).startswith(f'{name}=') for name in case), python.value
  cli = results[len(GOOD) + index]
  if 'absl' in cli:  # an enum flag: absl's own message names it
    assert any(f'--{name}' in cli['absl'] for name in case), cli
    return
  assert 'error' in cli, cli
  assert any(cli['error'].startswith(f'--{name}=') for name in case), cli
  assert cli['error'].replace('--', '') == str(python.value).replace('--', '')


def test_empty_memory_budget_is_unset_on_both_paths(command_line):
  out, results = command_line
  options = fold_options.from_flags({'memory_budget': '', 'output_dir': out}, spell=str)
  assert options.memory_budget is None
  assert 'memory_budget=None' in results[GOOD.index({'memory_budget': ''})]['options']


def test_unknown_flag_names_are_refused():
  with pytest.raises(ConfigError, match=r"unknown flags \['num_recycles'\]"):
    fold_options.from_flags({'output_dir': '.', 'num_recycles': 1})
  with pytest.raises(ConfigError, match='output_dir is required'):
    fold_options.from_flags({'output_dir': ''})
