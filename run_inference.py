"""Fold proteins from FASTA files, as AlphaFold's run_alphafold.py does, on JAX/XLA.

  python run_inference.py --fasta_paths=examples/2q2k_A.fasta --output_dir=out \\
      --params_dir=/data/alphafold --model_preset=monomer_ptm \\
      --msa_mode=precomputed --msa_paths=examples/2q2k_A_msas

  python run_inference.py --fasta_paths=complex.fasta --model_preset=multimer ...

With a monomer preset each FASTA record is one target; with --model_preset=multimer each
FASTA file is one complex (every record a chain, ColabFold's A:B splits a record into
chains), named after the file. Outputs go to <output_dir>/<target name>/
(features.pkl and its pickle-free features.npz, msas/, unrelaxed_*.pdb/.cif,
relaxed_*.pdb/.cif with --models_to_relax,
ranked_*.pdb/.cif, result_*.pkl, relax_metrics.json,
confidence_*.json, pae_*.json, plddt.png, pae.png, timings.json, ranking_debug.json).
Any config value can be overridden: --config.model.embeddings_and_evoformer.evoformer_num_block=2.
Bad input ends with one line on stderr and exit status 2; SIGINT (Ctrl-C) and SIGTERM end
the run with one line and exit status 130 and 143, leaving no temporary files.
"""

import os
import sys

from absl import app, flags, logging

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from af_jax.run import cli  # noqa: E402

if __name__ == '__main__':
  # Before the slower imports, so that even an early Ctrl-C ends with one line.
  cli.exit_on_signals('targets without ranking_debug.json are folded again by the next run')

from af_jax.data import msa_search  # noqa: E402
from af_jax.errors import ConfigError  # noqa: E402
from af_jax.parallel import mesh  # noqa: E402
from af_jax.run import fold, warmup  # noqa: E402
from af_jax.run import options as fold_options  # noqa: E402
from af_jax.run.options import MODEL_PRESETS, FoldOptions  # noqa: E402
from af_jax.run.targets import read_targets  # noqa: E402
from configs import buckets  # noqa: E402
from configs import overrides as config_overrides  # noqa: E402

flags.DEFINE_list('fasta_paths', [], 'FASTA files; every record is one target (names must be '
                  'unique across files). Targets are folded shortest first.')
flags.DEFINE_list('features_paths', [], 'Raw features to fold as they are, instead of (or '
                  'besides) --fasta_paths; the MSA flags do not apply to them. A features.npz '
                  '(af_jax writes one beside each features.pkl) is read without pickle. An '
                  'AlphaFold/ColabFold features.pkl is a pickle, and loading a pickle can run '
                  'any code in it: pass only .pkl files you or a pipeline you trust wrote. '
                  '<dir>/features.pkl (or .npz) is named <dir>, <name>.pkl is named <name>.')
flags.DEFINE_string('output_dir', None, 'Where each target gets its directory. A target whose '
                    'outputs there record the same job (inputs, weights, models, seeds, '
                    'settings) is skipped; any other is folded again, its old outputs replaced.')
flags.DEFINE_string('params_dir', None, 'Directory with params_model_*.npz, or AlphaFold\'s '
                    'data_dir holding params/params_model_*.npz. Required unless --random_params.')
flags.DEFINE_bool('random_params', False, 'Random weights, for a smoke test without the '
                  'AlphaFold parameters: every output then says RANDOM and means nothing.')
flags.DEFINE_enum('model_preset', 'monomer_ptm', list(MODEL_PRESETS),
                  'monomer: model_1..5; monomer_ptm: model_1_ptm..5_ptm (adds PAE and pTM); '
                  'multimer: model_1..5_multimer_v3 (complexes; ranks by 0.8 ipTM + 0.2 pTM). '
                  'Ignored when --model_names is given.')
flags.DEFINE_list('model_names', [], 'Models to run, e.g. model_1_ptm,model_3_ptm (overrides '
                  '--model_preset).')
flags.DEFINE_integer('num_recycle', None, 'Recycling iterations (default: the preset\'s, 3). '
                     'Sets model.num_recycle and data.common.num_recycle together.')
flags.DEFINE_integer('random_seed', 0, 'Seed for MSA sampling and masking; prediction k of '
                     'model m uses random_seed + k * num_models + m.')
flags.DEFINE_integer('num_seeds', 1, 'Predictions per monomer model, each with its own seed '
                     '(<model>_pred_<k>).')
flags.DEFINE_integer('num_multimer_predictions_per_model', 5, 'Predictions per multimer model, '
                     'each with its own MSA-sampling seed (AlphaFold\'s flag and default).')
