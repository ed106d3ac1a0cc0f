"""Result files: AlphaFold DB JSON formats, unpadding, ranking, completeness, plots."""

import json
import pickle

import numpy as np
import pytest

from af_jax import outputs, plots
from af_jax.common import protein


def test_confidence_json_bands_and_rounding():
  text = outputs.confidence_json(np.array([49.994, 50.0, 69.99, 70.0, 89.5, 90.0, 97.126]))
  data = json.loads(text)
  assert data['residueNumber'] == [1, 2, 3, 4, 5, 6, 7]
  assert data['confidenceScore'] == [49.99, 50.0, 69.99, 70.0, 89.5, 90.0, 97.13]
  assert data['confidenceCategory'] == ['D', 'L', 'L', 'M', 'M', 'H', 'H']


def test_pae_json_is_alphafold_db_format():
  pae = np.random.default_rng(0).uniform(0, 31.75, (5, 5)).astype(np.float32)
  data = json.loads(outputs.pae_json(pae, 31.75))
  assert isinstance(data, list) and len(data) == 1
  entry = data[0]
  assert set(entry) == {'predicted_aligned_error', 'max_predicted_aligned_error'}
  np.testing.assert_allclose(entry['predicted_aligned_error'], pae, atol=0.005 + 1e-6)
  assert entry['max_predicted_aligned_error'] == 31.75


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
