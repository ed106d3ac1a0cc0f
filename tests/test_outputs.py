"""Result files: AlphaFold DB JSON formats, unpadding, ranking, completeness, plots."""

import json
import pickle

import numpy as np
import pytest
from alphafold.notebooks import notebook_utils as ref_notebook_utils

from af_jax.run import outputs, plots
from af_jax.common import confidence, protein
from af_jax.errors import InputError
from af_jax.model import kind as model_kind


def test_confidence_json_is_alphafolds():
  # DeepMind's own expected text (alphafold/common/confidence_test.py upstream; the
  # reference package installed here lacks confidence.confidence_json).
  assert outputs.confidence_json(np.array([42, 42.42])) == (
      '{"residueNumber":[1,2],"confidenceScore":[42.0,42.42],"confidenceCategory":["D","D"]}')
  # AlphaFold bands the unrounded score: 49.996 is written as 50.0 yet stays D.
  plddt = np.array([49.996, 50.0, 69.99, 70.0, 89.999, 90.0, 97.126], np.float32)
  data = json.loads(outputs.confidence_json(plddt))
  assert data['residueNumber'] == [1, 2, 3, 4, 5, 6, 7]
  assert data['confidenceScore'] == [round(float(s), 2) for s in plddt]
  assert data['confidenceCategory'] == ['D', 'L', 'L', 'M', 'M', 'H', 'H']


@pytest.mark.parametrize('dtype', [np.float32, np.float64])
def test_pae_json_is_alphafolds(dtype):
  rng = np.random.default_rng(0)
  # Values near the 1-decimal rounding edges as well as random ones.
  pae = np.concatenate([rng.uniform(0, 31.75, 33), np.arange(6) + 0.05,
                        np.arange(6) + 0.95, [0.0, 31.75, 31.749, 12.25]])
  pae = rng.permutation(pae).reshape(7, 7).astype(dtype)
  max_pae = dtype(31.75)
  # run_alphafold.py passes float(max_predicted_aligned_error) to pae_json, whose body
  # the reference package ships as notebook_utils.get_pae_json.
  assert outputs.pae_json(pae, max_pae) == ref_notebook_utils.get_pae_json(pae, float(max_pae))
  assert outputs.pae_json(pae, 31.0) == ref_notebook_utils.get_pae_json(pae, 31.0)
  # DeepMind's own expected text (alphafold/common/confidence_test.py upstream).
  assert outputs.pae_json(np.array([[0.01, 13.12345], [20.0987, 0.0]]), 31.75) == (
      '[{"predicted_aligned_error":[[0.0,13.1],[20.1,0.0]],'
      '"max_predicted_aligned_error":31.75}]')


def _fake_prediction(n_res, n_seq=3, rng=None):
  rng = rng or np.random.default_rng(0)
  r = lambda *s: rng.normal(size=s).astype(np.float32)  # noqa: E731
  return {
      'aligned_confidence_probs': r(n_res, n_res, 64),
      'distogram': {'bin_edges': r(63), 'logits': r(n_res, n_res, 64)},
      'experimentally_resolved': {'logits': r(n_res, 37)},
      'masked_msa': {'logits': r(n_seq, n_res, 23)},
      'max_predicted_aligned_error': np.float32(31.75),
      'plddt': rng.uniform(0, 100, n_res).astype(np.float32),
      'predicted_aligned_error': r(n_res, n_res),
      'predicted_aligned_error_head': {'breaks': r(63), 'logits': r(n_res, n_res, 64)},
      'predicted_lddt': {'logits': r(n_res, 50)},
      'ptm': np.float32(0.5),
      'representations': {'msa': r(n_seq, n_res, 8), 'msa_first_row': r(n_res, 8),
                          'pair': r(n_res, n_res, 4), 'single': r(n_res, 8),
                          'structure_module': r(n_res, 8)},
      'structure_module': {
          'final_affines': r(n_res, 7), 'final_atom14_mask': r(n_res, 14),
          'final_atom14_positions': r(n_res, 14, 3), 'final_atom_mask': np.ones((n_res, 37)),
          'final_atom_positions': r(n_res, 37, 3),
          'sidechains': {'angles_sin_cos': r(2, n_res, 7, 2), 'atom_pos': r(2, n_res, 14, 3),
                         'frames': r(2, n_res, 8, 12)},
          'traj': r(2, n_res, 7)},
      'num_recycles': 3,
  }


