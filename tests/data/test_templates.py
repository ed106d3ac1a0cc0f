"""Template features agree with AlphaFold's HhsearchHitFeaturizer on the template fixture.

The reference wants plain `<id>.cif` files and stops on a missing one, so it gets a
gunzipped copy of the fixture and no 1HF9 hit (its mmCIF is absent); ours reads the
fixture as it is (.cif and .cif.gz) and must skip 1HF9 by itself. 2Q2K, the last hit,
comes from the 2q2k chain directory. Debian's kalign 3 accepts the kalign-2 command
line the reference uses, so realignment is compared too.
"""

import dataclasses
import gzip
import shutil

import numpy as np
import pytest
from alphafold.data import mmcif_parsing, parsers
from alphafold.data import templates as ref_templates
from alphafold.data.tools import kalign as ref_kalign

from af_jax.data import schema, templates
from af_jax.data.tools import kalign
from af_jax.errors import InputError, ToolError
from tests.data.shared_data import CHAIN_2Q2K, TEMPLATE_FIXTURE

KALIGN = shutil.which('kalign')
pytestmark = pytest.mark.skipif(KALIGN is None, reason='needs the kalign binary')


@pytest.fixture(scope='module')
def fixture(tmp_path_factory):
  ours = tmp_path_factory.mktemp('ours')
  ref = tmp_path_factory.mktemp('ref')
  for path in list((TEMPLATE_FIXTURE / 'template_mmcifs').iterdir()) + [CHAIN_2Q2K / '2q2k.cif']:
    (ours / path.name).symlink_to(path)
    opener = gzip.open if path.name.endswith('.gz') else open
    with opener(path, 'rb') as f:
      (ref / path.name.removesuffix('.gz')).write_bytes(f.read())
  hits = parsers.parse_hhr((TEMPLATE_FIXTURE / 'alignments' / 'pdb70_hits.hhr').read_text())
  query = (TEMPLATE_FIXTURE / 'short.fasta').read_text().split('\n')[1].strip()
  assert [h.name[:4] for h in hits][0] == '1HF9'
  with pytest.MonkeyPatch.context() as mp:
    # DeepMind ran biopython 1.79, whose protein_letters_3to1 held the modified
    # residues (4ZEY's MSE -> M); today's is the extended table.
    mp.setattr(mmcif_parsing.PDBData, 'protein_letters_3to1',
               mmcif_parsing.PDBData.protein_letters_3to1_extended)
    mmcif_parsing.parse.cache_clear()
    yield dict(ours=str(ours), ref=str(ref), hits=hits, query=query)
  mmcif_parsing.parse.cache_clear()


def _ref(fx, hits, date, tmp_path=None, **kwargs):
  featurizer = ref_templates.HhsearchHitFeaturizer(
      mmcif_dir=fx['ref'], max_template_date=date, max_hits=kwargs.pop('max_hits', 20),
      kalign_binary_path=KALIGN, release_dates_path=kwargs.pop('release_dates_path', None),
      obsolete_pdbs_path=kwargs.pop('obsolete_pdbs_path', None))
  return featurizer.get_templates(fx['query'], [h for h in hits if h.name[:4] != '1HF9'])


def _assert_same(ours, ref):
  assert set(ours) == set(ref) == set(schema.RAW_TEMPLATES.names)
  for name, value in ref.items():
    assert ours[name].dtype == value.dtype, name
    if value.size == 0:  # AlphaFold's empty features are 1-D; ours keep their rank.
      assert ours[name].shape[0] == 0, name
      continue
    assert ours[name].shape == value.shape, name
    np.testing.assert_array_equal(ours[name], value, err_msg=name)


