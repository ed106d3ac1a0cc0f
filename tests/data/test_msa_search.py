"""search_msas: each mode end to end with the real binaries and small real databases."""

import dataclasses
import functools
import gzip
import os
import shutil

import pytest

from af_jax.data import msa_search, parsers
from af_jax.data.tools import mmseqs2, runner
from af_jax.errors import ConfigError, InputError, ToolError
from tests.data.shared_data import (CHAIN_2Q2K, MINI_DATABASES, MMSEQS2_EXAMPLES,
                                    TEMPLATE_FIXTURE)
from tests.data.test_tools import SEQ_2Q2K, build_hhsuite_db, fasta_record

UNIREF90_MINI = MINI_DATABASES / 'uniref90__subsampled_1000.fasta'
MGNIFY_MINI = MINI_DATABASES / 'mgy_clusters__subsampled_1000.fa'
ALIGNMENTS_2Q2K = CHAIN_2Q2K / 'alignments' / '2q2k_A'
# The template fixture's query, whose alignments these are.
SEQ_SHORT = parsers.read_fasta(TEMPLATE_FIXTURE / 'short.fasta')[0].sequence


@pytest.fixture(scope='session')
def hhsuite_db(tmp_path_factory):
  return build_hhsuite_db(tmp_path_factory.mktemp('hhsuite_db'))


def _forbid_tool_runs(monkeypatch):
  def fail(cmd, **kwargs):
    raise AssertionError(f'a tool ran although its output existed: {cmd}')
  monkeypatch.setattr(runner, 'run_tool', fail)


def test_unknown_mode_lists_the_modes(tmp_path):
  with pytest.raises(ConfigError, match='single_sequence, precomputed, jackhmmer, hhblits, '
                     'mmseqs2'):
    msa_search.search_msas(SEQ_2Q2K, '2q2k', tmp_path, 'colabfold', msa_search.Databases())


def test_single_sequence_searches_nothing(tmp_path, monkeypatch):
  _forbid_tool_runs(monkeypatch)
  assert msa_search.search_msas(SEQ_2Q2K, '2q2k', tmp_path / 'msas', 'single_sequence',
                                msa_search.Databases(uniref90=str(UNIREF90_MINI))) == []
  assert list((tmp_path / 'msas').iterdir()) == []


def test_msa_paths_outside_precomputed_mode_is_a_config_error(tmp_path):
  with pytest.raises(ConfigError, match='--msa_paths is only read in msa mode precomputed'):
    msa_search.search_msas(SEQ_2Q2K, '2q2k', tmp_path, 'jackhmmer',
                           msa_search.Databases(uniref90=str(UNIREF90_MINI)),
                           msa_paths=[str(ALIGNMENTS_2Q2K / 'uniref90_hits.sto')])


def test_precomputed_without_files_names_the_directory(tmp_path):
  with pytest.raises(InputError, match=f'no MSA .* in {tmp_path}.*--msa_paths'):
    msa_search.search_msas(SEQ_2Q2K, '2q2k', tmp_path, 'precomputed', msa_search.Databases())


def test_precomputed_missing_file_names_it(tmp_path):
  missing = str(tmp_path / 'gone.a3m')
  with pytest.raises(InputError, match=f"--msa_paths entry '{missing}' does not exist"):
    msa_search.search_msas(SEQ_2Q2K, '2q2k', tmp_path / 'msas', 'precomputed',
                           msa_search.Databases(), msa_paths=[missing])


def test_precomputed_copies_files_in_alphafold_order_then_reuses_them(tmp_path, monkeypatch):
  _forbid_tool_runs(monkeypatch)
  names = ['mgnify_hits.sto', 'bfd_uniclust_hits.a3m', 'uniref90_hits.sto']
  msa_dir = tmp_path / 'msas'
  got = msa_search.search_msas(SEQ_2Q2K, '2q2k', msa_dir, 'precomputed',
                               msa_search.Databases(),
                               msa_paths=[str(ALIGNMENTS_2Q2K / n) for n in names])
  assert [p.name for p in got] == ['uniref90_hits.sto', 'bfd_uniclust_hits.a3m',
                                   'mgnify_hits.sto']
  for path in got:
    assert path.parent == msa_dir
    # The fixture is under AlphaFold's hit limits, so nothing is cut.
    assert path.read_text() == (ALIGNMENTS_2Q2K / path.name).read_text()
  again = msa_search.search_msas(SEQ_2Q2K, '2q2k', msa_dir, 'precomputed',
                                 msa_search.Databases())
  assert again == got