def test_unpad_prediction_cuts_every_residue_axis_and_nothing_else():
  padded = _fake_prediction(9)
  out = outputs.unpad_prediction(padded, 6)

  def check(a, b, path=()):
    if isinstance(a, dict):
      for k in a:
        check(a[k], b[k], path + (k,))
      return
    a, b = np.asarray(a), np.asarray(b)
    axes = outputs.residue_axes(path)
    expected = tuple(6 if i in axes else s for i, s in enumerate(a.shape))
    assert b.shape == expected, (path, b.shape, expected)
    np.testing.assert_array_equal(b, a[tuple(slice(0, n) for n in expected)])
  check(padded, out)
  # Every [.., N_res, ..] output was cut (the fake uses 9 residues, no other axis is 9).
  def sizes(tree):
    if isinstance(tree, dict):
      return [s for v in tree.values() for s in sizes(v)]
    return list(np.shape(tree))
  assert 9 not in sizes(out)


def _protein(n, plddt):
  rng = np.random.default_rng(1)
  return protein.Protein(atom_positions=rng.normal(size=(n, 37, 3)) * 5,
                         atom_mask=np.ones((n, 37)), aatype=rng.integers(0, 20, n),
                         residue_index=np.arange(1, n + 1), b_factors=np.full((n, 37), plddt))


def test_ranking_orders_by_plddt_and_marks_completion(tmp_path):
  out = _fake_prediction(4)
  scores = {'model_1_ptm_pred_0': 60.0, 'model_2_ptm_pred_0': 80.0}
  prots = {name: _protein(4, s) for name, s in scores.items()}
  assert not outputs.is_complete(tmp_path)
  for name in scores:
    outputs.write_prediction(tmp_path, name, out, prots[name])
  assert not outputs.is_complete(tmp_path)
  order = outputs.write_ranking(tmp_path, scores, prots, random_params=True)
  assert order == ['model_2_ptm_pred_0', 'model_1_ptm_pred_0']
  ranking = json.loads((tmp_path / 'ranking_debug.json').read_text())
  assert ranking['order'] == order and ranking['plddts'] == scores
  assert 'RANDOM' in ranking['params']
  assert (tmp_path / 'ranked_0.pdb').read_text() == protein.to_pdb(prots['model_2_ptm_pred_0'])
  assert outputs.is_complete(tmp_path)
  result = pickle.loads((tmp_path / 'result_model_1_ptm_pred_0.pkl').read_bytes())
  np.testing.assert_array_equal(result['plddt'], out['plddt'])
  assert not list(tmp_path.glob('.*tmp*'))
  (tmp_path / 'ranked_1.pdb').unlink()
  assert not outputs.is_complete(tmp_path)


def test_structure_files_name_the_target_and_model(tmp_path):
  target_dir = tmp_path / 'T1050'
  target_dir.mkdir()
  mono, prot = _fake_prediction(4), _protein(4, 70.0)
  outputs.write_prediction(target_dir, 'model_1_ptm_pred_0', mono, prot)
  out, feats = _fake_multimer((3, 4))
  cplx = outputs.prediction_protein(out, feats['aatype'], feats['residue_index'],
                                    asym_id=feats['asym_id'])
  outputs.write_prediction(target_dir, 'model_1_multimer_v3_pred_0', out, cplx)
  outputs.write_ranking(target_dir, {'model_1_ptm_pred_0': 1.0}, {'model_1_ptm_pred_0': prot})
  for path, name, p, kind in [
      ('unrelaxed_model_1_ptm_pred_0.cif', 'model_1_ptm_pred_0', prot, 'Monomer'),
      ('ranked_0.cif', 'model_1_ptm_pred_0', prot, 'Monomer'),
      ('unrelaxed_model_1_multimer_v3_pred_0.cif', 'model_1_multimer_v3_pred_0', cplx,
       'Multimer')]:
    text = (target_dir / path).read_text()
    assert text == protein.to_mmcif(p, model_name=name, target_name='T1050', model_type=kind)
    assert text.startswith('data_T1050\n')
    assert f'AlphaFold {kind} prediction for T1050 ({name})' in text


