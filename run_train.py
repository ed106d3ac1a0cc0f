"""Train or fine-tune AlphaFold2 on mmCIF structures and precomputed MSAs (OpenFold's layout).

  python run_train.py --config=finetune --mmcif_dir=mmcifs --alignment_dir=alignments \\
      --output_dir=runs/ft1 --num_steps=1000 --init_params=/data/alphafold/params

Each chain is `<alignment_dir>/<pdb_id>_<chain_id>/` (a3m/sto MSAs) with its structure in
`<mmcif_dir>/<pdb_id>.cif[.gz]`. `--config` is a training preset (initial, finetune, small) or
a file `path.py[:arg]` with `get_config(arg)` (e.g. configs/train.py:finetune); any key can be
overridden: --config.optimizer.learning_rate=5e-4 --config.model_preset=model_3_ptm
--config.model.embeddings_and_evoformer.evoformer_num_block=2.

Outputs in --output_dir: metrics.jsonl (one JSON object per step: loss, each loss term,
learning_rate, grad_norm, skipped, step_time_s, ...), checkpoints/<step>/ (the newest
checkpoint.keep of them), config.json, and params/params_<model_preset>.npz (the EMA weights,
for run_inference.py --params_dir=<output_dir> or AlphaFold). Running the same command again
resumes from the newest checkpoint and continues to --num_steps; a checkpoint that
no longer restores (a damaged file) is renamed aside to checkpoints/<step>.broken
with a warning, and the run resumes from the newest one that restores. --num_steps
below the newest checkpoint's step is an error (training does not go back).

SIGINT (Ctrl-C) or SIGTERM (a scheduler's preemption) during the steps saves a
checkpoint once the step in flight is done, then exits with status 130 or 143 and
one line on stderr; the same command resumes from it. A second signal stops at once,
without that checkpoint.
Bad input ends with one line on stderr and exit status 2.
"""

import os
import sys

from absl import app, flags, logging

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from af_jax.errors import ConfigError  # noqa: E402
from af_jax.run import cli  # noqa: E402
from af_jax.train import interrupt  # noqa: E402
from configs import overrides as config_overrides  # noqa: E402

flags.DEFINE_string('config', 'initial', 'Training preset (initial, finetune, small) or a '
                    'config file path.py[:arg] whose get_config(arg) returns a training config. '
                    'Override keys with --config.<key>=<value>; --config.model_preset changes the '
                    'architecture (and the params file --init_params looks for).')
flags.DEFINE_string('mmcif_dir', None, 'Directory of <pdb_id>.cif[.gz] training structures.')
flags.DEFINE_string('alignment_dir', None, 'Directory of <pdb_id>_<chain_id>/ folders of '
                    'MSAs (a3m, sto; and .hhr hits with --config.data.common.use_templates).')
flags.DEFINE_string('output_dir', None, 'Checkpoints, metrics.jsonl, config.json and the '
                    'exported params go here; an existing run there is resumed.')
flags.DEFINE_integer('num_steps', None, 'Train until this many batches have been consumed '
                     '(a resumed run continues to the same total; less than the newest '
                     'checkpoint\'s step is an error).')
flags.DEFINE_string('init_params', None, 'Start from AlphaFold weights: a params_model_*.npz '
                    'or a directory holding params_<model_preset>.npz (or params/...). '
                    'Default: random initialisation. Ignored when resuming.')
flags.DEFINE_string('chain_data_cache_path', None, "OpenFold's chain_data_cache.json or "
                    'mmcif_cache.json, to filter chains without parsing every mmCIF.')
flags.DEFINE_string('template_mmcif_dir', None, 'Template structures, <pdb_id>.cif[.gz] (with '
                    '--config.data.common.use_templates=true).')
flags.DEFINE_string('kalign_binary_path', None, 'Default: kalign on PATH (template realignment).')
flags.DEFINE_string('obsolete_pdbs_path', None, "AlphaFold's obsolete.dat (optional).")
flags.DEFINE_integer('dap', 1, 'Devices sharing each example (Dynamic Axial Parallelism); the '
                     'other mesh axis, data, holds --data_parallel groups of this size.')
flags.DEFINE_integer('data_parallel', None, 'DAP groups training on different examples '
                     '(default: all devices / --dap). Each gets '
                     'data.data_module.data_loaders.batch_size examples per step.')
flags.DEFINE_bool('export', True, 'Write the EMA parameters to '
                  '<output_dir>/params/params_<model_preset>.npz at the end.')
cli.define_compile_cache_flags()
cli.define_distributed_flags()
FLAGS = flags.FLAGS
# --help lists the flags under these headings, in this order.
FLAG_GROUPS = (
    ('Inputs and outputs', ('mmcif_dir', 'alignment_dir', 'chain_data_cache_path',
                            'template_mmcif_dir', 'kalign_binary_path', 'obsolete_pdbs_path',
                            'output_dir', 'export')),
    ('Model and training', ('config', 'init_params', 'num_steps')),
    ('Memory and devices', ('dap', 'data_parallel')),
    ('Compilation cache and XLA', cli.COMPILE_CACHE_FLAGS),
    ('Many hosts', cli.DISTRIBUTED_FLAGS),
)

OVERRIDES: dict[str, str] = {}


def main(argv) -> None:
  if len(argv) > 1:
    raise ConfigError(f'unexpected arguments {argv[1:]}; every input is a --flag')
  cli.configure_logging()
  for name in ('mmcif_dir', 'alignment_dir', 'output_dir', 'num_steps'):
    if FLAGS[name].value is None:
      raise ConfigError(f'--{name} is required')
  cli.configure_compile_cache(FLAGS)
  if cli.initialize_distributed(FLAGS):
    import jax
    logging.info('process %d of %d, %d devices in all', jax.process_index(), jax.process_count(),
                 jax.device_count())
  from af_jax.train import trainer
  cfg = trainer.load_config(FLAGS.config, OVERRIDES)
  options = trainer.TrainOptions(
      alignment_dir=FLAGS.alignment_dir, mmcif_dir=FLAGS.mmcif_dir, output_dir=FLAGS.output_dir,
      num_steps=FLAGS.num_steps, init_params=FLAGS.init_params, dap=FLAGS.dap,
      data_parallel=FLAGS.data_parallel, chain_data_cache_path=FLAGS.chain_data_cache_path,
      template_mmcif_dir=FLAGS.template_mmcif_dir, kalign_binary_path=FLAGS.kalign_binary_path,
      obsolete_pdbs_path=FLAGS.obsolete_pdbs_path, export=FLAGS.export)
  trainer.train(cfg, options)


def entry(argv: list[str]) -> None:
  rest, overrides = config_overrides.split_config_overrides(argv)
  cli.exit_on_help(rest, __doc__, FLAG_GROUPS)
  OVERRIDES.update(overrides)
  app.run(main, argv=rest)


if __name__ == '__main__':
  with interrupt.raise_on_signals():
    try:
      cli.run_main(entry)
    except interrupt.Interrupted as e:
      print(f'error: {e}', file=sys.stderr)
      sys.exit(e.exit_status)