def test_copied_and_searched_msas_follow_the_umask(tmp_path):
  # A user's private (0600) alignment copied into a group-shared output directory: the
  # copy is a new file, made with the process's umask as any other.
  private = tmp_path / 'mine'
  private.mkdir()
  shutil.copy(ALIGNMENTS_2Q2K / 'bfd_uniclust_hits.a3m', private)
  (private / 'bfd_uniclust_hits.a3m').chmod(0o600)
  name, sequence = fasta_record(UNIREF90_MINI, 5)
  old = os.umask(0o002)
  try:
    copied = msa_search.search_msas(SEQ_2Q2K, '2q2k', tmp_path / 'copied', 'precomputed',
                                    msa_search.Databases(),
                                    msa_paths=[str(private / 'bfd_uniclust_hits.a3m')])
    searched = msa_search.search_msas(sequence, name, tmp_path / 'searched', 'jackhmmer',
                                      msa_search.Databases(uniref90=str(UNIREF90_MINI)))
  finally:
    os.umask(old)
  for path in [*copied, *searched]:
    assert path.stat().st_mode & 0o777 == 0o664, path
    assert path.parent.stat().st_mode & 0o777 == 0o775, path.parent


def test_precomputed_template_hits_take_alphafold_name(tmp_path, monkeypatch):
  _forbid_tool_runs(monkeypatch)
  given = [TEMPLATE_FIXTURE / 'alignments' / n for n in ('pdb70_hits.hhr', 'mgnify_hits.sto')]
  msa_dir = tmp_path / 'msas'
  got = msa_search.search_msas(SEQ_SHORT, 'short', msa_dir, 'precomputed',
                               msa_search.Databases(), msa_paths=[str(p) for p in given],
                               search_templates=True)
  assert got == [msa_dir / 'mgnify_hits.sto', msa_dir / 'pdb_hits.hhr']
  assert got[1].read_text() == given[0].read_text()
  without = msa_search.search_msas(SEQ_SHORT, 'short', msa_dir, 'precomputed',
                                   msa_search.Databases())
  assert without == [msa_dir / 'mgnify_hits.sto']


def test_precomputed_stockholm_is_cut_to_alphafold_limit(tmp_path, monkeypatch):
  # A mgnify_hits.sto with more than AlphaFold's 501 rows, as an untruncated run leaves.
  monkeypatch.setitem(msa_search.MAX_HITS, 'mgnify_hits.sto', 5)
  src = TEMPLATE_FIXTURE / 'alignments' / 'mgnify_hits.sto'
  full = parsers.parse_stockholm(src.read_text())
  assert len(full) > 5
  got = msa_search.search_msas(SEQ_SHORT, 'short', tmp_path, 'precomputed',
                               msa_search.Databases(), msa_paths=[str(src)])
  assert parsers.parse_stockholm(got[0].read_text()).sequences == full.sequences[:5]


def test_msa_paths_are_checked_before_any_is_copied(tmp_path):
  # The second file is another sequence's: nothing may land in msas/, where a later
  # precomputed run would pick it up.
  other = tmp_path / 'other'
  other.mkdir()
  shutil.copy(TEMPLATE_FIXTURE / 'alignments' / 'mgnify_hits.sto', other / 'bfd.sto')
  msa_dir = tmp_path / 'msas'
  with pytest.raises(InputError, match='does not match the target'):
    msa_search.search_msas(SEQ_2Q2K, '2q2k', msa_dir, 'precomputed', msa_search.Databases(),
                           msa_paths=[str(ALIGNMENTS_2Q2K / 'mgnify_hits.sto'),
                                      str(other / 'bfd.sto')])
  assert not [p for p in msa_dir.iterdir() if p.is_file()]


def test_jackhmmer_mode_then_reuse(tmp_path, monkeypatch):
  name, sequence = fasta_record(UNIREF90_MINI, 5)
  databases = msa_search.Databases(uniref90=str(UNIREF90_MINI), mgnify=str(MGNIFY_MINI))
  msa_dir = tmp_path / 'msas'
  got = msa_search.search_msas(sequence, name, msa_dir, 'jackhmmer', databases)
  assert got == [msa_dir / 'uniref90_hits.sto', msa_dir / 'mgnify_hits.sto']
  uniref90 = parsers.parse_stockholm(got[0].read_text())
  assert uniref90.sequences[0] == sequence and len(uniref90) >= 2
  assert parsers.parse_stockholm(got[1].read_text()).sequences[0] == sequence
  assert sorted(p.name for p in msa_dir.iterdir()) == ['mgnify_hits.sto', 'uniref90_hits.sto']

  mtimes = [p.stat().st_mtime_ns for p in got]
  _forbid_tool_runs(monkeypatch)
  # Reuse needs neither the tools nor their binaries.
  databases = dataclasses.replace(databases,
                                  jackhmmer_binary=str(tmp_path / 'no_such_jackhmmer'))
  again = msa_search.search_msas(sequence, name, msa_dir, 'jackhmmer', databases)
  assert again == got
  assert [p.stat().st_mtime_ns for p in got] == mtimes


