"""Issue 25 item 2: every name that becomes a path passes one check, whatever its source.

Each case is the real command line on a real file; the run must end with one `error:` line
that names the source, exit 2, and create nothing anywhere (in particular nothing outside
--output_dir, where '..' would have put a target).
"""

import os
import pathlib

import pytest

from af_jax.run import targets
from af_jax.data import names
from af_jax.errors import InputError
from tests.faults.names_support import SEQUENCE, assert_one_error_line, fasta, run

LONG = 'x' * 256


def _tree(directory: pathlib.Path) -> set[pathlib.Path]:
  return set(directory.rglob('*'))


@pytest.mark.parametrize('header, needles', [
    ('..', ["the name '..' is a special directory name", 'record 1']),
    ('', ['the name is empty', 'record 1']),
    ('a/b', ["'a/b' contains a path separator"]),
    ('t\x1b[2J\x1b[31mred', [r"'t\x1b[2J\x1b[31mred' contains unprintable"]),
    (LONG, ['is 256 bytes long, more than the 255']),
])
def test_fasta_record_names(tmp_path, header, needles):
  path = tmp_path / 'in.fasta'
  path.write_text(f'>{header}\n{SEQUENCE}\n')
  out = tmp_path / 'out'
  before = _tree(tmp_path)
  proc = run([f'--fasta_paths={path}', f'--output_dir={out}'])
  assert_one_error_line(proc, str(path), *needles)
  assert _tree(tmp_path) == before  # not even --output_dir


def test_multimer_fasta_file_named_dot_dot(tmp_path):
  # A complex is named after its file: '...fasta' would name it '..'.
  path = fasta(tmp_path / '...fasta')
  out = tmp_path / 'out'
  before = _tree(tmp_path)
  proc = run([f'--fasta_paths={path}', f'--output_dir={out}', '--model_preset=multimer',
              '--model_names=', '--num_multimer_predictions_per_model=1'])
  assert_one_error_line(proc, 'FASTA file', "'..' is a special directory name",
                        'rename the file')
  assert _tree(tmp_path) == before


@pytest.fixture(scope='module')
def features_pkl(tmp_path_factory):
  """A real raw features.pkl (single sequence), written as af_jax writes it."""
  from af_jax.data import features, parsers, pipeline
  tmp = tmp_path_factory.mktemp('features')
  record = parsers.FastaRecord('t1', 't1', SEQUENCE)
  raw = pipeline.make_raw_features(record, tmp / 'scratch', pipeline.PipelineOptions())
  path = tmp / 'features.pkl'
  features.write_features_pkl(path, raw)
  return path


def test_features_file_names(tmp_path, features_pkl):
  # '<name>.pkl' names the target <name>: '..pkl' gives '' and a control character is refused.
  for name, needle in (('..pkl', 'the name is empty'),
                       ('t\x07.pkl', r"'t\x07' contains unprintable")):
    path = tmp_path / name
    path.write_bytes(features_pkl.read_bytes())
    out = tmp_path / 'out'
    before = _tree(tmp_path)
    proc = run([f'--features_paths={path}', f'--output_dir={out}'])
    assert_one_error_line(proc, '--features_paths entry', needle)
    assert _tree(tmp_path) == before


def test_features_pkl_through_dot_dot_is_named_after_its_real_directory(tmp_path, features_pkl):
  # 'sub/../features.pkl' is the features.pkl of tmp_path, not of a target named '..'.
  (tmp_path / 'sub').mkdir()
  (tmp_path / 'features.pkl').write_bytes(features_pkl.read_bytes())
  given = f'{tmp_path}/sub/../features.pkl'
  assert targets.features_target_name(given) == tmp_path.name
  assert targets.features_target_name('features.pkl') == pathlib.Path.cwd().name
  with pytest.raises(InputError, match='the name is empty'):
    targets.read_targets([], ['/features.pkl'])  # the root directory has no name


def test_one_check_for_every_source():
  # The rules themselves, on the function every source goes through.
  for good in ('t1', 'T1.domain-2_x', 'é' * 127, 'a' * 255, '.hidden'):
    assert names.check_path_name(good, 'src', 'fix') == good
  for bad in ('', '.', '..', 'a/b', 'a\\b', 'a\0b', 'a\nb', 'a\tb', '\u202eabc', 'é' * 128,
              'a' * 256, '\udcff'):
    with pytest.raises(InputError, match=r'^src: .* so it cannot name an output directory; '
                                         r'fix, using letters') as e:
      names.check_path_name(bad, 'src', 'fix')
    assert str(e.value).isprintable()
  assert names.shown('a\x1b[31mb\n') == 'a\\x1b[31mb\\n'
  assert names.shown('é ok') == 'é ok'


def test_output_dir_of_a_valid_name_stays_inside(tmp_path):
  # Names are single components: whatever passes the check joins --output_dir as a child.
  for name in ('t1', '.hidden', 'a..b'):
    target = pathlib.Path(os.path.normpath(tmp_path / names.check_path_name(name, 's', 'f')))
    assert target.parent == tmp_path