def test_plots_are_png(tmp_path):
  rng = np.random.default_rng(0)
  plots.plot_plddt(tmp_path / 'plddt.png', {'a': rng.uniform(0, 100, 30)}, 't')
  plots.plot_pae(tmp_path / 'pae.png', {'a': rng.uniform(0, 30, (30, 30)),
                                        'b': rng.uniform(0, 30, (30, 30))}, 't')
  for name in ('plddt.png', 'pae.png'):
    assert (tmp_path / name).read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'


@pytest.mark.parametrize('bad', [b'', b'{"order": ['])
def test_broken_ranking_file_is_incomplete(tmp_path, bad):
  (tmp_path / 'ranking_debug.json').write_bytes(bad)
  assert not outputs.is_complete(tmp_path)


# ---------------------------------------------------------------------------
# Complexes: chains from asym_id, per-chain and interface confidence, ranking by
# ranking_confidence, plots with chain boundaries.

def _fake_multimer(lengths, seed=0):
  """A random multimer prediction and its features (asym_id from 1, float as AlphaFold's)."""
  rng = np.random.default_rng(seed)
  n = sum(lengths)
  out = _fake_prediction(n, rng=rng)
  head = out['predicted_aligned_error_head']
  head['breaks'] = np.linspace(0.0, 31.0, 63).astype(np.float32)
  head['logits'] = (rng.normal(size=(n, n, 64))
                    - np.linspace(0, 40, 64) * rng.uniform(0, 1, (n, n, 1))).astype(np.float32)
  out['structure_module']['final_atom_mask'] = (
      rng.uniform(size=(n, 37)) < 0.6).astype(np.float32)
  out['structure_module']['final_atom_mask'][:, 1] = 1  # every residue has its CA
  out['iptm'], out['ptm'] = np.float32(rng.uniform()), np.float32(rng.uniform())
  out['ranking_confidence'] = 0.8 * out['iptm'] + 0.2 * out['ptm']
  feats = {'asym_id': np.repeat(np.arange(1, len(lengths) + 1), lengths).astype(np.float32),
           'residue_index': np.concatenate([np.arange(k) for k in lengths]),
           'aatype': rng.integers(0, 21, n)}
  return out, feats


def test_prediction_protein_of_a_complex():
  out, feats = _fake_multimer((6, 9, 4))
  prot = outputs.prediction_protein(out, feats['aatype'], feats['residue_index'],
                                    asym_id=feats['asym_id'])
  assert prot.chain_ids == ('A', 'B', 'C')
  np.testing.assert_array_equal(prot.chain_index, np.repeat([0, 1, 2], [6, 9, 4]))
  np.testing.assert_array_equal(prot.residue_index, feats['residue_index'] + 1)
  np.testing.assert_array_equal(prot.b_factors[:, 1], out['plddt'])
  text = protein.to_pdb(prot)
  assert sorted({line[21] for line in text.splitlines() if line.startswith('ATOM')}) == [
      'A', 'B', 'C']
  back = protein.from_pdb_string(text, 'B')
  np.testing.assert_array_equal(back.residue_index, np.arange(1, 10))
  np.testing.assert_allclose(back.atom_positions,
                             prot.atom_positions[6:15] * prot.atom_mask[6:15, :, None], atol=1e-3)
  # asym_id order names the chains, whatever the values; chain_ids= renames them.
  named = outputs.prediction_protein(out, feats['aatype'], feats['residue_index'],
                                     asym_id=feats['asym_id'] * 10, chain_ids=['H', 'L', 'X'])
  assert named.chain_ids == ('H', 'L', 'X')
  np.testing.assert_array_equal(named.chain_index, prot.chain_index)
  with pytest.raises(InputError, match='padding'):
    outputs.chain_index_from_asym_id(np.append(feats['asym_id'], [0, 0]))
  # Without asym_id: one chain, as before.
  mono = outputs.prediction_protein(out, feats['aatype'], np.arange(19), chain_id='B')
  assert mono.chain_ids == ('B',) and not mono.chain_index.any()


