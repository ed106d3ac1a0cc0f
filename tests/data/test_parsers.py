"""FASTA/a3m/Stockholm/hhr parsing: parity with AlphaFold's parsers on real files, and errors."""

import gzip
import shutil

import pytest
from alphafold.data import parsers as ref

from af_jax.data import parsers
from af_jax.errors import InputError
from tests.data.shared_data import CHAIN_2Q2K, SHARED_DATA, TEMPLATE_FIXTURE

ALIGN_2Q2K = CHAIN_2Q2K / 'alignments' / '2q2k_A'
ALIGN_SHORT = TEMPLATE_FIXTURE / 'alignments'
COLABFOLD_A3M = SHARED_DATA / 'chains_with_msa' / 'protenix_msa_demo' / 'msa/0/non_pairing.a3m'
MSA_FILES = sorted(ALIGN_2Q2K.glob('*.sto')) + sorted(ALIGN_2Q2K.glob('*.a3m')) + sorted(
    ALIGN_SHORT.glob('*.sto')) + sorted(ALIGN_SHORT.glob('*.a3m')) + [COLABFOLD_A3M]


def assert_same_msa(ours: parsers.Msa, theirs: ref.Msa) -> None:
  assert ours.sequences == list(theirs.sequences)
  assert ours.deletion_matrix == [list(row) for row in theirs.deletion_matrix]
  assert ours.descriptions == list(theirs.descriptions)


def ref_parse(path) -> ref.Msa:
  text = path.read_text()
  return ref.parse_stockholm(text) if path.suffix == '.sto' else ref.parse_a3m(text)


# ---------------------------------------------------------------------------
# MSAs.


@pytest.mark.parametrize('path', MSA_FILES, ids=lambda p: f'{p.parent.name}/{p.name}')
def test_msa_parity_with_alphafold(path):
  theirs = ref_parse(path)
  ours = parsers.read_msa(path)
  assert len(ours) == len(theirs) > 1
  assert_same_msa(ours, theirs)
  parse = parsers.parse_stockholm if path.suffix == '.sto' else parsers.parse_a3m
  assert_same_msa(parse(path.read_text()), theirs)


def test_msa_files_have_insertions():
  # The parity above covers deletion counting only if the files have some.
  for path in MSA_FILES:
    if path.name in ('bfd_uniclust_hits.a3m', 'uniref90_hits.sto', 'non_pairing.a3m'):
      assert any(any(row) for row in parsers.read_msa(path).deletion_matrix), path


def test_colabfold_a3m_with_comment_line_and_null_bytes():
  text = COLABFOLD_A3M.read_text()
  theirs = ref.parse_a3m(text)
  assert '\t' in theirs.descriptions[1]  # ColabFold's tab-separated score fields
  lines = text.splitlines(keepends=True)
  served = '#237\t1\n' + ''.join(lines[:6]) + '\x00' + ''.join(lines[6:]) + '\x00'
  assert_same_msa(parsers.parse_a3m(served), theirs)


def test_gzipped_msa_files(tmp_path):
  for path in (ALIGN_2Q2K / 'uniref90_hits.sto', ALIGN_2Q2K / 'bfd_uniclust_hits.a3m'):
    gz = tmp_path / f'{path.name}.gz'
    with open(path, 'rb') as src, gzip.open(gz, 'wb') as dst:
      shutil.copyfileobj(src, dst)
    assert_same_msa(parsers.read_msa(gz), ref_parse(path))


def test_stockholm_dots_read_as_gaps():
  text = (ALIGN_2Q2K / 'uniref90_hits.sto').read_text()
  lines = text.splitlines()
  # Turn the gaps of every non-query row into '.', as HMMER writes insert-column gaps.
  query_seen = False
  dotted = []
  for line in lines:
    if line and not line.startswith(('#', '//')):
      name, seq = line.split()
      if query_seen:
        seq = seq.replace('-', '.')
      query_seen = True
      line = f'{name} {seq}'
    dotted.append(line)
  assert '.' in '\n'.join(dotted[-5:])
  assert_same_msa(parsers.parse_stockholm('\n'.join(dotted)), ref.parse_stockholm(text))


def test_stockholm_interleaved_blocks_and_row_blocks(monkeypatch):
  text = (ALIGN_SHORT / 'uniref90_hits.sto').read_text()
  seq_lines = [line.split() for line in text.splitlines()
               if line and not line.startswith(('#', '//'))]
  # The same alignment written as two interleaved blocks of columns.
  half = len(seq_lines[0][1]) // 2
  blocks = [f'{n} {s[:half]}' for n, s in seq_lines] + [''] + [f'{n} {s[half:]}'
                                                              for n, s in seq_lines]
  interleaved = '# STOCKHOLM 1.0\n\n' + '\n'.join(blocks) + '\n//\n'
  monkeypatch.setattr(parsers, '_ROW_BLOCK', 5)  # several row blocks of the vectorized count
  assert_same_msa(parsers.parse_stockholm(interleaved), ref.parse_stockholm(text))


