"""The search binaries run for real against small real databases."""

import os
import pathlib
import shutil
import subprocess
import time

import pytest
from alphafold.data import parsers as af_parsers

from af_jax.data import parsers
from af_jax.data.tools import hhblits, hhsearch, jackhmmer, runner
from af_jax.errors import InputError, ToolError
from tests.data.shared_data import (CHAIN_2Q2K, MINI_DATABASES, SHARED_DATA,
                                    TEMPLATE_FIXTURE)

UNIREF90_MINI = MINI_DATABASES / 'uniref90__subsampled_1000.fasta'
SEQ_2Q2K = 'MGSSHHHHHHSSGLVPGSHMDKKETKHLLKIKKEDYPQIFDFLENVPRGTKTAHIREALRRYIEEIGENP'
# Real a3m families for a small HH-suite database; 2Q2K's own family is one of them.
HHSUITE_A3MS = {
    '2q2k.a3m': CHAIN_2Q2K / 'alignments' / '2q2k_A' / 'bfd_uniclust_hits.a3m',
    '5zyh.a3m': SHARED_DATA / 'chains_with_msa' / 'protenix_msa_demo' / 'msa' / '0' /
                'non_pairing.a3m',
    'myoglobin.a3m': SHARED_DATA / 'chains_with_msa' / 'protenix_msa_demo' / 'msa' / '3' /
                     'non_pairing.a3m',
}


def _cstranslate() -> str:
  # Debian's /usr/libexec/hhsuite/bin/cstranslate wrapper resolves a wrong directory;
  # the plain build beside it works on any CPU.
  return shutil.which('cstranslate') or '/usr/libexec/hhsuite/cstranslate-plain'


def build_hhsuite_db(dest: pathlib.Path) -> str:
  """An HH-suite database (a3m, hhm, cs219 ffindex) from HHSUITE_A3MS; returns its prefix."""
  a3m_dir = dest / 'a3m'
  a3m_dir.mkdir(parents=True)
  for name, src in HHSUITE_A3MS.items():
    shutil.copyfile(src, a3m_dir / name)
  prefix = dest / 'mini'
  steps = [
      ['ffindex_build', '-s', f'{prefix}_a3m.ffdata', f'{prefix}_a3m.ffindex', a3m_dir],
      ['ffindex_apply', f'{prefix}_a3m.ffdata', f'{prefix}_a3m.ffindex',
       '-i', f'{prefix}_hhm.ffindex', '-d', f'{prefix}_hhm.ffdata', '--',
       'hhmake', '-i', 'stdin', '-o', 'stdout', '-v', '0'],
      [_cstranslate(), '-f', '-x', '0.3', '-c', '4', '-I', 'a3m', '-i', f'{prefix}_a3m',
       '-o', f'{prefix}_cs219', '-A', '/usr/share/hhsuite/data/cs219.lib',
       '-D', '/usr/share/hhsuite/data/context_data.lib'],
  ]
  for step in steps:
    subprocess.run([str(s) for s in step], check=True, capture_output=True)
  return str(prefix)


@pytest.fixture(scope='session')
def hhsuite_db(tmp_path_factory):
  return build_hhsuite_db(tmp_path_factory.mktemp('hhsuite_db'))


def fasta_record(path: pathlib.Path, index: int) -> tuple[str, str]:
  """(name, sequence) of the index-th record of a FASTA file."""
  record = path.read_text().split('>')[index + 1]
  header, _, body = record.partition('\n')
  return header.split()[0], ''.join(body.split())


def _write_fasta(path: pathlib.Path, name: str, sequence: str) -> pathlib.Path:
  path.write_text(f'>{name}\n{sequence}\n')
  return path


# ---------------------------------------------------------------- runner


def test_find_binary_on_path_and_override():
  found = runner.find_binary('jackhmmer')
  assert os.path.isabs(found) and os.access(found, os.X_OK)
  assert runner.find_binary('jackhmmer', found) == found


