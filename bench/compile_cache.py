"""Compile-cache benchmark: cold vs warm time to first result, in separate processes.

For each length L the parent starts two fresh Python processes on one new cache directory:
the cold one finds it empty (XLA compiles and the entry is stored), the warm one finds the
entry (the executable is deserialized, no XLA compilation). Each process builds a Predictor
of model_1_ptm dimensions with all 48 Evoformer blocks (random weights, drawn in numpy so no
other executable is compiled) and a processed batch padded to L (`af_jax.run.warmup.bucket_shapes`
filled with random values), then times, separately:

- tracing: `jit(forward).trace(state, batch shapes)` (Python runs the model: the jaxpr);
- lowering: `traced.lower()` (jaxpr -> StableHLO);
- compile or load: `compile_cache.compile_with_cache(label, lowered)`; in the cold process an
  XLA compilation, in the warm one a cache load; the wall time of the call is reported too
  (it also hashes the lowered module for the warm-up's fingerprint);
- run: the first call of the executable on the batch, to `block_until_ready` (and, with
  `--runs` > 1, the best of the later calls in the cold process).

`--malloc` repeats the pair under other memory allocators (the child's LD_PRELOAD and
MALLOC_CONF): XLA:CPU's compile, its executable load and its runs all allocate heavily, and
glibc's allocator is not the fastest for them (bench/RESULTS.md, "Allocators").

No persistent cache saves tracing or lowering; the targets are warm compile+load <= 5% of
the cold compile, and tracing + lowering < 2 s.

`--mode=targets` measures the command line instead, as a cluster admin runs it: a FASTA of
`--target_lengths` (random sequences, over the length buckets `--buckets`) folded by
run_inference.py, each run its own process: on a cold cache; `--warmup_only`, then the fold
on the cache it filled; the fold again on a copy of that cache at another path. Each fold
reports the time to its first structure (process start to the first ranked_0.pdb), its total
time, and the XLA compilations in its compile log (JAX_LOG_COMPILES).

Results go to stdout and `--json_out` as JSON, and into `--results_md` as a markdown table
(between markers, so notes outside them are kept).

Usage (from the repository root):
  PYTHONPATH=. python bench/compile_cache.py --lengths=128,256
  PYTHONPATH=. python bench/compile_cache.py --mode=targets
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time

_START = time.monotonic()
_HERE = os.path.dirname(os.path.abspath(__file__))
# Run as a script, this file's directory comes first on sys.path, and this file's name would
# shadow the compile_cache package.
sys.path[:] = [p for p in sys.path if os.path.abspath(p or '.') != _HERE]
sys.path.insert(0, os.path.dirname(_HERE))

from absl import app, flags  # noqa: E402

from bench import common  # noqa: E402

flags.DEFINE_enum('mode', 'program', ['program', 'targets'], 'program: one executable per L, '
                  'cold vs warm; targets: run_inference.py on a FASTA, cold vs warmed vs copied '
                  'cache.')
flags.DEFINE_list('lengths', ['128', '256'], 'Padded sequence lengths L (one bucket each).')
flags.DEFINE_list('target_lengths', ['45', '52', '60', '70', '81', '90', '104', '122'],
                  '--mode=targets: the FASTA\'s sequence lengths.')
flags.DEFINE_list('buckets', ['64', '96', '128'], '--mode=targets: run_inference.py --buckets.')
flags.DEFINE_string('preset', 'model_1_ptm', 'Model preset (48 Evoformer blocks).')
flags.DEFINE_integer('msa_clusters', 128, 'MSA cluster rows of the bucket (msa_feat).')
flags.DEFINE_integer('extra_msa', 256, 'Extra MSA rows of the bucket.')
flags.DEFINE_integer('num_recycle', 0, 'Recycles (0: one iteration).')
flags.DEFINE_integer('evoformer_blocks', 48, 'Evoformer blocks (48 in the real model; fewer '
                     'only for a quick try of the script).')
flags.DEFINE_integer('seed', 0, 'Seed for the random weights and features.')
flags.DEFINE_integer('runs', 1, 'Calls of the executable in the cold process (the first is '
                     'reported apart; more give a steady-state time). The warm process calls '
                     'it once.', lower_bound=1)
flags.DEFINE_list('malloc', ['system'], 'Allocators to run each pair under: system (glibc), '
                  'jemalloc (its defaults) and jemalloc_retain (jemalloc keeping freed pages: '
                  'MALLOC_CONF=dirty_decay_ms:-1,muzzy_decay_ms:-1).')
flags.DEFINE_string('jemalloc', 'libjemalloc.so.2', 'The jemalloc library to preload (a path, or '
                    'a name the dynamic loader finds; Debian/Ubuntu: apt-get install '
                    'libjemalloc2).')
flags.DEFINE_string('work_dir', None, 'Where the fresh cache directories go (default: a '
                    'temporary directory, removed afterwards).')
flags.DEFINE_string('json_out', None, 'Write the JSON results here (default: '
                    'results/compile_cache.json, --mode=targets results/compile_cache_targets'
                    '.json; "" to skip).')
flags.DEFINE_string('results_md', os.path.join(_HERE, 'RESULTS.md'),
                    'Markdown file to write the table into ("" to skip).')
flags.DEFINE_string('note', '', 'A sentence about the conditions, put into the markdown.')
# One process of the pair (run by the parent).
flags.DEFINE_integer('child_length', 0, 'Internal: run one process for this L.')
flags.DEFINE_string('child_cache_dir', None, 'Internal: its cache directory.')

FLAGS = flags.FLAGS

MARKERS = ('<!-- bench/compile_cache.py:begin (generated; edit outside these markers) -->',
           '<!-- bench/compile_cache.py:end -->')
WARM_LOAD_TARGET = 0.05  # warm compile+load / cold compile
TRACE_LOWER_TARGET_S = 2.0




# ----------------------------------------------------------------------------
# One process (cold or warm).


def loaded_malloc() -> str:
  """'jemalloc' when this process runs with jemalloc mapped, else 'system'."""
  with open('/proc/self/maps') as f:
    return 'jemalloc' if 'jemalloc' in f.read() else 'system'


def child(length: int, cache_dir: str) -> dict:
  """Times one process from the first import to the first result."""
  import compile_cache
  compile_cache.configure(cache_dir)  # before the first JAX call
  import jax
  import numpy as np

  import af_jax
  from af_jax.run import warmup
  from af_jax.inference import Predictor, bucket_label
  events = []
  jax.monitoring.register_event_listener(lambda event, **kw: events.append(event))
  imported = time.monotonic()

  cfg = af_jax.model_config(FLAGS.preset)
  cfg.model.num_recycle = FLAGS.num_recycle
  cfg.data.common.num_recycle = FLAGS.num_recycle
  cfg.model.embeddings_and_evoformer.evoformer_num_block = FLAGS.evoformer_blocks
  rng = np.random.default_rng(FLAGS.seed)
  predictor = Predictor(cfg, None)  # abstract; random weights below, drawn in numpy
  structs = predictor._state
  predictor._state = common.random_state(structs, rng)
  shapes = warmup.bucket_shapes(cfg, length, FLAGS.msa_clusters, FLAGS.extra_msa)
  batch = common.random_batch(shapes, rng)
  label = bucket_label(predictor.name, shapes)
  setup_done = time.monotonic()

  t = time.monotonic()
  traced = predictor._forward.trace(structs, shapes)
  trace_s = time.monotonic() - t
  t = time.monotonic()
  lowered = traced.lower()
  lower_s = time.monotonic() - t
  # Where a load's time goes: JAX's cache key (hashes the module and compile options) and
  # the entry read + decompress + deserialize.
  from jax._src import compilation_cache as jax_cache
  parts = {'cache_key_s': 0.0, 'read_and_deserialize_s': 0.0}
  def timed(name, fn):
    def wrapper(*args, **kwargs):
      t = time.monotonic()
      try:
        return fn(*args, **kwargs)
      finally:
        parts[name] += time.monotonic() - t
    return wrapper
  jax_cache.get_cache_key = timed('cache_key_s', jax_cache.get_cache_key)
  jax_cache.get_executable_and_time = timed('read_and_deserialize_s',
                                            jax_cache.get_executable_and_time)
  t = time.monotonic()
  result = compile_cache.compile_with_cache(label, lowered)
  call_s = time.monotonic() - t
  def timed_run():
    t = time.monotonic()
    out = result.compiled(predictor._state, batch)
    jax.block_until_ready(out)
    return out, time.monotonic() - t
  out, run_s = timed_run()
  plddt = np.asarray(out['plddt'])
  first_result_s = time.monotonic() - _START
  later_runs_s = [timed_run()[1] for _ in range(FLAGS.runs - 1)]
  return {
      'length': length, 'label': label, 'status': result.status,
      'import_s': imported - _START, 'setup_s': setup_done - imported,
      'trace_s': trace_s, 'lower_s': lower_s, 'trace_lower_s': trace_s + lower_s,
      'compile_or_load_s': result.seconds, 'compile_with_cache_call_s': call_s,
      **parts, 'run_s': run_s, 'first_result_s': first_result_s,
      'later_runs_s': later_runs_s,
      'malloc_loaded': loaded_malloc(), 'peak_rss_bytes': common.peak_rss(),
      'entry_bytes': result.size_bytes, 'cache_key': result.key,
      'cache_hits': events.count('/jax/compilation_cache/cache_hits'),
      'cache_misses': events.count('/jax/compilation_cache/cache_misses'),
      'jaxpr_eqns': len(traced.jaxpr.eqns), 'stablehlo_chars': len(lowered.as_text()),
      'plddt_mean': float(plddt.mean()),
      'param_bytes': sum(x.nbytes for x in jax.tree_util.tree_leaves(predictor._state)),
  }


# ----------------------------------------------------------------------------
# The parent: two processes per length, then the report.


RETAIN_CONF = 'dirty_decay_ms:-1,muzzy_decay_ms:-1'
# --malloc's names: the library a child must have mapped, and its MALLOC_CONF (None: defaults).
MALLOCS = {'system': ('system', None), 'jemalloc': ('jemalloc', None),
           'jemalloc_retain': ('jemalloc', RETAIN_CONF)}


def malloc_env(malloc: str) -> dict:
  """The environment variables that give a child process the allocator `malloc`."""
  library, conf = MALLOCS[malloc]
  env = {} if library == 'system' else {'LD_PRELOAD': FLAGS.jemalloc}
  if conf:
    env['MALLOC_CONF'] = conf
  return env


def run_child(length: int, cache_dir: str, malloc: str = 'system', runs: int = 1) -> dict:
  cmd = [sys.executable, os.path.abspath(__file__), f'--child_length={length}',
         f'--child_cache_dir={cache_dir}', f'--preset={FLAGS.preset}',
         f'--msa_clusters={FLAGS.msa_clusters}', f'--extra_msa={FLAGS.extra_msa}',
         f'--num_recycle={FLAGS.num_recycle}', f'--seed={FLAGS.seed}',
         f'--evoformer_blocks={FLAGS.evoformer_blocks}', f'--runs={runs}']
  root = os.path.dirname(_HERE)
  env = dict(os.environ, PYTHONPATH=os.pathsep.join(
      [root] + [p for p in os.environ.get('PYTHONPATH', '').split(os.pathsep) if p]))
  env.pop('MALLOC_CONF', None)
  if 'jemalloc' in env.get('LD_PRELOAD', ''):
    env.pop('LD_PRELOAD')
  env.update(malloc_env(malloc))
  start = time.monotonic()
  proc = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True)
  wall = time.monotonic() - start
  lines = [line for line in proc.stdout.splitlines() if line.startswith('RESULT ')]
  if proc.returncode != 0 or not lines:
    raise RuntimeError(f'child L={length} ({malloc}) failed ({proc.returncode}):\n'
                       f'{proc.stderr[-4000:]}')
  result = json.loads(lines[-1][len('RESULT '):])
  if result['malloc_loaded'] != MALLOCS[malloc][0]:
    raise RuntimeError(f'child L={length} asked for {malloc} but ran with '
                       f"{result['malloc_loaded']}: is {FLAGS.jemalloc} installed?")
  result['process_wall_s'] = wall
  return result


def summarize(cold: dict, warm: dict) -> dict:
  ratio = warm['compile_or_load_s'] / cold['compile_or_load_s']
  return {
      'warm_load_over_cold_compile': ratio,
      'warm_call_over_cold_call': (warm['compile_with_cache_call_s']
                                   / cold['compile_with_cache_call_s']),
      'first_result_speedup': cold['first_result_s'] / warm['first_result_s'],
      'target_warm_load_le_5pct': ratio <= WARM_LOAD_TARGET,
      'target_trace_lower_lt_2s': max(cold['trace_lower_s'],
                                      warm['trace_lower_s']) < TRACE_LOWER_TARGET_S,
      'same_output': cold['plddt_mean'] == warm['plddt_mean'],
  }


def json_out() -> str:
  """--json_out, or the mode's default file under bench/results/."""
  if FLAGS.json_out is not None:
    return FLAGS.json_out
  name = 'compile_cache.json' if FLAGS.mode == 'program' else 'compile_cache_targets.json'
  return os.path.join(_HERE, 'results', name)


