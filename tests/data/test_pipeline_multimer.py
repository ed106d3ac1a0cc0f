"""The multimer pipeline: complex FASTA, chain/entity ids, real complexes' files, parity."""

import dataclasses
import gzip
import json
import shutil

import numpy as np
import pytest

from af_jax.data import features, msa_pairing, msa_search, parsers, pipeline, pipeline_multimer
from af_jax.errors import ConfigError, InputError
from tests.data.shared_data import MINI_DATABASES, SHARED_DATA
from tests.data.test_msa_pairing import (ALIGN_2Q2K, SEQ_2Q2K, assert_same_example,
                                         reference_multimer_features)

CHAINS = SHARED_DATA / 'chains_with_msa'
MSA_7PZB = CHAINS / 'protenix_7pzb_complex' / 'msa' / '1'
MSAS_7A4D = CHAINS / 'af3pytorch_721p_7a4d' / 'msas'
PEPTIDE_7A4D = 'LEEELKQLEEELQAIEEQLAQLQWKAQARKEKLAQLKEKL'


def _query_record(path, name):
  """The record of an a3m's first row (its query), read without parsing the whole file."""
  lines = []
  with (gzip.open(path, 'rt') if path.name.endswith('.gz') else open(path)) as f:
    f.readline()
    for line in f:
      if line.startswith('>'):
        break
      lines.append(line.strip())
  return parsers.FastaRecord(name, name, ''.join(lines))


def _7a4d_file(chain):
  name = f'7a4d-assembly1{chain}_protein.a3m'
  return MSAS_7A4D / (name if chain in 'EF' else name + '.gz')


def _reference_from_inputs(inputs):
  """AlphaFold's merge of the per-chain features our building blocks make (once per sequence)."""
  pairing = len({c.record.sequence for c in inputs}) > 1
  by_sequence = {}
  for chain in inputs:
    if chain.record.sequence not in by_sequence:
      by_sequence[chain.record.sequence] = pipeline_multimer.make_chain_features(
          chain, pairing=pairing)
  return reference_multimer_features([by_sequence[c.record.sequence] for c in inputs])


# ---------------------------------------------------------------------------
# Complex FASTA files.


def test_complex_fasta_reads_records_and_colabfold_colons():
  chains = parsers.parse_complex_fasta('>ab first\nmkv:GG\nW\n>c\nAAAA*\n')
  assert [c.sequence for c in chains] == ['MKV', 'GGW', 'AAAA']
  assert [c.name for c in chains] == ['ab', 'ab', 'c']
  assert chains[1].description == 'ab first'


@pytest.mark.parametrize('text, message', [
    ('', 'is empty'),
    ('MKV\n', 'text before the first ">"'),
    ('>x\nMKV::GG\n', 'empty chain \\(part 2 of 3'),
    ('>x\nMKV:\n', 'empty chain \\(part 2 of 2'),
    ('>x\n\n>y\nMKV\n', "record 'x' of .* has an empty chain: remove"),
    ('>x\nMKV:G1G\n', "'1' at 2: replace them with X"),
    ('>x\nMKV/GG\n', "'/' at 4"),
    ('>x\n' + ':'.join(['G'] * 63), '63 chains, more than the 62'),
])
def test_complex_fasta_errors_name_the_problem_and_fix(text, message):
  with pytest.raises(InputError, match=message) as info:
    parsers.parse_complex_fasta(text, source='c.fasta')
  assert '\n' not in str(info.value)


def test_read_complex_names_it_after_the_file(tmp_path):
  path = tmp_path / 'dimer.fasta'
  path.write_text('>dimer\nMKV:MKV\n')
  complex_ = pipeline_multimer.read_complex(path)
  assert complex_.name == 'dimer' and len(complex_.chains) == 2
  with pytest.raises(InputError, match='does not exist'):
    pipeline_multimer.read_complex(tmp_path / 'missing.fasta')


# ---------------------------------------------------------------------------
# Chains, entities and copies.


def test_homomer_is_one_entity_with_counted_copies():
  chains = pipeline_multimer.assembly_chains(['MKV', 'MKV', 'MKV'])
  assert [(c.chain_id, c.entity_id, c.sym_id, c.asym_id) for c in chains] == [
      ('A', 1, 1, 1), ('B', 1, 2, 2), ('C', 1, 3, 3)]


def test_heteromer_entities_by_first_appearance_merged_by_entity():
  chains = pipeline_multimer.assembly_chains(['MKV', 'GG', 'MKV'])
  assert [(c.chain_id, c.entity_id, c.sym_id, c.asym_id) for c in chains] == [
      ('A', 1, 1, 1), ('B', 2, 1, 3), ('C', 1, 2, 2)]


