"""Two processes (4 fake CPU devices each) fold one protein with dap=8 across both.

They join through `jax.distributed.initialize()` on a loopback coordinator and run
the collectives over CPU (gloo); the result equals one process on one device, within
a multiple of that result's own spread under a one-ulp change of the parameters
(tests/tolerance.py).
"""

import socket
import subprocess
import sys

import numpy as np

from af_jax.inference import Predictor
from tests import tolerance
from tests.parallel import multihost_case

ROOT = __file__.rsplit('/tests/', 1)[0]


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


def test_two_processes_match_one(tmp_path):
  port, out = _free_port(), tmp_path / 'dap8.npz'
  procs = [subprocess.Popen([sys.executable, '-m', 'tests.parallel.multihost_child', str(port),
                             str(i), str(out)], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True) for i in range(2)]
  logs = [p.communicate(timeout=600)[0] for p in procs]
  for p, log in zip(procs, logs):
    assert p.returncode == 0, log[-3000:]
  cfg, params, batch = multihost_case.case()
  predictor = Predictor(cfg, params)
  want = multihost_case.summary(predictor.predict_processed(batch))
  assert np.abs(want['pos']).max() > 1.0
  spread = tolerance.predictor_spread(predictor, batch, multihost_case.summary)
  tolerance.assert_close(dict(np.load(out)), want, spread, what='dap=8 over 2 processes')