def command_line() -> str:
  return f'PYTHONPATH=. python bench/compile_cache.py {shlex.join(sys.argv[1:])}'.rstrip()


def allocator_table(rows: list[dict]) -> list[str]:
  """Each allocator against glibc's at the same L (ratios > 1: faster or smaller)."""
  system = {r['length']: r for r in rows if r['malloc'] == 'system'}
  others = [r for r in rows if r['malloc'] != 'system' and r['length'] in system]
  if not others:
    return []
  lines = ['', 'Against glibc at the same L, each from its own pair of processes (> 1: the '
           'allocator is faster; peak RSS: the cold process, allocator / glibc):', '',
           '| L | allocator | cold compile | warm load | first run | later runs (best) '
           '| peak RSS |', '|---:|---|---:|---:|---:|---:|---:|']
  for r in others:
    g = system[r['length']]
    def ratio(side, key, row=r, base=g):
      return base[side][key] / row[side][key]
    later = '-'
    if r['cold']['later_runs_s'] and g['cold']['later_runs_s']:
      later = f"{min(g['cold']['later_runs_s']) / min(r['cold']['later_runs_s']):.2f}x"
    lines.append(
        f"| {r['length']} | {r['malloc']} | {ratio('cold', 'compile_or_load_s'):.2f}x "
        f"| {ratio('warm', 'compile_or_load_s'):.2f}x | {ratio('cold', 'run_s'):.2f}x | {later} "
        f"| {r['cold']['peak_rss_bytes'] / g['cold']['peak_rss_bytes']:.2f}x |")
  return lines