def test_find_binary_bad_override_names_flag_and_path(tmp_path):
  bad = str(tmp_path / 'no' / 'jackhmmer')
  with pytest.raises(ToolError, match='--jackhmmer_binary_path') as e:
    runner.find_binary('jackhmmer', bad)
  assert bad in str(e.value) and '\n' not in str(e.value)


def test_find_binary_not_on_path_says_how_to_install(monkeypatch, tmp_path):
  monkeypatch.setenv('PATH', str(tmp_path))
  with pytest.raises(ToolError, match=r'apt-get install hhsuite.*--hhblits_binary_path'):
    runner.find_binary('hhblits')


def test_run_tool_nonzero_exit_reports_stderr(tmp_path):
  # A real jackhmmer run on a database that is not a sequence file.
  bad_db = tmp_path / 'not_a_db.fasta'
  bad_db.write_text('this is not FASTA\n')
  tool = jackhmmer.Jackhmmer(runner.find_binary('jackhmmer'), str(bad_db), n_cpu=1,
                             timeout=60)
  query = _write_fasta(tmp_path / 'q.fasta', 'q', SEQ_2Q2K)
  with pytest.raises(ToolError, match='jackhmmer failed with exit code') as e:
    tool.search(query, tmp_path / 'out.sto')
  assert 'not_a_db.fasta' in str(e.value)  # jackhmmer's own stderr names the file
  assert not (tmp_path / 'out.sto').exists()


def test_run_tool_timeout_kills_the_whole_process_group():
  # `cat` is a grandchild holding the output pipe: killing only `sh` would hang.
  start = time.perf_counter()
  with pytest.raises(ToolError, match=r'sh ran past its time limit of 0.5 s'):
    runner.run_tool(['sh', '-c', 'sleep 30 | cat'], timeout=0.5)
  assert time.perf_counter() - start < 10


def test_hhblits_timeout_on_a_real_run(tmp_path, hhsuite_db):
  tool = hhblits.HHBlits(runner.find_binary('hhblits'), (hhsuite_db,), n_cpu=1,
                         timeout=0.05)
  query = _write_fasta(tmp_path / 'q.fasta', '2q2k', SEQ_2Q2K)
  with pytest.raises(ToolError, match='time limit of 0.05 s'):
    tool.search(query, tmp_path / 'out.a3m')
  assert not (tmp_path / 'out.a3m').exists()


# ---------------------------------------------------------------- jackhmmer


def test_jackhmmer_finds_the_query_in_its_database(tmp_path):
  name, sequence = fasta_record(UNIREF90_MINI, 5)
  query = _write_fasta(tmp_path / 'q.fasta', name, sequence)
  tool = jackhmmer.Jackhmmer(runner.find_binary('jackhmmer'), str(UNIREF90_MINI), n_cpu=2,
                             timeout=120)
  out = tool.search(query, tmp_path / 'uniref90_hits.sto')
  msa = parsers.parse_stockholm(out.read_text())
  assert msa.sequences[0] == sequence
  assert len(msa) >= 2  # the query row, then at least its own database entry as a hit
  assert sequence in msa.sequences[1:]


def test_jackhmmer_missing_database_names_flag(tmp_path):
  tool = jackhmmer.Jackhmmer(runner.find_binary('jackhmmer'), str(tmp_path / 'nope.fasta'),
                             flag='--uniref90_database_path')
  with pytest.raises(ToolError, match=r"nope\.fasta' given by --uniref90_database_path"):
    tool.search(tmp_path / 'q.fasta', tmp_path / 'out.sto')


@pytest.mark.parametrize('max_sequences', [1, 7, 10000])
def test_truncate_stockholm_matches_alphafold(tmp_path, max_sequences):
  src = TEMPLATE_FIXTURE / 'alignments' / 'uniref90_hits.sto'
  kept = jackhmmer.truncate_stockholm(src, tmp_path / 'out.sto', max_sequences)
  expected = af_parsers.truncate_stockholm_msa(str(src), max_sequences)
  assert (tmp_path / 'out.sto').read_text() == expected
  assert kept == len(af_parsers.parse_stockholm(expected).sequences)


