"""Issue 25 item 5: pickles by choice.

Real files throughout: a features.pkl whose unpickling leaves a trace on disk (to count
the loads), and the pickle-free features.npz written beside it.
"""

import pathlib
import pickle
import subprocess
import sys
import tempfile

import numpy as np
import pytest

from af_jax.data import features, parsers, pipeline
from tests.data.shared_data import CHAIN_2Q2K
from tests.faults.names_support import MODEL, ROOT, assert_ok, assert_one_error_line, env, run

MSA = CHAIN_2Q2K / 'alignments' / '2q2k_A' / 'bfd_uniclust_hits.a3m'


class _UnpickleProbe:
  """Unpickling this calls tempfile.mkstemp in `directory`: one new file per load."""

  def __init__(self, directory: pathlib.Path):
    self.directory = directory

  def __reduce__(self):
    return tempfile.mkstemp, ('', 'load-', str(self.directory))


@pytest.fixture(scope='module')
def raw_features(tmp_path_factory):
  """Raw features of 2Q2K chain A with its real MSA (species identifiers, deletions)."""
  tmp = tmp_path_factory.mktemp('raw')
  sequence = parsers.parse_a3m(MSA.read_text()).sequences[0]
  options = pipeline.PipelineOptions(msa_mode='precomputed', msa_paths=(str(MSA),))
  return pipeline.make_raw_features(parsers.FastaRecord('2q2k_A', '2q2k_A', sequence),
                                    tmp / 'scratch', options)


@pytest.fixture(scope='module')
def pickle_run(tmp_path_factory, raw_features):
  """One run on a features.pkl that records each time it is unpickled."""
  tmp = tmp_path_factory.mktemp('pickle_run')
  loads = tmp / 'loads'
  loads.mkdir()
  src = tmp / 'src' / '2q2k_A' / 'features.pkl'
  src.parent.mkdir(parents=True)
  src.write_bytes(pickle.dumps({**raw_features, 'unpickle_probe': _UnpickleProbe(loads)}))
  out = tmp / 'out'
  proc = run([f'--features_paths={src}', f'--output_dir={out}'])
  assert_ok(proc)
  return out / '2q2k_A', loads, proc


def _result(target_dir):
  with open(target_dir / f'result_{MODEL}_pred_0.pkl', 'rb') as f:
    return pickle.load(f)


def test_each_pickle_is_loaded_once(pickle_run):
  _, loads, _ = pickle_run
  assert len(list(loads.iterdir())) == 1


def test_features_npz_beside_features_pkl_folds_the_same(pickle_run, raw_features, tmp_path):
  target_dir, loads, _ = pickle_run
  npz = target_dir / 'features.npz'
  # Pickle-free: numpy refuses to load it if any array needed pickle.
  with np.load(npz, allow_pickle=False) as data:
    assert {k for k in data.files if not k.startswith('__')} >= set(raw_features)
  from_npz = features.load_features(npz)
  for key, value in raw_features.items():
    np.testing.assert_array_equal(np.asarray(from_npz[key]), np.asarray(value), err_msg=key)
    assert np.asarray(from_npz[key]).dtype == np.asarray(value).dtype, key
  assert from_npz['sequence'][0] == raw_features['sequence'][0]  # bytes, as AlphaFold's
  # Folding the .npz gives the structure the .pkl gave, and never unpickles anything.
  proc = run([f'--features_paths={npz}', f'--output_dir={tmp_path}'])
  assert_ok(proc)
  assert len(list(loads.iterdir())) == 1
  want, got = _result(target_dir), _result(tmp_path / '2q2k_A')
  np.testing.assert_array_equal(got['structure_module']['final_atom_positions'],
                                want['structure_module']['final_atom_positions'])
  np.testing.assert_array_equal(got['plddt'], want['plddt'])


def test_npz_with_a_pickled_array_is_refused_unopened(tmp_path, raw_features):
  loads = tmp_path / 'loads'
  loads.mkdir()
  path = tmp_path / 'evil.npz'
  np.savez(path, **{k: np.asarray(v) for k, v in raw_features.items()},
           probe=np.array([_UnpickleProbe(loads)], dtype=object))
  proc = run([f'--features_paths={path}', f'--output_dir={tmp_path / "out"}'])
  assert_one_error_line(proc, 'evil.npz', 'object arrays are refused')
  assert not list(loads.iterdir())


def test_help_says_a_pickle_can_run_code():
  proc = subprocess.run([sys.executable, str(ROOT / 'run_inference.py'), '--help'], cwd=ROOT,
                        env=env(), capture_output=True, text=True, timeout=300)
  text = ' '.join(proc.stdout.split())
  assert 'loading a pickle can run any code' in text and 'features.npz' in text
  readme = ' '.join((ROOT / 'README.md').read_text().split())
  assert 'loading a pickle can run any code' in readme