def test_too_many_chains_is_an_input_error():
  with pytest.raises(InputError, match='63 chains given, more than the 62'):
    pipeline_multimer.assembly_chains(['G'] * 63)


# ---------------------------------------------------------------------------
# Real complexes from their files: parity with AlphaFold's pipeline.


def test_7pzb_homodimer_colabfold_files_match_alphafold():
  # ColabFold layout (non_pairing.a3m.gz 6503 rows + pairing.a3m.gz): a homomer is not
  # paired, so pairing.a3m is not read.
  record = _query_record(MSA_7PZB / 'non_pairing.a3m.gz', '7pzb')
  chain = pipeline_multimer.ChainInput.from_dir(record, MSA_7PZB)
  assert chain.pairing_msa_path.name == 'pairing.a3m.gz'
  inputs = [chain, dataclasses.replace(chain, record=dataclasses.replace(record, name='B'))]
  ours = pipeline_multimer.make_multimer_features(inputs)
  assert_same_example(ours, _reference_from_inputs(inputs))
  np.testing.assert_array_equal(ours['asym_id'], [1] * 244 + [2] * 244)
  np.testing.assert_array_equal(ours['sym_id'], [1] * 244 + [2] * 244)
  np.testing.assert_array_equal(ours['entity_id'], 1)
  assert int(ours['num_alignments']) == msa_pairing.MSA_CROP_SIZE  # of 6502 rows


@pytest.fixture(scope='module')
def inputs_7a4d():
  # Four nanobody chains (distinct observed sequences) and the peptide twice (E = F,
  # whose MSA is its query alone). No pairing MSA: only the queries pair.
  inputs = []
  for chain in 'ABCDEF':
    record = _query_record(_7a4d_file(chain), f'7a4d_{chain}')
    inputs.append(pipeline_multimer.ChainInput(record, (_7a4d_file(chain),)))
  return inputs


def test_7a4d_heteromer_colabfold_files_match_alphafold(inputs_7a4d):
  assert inputs_7a4d[4].record.sequence == inputs_7a4d[5].record.sequence == PEPTIDE_7A4D
  ours = pipeline_multimer.make_multimer_features(inputs_7a4d)
  assert_same_example(ours, _reference_from_inputs(inputs_7a4d))
  lengths = [len(c.record.sequence) for c in inputs_7a4d]
  starts = np.cumsum([0] + lengths[:-1])
  np.testing.assert_array_equal(ours['entity_id'][starts], [1, 2, 3, 4, 5, 5])
  np.testing.assert_array_equal(ours['sym_id'][starts], [1, 1, 1, 1, 1, 2])
  np.testing.assert_array_equal(ours['residue_index'][starts], 0)
  # Row 0 holds every query; the peptides' own block is empty (their query is paired).
  peptides = slice(starts[4], None)
  assert (ours['msa'][1:int(ours['num_alignments']), peptides] == 21).all()
  assert ours['cluster_bias_mask'][0] == 1 and ours['bert_mask'][0].all()


@pytest.mark.parametrize('copies', [1, 2])
def test_2q2k_alphafold_layout_matches_alphafold(copies):
  # One copy: a monomer through the multimer pipeline; two: the 2Q2K homodimer.
  record = parsers.FastaRecord('2q2k', '2q2k', SEQ_2Q2K)
  chain = pipeline_multimer.ChainInput.from_dir(record, ALIGN_2Q2K)
  assert [p.name for p in chain.msa_paths] == ['uniref90_hits.sto', 'bfd_uniclust_hits.a3m',
                                               'mgnify_hits.sto']
  ours = pipeline_multimer.make_multimer_features([chain] * copies)
  assert_same_example(ours, _reference_from_inputs([chain] * copies))
  assert ours['msa'].shape[0] == pipeline_multimer.MIN_NUM_SEQ  # padded, masked rows
  assert ours['msa_mask'][int(ours['num_alignments']):].sum() == 0


def _precomputed_complex(tmp_path):
  """2Q2K : peptide : 2Q2K with files in AlphaFold's msas/<chain_id>/ layout."""
  target = tmp_path / 'cplx'
  shutil.copytree(ALIGN_2Q2K, target / 'msas' / 'A')
  (target / 'msas' / 'B').mkdir()
  shutil.copy(_7a4d_file('E'), target / 'msas' / 'B' / 'bfd_uniref_hits.a3m')
  records = (parsers.FastaRecord('cplx', 'cplx', SEQ_2Q2K),
             parsers.FastaRecord('cplx', 'cplx', PEPTIDE_7A4D),
             parsers.FastaRecord('cplx', 'cplx', SEQ_2Q2K))
  return pipeline_multimer.Complex('cplx', records), target