def test_ragged_a3m_row_is_refused():
  with pytest.raises(InputError, match=r"row 'hit' of x.a3m has 3 aligned columns, the query has"):
    parsers.parse_a3m('>query\nMKLV\n>hit\nMKaL\n', source='x.a3m')


def test_malformed_msa_files(tmp_path):
  with pytest.raises(InputError, match='holds no sequences'):
    parsers.parse_a3m('\n\n', source='e.a3m')
  with pytest.raises(InputError, match='before the first ">"'):
    parsers.parse_a3m('MKLV\n>q\nMKLV\n')
  with pytest.raises(InputError, match="has 3 columns, the query has 4"):
    parsers.parse_stockholm('q MKLV\nh MKL\n')
  with pytest.raises(InputError, match="the query 'q' of x.sto is all gaps"):
    parsers.parse_stockholm('q ---\nh MKL\n', source='x.sto')
  with pytest.raises(InputError, match='not "name aligned_sequence"'):
    parsers.parse_stockholm('# STOCKHOLM 1.0\nq MK LV\n//\n')
  with pytest.raises(InputError, match=r'unknown suffix: name it with one of \.a3m, \.a3m\.gz, '):
    parsers.read_msa(tmp_path / 'hits.fasta')
  with pytest.raises(InputError, match='does not exist'):
    parsers.read_msa(tmp_path / 'missing.sto')


def test_truncate():
  msa = parsers.read_msa(ALIGN_SHORT / 'bfd_uniclust_hits.a3m')
  short = msa.truncate(10)
  assert len(short) == 10
  assert short.sequences == msa.sequences[:10]
  assert short.deletion_matrix == msa.deletion_matrix[:10]
  assert short.descriptions == msa.descriptions[:10]
  with pytest.raises(InputError, match='differ in length'):
    parsers.Msa(['MK'], [], ['q'])


def test_check_msa_query():
  target = parsers.read_fasta(TEMPLATE_FIXTURE / 'short.fasta')[0]
  for name in ('bfd_uniclust_hits.a3m', 'uniref90_hits.sto', 'mgnify_hits.sto'):
    parsers.check_msa_query(parsers.read_msa(ALIGN_SHORT / name), target.sequence, name)
  wrong = ALIGN_2Q2K / 'uniref90_hits.sto'
  with pytest.raises(InputError) as e:
    parsers.check_msa_query(parsers.read_msa(wrong), target.sequence, str(wrong), target='t1')
  msg = str(e.value)
  assert '\n' not in msg
  assert str(wrong) in msg and "'t1'" in msg and 'MGSSHHHHHHSS...' in msg
  assert 'first difference at residue 2' in msg and 'pass the MSA built for this sequence' in msg
  with pytest.raises(InputError, match='holds no sequences'):
    parsers.check_msa_query(parsers.Msa([], [], []), target.sequence, 'empty.a3m')


# ---------------------------------------------------------------------------
# hhr.


def test_hhr_parity_with_alphafold():
  text = (ALIGN_SHORT / 'pdb70_hits.hhr').read_text()
  theirs = ref.parse_hhr(text)
  ours = parsers.parse_hhr(text)
  assert len(ours) == len(theirs) == 10
  for a, b in zip(ours, theirs):
    assert a.index == b.index
    assert a.name == b.name
    assert a.aligned_cols == b.aligned_cols
    assert a.sum_probs == b.sum_probs
    assert a.query == b.query and a.hit_sequence == b.hit_sequence
    assert a.indices_query == list(b.indices_query)
    assert a.indices_hit == list(b.indices_hit)
  assert ours[0].name.startswith('1HF9_B ATPASE INHIBITOR')
  assert parsers.parse_hhr('Query  q\nMatch_columns 5\n') == []


def test_hhr_with_gaps_matches_alphafold():
  # The real file has no gaps; splice some into hit 2 (query gap, template gap).
  text = (ALIGN_SHORT / 'pdb70_hits.hhr').read_text()
  text = text.replace('Q query            11 HKAAEHHEQAAKHHHAAAEH   30 (73)',
                      'Q query            11 HKAAE-HEQAAKHHHAAAEH   29 (73)', 1)
  text = text.replace('T 2CRB_A           32 EEAISCHRKATTYLSEAMKL   51 (97)',
                      'T 2CRB_A           32 EEAI-CHRKATTYLSEAMKL   50 (97)', 1)
  ours, theirs = parsers.parse_hhr(text)[1], ref.parse_hhr(text)[1]
  assert -1 in ours.indices_query and -1 in ours.indices_hit
  assert ours.indices_query == list(theirs.indices_query)
  assert ours.indices_hit == list(theirs.indices_hit)