def markdown(report: dict) -> str:
  m, s = report['machine'], report['settings']
  yes = {True: 'yes', False: '**no**'}
  lines = [
      MARKERS[0],
      '## Compile cache: cold vs warm time to first result (`bench/compile_cache.py`)',
      '',
      f"- Date: {m['date']}; machine: {m['nproc']} CPU(s) ({m['cpu']}), {m['device']}, "
      f"{'GPU' if m['gpu'] else 'no GPU'}; jax {m['jax']}, jaxlib {m['jaxlib']}, "
      f"Python {m['python']}; load average (1/5/15 min) at start {m['load_average']}.",
      f"- Command (from the repository root): `{report['command']}`",
      f"- Model: {s['preset']} dimensions, {s['evoformer_blocks']} Evoformer blocks, random "
      f"weights ({s['param_bytes'] / 1e6:.0f} MB), num_recycle={s['num_recycle']}; batch "
      f"padded to L with N_seq={s['msa_clusters']}, N_extra={s['extra_msa']} (random "
      'values). Each row is a fresh Python process; cold = empty cache directory, warm = '
      'the next process on the same directory.',
      '- Columns: trace = `jit(f).trace(...)`, lower = `.lower()`, compile/load = '
      "`compile_with_cache`'s XLA compile (cold) or cache load (warm), run = first call to "
      '`block_until_ready`, first result = process start (before imports) to the result.',
  ]
  if report.get('note'):
    lines.append(f"- Conditions: {report['note']}")
  lines += [
      '',
      '| L | allocator | process | status | imports+setup (s) | trace (s) | lower (s) '
      '| compile/load (s) | run (s) | later runs, best (s) | first result (s) '
      '| peak RSS (MB) | entry (MB) |',
      '|---:|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
  ]
  for row in report['lengths']:
    for side in ('cold', 'warm'):
      r = row[side]
      entry = f"{r['entry_bytes'] / 1e6:.1f}" if r['entry_bytes'] else '-'
      later = f"{min(r['later_runs_s']):.1f}" if r['later_runs_s'] else '-'
      lines.append(
          f"| {row['length']} | {row['malloc']} | {side} | {r['status']} "
          f"| {r['import_s'] + r['setup_s']:.1f} | {r['trace_s']:.2f} | {r['lower_s']:.2f} "
          f"| {r['compile_or_load_s']:.2f} | {r['run_s']:.1f} | {later} "
          f"| {r['first_result_s']:.1f} | {common.mb(r['peak_rss_bytes'])} | {entry} |")
  lines += [
      '',
      '| L | allocator | warm load / cold compile | target <= 5% | trace+lower cold / warm (s) '
      '| target < 2 s | first result cold / warm | same pLDDT |',
      '|---:|---|---:|---|---:|---|---:|---|',
  ]
  for row in report['lengths']:
    c, w, sm = row['cold'], row['warm'], row['summary']
    lines.append(
        f"| {row['length']} | {row['malloc']} "
        f"| {100 * sm['warm_load_over_cold_compile']:.1f}% "
        f"| {yes[sm['target_warm_load_le_5pct']]} "
        f"| {c['trace_lower_s']:.2f} / {w['trace_lower_s']:.2f} "
        f"| {yes[sm['target_trace_lower_lt_2s']]} | {sm['first_result_speedup']:.2f}x "
        f"| {yes[sm['same_output']]} |")
  lines += allocator_table(report['lengths'])
  lines += common.json_link(json_out(), FLAGS.results_md) + ['', MARKERS[1], '']
  return '\n'.join(lines)




