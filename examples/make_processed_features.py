"""Regenerate examples/2q2k_A.processed.npz (needs the `test` extra).

Until af_jax's own data pipeline lands, the example's processed features are
built by the reference pipeline (alphafold-colabfold, TensorFlow-free) from
2Q2K chain A's real MSAs in ../shared/data, with the chain itself as template.

  python examples/make_processed_features.py
"""

import os
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from alphafold.model import config as ref_config  # noqa: E402
from alphafold.model import model as ref_model  # noqa: E402

from tests.parity.ref_features import raw_features  # noqa: E402

# Small MSA buckets keep the example quick on a laptop CPU; the model itself
# is the full preset.
OVERRIDES = {'data.eval.max_msa_clusters': 64, 'data.common.max_extra_msa': 256}


def main() -> None:
  cfg = ref_config.model_config('model_1_ptm')
  cfg.update_from_flattened_dict(OVERRIDES)
  batch = ref_model.RunModel(cfg).process_features(raw_features(True), random_seed=0)
  out = os.path.join(ROOT, 'examples', '2q2k_A.processed.npz')
  np.savez_compressed(out, **{k: np.asarray(v) for k, v in batch.items()
                              if np.asarray(v).dtype != object})
  print(f'wrote {out}: ' + ', '.join(f'{k}{tuple(np.shape(v))}' for k, v in sorted(batch.items())))


if __name__ == '__main__':
  main()