flags.DEFINE_enum('msa_mode', 'single_sequence', list(msa_search.MODES),
                  'single_sequence: the query alone; precomputed: --msa_paths or files already '
                  'in <output_dir>/<target>/msas; jackhmmer: uniref90 + mgnify (+ small_bfd); '
                  'hhblits: jackhmmer on uniref90/mgnify plus hhblits on bfd + uniref30; '
                  'mmseqs2: mmseqs against --mmseqs_database_path.')
flags.DEFINE_list('msa_paths', [], 'With --msa_mode=precomputed: a3m/sto files (and a pdb70 '
                  '.hhr for templates), or a directory of them, for a single target.')
flags.DEFINE_string('uniref90_database_path', None, 'jackhmmer FASTA database (UniRef90).')
flags.DEFINE_string('uniprot_database_path', None, 'jackhmmer FASTA database (UniProt) searched '
                    'for each chain of a heteromer, to pair MSA rows by species (multimer).')
flags.DEFINE_string('mgnify_database_path', None, 'jackhmmer FASTA database (MGnify).')
flags.DEFINE_string('small_bfd_database_path', None, 'jackhmmer FASTA database (small BFD).')
flags.DEFINE_string('bfd_database_path', None, 'hhblits database prefix (BFD).')
flags.DEFINE_string('uniref30_database_path', None, 'hhblits database prefix (UniRef30).')
flags.DEFINE_string('mmseqs_database_path', None, 'mmseqs2 database (FASTA or createdb).')
flags.DEFINE_string('pdb70_database_path', None, 'hhsearch database prefix for template hits.')
flags.DEFINE_string('jackhmmer_binary_path', None, 'Default: jackhmmer on PATH.')
flags.DEFINE_string('hhblits_binary_path', None, 'Default: hhblits on PATH.')
flags.DEFINE_string('hhsearch_binary_path', None, 'Default: hhsearch on PATH.')
flags.DEFINE_string('mmseqs_binary_path', None, 'Default: mmseqs on PATH.')
flags.DEFINE_string('kalign_binary_path', None, 'Default: kalign on PATH (template realignment).')
flags.DEFINE_integer('n_cpu', 2, 'Threads for each search binary.')
flags.DEFINE_float('search_timeout', 3600.0, 'Seconds allowed for each search binary run.')
flags.DEFINE_bool('use_templates', False, 'Featurize template hits (pdb_hits.hhr from '
                  '--pdb70_database_path or --msa_paths) from --template_mmcif_dir. Only models '
                  '1 and 2 read templates.')
flags.DEFINE_string('template_mmcif_dir', None, 'Template structures, <pdb_id>.cif[.gz].')
flags.DEFINE_string('max_template_date', '9999-12-31', 'YYYY-MM-DD: skip templates released '
                    'after it (use the target\'s date to benchmark honestly).')
flags.DEFINE_string('obsolete_pdbs_path', None, 'AlphaFold\'s obsolete.dat (optional).')
flags.DEFINE_list('buckets', [str(b) for b in buckets.LENGTH_BUCKETS],
                  'Length buckets: each target is padded to the smallest bucket that holds it, so '
                  'a set of proteins compiles a few executables (MSA depth has its own buckets).')
flags.DEFINE_bool('progress', True, 'Log a line after every recycle of every prediction '
                  '(mean pLDDT, pTM, ipTM for a complex, CA change) while it runs, from inside '
                  'the compiled program. Its executables differ from --noprogress ones (their '
                  'label in python -m compile_cache list ends in /progress): warm up with the '
                  'same setting.')
flags.DEFINE_enum('precision', 'float32', ['float32', 'bfloat16'],
                  'bfloat16 matmuls (softmax, layer norm, coordinates stay float32).')
flags.DEFINE_string('chunk', 'auto', 'auto: AutoChunk picks per-op chunk sizes whose compiled '
                    'peak memory fits --memory_budget (decided from shapes, nothing runs; cached '
                    'on disk); none: unchunked; N: every axial op in chunks of N.')
flags.DEFINE_string('memory_budget', None, 'Memory for --chunk=auto, in bytes or with a unit '
                    '(1.5GB, 800MB). Default: 90% of the accelerator\'s memory, or 45% of the '
                    'available RAM on CPU rounded down to 2^k or 1.5 x 2^k bytes (so a bucket\'s '
                    'plan, and its executable, stay the same between runs).')
cli.define_compile_cache_flags()
flags.DEFINE_bool('warmup_only', False, 'Compile every --model_names x length bucket into the '
                  'cache from shapes alone (only the buckets of --fasta_paths targets when given; '
                  'MSA depths: --warmup_msa_depths), then exit. Needs no weights.')
flags.DEFINE_list('warmup_msa_depths', [], 'clusters:extra pairs to warm up (default: a '
                  'target\'s own depth when its MSA is known without a search, as with '
                  '--msa_mode=single_sequence or precomputed alignments; else each preset\'s '
                  'maxima, what a deep MSA fills), e.g. 512:5120,64:256.')