def test_precomputed_complex_alphafold_layout_matches_alphafold(tmp_path):
  complex_, target = _precomputed_complex(tmp_path)
  options = pipeline.PipelineOptions(msa_mode='precomputed')
  ours = pipeline_multimer.make_complex_features(complex_, target, options)
  inputs = [pipeline_multimer.ChainInput.from_dir(r, target / 'msas' / d)
            for r, d in zip(complex_.chains, 'ABA')]
  assert inputs[0].pairing_msa_path.name == pipeline_multimer.UNIPROT_STO
  assert inputs[1].pairing_msa_path is None  # the peptide pairs only its query
  assert_same_example(ours, _reference_from_inputs(inputs))
  chain_map = json.loads((target / 'msas' / pipeline_multimer.CHAIN_ID_MAP).read_text())
  assert {k: v['sequence'] for k, v in chain_map.items()} == {
      'A': SEQ_2Q2K, 'B': PEPTIDE_7A4D, 'C': SEQ_2Q2K}
  # Merged by entity: 2Q2K (A), 2Q2K (C), then the peptide (B).
  np.testing.assert_array_equal(ours['asym_id'][[0, 70, 140]], [1, 2, 3])
  np.testing.assert_array_equal(ours['entity_id'][[0, 70, 140]], [1, 1, 2])


def test_single_sequence_heteromer_pairs_only_the_queries(tmp_path):
  complex_, target = _precomputed_complex(tmp_path)
  options = pipeline.PipelineOptions(msa_mode='single_sequence')
  ours = pipeline_multimer.make_complex_features(complex_, target, options)
  assert int(ours['num_alignments']) == 1
  assert ours['msa'].shape == (pipeline_multimer.MIN_NUM_SEQ, 180)
  unpadded = pipeline_multimer.make_complex_features(complex_, target, options, min_num_seq=0)
  assert unpadded['msa'].shape == (1, 180)


def test_jackhmmer_complex_searches_uniprot_for_pairing(tmp_path):
  # The AF3 miniature databases: plumbing (few hits), not deep MSAs.
  databases = msa_search.Databases(uniref90=str(MINI_DATABASES / 'uniref90__subsampled_1000.fasta'))
  options = pipeline.PipelineOptions(msa_mode='jackhmmer', databases=databases)
  complex_ = pipeline_multimer.Complex('het', (
      parsers.FastaRecord('het', 'het', SEQ_2Q2K), parsers.FastaRecord('het', 'het', PEPTIDE_7A4D)))
  uniprot = str(MINI_DATABASES / 'uniprot_all__subsampled_1000.fasta')
  ours = pipeline_multimer.make_complex_features(complex_, tmp_path, options,
                                                 uniprot_database=uniprot)
  for chain in 'AB':
    assert (tmp_path / 'msas' / chain / 'uniref90_hits.sto').is_file()
    assert (tmp_path / 'msas' / chain / pipeline_multimer.UNIPROT_STO).is_file()
  assert ours['msa'].shape[1] == 110 and int(ours['num_alignments']) >= 1


# ---------------------------------------------------------------------------
# Bad inputs.


def test_msa_of_another_sequence_is_an_input_error():
  record = parsers.FastaRecord('pep', 'pep', PEPTIDE_7A4D)
  chain = pipeline_multimer.ChainInput(record, (ALIGN_2Q2K / 'uniref90_hits.sto',))
  with pytest.raises(InputError, match="uniref90_hits.sto .* does not match .* 'pep'"):
    pipeline_multimer.make_multimer_features([chain])


def test_chain_dir_problems_are_input_errors(tmp_path):
  with pytest.raises(InputError, match='does not exist'):
    pipeline_multimer.find_chain_msas(tmp_path / 'A')
  with pytest.raises(InputError, match='no unpaired MSA'):
    pipeline_multimer.find_chain_msas(tmp_path)
  (tmp_path / 'uniprot_hits.sto').write_text('')
  (tmp_path / 'pairing.a3m').write_text('')
  with pytest.raises(InputError, match='2 pairing MSAs .*: keep one'):
    pipeline_multimer.find_chain_msas(tmp_path)


def test_msa_paths_for_a_complex_is_a_config_error(tmp_path):
  complex_, target = _precomputed_complex(tmp_path)
  options = pipeline.PipelineOptions(msa_mode='precomputed', msa_paths=('x.a3m',))
  with pytest.raises(ConfigError, match='msas/<chain_id>/'):
    pipeline_multimer.make_complex_features(complex_, target, options)


def test_features_without_templates_are_an_input_error():
  feats = {**features.make_sequence_features('MKV', 'x', 3),
           **features.make_msa_features([pipeline.query_msa(parsers.FastaRecord('x', 'x',
                                                                                'MKV'))])}
  with pytest.raises(InputError, match='lack template_aatype.*empty_template_features'):
    pipeline_multimer.assemble([feats])
  with pytest.raises(InputError, match='no chains'):
    pipeline_multimer.assemble([])
