"""Training benchmark: one train step with and without per-block rematerialisation, in one run.

The train step (af_jax.train.step.TrainStep: the recycles before the last
without gradients, the last one differentiable, AlphaFold's loss, per-example
clipping, Adam and the EMA) is compiled and run at crop `--crop_size` with and
without `remat` (every Evoformer / extra-MSA / template block recomputed in the
backward pass, the training default) for each of `--chunk_sizes` (the config's
`chunk_size`: every axial op over chunks, each chunk recomputed in the backward
pass; none = unchunked). A side whose compiled peak exceeds the free memory is
reported from its compiled figures without running.

Each side runs in its own subprocess (its peak RSS is its own) and reports XLA's
compiled memory (arguments, outputs, temporaries), the process's peak RSS,
compile seconds and the step time (best and median of `--reps` steps after one
warm-up step, same batch shapes, recycles fixed to `--num_recycles`).

Dimensions: `--dims=small` is the tests' tiny model (c_m=32, c_z=16) with
`--evoformer_blocks` blocks, for a CPU; `--dims=real` keeps the preset's
dimensions (c_m=256, c_z=128) with `--evoformer_blocks` blocks, for a GPU. The
batch is 2Q2K chain A (70 residues) from ../shared/data padded to the crop: the
shapes, hence the compute and memory, are those of a full crop.

`--mode=compile` measures instead how long the train step takes to compile,
cold (an empty persistent cache) and warm (a second process loading it from
that cache), for `--compile_variants`: `small` is the real `small` training
preset (model_1_ptm at full dimensions, crop 32, batch 2), `tiny` the tests'
variant (tests/train/train_case.py). Each process reports the seconds from the
first trace to both of the step's executables ready (gradient and update, see
TrainStep; wall and CPU: the machine is shared, so CPU seconds are the steadier
figure), the cache status, and, when compiled, the number of XLA kernels of the
two (fusions, and distinct ones: XLA:CPU compiles each distinct kernel once
with LLVM, the bulk of the compile).

Usage:
  PYTHONPATH=. python bench/train.py --crop_size=256 --dims=small
  PYTHONPATH=. python bench/train.py --mode=compile
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import sys
import time

from absl import app, flags

# `python bench/train.py` puts bench/ first on sys.path, where bench/compile_cache.py would
# shadow the compile_cache package: the repository root goes first instead.
_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if sys.path and os.path.abspath(sys.path[0] or '.') == os.path.dirname(os.path.abspath(__file__)):
  sys.path[0] = _ROOT

from bench import common  # noqa: E402

flags.DEFINE_integer('crop_size', 256, 'Residues per example.')
flags.DEFINE_enum('dims', 'small', ['small', 'real'], "small: the tests' tiny model; real: the "
                  "preset's dimensions.")
flags.DEFINE_integer('evoformer_blocks', 4, 'Evoformer blocks (48 in AlphaFold).')
flags.DEFINE_integer('num_recycles', 1, 'Recycles without gradients before the last iteration.')
flags.DEFINE_integer('reps', 3, 'Timed steps per side after one warm-up step.')
flags.DEFINE_list('chunk_sizes', ['none', '32'], 'Training chunk sizes compared (none: '
                  'unchunked), each with and without remat.')
flags.DEFINE_string('preset', 'model_3_ptm', 'AlphaFold preset trained.')
flags.DEFINE_bool('bfloat16', False, 'Compute the trunk in bfloat16.')
flags.DEFINE_enum('mode', 'remat', ['remat', 'compile'], 'remat: step time and memory with '
                  'and without remat; compile: cold and warm compile time of the train step.')
flags.DEFINE_list('compile_variants', ['small', 'tiny'], "--mode=compile: 'small' (the real "
                  "small preset) and/or 'tiny' (the tests' variant).")
flags.DEFINE_string('child', None, 'Internal: run one side (JSON spec) and print its result.')
flags.DEFINE_string('json_out', os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                             'results', 'train.json'),
                    'Write the JSON results here ("" to skip; --mode=compile defaults to '
                    'results/train_compile.json).')
flags.DEFINE_string('results_md', os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                               'RESULTS.md'),
                    'Markdown file whose train.py section is replaced ("" to skip).')
FLAGS = flags.FLAGS

_BEGIN, _END = common.markers('bench/train.py')
_COMPILE_BEGIN, _COMPILE_END = common.markers('bench/train.py', 'compile')
_CHAIN = os.path.join(os.path.dirname(_ROOT), 'shared', 'data', 'chains_with_msa',
                      'openfold_2q2k')


def train_config(remat: bool, chunk: int | None = None):
  from configs.train import train_config as make
  cfg = make('initial', FLAGS.preset)
  overrides = {}
  if FLAGS.dims == 'small':
    from tests.model.tiny import TINY
    overrides.update(TINY)
  overrides.update({
      'remat': remat, 'bfloat16': FLAGS.bfloat16, 'chunk_size': chunk,
      'model.embeddings_and_evoformer.evoformer_num_block': FLAGS.evoformer_blocks,
      'data.train.crop_size': FLAGS.crop_size,
      'data.common.max_recycling_iters': FLAGS.num_recycles,
      'data.data_module.data_loaders.batch_size': 1,
  })
  cfg.update_from_flattened_dict(overrides)
  return cfg


def run_child(spec: dict) -> dict:
  import jax
  import numpy as np

  from af_jax.autochunk import compiled_memory
  from af_jax.train.data import TrainingData
  from af_jax.train.state import init_train_state
  from af_jax.train.step import TrainStep
  cfg = train_config(spec['remat'], spec['chunk'])
  data = TrainingData(os.path.join(_CHAIN, 'alignments'), _CHAIN, cfg.data, batch_size=1)
  batch = dict(data.batch(0))
  batch['num_recycles'] = np.full_like(batch['num_recycles'], FLAGS.num_recycles)
  state = init_train_state(cfg)
  jax.block_until_ready(state)
  rss_before = common.current_rss()
  step = TrainStep(cfg, state.graphdef)
  placed = step.place(batch)
  # The step is two executables (TrainStep); the gradient program holds the activations.
  t = time.perf_counter()
  compiled = step.compile_placed(state, placed).compiled
  compile_s = time.perf_counter() - t
  memory = compiled_memory(step.programs(placed)[0])
  result = {'remat': spec['remat'], 'chunk': spec['chunk'], 'compiled_memory': memory,
            'rss_before_compile_bytes': rss_before, 'compile_s': compile_s}
  available = os.sysconf('SC_AVPHYS_PAGES') * os.sysconf('SC_PAGE_SIZE')
  if memory and memory['peak'] > 0.9 * available:
    # It would be killed for memory: report the compiled figures only.
    return {**result, 'not_run': f'compiled peak {memory["peak"] / 1e9:.1f} GB > 90% of the '
            f'{available / 1e9:.1f} GB available'}
  t = time.perf_counter()
  state, metrics = compiled(state, placed)
  jax.block_until_ready(metrics)
  first_s = time.perf_counter() - t
  times, losses = [], [float(metrics['loss'])]
  for _ in range(FLAGS.reps):
    t = time.perf_counter()
    state, metrics = compiled(state, placed)
    jax.block_until_ready(metrics)
    times.append(time.perf_counter() - t)
    losses.append(float(metrics['loss']))
  return {
      **result, 'peak_rss_bytes': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
      'first_step_s': first_s, 'times_s': times, 'best_s': min(times),
      'median_s': statistics.median(times), 'losses': losses,
  }


def compile_config(variant: str):
  """The training config of a `--compile_variants` entry."""
  if variant == 'tiny':
    from tests.train.train_case import small_train_config
    return small_train_config()
  from configs.train import train_config as make
  return make('small')


def kernel_counts(hlo_text: str) -> dict:
  """Fusions in an optimised HLO module and how many are distinct (XLA:CPU emits and
  compiles one kernel per distinct fused computation and reuses it for the others)."""
  import re
  bodies, name = {}, None
  for line in hlo_text.splitlines():
    head = re.match(r'^(?:ENTRY )?%(\S+) .*\{$', line)
    if head:
      name = head.group(1)
      bodies[name] = []
    elif line.startswith('}'):
      name = None
    elif name is not None:
      bodies[name].append(line)
  # A fused computation with its instruction names stripped: equal text, one kernel.
  canon = {k: '\n'.join(re.sub(r'%[\w.-]+', '%', re.sub(r', metadata=\{.*?\}', '', x)).strip()
                        for x in v) for k, v in bodies.items()}
  fusions, distinct = 0, set()
  for lines in bodies.values():
    for line in lines:
      if ' fusion(' in line:
        fusions += 1
        callee = re.search(r'calls=%([\w.-]+)', line).group(1)
        distinct.add(canon.get(callee, callee) + line.split('=', 1)[1].split('fusion(')[0])
  return {'fusions': fusions, 'distinct_kernels': len(distinct)}


def run_compile_child(spec: dict) -> dict:
  import compile_cache
  compile_cache.configure(spec['cache_dir'])  # before the first compilation
  import jax

  from af_jax.train.data import TrainingData
  from af_jax.train.state import init_train_state
  from af_jax.train.step import TrainStep
  load = common.load_average()
  cfg = compile_config(spec['variant'])
  data = TrainingData(os.path.join(_CHAIN, 'alignments'), _CHAIN, cfg.data,
                      batch_size=cfg.data.data_module.data_loaders.batch_size)
  batch = data.batch(0)
  state = init_train_state(cfg)
  jax.block_until_ready(state)
  step = TrainStep(cfg, state.graphdef, donate=False)
  placed = step.place(batch)
  # Trace, lower and compile (or load) both executables of the step, as a training run does.
  t, cpu = time.perf_counter(), time.process_time()
  result = step.compile_placed(state, placed)
  total_s, cpu_s = time.perf_counter() - t, time.process_time() - cpu
  out = {'variant': spec['variant'], 'label': result.label, 'status': result.status,
         'load_average': load, 'num_params': len(jax.tree_util.tree_leaves(state.params)),
         'total_s': total_s, 'cpu_s': cpu_s}
  if result.status == 'compiled':
    counts = [kernel_counts(p.as_text()) for p in step.programs(placed)]
    out.update({k: sum(c[k] for c in counts) for k in counts[0]})
  _, metrics = result.compiled(state, placed)
  out['loss'] = float(metrics['loss'])
  return out


def run_compile_mode() -> dict:
  import shutil
  import tempfile
  variants = {}
  for variant in FLAGS.compile_variants:
    cache_dir = tempfile.mkdtemp(prefix='bench_train_compile_')
    try:
      runs = {}
      for temperature in ('cold', 'warm'):
        spec = json.dumps({'compile': True, 'variant': variant, 'cache_dir': cache_dir},
                          allow_nan=False)
        runs[temperature] = common.run_child(__file__, [f'--child={spec}'])
      variants[variant] = runs
    finally:
      shutil.rmtree(cache_dir, ignore_errors=True)
  return variants


def compile_markdown(report: dict) -> str:
  m = report['machine']
  lines = [
      _COMPILE_BEGIN,
      '## Training: train step compile time, cold and warm (`bench/train.py --mode=compile`)',
      '',
      f"- Date: {m['date']}; machine: {m['nproc']} CPU(s) ({m['cpu']}), {m['device']}; "
      f"jax {m['jax']}; load average at start {m['load_average']} (the cores are shared: "
      'wall seconds swing with the load, CPU seconds much less).',
      f"- Command (from the repository root): `{report['command']}`",
      "- `small`: the `small` training preset (model_1_ptm, full dimensions, crop 32, batch 2); "
      "`tiny`: the tests' variant (tests/train/train_case.py). Cold: a process with an empty "
      'persistent cache; warm: a second process with the same cache. Time to the first step: '
      'trace, lower and compile (or load) both executables of the step, the update on a '
      'second thread; kernels: XLA fusions of both (distinct ones are compiled by LLVM once '
      'each).',
      '',
      '| variant | run | status | to the first step (s) | CPU (s) | fusions | distinct kernels '
      '| loss |',
      '|---|---|---|---:|---:|---:|---:|---:|',
  ]
  for variant, runs in report['variants'].items():
    for temperature, d in runs.items():
      if 'error' in d:
        lines.append(f"| {variant} | {temperature} | failed: {d['error']} | | | | | |")
        continue
      lines.append(
          f"| {variant} | {temperature} | {d['status']} | {d['total_s']:.1f} | "
          f"{d['cpu_s']:.1f} | {d.get('fusions', '')} | {d.get('distinct_kernels', '')} | "
          f"{d['loss']:.6f} |")
  lines += ['', f"JSON: `{report['json_path']}`.", _COMPILE_END]
  return '\n'.join(lines) + '\n'


def spawn(remat: bool, chunk: int | None) -> dict:
  spec = json.dumps({'remat': remat, 'chunk': chunk}, allow_nan=False)
  args = [a for a in sys.argv[1:] if not a.startswith(('--json_out', '--results_md'))]
  result = common.run_child(__file__, [f'--child={spec}', *args])
  return {'remat': remat, 'chunk': chunk, **result} if 'error' in result else result


def markdown(report: dict) -> str:
  mb = common.mb
  m, s = report['machine'], report['settings']
  lines = [
      _BEGIN,
      '## Training: one train step with and without rematerialisation (`bench/train.py`)',
      '',
      f"- Date: {m['date']}; machine: {m['nproc']} CPU(s) ({m['cpu']}), {m['device']}; "
      f"jax {m['jax']}; load average at start {m['load_average']}.",
      f"- Command (from the repository root): `{report['command']}`",
      f"- {s['preset']} with {s['dims']} dimensions (c_m={s['c_m']}, c_z={s['c_z']}), "
      f"{s['evoformer_blocks']} Evoformer blocks, crop {s['crop_size']}, "
      f"{s['num_recycles']} recycle(s) without gradients then the differentiable one, batch 1, "
      f"{'bfloat16' if s['bfloat16'] else 'float32'}; AlphaFold's loss, per-example clipping, "
      'Adam and the EMA. Each side in its own process.',
      f"- Times: best and median of {s['reps']} steps after a warm-up step.",
      '',
      '| remat | chunk | activations (MB, compiled temp) | compiled peak (MB) | '
      'peak RSS (MB) | compile (s) | best step (s) | median step (s) | vs remat, unchunked |',
      '|---|---:|---:|---:|---:|---:|---:|---:|---|',
  ]
  for d in report['sides']:
    name = 'yes' if d['remat'] else 'no'
    chunk = d['chunk'] or 'none'
    if 'error' in d:
      lines.append(f"| {name} | {chunk} | failed: {d['error']} | | | | | | |")
      continue
    cm = d['compiled_memory']
    if 'not_run' in d:
      lines.append(f"| {name} | {chunk} | {mb(cm['temp'])} | {mb(cm['peak'])} | not run: "
                   f"{d['not_run']} | {d['compile_s']:.1f} | | | |")
      continue
    q = d.get('vs_baseline', {})
    ratio = (f"memory x{q['compiled_peak']:.2f}, time x{q['step_time']:.2f}, same losses: "
             f"{q['losses_equal']}" if q else '')
    lines.append(f"| {name} | {chunk} | {mb(cm['temp'])} | {mb(cm['peak'])} | "
                 f"{mb(d['peak_rss_bytes'])} | {d['compile_s']:.1f} | {d['best_s']:.2f} | "
                 f"{d['median_s']:.2f} | {ratio} |")
  lines += common.json_link(FLAGS.json_out, FLAGS.results_md) + ['', _END]
  return '\n'.join(lines) + '\n'


def main(argv):
  del argv
  if FLAGS.child and json.loads(FLAGS.child).get('compile'):
    print(json.dumps(run_compile_child(json.loads(FLAGS.child)), allow_nan=False))
    return
  if FLAGS.mode == 'compile' and not FLAGS.child:
    if not FLAGS['json_out'].present:
      FLAGS.json_out = os.path.join(os.path.dirname(FLAGS.json_out), 'train_compile.json')
    report = {
        'benchmark': 'train_compile',
        'command': 'PYTHONPATH=. python bench/train.py ' + ' '.join(sys.argv[1:]),
        'machine': common.machine_info(),
        'variants': run_compile_mode(),
        'json_path': os.path.relpath(FLAGS.json_out, os.getcwd()) if FLAGS.json_out else None,
    }
    text = common.write_json(FLAGS.json_out, report)
    print(text)
    if FLAGS.results_md:
      common.write_section(FLAGS.results_md, compile_markdown(report), _COMPILE_BEGIN,
                           _COMPILE_END)
    return
  import jax
  jax.config.update('jax_enable_compilation_cache', False)
  if FLAGS.child:
    print(json.dumps(run_child(json.loads(FLAGS.child)), allow_nan=False))
    return
  cfg = train_config(True)
  evo = cfg.model.embeddings_and_evoformer
  chunks = [None if c.lower() == 'none' else int(c) for c in FLAGS.chunk_sizes]
  sides = [spawn(remat, chunk) for chunk in chunks for remat in (True, False)]
  report = {
      'benchmark': 'train',
      'command': 'PYTHONPATH=. python bench/train.py ' + ' '.join(sys.argv[1:]),
      'machine': common.machine_info(),
      'settings': {'preset': FLAGS.preset, 'dims': FLAGS.dims, 'c_m': evo.msa_channel,
                   'c_z': evo.pair_channel, 'evoformer_blocks': FLAGS.evoformer_blocks,
                   'crop_size': FLAGS.crop_size, 'num_recycles': FLAGS.num_recycles,
                   'reps': FLAGS.reps, 'bfloat16': FLAGS.bfloat16},
      'sides': sides,
      'json_path': os.path.relpath(FLAGS.json_out, os.getcwd()) if FLAGS.json_out else None,
  }
  # Ratios against the training default of earlier sessions: remat on, unchunked.
  base = next((d for d in sides if d['remat'] and d['chunk'] is None and 'best_s' in d), None)
  for d in sides:
    if base is not None and 'best_s' in d:
      d['vs_baseline'] = {
          'compiled_peak': d['compiled_memory']['peak'] / base['compiled_memory']['peak'],
          'step_time': d['best_s'] / base['best_s'],
          'losses_equal': all(abs(a - b) <= 1e-4 * max(1.0, abs(b))
                              for a, b in zip(d['losses'], base['losses'])),
      }
  text = common.write_json(FLAGS.json_out, report)
  print(text)
  if FLAGS.results_md:
    common.write_section(FLAGS.results_md, markdown(report), _BEGIN, _END)


if __name__ == '__main__':
  app.run(main)