# ----------------------------------------------------------------------------
# --mode=targets: run_inference.py on a FASTA, each run its own process.

TARGETS_MARKERS = common.markers('bench/compile_cache.py', 'targets')
_AMINO_ACIDS = 'ACDEFGHIKLMNPQRSTVWY'


def write_inputs(work: str) -> tuple[str, str, list[str]]:
  """(FASTA path, params directory, fold flags) for the targets runs: random sequences of
  --target_lengths and random weights saved as a params file (so no run compiles the
  initialisers that --random_params would)."""
  import af_jax
  import numpy as np
  from af_jax.model.build import build_model
  rng = np.random.default_rng(FLAGS.seed)
  fasta = os.path.join(work, 'targets.fasta')
  with open(fasta, 'w') as f:
    for i, n in enumerate(int(x) for x in FLAGS.target_lengths):
      f.write(f'>t{i}_L{n}\n{"".join(rng.choice(list(_AMINO_ACIDS), n))}\n')
  params_dir = os.path.join(work, 'params')
  os.makedirs(params_dir, exist_ok=True)
  cfg = af_jax.model_config(FLAGS.preset)
  cfg.model.embeddings_and_evoformer.evoformer_num_block = FLAGS.evoformer_blocks
  cfg.model.global_config.zero_init = False
  af_jax.save_params(os.path.join(params_dir, f'params_{FLAGS.preset}.npz'),
                     build_model(cfg.model, seed=FLAGS.seed))
  flags_ = [f'--fasta_paths={fasta}', f'--params_dir={params_dir}',
            f'--model_names={FLAGS.preset}', f'--num_recycle={FLAGS.num_recycle}',
            f'--buckets={",".join(FLAGS.buckets)}',
            f'--config.model.embeddings_and_evoformer.evoformer_num_block='
            f'{FLAGS.evoformer_blocks}']
  return fasta, params_dir, flags_


