"""Issue 25 items 5 and 6: pickles by choice, and corrupt or odd inputs as one `error:` line.

Real files throughout: a features.pkl whose unpickling leaves a trace on disk (to count
the loads), truncated and bit-flipped parameter, features and FASTA files, a file where a
target's directory goes, config values that build no model, a FASTA file with a UTF-8
byte-order mark.
"""

import gzip
import pathlib
import pickle
import subprocess
import sys
import tempfile

import numpy as np
import pytest

from af_jax.data import features, parsers, pipeline
from configs import model as model_configs
from tests.data.shared_data import CHAIN_2Q2K
from tests.faults.names_support import (MODEL, ROOT, SEQUENCE, assert_ok, assert_one_error_line,
                                        env, fasta, run, temporary_files)

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


# ------------------------------------------------------------------------- corrupt files


def _truncated(data: bytes) -> bytes:
  return data[:len(data) // 2]


def _flipped(data: bytes) -> bytes:
  flipped = bytearray(data)
  for i in range(len(data) // 3, min(len(data) // 3 + 64, len(data))):
    flipped[i] ^= 0xA5
  return bytes(flipped)


@pytest.fixture(scope='module')
def good_files(tmp_path_factory, raw_features):
  """A params .npz, a features.pkl and .npz, and a gzipped FASTA, as they should be."""
  tmp = tmp_path_factory.mktemp('good')
  code = ('import sys; sys.path.insert(0, "."); import af_jax; from af_jax.model.build import '
          'build_model; from tests.model.tiny import tiny_config; '
          f'af_jax.save_params("{tmp}/params_{MODEL}.npz", build_model(tiny_config('
          f'"{MODEL}", **{{"model.embeddings_and_evoformer.evoformer_num_block": 1}}).model))')
  subprocess.run([sys.executable, '-c', code], cwd=ROOT, env=env(), check=True, timeout=300)
  features.write_features_pkl(tmp / 'features.pkl', raw_features)
  features.write_features_npz(tmp / 'features.npz', raw_features)
  residues = np.random.default_rng(0).choice(list('ACDEFGHIKLMNPQRSTVWY'), 600)
  with gzip.open(tmp / 'in.fasta.gz', 'wt') as f:  # hardly compressible: damage hits data
    f.write(f'>t1\n{"".join(residues)}\n')
  return tmp


CORRUPT = {
    # name: (good file, how it is damaged, where it goes, flags, words of the error line)
    'params truncated': (f'params_{MODEL}.npz', _truncated, f'params/params_{MODEL}.npz',
                         ['--fasta_paths={d}/t.fasta', '--params_dir={d}/params',
                          '--norandom_params'], ['BadZipFile', 're-download']),
    'params bit-flipped': (f'params_{MODEL}.npz', _flipped, f'params/params_{MODEL}.npz',
                           ['--fasta_paths={d}/t.fasta', '--params_dir={d}/params',
                            '--norandom_params'], ['params_model_3_ptm.npz', 're-download']),
    'features.pkl truncated': ('features.pkl', _truncated, 't/features.pkl',
                               ['--features_paths={d}/t/features.pkl'], ['cannot unpickle']),
    'features.pkl bit-flipped': ('features.pkl', _flipped, 't/features.pkl',
                                 ['--features_paths={d}/t/features.pkl'], ['features.pkl']),
    'features.npz truncated': ('features.npz', _truncated, 't/features.npz',
                               ['--features_paths={d}/t/features.npz'],
                               ['cannot read features file', 'BadZipFile']),
    'features.npz bit-flipped': ('features.npz', _flipped, 't/features.npz',
                                 ['--features_paths={d}/t/features.npz'],
                                 ['cannot read features file']),
    'FASTA gzip truncated': ('in.fasta.gz', _truncated, 'in.fasta.gz',
                             ['--fasta_paths={d}/in.fasta.gz'], ['cannot read FASTA file']),
    'FASTA gzip bit-flipped': ('in.fasta.gz', _flipped, 'in.fasta.gz',
                               ['--fasta_paths={d}/in.fasta.gz'], ['cannot read FASTA file']),
}


@pytest.mark.parametrize('case', list(CORRUPT))
def test_corrupt_file_is_one_error_line(good_files, tmp_path, case):
  name, damage, where, flags, needles = CORRUPT[case]
  path = tmp_path / where
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_bytes(damage((good_files / name).read_bytes()))
  fasta(tmp_path / 't.fasta')
  out = tmp_path / 'out'
  proc = run([f'--output_dir={out}', *(f.format(d=tmp_path) for f in flags)])
  assert_one_error_line(proc, *needles)
  assert not list(out.rglob('*.pdb')) and not temporary_files(tmp_path)


# --------------------------------------------------------------- odd places and configs


def test_file_where_the_target_directory_goes(tmp_path):
  out = tmp_path / 'out'
  out.mkdir()
  (out / 't1').write_text('my notes\n')
  proc = run([f'--fasta_paths={fasta(tmp_path / "in.fasta")}', f'--output_dir={out}'])
  assert_one_error_line(proc, str(out / 't1'), 'is not a directory', 'move it away')
  assert (out / 't1').read_text() == 'my notes\n'  # untouched
  assert sorted(p.name for p in out.iterdir()) == ['t1']


def test_file_where_the_msas_directory_goes(tmp_path):
  out = tmp_path / 'out'
  (out / 't1').mkdir(parents=True)
  (out / 't1' / 'msas').write_text('not a directory\n')
  proc = run([f'--fasta_paths={fasta(tmp_path / "in.fasta")}', f'--output_dir={out}'])
  assert_one_error_line(proc, 'target t1', str(out / 't1' / 'msas'), 'move the file in the way')
  assert (out / 't1' / 'msas').read_text() == 'not a directory\n'
  assert not temporary_files(out)


@pytest.mark.parametrize('override, needles', [
    ('model.embeddings_and_evoformer.evoformer_num_block=0',
     ['evoformer_num_block=0 must be at least 1']),
    ('model.embeddings_and_evoformer.msa_channel=-4', ['msa_channel=-4 must be at least 1']),
    ('model.embeddings_and_evoformer.evoformer.msa_row_attention_with_pair_bias.num_head=3',
     ['num_head=3', 'divide']),
    ('data.common.masked_msa.uniform_prob=nan', ['uniform_prob=nan must be a finite number']),
    ('data.eval.max_msa_clusters=3', ['max_msa_clusters=3 leaves no cluster']),
])
def test_config_values_that_build_no_model(tmp_path, override, needles):
  out = tmp_path / 'out'
  proc = run([f'--fasta_paths={fasta(tmp_path / "in.fasta")}', f'--output_dir={out}',
              f'--config.{override}', '--model_names=model_1_ptm'])
  assert_one_error_line(proc, *needles)
  assert not list(out.rglob('*.pdb'))


def test_every_count_of_every_preset_is_checked():
  import af_jax
  from af_jax.errors import ConfigError
  from configs.model_multimer import MULTIMER_PRESETS
  for preset in af_jax.PRESETS + MULTIMER_PRESETS:
    model_configs.check_values(af_jax.model_config(preset))  # the presets themselves pass
  cfg = af_jax.model_config('model_1_ptm')
  counts = []

  def walk(node, prefix):
    for key, value in node.items():
      if hasattr(value, 'items'):
        walk(value, f'{prefix}{key}.')
      elif isinstance(value, int) and not isinstance(value, bool):
        counts.append(f'{prefix}{key}')
  walk(cfg, '')
  assert len(counts) > 40
  for key in counts:
    bad = af_jax.model_config('model_1_ptm')
    bad.update_from_flattened_dict({key: -1})
    with pytest.raises(ConfigError, match=key.rsplit('.', 1)[-1]):
      model_configs.check_values(bad)


def test_fasta_with_a_utf8_byte_order_mark_folds(tmp_path):
  path = tmp_path / 'bom.fasta'
  path.write_bytes(b'\xef\xbb\xbf' + f'>t1 with a BOM\n{SEQUENCE}\n'.encode())
  out = tmp_path / 'out'
  assert_ok(run([f'--fasta_paths={path}', f'--output_dir={out}']))
  assert sorted(p.name for p in out.iterdir()) == ['t1']
  assert (out / 't1' / 'ranking_debug.json').is_file()
  assert not temporary_files(out)