def test_missing_database_is_found_before_any_search(tmp_path, monkeypatch):
  _forbid_tool_runs(monkeypatch)
  missing = str(tmp_path / 'mgnify.fa')
  databases = msa_search.Databases(uniref90=str(UNIREF90_MINI), mgnify=missing)
  with pytest.raises(ToolError, match=f"'{missing}' given by --mgnify_database_path"):
    msa_search.search_msas(SEQ_2Q2K, '2q2k', tmp_path / 'msas', 'jackhmmer', databases)


def test_missing_binary_override(tmp_path):
  databases = msa_search.Databases(uniref90=str(UNIREF90_MINI),
                                   jackhmmer_binary=str(tmp_path / 'bin' / 'jackhmmer'))
  with pytest.raises(ToolError, match='--jackhmmer_binary_path'):
    msa_search.search_msas(SEQ_2Q2K, '2q2k', tmp_path / 'msas', 'jackhmmer', databases)


def test_mode_without_its_database_is_a_config_error(tmp_path):
  for mode, flag in [('jackhmmer', '--uniref90_database_path'),
                     ('hhblits', '--bfd_database_path'),
                     ('mmseqs2', '--mmseqs_database_path')]:
    with pytest.raises(ConfigError, match=flag):
      msa_search.search_msas(SEQ_2Q2K, '2q2k', tmp_path, mode, msa_search.Databases())


def test_templates_without_pdb70_is_a_config_error(tmp_path):
  with pytest.raises(ConfigError, match='--pdb70_database_path'):
    msa_search.search_msas(SEQ_2Q2K, '2q2k', tmp_path, 'single_sequence',
                           msa_search.Databases(), search_templates=True)


def test_hhblits_mode_with_templates(tmp_path, hhsuite_db):
  databases = msa_search.Databases(uniref90=str(UNIREF90_MINI), bfd=hhsuite_db,
                                   pdb70=hhsuite_db)
  msa_dir = tmp_path / 'msas'
  got = msa_search.search_msas(SEQ_2Q2K, '2q2k', msa_dir, 'hhblits', databases,
                               search_templates=True)
  assert [p.name for p in got] == ['uniref90_hits.sto', 'bfd_uniref_hits.a3m',
                                   'pdb_hits.hhr']
  bfd = parsers.parse_a3m(got[1].read_text())
  assert bfd.sequences[0] == SEQ_2Q2K and len(bfd) > 1
  hits = parsers.parse_hhr(got[2].read_text())
  assert max(h.aligned_cols for h in hits) >= 40  # 2Q2K's own family is in the database
  # Only the layout's files are left behind, no temporary ones.
  assert sorted(p.name for p in msa_dir.iterdir()) == sorted(p.name for p in got)


def test_mmseqs2_mode_finds_real_hits(tmp_path, monkeypatch):
  with gzip.open(MMSEQS2_EXAMPLES / 'QUERY.fasta.gz', 'rt') as f:
    record = f.read().split('>')[1]
  sequence = ''.join(record.partition('\n')[2].split())
  # One profile iteration instead of three keeps the test to seconds; the flags are
  # otherwise the defaults.
  monkeypatch.setattr(msa_search.mmseqs2, 'MMseqs2',
                      functools.partial(mmseqs2.MMseqs2, num_iterations=1))
  target = tmp_path / 'DB.fasta.gz'  # a user's FASTA file, not an MMseqs2 database
  shutil.copyfile(MMSEQS2_EXAMPLES / 'DB.fasta.gz', target)
  got = msa_search.search_msas(sequence, 'A7TBS3', tmp_path / 'msas', 'mmseqs2',
                               msa_search.Databases(mmseqs_db=str(target)))
  assert [p.name for p in got] == ['mmseqs_hits.a3m']
  text = got[0].read_text()
  assert text.startswith(f'>A7TBS3\n{sequence}\n')
  msa = parsers.parse_a3m(text)
  assert len(msa) > 1 and all(len(s) == len(sequence) for s in msa.sequences)
