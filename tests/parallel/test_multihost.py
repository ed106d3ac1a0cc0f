"""Two processes (4 fake CPU devices each) fold one protein with dap=8 across both.

They join through `jax.distributed.initialize()` on a loopback coordinator and run
the collectives over CPU (gloo); the result equals one process on one device.
"""

import socket
import subprocess
import sys

import numpy as np

from af_jax.inference import Predictor
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
  want = multihost_case.summary(Predictor(cfg, params).predict_processed(batch))
  got = np.load(out)
  assert np.abs(want['pos']).max() > 1.0
  for k in want:
    np.testing.assert_allclose(got[k], want[k], rtol=1e-4, atol=1e-4, err_msg=k)