@pytest.mark.parametrize('date', ['2100-01-01', '2012-01-01'])
def test_matches_alphafold(fixture, date):
  """2100 keeps every hit with atoms; 2012 drops 4ZEY, 3ZEE, 4I6P and 5KC1 by date."""
  ref = _ref(fixture, fixture['hits'], date)
  ours = templates.TemplateFeaturizer(fixture['ours'], date, max_hits=20).get_templates(
      fixture['query'], fixture['hits'])
  _assert_same(ours.features, ref.features)
  kept = {n.decode().split('_')[0] for n in ours.features['template_domain_names']}
  assert len(kept) >= 4
  skipped = [h for h in fixture['hits'] if h.name[:4].lower() not in kept]
  reports = ours.errors + ours.warnings
  assert len(reports) == len(skipped)  # one line per skipped hit, none for kept ones
  for hit in skipped:
    assert any(hit.name.split()[0] in line for line in reports)
  assert any('1HF9' in e and 'not found' in e for e in ours.errors)
  for warning in ref.warnings:  # 5KC1 F and J: no atoms where aligned
    assert any(warning.split()[0].upper() in w for w in ours.warnings)


def test_default_max_hits_keeps_the_best_four(fixture):
  ref = _ref(fixture, fixture['hits'], '2100-01-01', max_hits=4)
  ours = templates.TemplateFeaturizer(fixture['ours'], '2100-01-01').get_templates(
      fixture['query'], fixture['hits'])
  _assert_same(ours.features, ref.features)
  assert ours.features['template_aatype'].shape == (4, len(fixture['query']), 22)


def _mutate(hit, column, letter):
  seq = hit.hit_sequence
  return dataclasses.replace(hit, hit_sequence=seq[:column] + letter + seq[column + 1:])


def test_realignment_matches_alphafold(fixture):
  """A hit sequence that is not in the SEQRES is realigned with kalign (3U8V, hit 4)."""
  (hit,) = [h for h in fixture['hits'] if h.name.startswith('3U8V')]
  one_change = _mutate(hit, 5, 'W')
  many_changes = _mutate(_mutate(_mutate(_mutate(hit, 3, 'W'), 9, 'W'), 15, 'W'), 20, 'W')
  for hits, realigned in (([one_change], True), ([many_changes], False)):
    ref = _ref(fixture, hits, '2100-01-01')
    ours = templates.TemplateFeaturizer(fixture['ours'], '2100-01-01', max_hits=20,
                                        kalign_binary_path=KALIGN).get_templates(
        fixture['query'], hits)
    _assert_same(ours.features, ref.features)
    if realigned:
      assert len(ref.warnings) == 1 and 'realigned' in ours.warnings[0]
      assert ours.features['template_sequence'][0] != one_change.hit_sequence.encode()
    else:  # below 90 % identity: an error on both sides
      assert len(ref.errors) == 1 and 'identical' in ours.errors[0]
      assert ours.features['template_aatype'].shape == (0, len(fixture['query']), 22)


def test_realignment_without_kalign_stops_with_the_fix(fixture):
  (hit,) = [h for h in fixture['hits'] if h.name.startswith('3U8V')]
  featurizer = templates.TemplateFeaturizer(fixture['ours'], '2100-01-01',
                                            kalign_binary_path='/nonexistent/kalign')
  assert featurizer.get_templates(fixture['query'], [hit]).features['template_sequence'].size
  with pytest.raises(ToolError, match='--kalign_binary_path'):
    featurizer.get_templates(fixture['query'], [_mutate(hit, 5, 'W')])


def test_prefilter_rules(fixture):
  """AlphaFold's filters (DeepMind's; ColabFold's reference applies only the date one)."""
  query = fixture['query']
  (hit,) = [h for h in fixture['hits'] if h.name.startswith('3U8V')]
  featurizer = templates.TemplateFeaturizer(fixture['ours'], '2100-01-01')
  # 7 of 73 residues aligned is 9.6 % <= 10 %: dropped; 8 (11 %) is kept.
  assert featurizer.get_templates(query, [dataclasses.replace(hit, aligned_cols=8)]) \
      .features['template_sequence'].shape == (1,)
  result = featurizer.get_templates(query, [dataclasses.replace(hit, aligned_cols=7)])
  assert result.features['template_sequence'].shape == (0,)
  assert 'aligned to only' in result.warnings[0]
  short = dataclasses.replace(hit, hit_sequence='-' * 23 + hit.hit_sequence[23:])
  assert len(short.hit_sequence.replace('-', '')) == 9
  result = featurizer.get_templates(query, [short])
  assert result.features['template_sequence'].shape == (0,) and 'residues long' in \
      result.warnings[0]
  duplicate = dataclasses.replace(hit, hit_sequence=query[1:], aligned_cols=72)
  strict = templates.TemplateFeaturizer(fixture['ours'], '2100-01-01', strict_error_check=True)
  result = strict.get_templates(query, [duplicate])
  assert result.features['template_sequence'].shape == (0,) and 'copy' in result.errors[0]


