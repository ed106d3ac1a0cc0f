"""Finite or failed (issue 25, item 4).

Weights with NaN or inf are refused when loaded, naming the array; a prediction whose
outputs are not finite fails its target (one error line naming target, model and seed;
no structure; not complete) while the other targets fold, and the run exits non-zero;
every JSON file the project writes is valid JSON.
"""

import ast
import json
import math
import pathlib

import numpy as np
import pytest

import af_jax
from af_jax.run import outputs
from af_jax.common import residue_constants as rc
from af_jax.errors import ParamsError, PredictionError
from af_jax.train import trainer
from tests.cli_runner import ROOT
from tests.faults import digest_runs
from tests.faults.digest_runs import MODEL, run, snapshot, strict_json

POISONED = 'alphafold/alphafold_iteration/evoformer/preprocess_1d//weights'


@pytest.fixture(scope='module')
def flat():
  return digest_runs.tiny_flat_params(MODEL)


@pytest.mark.parametrize('bad', [np.nan, np.inf, -np.inf])
def test_non_finite_weights_are_refused_naming_the_array(flat, tmp_path, bad):
  poisoned = dict(flat)
  poisoned[POISONED] = flat[POISONED].copy()
  poisoned[POISONED][3, 5] = bad
  path = digest_runs.save_params(tmp_path, poisoned)
  with pytest.raises(ParamsError, match=f"'{POISONED}' in params file '{path}' holds"):
    af_jax.load_params(path)
  af_jax.save_params(path, flat)
  assert set(af_jax.load_params(path)) == set(flat)


def test_nan_weights_on_the_command_line_are_one_error_line(flat, tmp_path):
  poisoned = dict(flat)
  poisoned[POISONED] = np.full_like(flat[POISONED], np.nan)
  digest_runs.save_params(tmp_path / 'params', poisoned)
  fasta = tmp_path / 't.fasta'
  fasta.write_text('>t1\nMKVLAAGIVGLLLAAGCS\n')
  proc = run([f'--fasta_paths={fasta}', f'--output_dir={tmp_path / "out"}',
              f'--params_dir={tmp_path / "params"}'], check=False)
  assert proc.returncode == 2, proc.stderr[-2000:]
  assert 'Traceback' not in proc.stderr
  last = proc.stderr.strip().splitlines()[-1]
  assert last.startswith(f'error: {MODEL} weights: ') and POISONED in last, last
  assert not list((tmp_path / 'out').rglob('*.*'))


@pytest.fixture(scope='module')
def overflow(flat, tmp_path_factory):
  """A run whose weights overflow on tryptophan: one target with a W, one without.

  The weights are finite, so they load; the embedding of W is float32's largest value,
  so the MSA activations of a target with a W overflow to inf and then NaN, and a target
  without one never touches that row.
  """
  tmp = tmp_path_factory.mktemp('overflow')
  weights = dict(flat)
  weights[POISONED] = flat[POISONED].copy()
  weights[POISONED][1 + rc.restype_order['W']] = np.finfo(np.float32).max
  digest_runs.save_params(tmp / 'params', weights)
  fasta = tmp / 'targets.fasta'
  fasta.write_text('>plain\nMKVLAAGIVGLLLAAGCS\n>trp\nMKVLAAGWVGLLLAAGCS\n')
  args = [f'--fasta_paths={fasta}', f'--output_dir={tmp / "out"}',
          f'--params_dir={tmp / "params"}']
  return tmp / 'out', args, run(args, check=False)


def test_a_non_finite_prediction_fails_its_target_only(overflow):
  out, _, proc = overflow
  assert proc.returncode == 2, proc.stderr[-2000:]
  assert 'Traceback' not in proc.stderr
  errors = [line for line in proc.stderr.splitlines() if line.startswith('E')]
  assert len(errors) == 1, errors
  assert f'target trp, model {MODEL}, seed 0' in errors[0] and 'non-finite' in errors[0]
  assert proc.stderr.strip().splitlines()[-1].startswith('error: 1 of 2 targets failed (trp)')
  # No structure, confidence or ranking of the failed target: it is not complete.
  assert not [f for f in snapshot(out / 'trp') if not f.startswith('msas')]
  # The other target folded completely, and its JSON files are JSON.
  assert (out / 'plain' / 'ranked_0.pdb').is_file()
  for path in (out / 'plain').glob('*.json'):
    strict_json(path.read_text())


def test_a_failed_target_is_folded_again_and_the_others_skipped(overflow):
  out, args, _ = overflow
  before = snapshot(out / 'plain')
  proc = run(args, check=False)
  assert proc.returncode == 2
  assert 'plain (18 residues): outputs complete' in proc.stderr
  assert 'target trp, model' in proc.stderr
  assert snapshot(out / 'plain') == before


def test_a_nan_plddt_is_never_labelled_very_high():
  assert [outputs.plddt_category(s) for s in (49.9, 69.9, 89.9, 90.0)] == ['D', 'L', 'M', 'H']
  for score in (math.nan, math.inf):
    with pytest.raises(PredictionError, match='not a finite number'):
      outputs.plddt_category(score)
  with pytest.raises(PredictionError):
    outputs.confidence_json(np.array([70.0, np.nan]))


def test_check_finite_names_the_outputs():
  out = {'plddt': np.array([80.0, np.nan]), 'ptm': np.float32(0.5),
         'structure_module': {'final_atom_positions': np.full((2, 37, 3), np.inf)},
         'num_recycles': np.int32(3)}
  with pytest.raises(PredictionError) as e:
    outputs.check_finite(out, 'target t, model m, seed 0')
  message = str(e.value)
  assert message.startswith('target t, model m, seed 0: non-finite outputs in ')
  assert 'structure_module/final_atom_positions (0 NaN, 222 inf' in message
  assert 'plddt (1 NaN' in message and 'ptm' not in message.replace('plddt', '')
  outputs.check_finite({'plddt': np.array([80.0]), 'num_recycles': 3}, 'fine')


def test_json_writers_refuse_nan(tmp_path):
  with pytest.raises(ValueError):
    outputs.write_timings(tmp_path, {'features': math.nan})
  assert not list(tmp_path.iterdir())
  # A diverged training step is logged with null metrics, not NaN.
  record = trainer._finite_or_null({'step': 3, 'loss': math.nan, 'fape': 1.5})
  assert json.loads(json.dumps(record, allow_nan=False)) == {'step': 3, 'loss': None,
                                                             'fape': 1.5}


def _json_calls_without_allow_nan():
  found = []
  paths = [*ROOT.glob('*.py')] + [p for d in ('af_jax', 'compile_cache', 'bench')
                                  for p in (ROOT / d).rglob('*.py')]
  for path in paths:
    for node in ast.walk(ast.parse(path.read_text())):
      if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
          and node.func.attr in ('dump', 'dumps') and isinstance(node.func.value, ast.Name)
          and node.func.value.id == 'json'):
        kwargs = {k.arg: k.value for k in node.keywords}
        value = kwargs.get('allow_nan')
        if not (isinstance(value, ast.Constant) and value.value is False):
          found.append(f'{pathlib.Path(path).relative_to(ROOT)}:{node.lineno}')
  return found


def test_every_json_the_project_writes_refuses_nan():
  # Python's json writes NaN and Infinity by default, which no JSON reader accepts.
  assert _json_calls_without_allow_nan() == []
