"""Per-recycle progress from inside the compiled recycling loop (af_jax.model.progress).

A Predictor with report_progress=True reports one RecycleProgress per iteration, with
numbers that match the outputs of the last one, from a single device of a DAP mesh, and
its outputs are bit-identical to those of a Predictor without progress.
"""

import jax
import numpy as np
import pytest

from af_jax import params as af_params
from af_jax.inference import Predictor
from af_jax.model import progress
from af_jax.model.build import build_model
from af_jax.parallel import make_mesh
from tests.model.tiny import random_batch, random_multimer_batch, tiny_config, \
    tiny_multimer_config


@pytest.fixture(scope='module')
def flat():
  cfg = tiny_config(**{'model.global_config.zero_init': False})
  return af_params.module_to_flat(build_model(cfg.model, seed=1))


def _predict(predictor: Predictor, batch: dict, **kwargs) -> tuple[dict, list]:
  seen = []
  with progress.listen(seen.append):
    out = predictor.predict_processed(batch, **kwargs)
  return out, seen


def _assert_same(a: dict, b: dict, prefix: str = '') -> None:
  assert a.keys() == b.keys(), prefix
  for k in a:
    if isinstance(a[k], dict):
      _assert_same(a[k], b[k], f'{prefix}/{k}')
    else:
      np.testing.assert_array_equal(a[k], b[k], err_msg=f'{prefix}/{k}')


@pytest.mark.parametrize('dap', [1, 4])
def test_one_report_per_recycle_and_identical_outputs(flat, dap):
  cfg = tiny_config(**{'model.global_config.zero_init': False,
                       'model.recycle_early_stop_tolerance': 0.0})
  mesh = make_mesh(dap) if dap > 1 else None
  batch = random_batch(seed=5)
  predictor = Predictor(cfg, flat, mesh=mesh)
  plain, seen = _predict(predictor, batch)
  assert seen == []  # without report_progress nothing leaves the loop
  assert predictor.with_progress(False) is predictor
  out, seen = _predict(predictor.with_progress(True), batch)
  _assert_same(plain, out)
  # One report per iteration, from one device (not one per device of the mesh), in order.
  assert [p.recycle for p in seen] == [0, 1, 2, 3]
  assert {p.num_recycle for p in seen} == {3}
  last = seen[-1]
  np.testing.assert_allclose(last.mean_plddt, out['mean_plddt'], rtol=1e-5)
  np.testing.assert_allclose(last.ptm, out['ptm'], rtol=1e-5)
  np.testing.assert_allclose(last.ca_change, out['tol'], rtol=1e-5)
  assert np.isnan(seen[0].ca_change) and all(p.ca_change >= 0 for p in seen[1:])
  assert all(0 < p.mean_plddt < 100 and 0 < p.ptm <= 1 and p.iptm is None for p in seen)
  assert seen[1].describe().startswith('recycle 1/3: pLDDT ')


def test_early_stop_reports_the_iterations_run(flat):
  cfg = tiny_config(**{'model.global_config.zero_init': False,
                       'model.recycle_early_stop_tolerance': 1e6})
  out, seen = _predict(Predictor(cfg, flat, report_progress=True), random_batch(seed=5))
  assert out['num_recycles'] == 1
  assert [p.recycle for p in seen] == [0, 1]


def test_no_pae_head_no_ptm():
  cfg = tiny_config('model_1', **{'model.global_config.zero_init': False})
  weights = af_params.module_to_flat(build_model(cfg.model, seed=1))
  _, seen = _predict(Predictor(cfg, weights, report_progress=True), random_batch(seed=5))
  assert len(seen) == 4 and all(p.ptm is None for p in seen)
  assert 'pTM' not in seen[-1].describe()


def test_multimer_reports_iptm():
  cfg = tiny_multimer_config(**{'model.global_config.zero_init': False,
                                'model.recycle_early_stop_tolerance': 0.0})
  weights = af_params.module_to_flat(build_model(cfg.model, seed=3))
  batch = random_multimer_batch(seed=0, chain_lengths=(9, 9, 7))
  plain, _ = _predict(Predictor(cfg, weights), batch, random_seed=2)
  out, seen = _predict(Predictor(cfg, weights, report_progress=True), batch, random_seed=2)
  _assert_same(plain, out)
  assert [p.recycle for p in seen] == list(range(int(cfg.model.num_recycle) + 1))
  np.testing.assert_allclose(seen[-1].iptm, out['iptm'], rtol=1e-5)
  np.testing.assert_allclose(seen[-1].ptm, out['ptm'], rtol=1e-5)
  assert 'ipTM ' in seen[-1].describe()


def test_without_a_listener_the_module_logger_gets_the_line(flat, caplog):
  cfg = tiny_config(**{'model.global_config.zero_init': False})
  predictor = Predictor(cfg, flat, report_progress=True)
  with caplog.at_level('INFO', logger=progress.__name__):
    jax.block_until_ready(predictor.predict_processed(random_batch(seed=6))['plddt'])
  lines = [r.getMessage() for r in caplog.records if r.name == progress.__name__]
  assert [line.split(':')[0] for line in lines] == [f'recycle {r}/3' for r in range(4)]
