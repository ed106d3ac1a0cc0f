"""Fold a processed feature file and write a PDB plus confidences.

  python examples/fold_processed.py --features examples/2q2k_A.processed.npz \
      --preset model_1_ptm --params /path/params_model_1_ptm.npz --output_dir out/

Without --params the weights are drawn at random (--random_params): the run
then exercises the whole model, but the structure means nothing. Any config
value can be overridden, e.g. --config.model.num_recycle=1.
"""

import json
import os
import sys
import time

import numpy as np
from absl import app, flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import af_jax  # noqa: E402
from af_jax import cli  # noqa: E402
from af_jax import params as af_params  # noqa: E402
from af_jax.common import protein  # noqa: E402
from af_jax.errors import InputError  # noqa: E402
from af_jax.inference import build_model  # noqa: E402

flags.DEFINE_string('features', None, 'Processed features (.npz), leading axis one slice '
                    'per recycle.', required=True)
flags.DEFINE_string('preset', 'model_1_ptm', f'One of {", ".join(af_jax.PRESETS)}.')
flags.DEFINE_string('params', None, 'AlphaFold params_<preset>.npz. Required unless '
                    '--random_params.')
flags.DEFINE_bool('random_params', False, 'Use random weights (smoke test only; '
                  'ignored when --params is given).')
flags.DEFINE_string('output_dir', 'out', 'Where the PDB and confidence JSON go.')
FLAGS = flags.FLAGS


def _write_atomic(path: str, text: str) -> None:
  tmp = f'{path}.tmp-{os.getpid()}'
  with open(tmp, 'w') as f:
    f.write(text)
  os.replace(tmp, path)


def main(argv) -> None:
  del argv
  cfg = af_jax.model_config(FLAGS.preset)
  cli.apply_overrides(cfg, OVERRIDES)
  try:
    batch = dict(np.load(FLAGS.features))
  except (OSError, ValueError) as e:
    raise InputError(f'cannot read --features {FLAGS.features!r} ({e}); pass a .npz of '
                     'processed features') from None
  if FLAGS.params:
    params = af_jax.load_params(FLAGS.params)
  elif FLAGS.random_params:
    # Random output layers too (AlphaFold zero-initialises them, which would
    # put every atom at the origin).
    cfg.model.global_config.zero_init = False
    params = af_params.module_to_flat(build_model(cfg.model))
    print('warning: random weights; the structure is meaningless', file=sys.stderr)
  else:
    raise InputError('no weights: pass --params params_<preset>.npz or --random_params')
  start = time.time()
  out = af_jax.Predictor(cfg, params).predict_processed(batch)
  seconds = time.time() - start
  sm = out['structure_module']
  plddt = out['plddt']
  prot = protein.Protein(
      atom_positions=sm['final_atom_positions'], atom_mask=sm['final_atom_mask'],
      aatype=batch['aatype'][0], residue_index=batch['residue_index'][0] + 1,
      b_factors=np.repeat(plddt[:, None], 37, axis=1))
  os.makedirs(FLAGS.output_dir, exist_ok=True)
  pdb_path = os.path.join(FLAGS.output_dir, f'unrelaxed_{FLAGS.preset}.pdb')
  _write_atomic(pdb_path, protein.to_pdb(prot))
  conf = {'plddt': [round(float(x), 2) for x in plddt], 'mean_plddt': float(out['mean_plddt']),
          'num_recycles': out['num_recycles'], 'seconds': round(seconds, 1)}
  if 'ptm' in out:
    conf['ptm'] = float(out['ptm'])
  conf_path = os.path.join(FLAGS.output_dir, f'confidence_{FLAGS.preset}.json')
  _write_atomic(conf_path, json.dumps(conf))
  print(f'wrote {pdb_path} and {conf_path}: mean pLDDT {conf["mean_plddt"]:.1f}, '
        f'{out["num_recycles"]} recycles, {seconds:.1f} s')


OVERRIDES: dict[str, str] = {}


def entry(argv: list[str]) -> None:
  rest, overrides = cli.split_config_overrides(argv)
  OVERRIDES.update(overrides)
  app.run(main, argv=rest)


if __name__ == '__main__':
  cli.run_main(entry)