def test_complex_confidence_json(tmp_path):
  lengths = (20, 30, 25)
  out, feats = _fake_multimer(lengths, seed=1)
  prot = outputs.prediction_protein(out, feats['aatype'], feats['residue_index'],
                                    asym_id=feats['asym_id'])
  outputs.write_prediction(tmp_path, 'model_1_multimer_v3_pred_0', out, prot)
  data = json.loads((tmp_path / 'confidence_model_1_multimer_v3_pred_0.json').read_text())
  # AlphaFold DB's per-residue lists, over the whole complex.
  mono = json.loads(outputs.confidence_json(out['plddt']))
  assert {k: data[k] for k in mono} == mono
  assert data['chainId'] == ['A'] * 20 + ['B'] * 30 + ['C'] * 25
  assert data['chainResidueNumber'] == [i + 1 for k in lengths for i in range(k)]
  assert data['chain_ids'] == ['A', 'B', 'C']
  bounds = np.cumsum((0,) + lengths)
  np.testing.assert_allclose(data['chain_mean_plddt'],
                             [out['plddt'][a:b].mean() for a, b in zip(bounds, bounds[1:])],
                             atol=0.005)
  head = out['predicted_aligned_error_head']
  chain_index = np.repeat([0, 1, 2], lengths)
  pair = np.asarray(confidence.chain_pair_tm_scores(head['logits'], head['breaks'],
                                                    chain_index, 3))
  np.testing.assert_allclose(data['chain_pair_iptm'], pair, atol=5e-5)
  np.testing.assert_allclose(data['chain_ptm'], np.diag(pair), atol=5e-5)
  for i in range(3):
    np.testing.assert_allclose(
        data['chain_ptm'][i], confidence.predicted_tm_score(
            head['logits'], head['breaks'], (chain_index == i).astype(np.float32)), atol=5e-5)
  assert pair.min() > 0.1 and not np.allclose(pair, pair.T, atol=0.01)  # not degenerate
  for key in ('iptm', 'ptm', 'ranking_confidence'):
    assert data[key] == pytest.approx(float(out[key]), abs=5e-5)
  # The structure files name the chains as the JSON does.
  cif = (tmp_path / 'unrelaxed_model_1_multimer_v3_pred_0.cif').read_text()
  for c in 'ABC':
    assert protein.from_mmcif_string(cif, c).aatype.shape == (lengths['ABC'.index(c)],)
  with pytest.raises(InputError, match='unpad'):
    outputs.complex_confidence(outputs.unpad_prediction(out, 70), prot)


def test_complex_confidence_of_two_chains_has_the_models_iptm():
  out, feats = _fake_multimer((22, 31), seed=2)
  head = out['predicted_aligned_error_head']
  out['iptm'] = np.asarray(confidence.predicted_tm_score(head['logits'], head['breaks'],
                                                         asym_id=feats['asym_id']))
  prot = outputs.prediction_protein(out, feats['aatype'], feats['residue_index'],
                                    asym_id=feats['asym_id'])
  data = outputs.complex_confidence(out, prot)
  pair = np.array(data['chain_pair_iptm'])
  assert max(pair[0, 1], pair[1, 0]) == pytest.approx(data['iptm'], abs=1e-4)


def test_monomer_confidence_file_is_unchanged(tmp_path):
  out = _fake_prediction(5)
  outputs.write_prediction(tmp_path, 'm', out, _protein(5, 70.0))
  assert (tmp_path / 'confidence_m.json').read_text() == outputs.confidence_json(out['plddt'])


def test_multimer_ranking_by_ranking_confidence(tmp_path):
  names = [f'model_{i}_multimer_v3_pred_0' for i in (1, 2, 3)]
  prots, scores = {}, {}
  for seed, name in enumerate(names):
    out, feats = _fake_multimer((5, 8), seed=seed)
    prots[name] = outputs.prediction_protein(out, feats['aatype'], feats['residue_index'],
                                             asym_id=feats['asym_id'])
    scores[name] = float(out['ranking_confidence'])
    outputs.write_prediction(tmp_path, name, out, prots[name])
  assert not outputs.is_complete(tmp_path)
  order = outputs.write_ranking(tmp_path, scores, prots,
                                score_label=model_kind.MULTIMER.score_label)
  assert order == sorted(scores, key=scores.get, reverse=True)
  ranking = json.loads((tmp_path / 'ranking_debug.json').read_text())
  assert ranking == {'iptm+ptm': scores, 'order': order}  # AlphaFold-Multimer's file
  best = (tmp_path / 'ranked_0.pdb').read_text()
  assert best == protein.to_pdb(prots[order[0]])
  assert [line[21] for line in best.splitlines() if line.startswith('TER')] == ['A', 'B']
  assert outputs.is_complete(tmp_path)
  (tmp_path / f'result_{order[2]}.pkl').unlink()
  assert not outputs.is_complete(tmp_path)