def fold_run(name: str, args: list[str], cache_dir: str, output_dir: str | None) -> dict:
  """One run_inference.py process: wall time, time to the first structure, compilations."""
  import compile_cache
  root = os.path.dirname(_HERE)
  env = dict(os.environ, JAX_LOG_COMPILES='1')
  env.pop('COMPILE_CACHE_DIR', None)
  cmd = [sys.executable, os.path.join(root, 'run_inference.py'), *args,
         f'--compilation_cache_dir={cache_dir}']
  if output_dir:
    cmd.append(f'--output_dir={output_dir}')
  start_wall, start = time.time(), time.monotonic()
  proc = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True)
  wall = time.monotonic() - start
  if proc.returncode != 0:
    raise RuntimeError(f'{name} run failed ({proc.returncode}):\n{proc.stderr[-4000:]}')
  log = proc.stdout + proc.stderr
  compiled = compile_cache.xla_compilations(log)
  result = {'run': name, 'wall_s': wall, 'xla_compilations': len(compiled),
            'model_compilations': sum(1 for c in compiled if c == 'jit(_apply)'),
            'compiled': sorted(set(compiled))}
  if output_dir and os.path.isdir(output_dir):
    firsts = [os.path.getmtime(os.path.join(output_dir, t, 'ranked_0.pdb'))
              for t in os.listdir(output_dir)
              if os.path.exists(os.path.join(output_dir, t, 'ranked_0.pdb'))]
    result['targets_done'] = len(firsts)
    if firsts:
      result['first_structure_s'] = min(firsts) - start_wall
  return result