def test_hhr_malformed_summary():
  with pytest.raises(InputError, match='Aligned_cols or Sum_probs'):
    parsers.parse_hhr('No 1\n>1abc_A x\nProbab=7.5  E-value=3\n')


# ---------------------------------------------------------------------------
# FASTA.


def test_fasta_matches_alphafold_on_real_file():
  path = TEMPLATE_FIXTURE / 'short.fasta'
  seqs, descs = ref.parse_fasta(path.read_text())
  records = parsers.read_fasta(path)
  assert [r.sequence for r in records] == seqs
  assert [r.description for r in records] == descs
  assert records[0].name == descs[0].split()[0]


def test_multi_record_fasta_is_cleaned():
  text = ('\n>t1 first target\nmkv lx\nACD*\n\n>t2\tsecond\n  GGG  \nHHH\n'
          '>t3 x\nM K V\n')
  records = parsers.parse_fasta(text, source='in.fasta')
  assert records == [parsers.FastaRecord('t1', 't1 first target', 'MKVLXACD'),
                     parsers.FastaRecord('t2', 't2\tsecond', 'GGGHHH'),
                     parsers.FastaRecord('t3', 't3 x', 'MKV')]


@pytest.mark.parametrize('text,pattern', [
    ('', r'^in\.fasta is empty'),
    ('  \n\n', r'^in\.fasta is empty'),
    ('MKV\n>t1\nMKV\n', r"in\.fasta has text before the first \">\" \('MKV'\)"),
    ('>t1\nMKV\n>t2 nothing\n\n>t3\nGG\n', r"record 't2' of in\.fasta has an empty sequence"),
    ('>t1\n*\n', r"record 't1' of in\.fasta has an empty sequence"),
    ('>t1 a\nMKV\n>t2\nGG\n>t1 b\nLL\n',
     r"record name 't1' appears twice in in\.fasta \(records 1 and 3\)"),
    ('>t1\nMKV\n>t2\nMKBVZ*\n',
     r"record 't2' of in\.fasta has residue letters outside the 20 amino acids and X: "
     r"'B' at 3, 'Z' at 5: replace them"),
    ('>t1\nMK*V\n', r"'\*' at 3"),
    ('>t1\nM1KV-\n', r"'1' at 2, '-' at 5"),
    ('>t1\nBBBBBBBB\n', r"'B' at 5 and 3 more"),
    ('>\nMKV\n', r'record 1 \(>\) of in\.fasta: the name is empty'),
    ('>../evil\nMKV\n', r"record 1 \(>\.\./evil\) .*: the name '\.\./evil' contains a path "
                       'separator, so it cannot name an output directory'),
    ('>a/b c\nMKV\n', r"the name 'a/b' contains a path separator"),
    ('>..\nMKV\n', r"the name '\.\.' is a special directory name"),
    ('>t\x1b[31mred\nMKV\n', r"record 1 \(>t\\x1b\[31mred\) .* 't\\x1b\[31mred' contains "
                          'unprintable'),
    ('>' + 'a' * 256 + '\nMKV\n', r"'a{20}'\.\.\. is 256 bytes long, more than the 255"),
    ('>' + '\u00e9' * 128 + '\nMKV\n', r'is 256 bytes long'),  # 128 characters, 2 bytes each
])
def test_fasta_errors_name_the_problem(text, pattern):
  with pytest.raises(InputError, match=pattern) as e:
    parsers.parse_fasta(text, source='in.fasta')
  assert '\n' not in str(e.value)


def test_read_fasta_file_errors(tmp_path):
  with pytest.raises(InputError, match=r'FASTA file .*missing\.fasta does not exist'):
    parsers.read_fasta(tmp_path / 'missing.fasta')
  with pytest.raises(InputError, match='cannot read FASTA file'):
    parsers.read_fasta(tmp_path)  # a directory
  binary = tmp_path / 'bin.fasta'
  binary.write_bytes(b'>t1\n\xff\xfe\n')
  with pytest.raises(InputError, match='cannot read FASTA file'):
    parsers.read_fasta(binary)
  good = tmp_path / 'in.fasta'
  good.write_text('>t1\nMKV\n>t2\nGG\n')
  with pytest.raises(InputError, match=str(good)):
    good.write_text('>t1\nMKV\n>t1\nGG\n')
    parsers.read_fasta(good)