def test_truncate_stockholm_in_place(tmp_path):
  path = tmp_path / 'mgnify_hits.sto'
  shutil.copyfile(TEMPLATE_FIXTURE / 'alignments' / 'mgnify_hits.sto', path)
  full = parsers.parse_stockholm(path.read_text())
  assert jackhmmer.truncate_stockholm(path, path, 3) == 3
  cut = parsers.parse_stockholm(path.read_text())
  assert cut.sequences == full.sequences[:3]


# ---------------------------------------------------------------- hhblits / hhsearch


def test_hhblits_finds_the_family_of_2q2k(tmp_path, hhsuite_db):
  query = _write_fasta(tmp_path / 'q.fasta', '2q2k', SEQ_2Q2K)
  tool = hhblits.HHBlits(runner.find_binary('hhblits'), (hhsuite_db,), n_cpu=2, timeout=120)
  out = tool.search(query, tmp_path / 'bfd_uniref_hits.a3m')
  msa = parsers.parse_a3m(out.read_text())
  assert msa.sequences[0] == SEQ_2Q2K
  assert len(msa) > 1
  family = parsers.parse_a3m(HHSUITE_A3MS['2q2k.a3m'].read_text())
  assert set(msa.sequences[1:]) & set(family.sequences[1:])


def test_hhblits_database_without_cs219_names_file(tmp_path, hhsuite_db):
  prefix = tmp_path / 'partial'
  for suffix in ('_a3m.ffindex', '_a3m.ffdata'):
    shutil.copyfile(hhsuite_db + suffix, f'{prefix}{suffix}')
  tool = hhblits.HHBlits(runner.find_binary('hhblits'), (str(prefix),),
                         flags=('--bfd_database_path',))
  with pytest.raises(ToolError, match=r'partial_cs219\.ffindex.*--bfd_database_path'):
    tool.search(tmp_path / 'q.fasta', tmp_path / 'out.a3m')


def test_hhsearch_finds_2q2k_template(tmp_path, hhsuite_db):
  sto = (CHAIN_2Q2K / 'alignments' / '2q2k_A' / 'uniref90_hits.sto').read_text()
  query = tmp_path / 'query.a3m'
  query.write_text(hhsearch.a3m_from_stockholm(sto))
  tool = hhsearch.HHSearch(runner.find_binary('hhsearch'), (hhsuite_db,), timeout=120)
  out = tool.search(query, tmp_path / 'pdb_hits.hhr')
  hits = parsers.parse_hhr(out.read_text())
  assert hits
  best = max(hits, key=lambda h: h.aligned_cols)
  assert best.aligned_cols >= 40
  # The best hit aligns the 2Q2K family's query row: identical residues in most columns.
  same = sum(q == t for q, t in zip(best.query, best.hit_sequence) if q != '-')
  assert same >= 0.9 * best.aligned_cols


@pytest.mark.parametrize('sto_path', [
    TEMPLATE_FIXTURE / 'alignments' / 'uniref90_hits.sto',
    CHAIN_2Q2K / 'alignments' / '2q2k_A' / 'uniref90_hits.sto',
])
def test_a3m_from_stockholm_matches_alphafold_template_query(sto_path):
  sto = sto_path.read_text()
  expected = af_parsers.convert_stockholm_to_a3m(
      af_parsers.remove_empty_columns_from_stockholm_msa(
          af_parsers.deduplicate_stockholm_msa(sto)))
  assert hhsearch.a3m_from_stockholm(sto) == expected


def test_a3m_from_stockholm_rejects_empty_text():
  with pytest.raises(InputError, match='no aligned sequences'):
    hhsearch.a3m_from_stockholm('# STOCKHOLM 1.0\n//\n', 'empty.sto')