def run_targets() -> dict:
  import af_jax  # noqa: F401  (its XLA flag defaults, before machine_info starts JAX)
  work = FLAGS.work_dir or tempfile.mkdtemp(prefix='bench_compile_cache_targets_')
  machine = common.machine_info()
  try:
    _, _, fold_flags = write_inputs(work)
    cold_cache, warm_cache = os.path.join(work, 'cold-cache'), os.path.join(work, 'warm-cache')
    copied_cache = os.path.join(work, 'elsewhere', 'copied-cache')
    runs = [fold_run('cold', fold_flags, cold_cache, os.path.join(work, 'out-cold'))]
    runs.append(fold_run('warm-up only', [*fold_flags, '--warmup_only'], warm_cache,
                         os.path.join(work, 'out-unused')))
    runs.append(fold_run('after warm-up', fold_flags, warm_cache, os.path.join(work, 'out-warm')))
    shutil.copytree(warm_cache, copied_cache)
    runs.append(fold_run('copied cache', fold_flags, copied_cache,
                         os.path.join(work, 'out-copied')))
    for r in runs:
      print(json.dumps(r, allow_nan=False), file=sys.stderr, flush=True)
    same = all(
        open(os.path.join(work, out, t, 'ranked_0.pdb')).read()
        == open(os.path.join(work, 'out-cold', t, 'ranked_0.pdb')).read()
        for out in ('out-warm', 'out-copied') for t in os.listdir(os.path.join(work, 'out-cold')))
  finally:
    if not FLAGS.work_dir:
      shutil.rmtree(work, ignore_errors=True)
  return {
      'benchmark': 'compile_cache_targets', 'command': command_line(), 'machine': machine,
      'note': FLAGS.note,
      'settings': {'preset': FLAGS.preset, 'evoformer_blocks': FLAGS.evoformer_blocks,
                   'num_recycle': FLAGS.num_recycle, 'seed': FLAGS.seed,
                   'target_lengths': [int(x) for x in FLAGS.target_lengths],
                   'buckets': [int(x) for x in FLAGS.buckets]},
      'runs': runs, 'same_structures': same,
  }


