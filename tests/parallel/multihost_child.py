"""One process of the two-process DAP test: fold a random batch with dap=8 over both.

Usage: python -m tests.parallel.multihost_child PORT PROCESS_ID OUT.npz
Each process has 4 fake CPU devices; together they form one dap=8 mesh.
"""

import os
import sys

os.environ['XLA_FLAGS'] = '--xla_force_host_platform_device_count=4'

import jax  # noqa: E402
import numpy as np  # noqa: E402

from af_jax.inference import Predictor  # noqa: E402
from af_jax.parallel import distributed, make_mesh  # noqa: E402
from tests.parallel import multihost_case  # noqa: E402


def main(port: str, process_id: str, out_path: str) -> None:
  distributed.initialize(f'127.0.0.1:{port}', 2, int(process_id))
  assert jax.device_count() == 8 and jax.local_device_count() == 4, jax.devices()
  cfg, params, batch = multihost_case.case()
  predictor = Predictor(cfg, params, mesh=make_mesh(8, data=1))
  out = predictor.predict_processed(batch)
  if jax.process_index() == 0:
    np.savez(out_path, **multihost_case.summary(out))
  jax.distributed.shutdown()


if __name__ == '__main__':
  main(*sys.argv[1:])