def test_plots_with_chain_boundaries(tmp_path):
  rng = np.random.default_rng(0)
  lengths = [12, 20, 8]
  plots.plot_plddt(tmp_path / 'plddt.png', {'a': rng.uniform(0, 100, 40),
                                            'b': rng.uniform(0, 100, 40)}, 't',
                   chain_lengths=lengths)
  plots.plot_pae(tmp_path / 'pae.png', {'a': rng.uniform(0, 30, (40, 40)),
                                        'b': rng.uniform(0, 30, (40, 40))}, 't',
                 chain_lengths=lengths, chain_ids=['H', 'L', 'X'])
  plots.plot_pae(tmp_path / 'plain.png', {'a': rng.uniform(0, 30, (40, 40))}, 't')
  for name in ('plddt.png', 'pae.png', 'plain.png'):
    data = (tmp_path / name).read_bytes()
    assert data[:8] == b'\x89PNG\r\n\x1a\n' and len(data) > 1000
  assert (tmp_path / 'pae.png').read_bytes() != (tmp_path / 'plain.png').read_bytes()
  with pytest.raises(ValueError, match='adding up'):
    plots.plot_pae(tmp_path / 'x.png', {'a': np.zeros((40, 40))}, 't', chain_lengths=[10, 20])
  with pytest.raises(ValueError, match='names 2 chains'):
    plots.plot_plddt(tmp_path / 'x.png', {'a': np.zeros(40)}, 't', chain_lengths=lengths,
                     chain_ids=['A', 'B'])
  assert not (tmp_path / 'x.png').exists()


def test_plots_number_residues_from_one_and_label_what_they_show(tmp_path):
  rng = np.random.default_rng(0)
  n, lengths = 30, [12, 18]
  fig = plots.plot_plddt(tmp_path / 'plddt.png', {'a': rng.uniform(0, 100, n)}, 't',
                         chain_lengths=lengths)
  ax = fig.axes[0]
  assert ax.get_xlim() == (0.5, n + 0.5)
  assert list(ax.get_lines()[0].get_xdata()) == list(range(1, n + 1))
  # The chain boundary sits between residues 12 and 13.
  assert [line.get_xdata()[0] for line in ax.get_lines()[1:]] == [12.5]
  legends = [c for c in ax.get_children() if c.__class__.__name__ == 'Legend']
  texts = {t.get_text() for leg in legends for t in leg.get_texts()}
  assert {'very high (> 90)', 'confident (70-90)', 'low (50-70)', 'very low (< 50)'} <= texts
  assert any(t.startswith('a (') for t in texts)  # the prediction's own legend stays

  fig = plots.plot_pae(tmp_path / 'pae.png', {'m_pred_0': rng.uniform(0, 30, (n, n)),
                                              'm_pred_1': rng.uniform(0, 30, (n, n))}, 't',
                       chain_lengths=lengths,
                       scores={'m_pred_0': {'pTM': 0.4567, 'ipTM': 0.1234},
                               'm_pred_1': {'pTM': 0.5}})
  first, second = fig.axes[:2]
  assert first.images[0].get_extent() == [0.5, n + 0.5, n + 0.5, 0.5]
  ticks = [t for t in first.get_xticks() if 0.5 <= t <= n + 0.5]
  assert min(ticks) >= 1 and max(ticks) <= n
  assert first.get_title() == 'm_pred_0\nipTM 0.123, pTM 0.457'
  assert second.get_title() == 'm_pred_1\npTM 0.500'
  assert 12.5 in [line.get_xdata()[0] for line in first.get_lines()]
  fig = plots.plot_pae(tmp_path / 'plain.png', {'x': np.zeros((n, n))}, 't')
  assert fig.axes[0].get_title() == 'x'