def targets_markdown(report: dict) -> str:
  m, s = report['machine'], report['settings']
  runs = {r['run']: r for r in report['runs']}
  cold = runs['cold']
  lines = [
      TARGETS_MARKERS[0],
      '## Compile cache: a FASTA of targets, cold vs warmed up vs copied cache '
      '(`bench/compile_cache.py --mode=targets`)',
      '',
      f"- Date: {m['date']}; machine: {m['nproc']} CPU(s) ({m['cpu']}), {m['device']}, "
      f"{'GPU' if m['gpu'] else 'no GPU'}; jax {m['jax']}; load average at start "
      f"{m['load_average']}.",
      f"- Command (from the repository root): `{report['command']}`",
      f"- run_inference.py on {len(s['target_lengths'])} random sequences of lengths "
      f"{s['target_lengths']} over the buckets {s['buckets']}: {s['preset']} dimensions, "
      f"{s['evoformer_blocks']} Evoformer blocks, random weights from a params file, "
      f"num_recycle={s['num_recycle']}, single-sequence MSAs, the default --chunk=auto. Each "
      'row is its own process; the copied cache is the warmed-up directory copied to another '
      'path. Compilations: XLA compilations in JAX\'s compile log (model: the predictors\' '
      '`jit(_apply)`, AutoChunk\'s measurements included).',
  ]
  if report.get('note'):
    lines.append(f"- Conditions: {report['note']}")
  lines += [
      '',
      '| run | first structure (s) | total (s) | vs cold | XLA compilations | of them model |',
      '|---|---:|---:|---:|---:|---:|',
  ]
  for r in report['runs']:
    folded = bool(r.get('targets_done'))
    first = f"{r['first_structure_s']:.1f}" if folded else '-'
    speedup = f"{cold['wall_s'] / r['wall_s']:.2f}x" if folded else '-'
    lines.append(f"| {r['run']} | {first} | {r['wall_s']:.1f} | {speedup} "
                 f"| {r['xla_compilations']} | {r['model_compilations']} |")
  lines += ['', f"Same ranked_0.pdb after warm-up and from the copied cache as cold: "
            f"{'yes' if report['same_structures'] else '**no**'}."]
  lines += common.json_link(json_out(), FLAGS.results_md) + ['', TARGETS_MARKERS[1], '']
  return '\n'.join(lines)


def main(argv):
  del argv
  if FLAGS.child_length:
    result = child(FLAGS.child_length, FLAGS.child_cache_dir)
    print('RESULT ' + json.dumps(result, allow_nan=False), flush=True)
    return
  if FLAGS.mode == 'targets':
    report = run_targets()
    print(common.write_json(json_out(), report))
    if FLAGS.results_md:
      common.write_section(FLAGS.results_md, targets_markdown(report), *TARGETS_MARKERS)
    return
  unknown = [m for m in FLAGS.malloc if m not in MALLOCS]
  if unknown:
    raise app.UsageError(f'--malloc: unknown allocator(s) {unknown}; use {", ".join(MALLOCS)}')
  work = FLAGS.work_dir or tempfile.mkdtemp(prefix='bench_compile_cache_')
  rows = []
  machine = common.machine_info()  # before the children: its load average is the machine's own
  try:
    for length in [int(n) for n in FLAGS.lengths]:
      for malloc in FLAGS.malloc:
        cache_dir = os.path.join(work, f'L{length}-{malloc}')
        shutil.rmtree(cache_dir, ignore_errors=True)
        cold = run_child(length, cache_dir, malloc, FLAGS.runs)
        warm = run_child(length, cache_dir, malloc)
        row = {'length': length, 'malloc': malloc, 'cold': cold, 'warm': warm,
               'summary': summarize(cold, warm)}
        print(json.dumps(row, allow_nan=False), file=sys.stderr, flush=True)
        rows.append(row)
  finally:
    if not FLAGS.work_dir:
      shutil.rmtree(work, ignore_errors=True)
  first = rows[0]['cold']
  report = {
      'benchmark': 'compile_cache',
      'command': command_line(),
      'machine': machine,
      'note': FLAGS.note,
      'settings': {
          'preset': FLAGS.preset, 'evoformer_blocks': FLAGS.evoformer_blocks,
          'msa_clusters': FLAGS.msa_clusters, 'extra_msa': FLAGS.extra_msa,
          'num_recycle': FLAGS.num_recycle, 'seed': FLAGS.seed,
          'param_bytes': first['param_bytes'], 'runs': FLAGS.runs, 'malloc': FLAGS.malloc,
          'jemalloc': FLAGS.jemalloc, 'jemalloc_retain_conf': RETAIN_CONF,
      },
      'targets': {'warm_load_over_cold_compile_max': WARM_LOAD_TARGET,
                  'trace_lower_max_s': TRACE_LOWER_TARGET_S},
      'lengths': rows,
  }
  print(common.write_json(json_out(), report))
  if FLAGS.results_md:
    common.write_section(FLAGS.results_md, markdown(report), *MARKERS)


if __name__ == '__main__':
  app.run(main)