def test_obsolete_and_release_dates_match_alphafold(fixture, tmp_path):
  obsolete = tmp_path / 'obsolete.dat'
  obsolete.write_text('LIST OF OBSOLETE COORDINATE ENTRIES AND SUCCESSORS\n'
                      'OBSLTE    31-JUL-94 9ZZZ     3U8V\n'
                      'OBSLTE    06-NOV-19 2CRB\n')
  dates = tmp_path / 'release_dates.txt'
  dates.write_text('1psm: 2020-01-01\n4zey: 2015-05-06\n')  # 1PSM's true date is 1995
  hits = [dataclasses.replace(h, name='9ZZZ_A renamed') if h.name.startswith('3U8V') else h
          for h in fixture['hits']]
  paths = dict(release_dates_path=str(dates), obsolete_pdbs_path=str(obsolete))
  ref = _ref(fixture, hits, '2018-01-01', **paths)
  ours = templates.TemplateFeaturizer(fixture['ours'], '2018-01-01', max_hits=20,
                                      **paths).get_templates(fixture['query'], hits)
  _assert_same(ours.features, ref.features)
  names = list(ours.features['template_domain_names'])
  assert b'3u8v_A' in names and b'2crb_A' not in names and b'1psm_A' not in names
  assert any('2crb is obsolete' in w for w in ours.warnings)


def test_bad_inputs(fixture, tmp_path):
  with pytest.raises(InputError, match='does not exist'):
    templates.TemplateFeaturizer(str(tmp_path / 'nope'), '2020-01-01')
  with pytest.raises(InputError, match='no \\*.cif'):
    templates.TemplateFeaturizer(str(tmp_path), '2020-01-01')
  with pytest.raises(InputError, match='max_template_date'):
    templates.TemplateFeaturizer(fixture['ours'], '01/02/2020')
  featurizer = templates.TemplateFeaturizer(fixture['ours'], '2020-01-01')
  bad_name = dataclasses.replace(fixture['hits'][1], name='not a pdb hit')
  with pytest.raises(InputError, match='PDBID_chain'):
    featurizer.get_templates(fixture['query'], [bad_name])
  empty = featurizer.get_templates(fixture['query'], [])
  assert {k: v.shape for k, v in empty.features.items()} == {
      'template_aatype': (0, 73, 22), 'template_all_atom_masks': (0, 73, 37),
      'template_all_atom_positions': (0, 73, 37, 3), 'template_domain_names': (0,),
      'template_sequence': (0,), 'template_sum_probs': (0, 1)}


def test_kalign_matches_alphafold_wrapper():
  a, b = 'THVGHGIKHLEDAIKHGEEGHVGVATKHAQEA', 'MTHVGHGIKHLEDAIKHGEEGHVGVATKHAQEAGGS'
  ours = kalign.align_pair(a, b, binary_path=KALIGN)
  ref = parsers.parse_a3m(ref_kalign.Kalign(binary_path=KALIGN).align([a, b])).sequences
  assert list(ours) == list(ref)
  assert ours[0].replace('-', '') == a and ours[1].replace('-', '') == b


def test_kalign_missing_binary_names_the_flag(monkeypatch):
  with pytest.raises(ToolError, match='--kalign_binary_path'):
    kalign.align_pair('MKVLAA', 'MKVLAG', binary_path='/nonexistent/kalign')
  monkeypatch.setenv('PATH', '')
  with pytest.raises(ToolError, match='apt-get install kalign.*--kalign_binary_path'):
    kalign.align_pair('MKVLAA', 'MKVLAG')