flags.DEFINE_enum('models_to_relax', 'none', ['best', 'all', 'none'],
                  'Amber-relax (OpenMM) the best-ranked prediction, all of them, or none, into '
                  'relaxed_<model>.pdb/.cif (and relax_metrics.json); ranked_* then hold the '
                  'relaxed structures. Default none (AlphaFold\'s is best): OpenMM is optional '
                  '(pip install \'af_jax[relax]\'), relaxing fixes stereochemistry but not the '
                  'fold, and a --random_params smoke test would spend minutes untangling random '
                  'coordinates (a real 72-residue structure relaxes in about 4 s on 2 CPU cores).')
flags.DEFINE_bool('relax_use_gpu', False, 'Relax on OpenMM\'s CUDA platform (needs '
                  'openmm[cuda12]) instead of the CPU. Only with --models_to_relax=best|all.')
flags.DEFINE_integer('dap', 1, 'Devices that share each prediction (Dynamic Axial Parallelism: '
                     'the MSA split along sequences, the pair along rows; about 1/N of the '
                     'activation memory per device). Devices of every process of a multi-host '
                     'run count. With N > 1, consider --autotune_profile=multi_device on GPUs.')
cli.define_distributed_flags()
FLAGS = flags.FLAGS
# --help lists the flags under these headings, in this order.
FLAG_GROUPS = (
    ('Inputs and outputs', ('fasta_paths', 'features_paths', 'output_dir')),
    ('MSA and templates', (
        'msa_mode', 'msa_paths', 'use_templates', 'template_mmcif_dir', 'max_template_date',
        'uniref90_database_path', 'mgnify_database_path', 'small_bfd_database_path',
        'bfd_database_path', 'uniref30_database_path', 'uniprot_database_path',
        'mmseqs_database_path', 'pdb70_database_path', 'obsolete_pdbs_path', 'n_cpu',
        'search_timeout', 'jackhmmer_binary_path', 'hhblits_binary_path',
        'hhsearch_binary_path', 'mmseqs_binary_path', 'kalign_binary_path')),
    ('Model and recycling', (
        'model_preset', 'model_names', 'params_dir', 'random_params', 'num_recycle',
        'random_seed', 'num_seeds', 'num_multimer_predictions_per_model', 'precision',
        'buckets', 'progress')),
    ('Memory and devices', ('chunk', 'memory_budget', 'dap')),
    ('Compilation cache and XLA', (*cli.COMPILE_CACHE_FLAGS, 'warmup_only',
                                   'warmup_msa_depths')),
    ('Relaxation', ('models_to_relax', 'relax_use_gpu')),
    ('Many hosts', cli.DISTRIBUTED_FLAGS),
)

OVERRIDES: dict[str, str] = {}


def options_from_flags() -> FoldOptions:
  """FoldOptions from the parsed flags (`af_jax.fold` converts its keywords the same way)."""
  options = fold_options.from_flags({
      **{name: FLAGS[name].value for name in fold_options.FLAG_NAMES - {'config'}},
      'config': OVERRIDES})
  if FLAGS.msa_paths and len(FLAGS.fasta_paths) != 1:
    raise ConfigError('--msa_paths belongs to one target: pass exactly one FASTA file '
                      'with one record, or put each target\'s files in <output_dir>/<name>/msas')
  return options


def main(argv) -> None:
  if len(argv) > 1:
    raise ConfigError(f'unexpected arguments {argv[1:]}; every input is a --flag')
  cli.configure_logging()
  options = options_from_flags()
  cli.configure_compile_cache(FLAGS)
  if cli.initialize_distributed(FLAGS):
    import jax
    logging.info('process %d of %d, %d devices in all', jax.process_index(), jax.process_count(),
                 jax.device_count())
  mesh.check_dap(FLAGS.dap)
  if FLAGS.warmup_only:
    try:
      depths = [tuple(int(x) for x in d.split(':', 1)) for d in FLAGS.warmup_msa_depths] or None
    except ValueError:
      raise ConfigError(f'--warmup_msa_depths={",".join(FLAGS.warmup_msa_depths)}: write '
                        'clusters:extra pairs, e.g. 512:5120,64:256') from None
    targets = (read_targets(FLAGS.fasta_paths, multimer=options.multimer)
               if FLAGS.fasta_paths else ())
    warmup.warmup(options, targets, depths)
    return
  dirs = fold.fold(FLAGS.fasta_paths, options, FLAGS.features_paths)
  for d in dirs:
    print(d)


def entry(argv: list[str]) -> None:
  rest, overrides = config_overrides.split_config_overrides(argv)
  cli.exit_on_help(rest, __doc__, FLAG_GROUPS)
  OVERRIDES.update(overrides)
  app.run(main, argv=rest)


if __name__ == '__main__':
  cli.run_main(entry)
