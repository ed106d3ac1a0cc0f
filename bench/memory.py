"""Memory benchmark: one Evoformer block unchunked vs AutoChunk, in one run.

For each sequence length L, one Evoformer block (model_1_ptm dimensions:
c_m=256, c_z=128, 8 MSA heads, 4 triangle heads; N_seq MSA rows; float32) is
run two ways:
- unchunked: ChunkPlan() (every axial op one batched computation);
- AutoChunk: the plan `af_jax.autochunk.choose_plan` picks for a
  budget of arguments + outputs + `--activation_fraction` x the unchunked
  block's temporaries (0.15: the issue's target of 85% less activation memory),
  found from compiled figures only.

Each side runs in its own subprocess (so peak RSS is its own) and reports:
- compiled memory: XLA's buffer assignment (arguments, outputs, temporaries;
  peak = their sum - aliased). "Activations" below are the temporaries;
- measured peak RSS of the process (`resource.getrusage` ru_maxrss), and its
  RSS just before compiling (parameters, inputs, Python, JAX): the difference
  is what compiling and running the block added;
- time: best and median of `--reps` calls after one warm-up call.
Outputs of the two sides are compared (max abs difference), as a sanity check.

`--full_lengths` adds the whole model (all blocks, 1 recycle, the preset's MSA
depths, float32 and bfloat16) at its smallest AutoChunk plan, compiled only:
the longest L whose compiled peak plus a process margin fits the machine.

The machine is a shared 2-core CPU, so times are upper bounds and their ratio is
the figure to read. Results go to stdout, `--json_out` (default
bench/results/memory.json) and a section of `--results_md` between markers.

Usage:
  PYTHONPATH=. python bench/memory.py --lengths=256,512,1024 --full_lengths=2048,2304
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time

from absl import app, flags

# `python bench/memory.py` puts bench/ first on sys.path, where bench/compile_cache.py would
# shadow the compile_cache package that af_jax imports: the repository root goes first instead.
_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if sys.path and os.path.abspath(sys.path[0] or '.') == os.path.dirname(os.path.abspath(__file__)):
  sys.path[0] = _ROOT

from bench import common  # noqa: E402

flags.DEFINE_list('lengths', ['256', '384', '512'], 'Sequence lengths L.')
flags.DEFINE_integer('num_seq', 128, 'MSA rows N_seq.')
flags.DEFINE_float('activation_fraction', 0.15,
                   "AutoChunk's budget: arguments + outputs + this fraction of the unchunked "
                   "block's temporaries.")
flags.DEFINE_integer('reps', 1, 'Timed calls per side after one warm-up call.')
flags.DEFINE_integer('max_compiles', 4, "AutoChunk's compile budget per search.")
flags.DEFINE_string('preset', 'model_1_ptm', 'Model preset whose Evoformer block is run.')
flags.DEFINE_integer('seed', 0, 'Seed for parameters and inputs.')
flags.DEFINE_string('json_out', os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                             'results', 'memory.json'),
                    'Write the JSON results here ("" to skip).')
flags.DEFINE_string('results_md', os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                               'RESULTS.md'),
                    'Markdown file to write the section into ("" to skip).')
flags.DEFINE_list('full_lengths', [],
                  'Full model (all Evoformer blocks, 1 recycle, the preset\'s MSA depths): the '
                  'compiled peak of its smallest AutoChunk plan at these L, float32 and '
                  'bfloat16 (compiled only, nothing runs).')
flags.DEFINE_float('machine_gb', 24.0, 'Memory of the machine the full-model figures are '
                   'judged against (GB).')
flags.DEFINE_float('process_margin_gb', 2.0, 'Memory a full-model process needs beyond its '
                   "compiled peak (Python, JAX's runtime, host copies of the features), GB.")
# Internal: run one side in this process and print its JSON.
flags.DEFINE_string('confirm', None,
                    'L:dtype (e.g. 2048:float32): instead of the tables above, run the whole '
                    'model once at that length with --confirm_blocks Evoformer blocks and one '
                    'extra-MSA block, and add its measured peak RSS beside its compiled peak to '
                    'the JSON and markdown already written (the check that the full-model '
                    'compiled figures hold for a real run).')
flags.DEFINE_integer('confirm_blocks', 2, 'Evoformer blocks of the --confirm run.')
flags.DEFINE_string('confirm_child', None, 'Internal: JSON {"L", "dtype", "blocks"} to run.')
flags.DEFINE_string('child', None, 'Internal: JSON {"L", "plan"} of one side to run.')

FLAGS = flags.FLAGS
_BEGIN = '<!-- bench/memory.py:begin (generated; edit outside these markers) -->'
_END = '<!-- bench/memory.py:end -->'


def block_config():
  import af_jax
  return af_jax.model_config(FLAGS.preset)


def block_dims(cfg) -> tuple[int, int]:
  e = cfg.model.embeddings_and_evoformer
  return int(e.msa_channel), int(e.pair_channel)




def make_block(cfg, abstract: bool):
  from flax import nnx

  from af_jax.model.evoformer import EvoformerIteration
  c_m, c_z = block_dims(cfg)
  make = lambda: EvoformerIteration(  # noqa: E731
      cfg.model.embeddings_and_evoformer.evoformer, c_m=c_m, c_z=c_z, is_extra_msa=False,
      zero_init=False, rngs=nnx.Rngs(FLAGS.seed))
  return nnx.eval_shape(make) if abstract else make()


def block_forward(graphdef, plan):
  import jax
  from flax import nnx

  def forward(state, msa, pair, msa_mask, pair_mask):
    return nnx.merge(graphdef, state)(msa, pair, msa_mask, pair_mask, plan)
  return jax.jit(forward)


def block_activation_model(cfg, n_res: int, n_seq: int):
  """AutoChunk's analytic model for the block alone: no extra-MSA stack, no templates."""
  import jax
  import numpy as np

  from af_jax.autochunk import ActivationModel
  block_cfg = cfg.model.copy_and_resolve_references()
  block_cfg.embeddings_and_evoformer.extra_msa_stack_num_block = 0
  block_cfg.embeddings_and_evoformer.template.enabled = False
  shapes = {'aatype': jax.ShapeDtypeStruct((1, n_res), np.int32),
            'msa_feat': jax.ShapeDtypeStruct((1, n_seq, n_res, 49), np.float32),
            'extra_msa': jax.ShapeDtypeStruct((1, 1, n_res), np.int32)}
  return ActivationModel.from_config(block_cfg, shapes)


# ----------------------------------------------------------------------------
# One side, in a child process.


def run_child(spec: dict) -> dict:
  import jax
  import numpy as np
  from flax import nnx

  from af_jax.chunking import ChunkPlan
  from af_jax.autochunk import compiled_memory
  cfg = block_config()
  c_m, c_z = block_dims(cfg)
  n_res, n_seq = spec['L'], FLAGS.num_seq
  plan = ChunkPlan(**spec['plan'])
  graphdef, state = nnx.split(make_block(cfg, abstract=False))
  rng = np.random.default_rng(FLAGS.seed + n_res)
  args = (rng.normal(size=(n_seq, n_res, c_m)).astype(np.float32),
          rng.normal(size=(n_res, n_res, c_z)).astype(np.float32),
          (rng.random((n_seq, n_res)) > 0.05).astype(np.float32),
          np.ones((n_res, n_res), np.float32))
  args = jax.device_put(args)
  jax.block_until_ready(args)
  rss_before = common.current_rss()
  forward = block_forward(graphdef, plan)
  t = time.perf_counter()
  compiled = forward.lower(state, *args).compile()
  compile_s = time.perf_counter() - t
  maxrss_after_compile = common.peak_rss()
  t = time.perf_counter()
  out = jax.block_until_ready(compiled(state, *args))
  first_s = time.perf_counter() - t
  times = []
  for _ in range(FLAGS.reps):
    t = time.perf_counter()
    jax.block_until_ready(compiled(state, *args))
    times.append(time.perf_counter() - t)
  digest = {'msa_sum': float(np.asarray(out[0], np.float64).sum()),
            'pair_sum': float(np.asarray(out[1], np.float64).sum()),
            'msa_head': np.asarray(out[0][0, :4, :4]).ravel().tolist(),
            'pair_head': np.asarray(out[1][0, :4, :4]).ravel().tolist()}
  return {
      'L': n_res, 'plan': spec['plan'], 'compiled_memory': compiled_memory(compiled),
      'rss_before_compile_bytes': rss_before,
      'peak_rss_after_compile_bytes': maxrss_after_compile,
      'peak_rss_bytes': common.peak_rss(),
      'compile_s': compile_s, 'first_call_s': first_s, 'times_s': times,
      'best_s': min(times) if times else first_s,
      'median_s': statistics.median(times) if times else first_s,
      'output_digest': digest,
  }


def spawn(n_res: int, plan) -> dict:
  import dataclasses
  spec = json.dumps({'L': n_res, 'plan': dataclasses.asdict(plan)}, allow_nan=False)
  result = common.run_child(__file__, [
      f'--child={spec}', f'--num_seq={FLAGS.num_seq}', f'--reps={FLAGS.reps}',
      f'--preset={FLAGS.preset}', f'--seed={FLAGS.seed}'])
  if 'error' in result:
    return {'L': n_res, 'plan': dataclasses.asdict(plan), **result}
  return result


# ----------------------------------------------------------------------------
# The parent: plans, both sides, report.


def run_length(n_res: int) -> dict:
  import jax
  from flax import nnx

  from af_jax import autochunk
  from af_jax.chunking import ChunkPlan
  from af_jax.errors import InputError
  print(f'--- L = {n_res}', file=sys.stderr, flush=True)
  cfg = block_config()
  c_m, c_z = block_dims(cfg)
  graphdef, state = nnx.split(make_block(cfg, abstract=True))
  state = jax.tree_util.tree_map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), state)
  shapes = common.block_shapes(n_res, FLAGS.num_seq, c_m, c_z)

  def lower(plan):
    return block_forward(graphdef, plan).lower(state, *shapes)

  model = block_activation_model(cfg, n_res, FLAGS.num_seq)
  # AutoChunk's rules on this device: on a CPU the smallest plan is capped like every rung
  # and its peak includes the run-time scratch the buffer assignment does not show.
  cpu = jax.devices()[0].platform == 'cpu'
  smallest = model.ladder(cpu)[-1]
  unchunked_mem = autochunk.compiled_memory(lower(ChunkPlan()).compile())
  smallest_mem = autochunk.compiled_memory(lower(smallest).compile())
  smallest_mem['scratch'] = int(model.scratch_bytes(smallest)) if cpu else 0
  target = int(unchunked_mem['argument'] + unchunked_mem['output'] +
               FLAGS.activation_fraction * unchunked_mem['temp'])
  # What no plan can go below (the parts of the block that are not chunked: the
  # triangle multiplication's whole [L, L, c] projections, the residual stream):
  # when the target is under it, AutoChunk gets 10% above it instead.
  # Never above what AutoChunk would use by default on this machine (a plan chosen against
  # more than that is killed for memory when it runs).
  budget = max(min(target, autochunk.default_budget()),
               int(1.1 * (smallest_mem['peak'] + smallest_mem['scratch'])))
  t = time.perf_counter()
  try:
    chosen = autochunk.plan_program(lower, model, budget, max_compiles=FLAGS.max_compiles)
    search = {'plan': autochunk.plan_summary(chosen.plan), 'compiles': chosen.compiles,
              'predicted_peak_bytes': chosen.predicted_peak_bytes,
              'analytic_peak_bytes': chosen.analytic_peak_bytes}
    plan = chosen.plan
  except InputError as e:
    search, plan = {'error': str(e)}, None
  search['seconds'] = time.perf_counter() - t
  search.update(budget_bytes=budget, target_budget_bytes=target,
                smallest_plan_compiled_memory=smallest_mem,
                unchunked_compiled_memory=unchunked_mem)
  print(f'AutoChunk: {search}', file=sys.stderr, flush=True)

  result = {'L': n_res, 'autochunk_search': search, 'sides': {}}
  for name, p in (('unchunked', ChunkPlan()), ('autochunk', plan)):
    if p is None:
      continue
    side = spawn(n_res, p)
    result['sides'][name] = side
    shown = {k: side.get(k) for k in ('best_s', 'peak_rss_bytes')}
    print(f"{name}: {json.dumps(shown, allow_nan=False)} "
          f"{side.get('error', '')}", file=sys.stderr, flush=True)
  a, b = result['sides'].get('unchunked', {}), result['sides'].get('autochunk', {})
  if 'compiled_memory' in a and 'compiled_memory' in b:
    am, bm = a['compiled_memory'], b['compiled_memory']
    grown = lambda d: d['peak_rss_bytes'] - d['rss_before_compile_bytes']  # noqa: E731
    result['ratios'] = {
        'activation_reduction': 1 - bm['temp'] / max(am['temp'], 1),
        'compiled_peak_reduction': 1 - bm['peak'] / max(am['peak'], 1),
        'peak_rss_reduction': 1 - b['peak_rss_bytes'] / max(a['peak_rss_bytes'], 1),
        'rss_growth_reduction': 1 - grown(b) / max(grown(a), 1),
        'slowdown_best': b['best_s'] / a['best_s'] - 1,
        'slowdown_median': b['median_s'] / a['median_s'] - 1,
        'max_abs_diff_output_head': max(
            abs(x - y) for k in ('msa_head', 'pair_head')
            for x, y in zip(a['output_digest'][k], b['output_digest'][k])),
    }
  return result




def full_config(bf16: bool):
  """The preset at its real dimensions (48 blocks, full MSA depths) in the given dtype."""
  import af_jax
  cfg = af_jax.model_config(FLAGS.preset)
  cfg.model.global_config.bfloat16 = bf16
  return cfg


def smallest_plan_predictor(cfg, n_res: int):
  """(abstract Predictor at the smallest AutoChunk plan, the bucket's shapes, the plan)."""
  from af_jax import autochunk
  from af_jax.inference import Predictor
  from af_jax.run.warmup import bucket_shapes
  shapes = bucket_shapes(cfg, n_res, int(cfg.data.eval.max_msa_clusters),
                         int(cfg.data.common.max_extra_msa))
  plan = autochunk.ActivationModel.from_config(cfg, shapes).ladder()[-1]
  return Predictor(cfg, None, plan=plan), shapes, plan


def full_model(n_res: int, bf16: bool) -> dict:
  """Compiled memory of the whole model at its smallest AutoChunk plan (not run)."""
  from af_jax import autochunk
  cfg = full_config(bf16)
  cfg.model.num_recycle = 1
  predictor, shapes, plan = smallest_plan_predictor(cfg, n_res)
  t = time.perf_counter()
  compiled = predictor.lower(shapes).compile()
  seconds = time.perf_counter() - t
  mem = autochunk.compiled_memory(compiled)
  print(f'full model L={n_res} bf16={bf16}: compiled peak {mem["peak"] / 1e9:.2f} GB',
        file=sys.stderr, flush=True)
  return {'L': n_res, 'dtype': 'bfloat16' if bf16 else 'float32',
          'plan': autochunk.plan_summary(plan), 'compiled_memory': mem, 'compile_s': seconds,
          'msa_clusters': int(cfg.data.eval.max_msa_clusters),
          'extra_msa': int(cfg.data.common.max_extra_msa),
          'evoformer_blocks': int(cfg.model.embeddings_and_evoformer.evoformer_num_block)}


def run_confirm_child(spec: dict) -> dict:
  """One real forward pass of the model with fewer Evoformer and extra-MSA blocks (real
  dimensions otherwise, no recycling); its compiled figures and peak RSS."""
  import jax
  import numpy as np

  from af_jax import autochunk
  cfg = full_config(spec['dtype'] == 'bfloat16')
  cfg.model.num_recycle = 0
  cfg.data.common.num_recycle = 0
  cfg.model.embeddings_and_evoformer.evoformer_num_block = spec['blocks']
  cfg.model.embeddings_and_evoformer.extra_msa_stack_num_block = 1
  predictor, shapes, plan = smallest_plan_predictor(cfg, spec['L'])
  rng = np.random.default_rng(FLAGS.seed)
  state = common.random_state(predictor._state, rng)
  batch = jax.device_put(common.random_batch(shapes, rng))
  jax.block_until_ready((state, batch))
  rss_before = common.current_rss()
  t = time.perf_counter()
  compiled = predictor.lower(shapes).compile()
  compile_s = time.perf_counter() - t
  maxrss_after_compile = common.peak_rss()
  t = time.perf_counter()
  out = jax.block_until_ready(compiled(state, batch))
  run_s = time.perf_counter() - t
  plddt = np.asarray(out['plddt'])
  return {'L': spec['L'], 'dtype': spec['dtype'], 'evoformer_blocks': spec['blocks'],
          'extra_msa_blocks': 1, 'num_recycle': 0, 'plan': autochunk.plan_summary(plan),
          'compiled_memory': autochunk.compiled_memory(compiled),
          'rss_before_compile_bytes': rss_before,
          'peak_rss_after_compile_bytes': maxrss_after_compile,
          'peak_rss_bytes': common.peak_rss(),
          'compile_s': compile_s, 'run_s': run_s,
          'plddt_finite': bool(np.isfinite(plddt).all()), 'plddt_mean': float(plddt.mean())}


def confirm(spec_text: str) -> None:
  """Runs the few-block model in a child and adds the row to the report already written."""
  n_res, dtype = spec_text.split(':')
  if dtype not in ('float32', 'bfloat16'):
    raise app.UsageError(f'--confirm={spec_text}: the dtype must be float32 or bfloat16')
  spec = {'L': int(n_res), 'dtype': dtype, 'blocks': FLAGS.confirm_blocks}
  with open(FLAGS.json_out) as f:
    report = json.load(f)
  result = common.run_child(__file__, [
      f'--confirm_child={json.dumps(spec, allow_nan=False)}', f'--preset={FLAGS.preset}',
      f'--seed={FLAGS.seed}'])
  result.update({k: v for k, v in spec.items() if k not in result})
  result['command'] = 'PYTHONPATH=. python bench/memory.py ' + ' '.join(sys.argv[1:])
  result['machine'] = common.machine_info()
  print(json.dumps(result, allow_nan=False), file=sys.stderr, flush=True)
  report['confirm_runs'] = [r for r in report.get('confirm_runs', [])
                            if (r['L'], r['dtype']) != (spec['L'], dtype)] + [result]
  with open(FLAGS.json_out, 'w') as f:
    f.write(json.dumps(report, indent=1, allow_nan=False) + '\n')
  if FLAGS.results_md:
    common.write_section(FLAGS.results_md, markdown(report), _BEGIN, _END)


def carry_over(report: dict) -> None:
  """Keep the previous JSON's one-block rows (when --lengths is empty), its full-model rows
  (when no --full_lengths ran) and its --confirm runs, each labelled with the command and
  date it came from."""
  try:
    with open(FLAGS.json_out) as f:
      old = json.load(f)
  except (OSError, ValueError, TypeError):
    return
  old_run = {'command': old.get('command'), 'date': old.get('machine', {}).get('date')}
  for rows in ('full_model', 'results'):  # rows this run did not make
    if not report[rows] and old.get(rows):
      report[rows] = old[rows]
      report[f'{rows}_from'] = old.get(f'{rows}_from') or old_run
  if old.get('confirm_runs'):
    report['confirm_runs'] = old['confirm_runs']


def confirm_markdown(report: dict) -> list[str]:
  rows = report.get('confirm_runs') or []
  if not rows:
    return []
  mb = common.mb
  full = {(r['L'], r['dtype']): r['compiled_memory']['peak']
          for r in report.get('full_model') or []}
  lines = ['', 'Confirming run: the whole model at real dimensions (templates on, the full '
           'MSA and extra-MSA depths, smallest plan) with fewer blocks, run once in its own '
           'process; its compiled peak against the measured peak RSS (`ru_maxrss`). The '
           'activations of one block are what the 48-block model holds too (blocks run one '
           'after another); the difference is the stacked parameters.', '',
           '| L | dtype | blocks (Evoformer, extra MSA) | compiled peak (MB) | RSS before '
           'compile (MB) | peak RSS (MB) | peak RSS - compiled peak (MB) | 48-block compiled '
           'peak (MB) | run (s) | date, machine |',
           '|---:|---|---|---:|---:|---:|---:|---:|---:|---|']
  for r in rows:
    ref = full.get((r['L'], r['dtype']))
    when = f"{r['machine']['date']}, {r['machine']['cpu']}"
    if 'error' in r:
      lines.append(f"| {r['L']} | {r['dtype']} | {r['blocks']}, 1 | | | did not run: "
                   f"{r['error']} | | {mb(ref) if ref else ''} | | {when} |")
      continue
    peak = r['compiled_memory']['peak']
    lines.append(
        f"| {r['L']} | {r['dtype']} | {r['evoformer_blocks']}, {r['extra_msa_blocks']} | "
        f"{mb(peak)} | {mb(r['rss_before_compile_bytes'])} | {mb(r['peak_rss_bytes'])} | "
        f"{mb(r['peak_rss_bytes'] - peak)} | {mb(ref) if ref else ''} | {r['run_s']:.0f} | "
        f"{when} |")
  lines.append(f"\nCommand: `{rows[-1]['command']}`")
  return lines


def full_model_markdown(report: dict) -> list[str]:
  rows = report.get('full_model') or []
  if not rows:
    return []
  limit = report['settings']['machine_gb'] * 1e9
  rss = report['settings']['process_margin_gb'] * 1e9
  lines = ['', f"Full model ({report['settings']['preset']}, {rows[0]['evoformer_blocks']} "
           f"Evoformer blocks, 1 recycle, {rows[0]['msa_clusters']} MSA clusters, "
           f"{rows[0]['extra_msa']} extra MSA rows, templates on), smallest AutoChunk plan, "
           'compiled figures only (XLA\'s buffer assignment; nothing runs). "Fits" means '
           f"compiled peak + a {common.mb(rss)} MB margin for the process (Python, JAX's runtime, "
           f"host copies of the features) is within {report['settings']['machine_gb']:.0f} GB. "
           + ('The confirming run below checks that figure against a real run.'
              if report.get('confirm_runs') else
              'Not confirmed by a run: the one-block runs above show how far measured peak '
              'RSS lies above the compiled peak.'),
           '', '| L | dtype | compiled peak (MB) | temporaries (MB) | compiled peak fits | '
           'compile (s) |',
           '|---:|---|---:|---:|---|---:|']
  src = report.get('full_model_from')
  if src:
    lines[2:2] = ['', f"(Rows from an earlier run, {src.get('date')}: `{src.get('command')}`.)"]
  for r in rows:
    m = r['compiled_memory']
    fits = 'yes' if m['peak'] + rss <= limit else 'no'
    lines.append(f"| {r['L']} | {r['dtype']} | {common.mb(m['peak'])} | {common.mb(m['temp'])} "
                 f"| {fits} | {r['compile_s']:.0f} |")
  for dtype in ('float32', 'bfloat16'):
    ok = [r['L'] for r in rows if r['dtype'] == dtype
          and r['compiled_memory']['peak'] + rss <= limit]
    lines.append(f"\nLongest L whose compiled peak fits, {dtype}: "
                 f"{max(ok) if ok else 'none of those tried'} (an upper bound on CPU: a run also "
                 "needs XLA:CPU's run-time scratch, which the compiled figures leave out).")
  return lines


def markdown(report: dict) -> str:
  mb = common.mb
  m, s = report['machine'], report['settings']
  lines = [
      _BEGIN,
      '## Memory: one Evoformer block, unchunked vs AutoChunk (`bench/memory.py`)',
      '',
      f"- Date: {m['date']}; machine: {m['nproc']} CPU(s) ({m['cpu']}), {m['device']}; "
      f"jax {m['jax']}; load average at start {m['load_average']} (a shared machine: times "
      'are upper bounds, read the ratios).',
      f"- Command (from the repository root): `{report['command']}`",
      f"- One Evoformer block of {s['preset']} (c_m={s['c_m']}, c_z={s['c_z']}), "
      f"N_seq={s['num_seq']}, float32, random parameters and inputs. AutoChunk budget: "
      f"arguments + outputs + {s['activation_fraction']:.0%} of the unchunked block's "
      "temporaries"
      + (" (at most AutoChunk's default budget on this machine)"
         if s.get('budget_capped_at_default') else '')
      + ", or 1.1x the smallest plan's compiled peak where that target is below "
      'what any plan reaches; the plan is found from compiled figures only (nothing runs '
      'during the search). Each side runs in its own process: peak RSS is `ru_maxrss`, and '
      '"RSS added" is peak RSS minus the RSS before compiling (parameters and inputs '
      'already resident).',
      f"- Times: best of {s['reps']} calls after a warm-up call.",
  ]
  src = report.get('results_from')
  if src:
    lines.append(f"- The one-block rows are from an earlier run, {src.get('date')}: "
                 f"`{src.get('command')}`.")
  lines += [
      '',
      '| L | side | plan | activations (MB, compiled temp) | compiled peak (MB) | '
      'peak RSS (MB) | RSS added (MB) | best (s) |',
      '|---:|---|---|---:|---:|---:|---:|---:|',
  ]
  for r in report['results']:
    for name, d in r['sides'].items():
      if 'error' in d:
        error = d['error']
        if error.startswith('exit -9'):
          error = 'killed (SIGKILL: out of memory)'
        cm = (r['autochunk_search'].get('unchunked_compiled_memory') if name == 'unchunked'
              else None)
        if cm:  # the compiled figures are known without running
          lines.append(f"| {r['L']} | {name} | unchunked | {mb(cm['temp'])} | {mb(cm['peak'])} "
                       f"| did not run: {error} | | |")
        else:
          lines.append(f"| {r['L']} | {name} | | | | | | failed: {error} |")
        continue
      plan = 'unchunked' if name == 'unchunked' else r['autochunk_search']['plan']
      cm = d['compiled_memory']
      lines.append(f"| {r['L']} | {name} | {plan} | {mb(cm['temp'])} | {mb(cm['peak'])} | "
                   f"{mb(d['peak_rss_bytes'])} | "
                   f"{mb(d['peak_rss_bytes'] - d['rss_before_compile_bytes'])} | "
                   f"{d['best_s']:.2f} |")
  lines += ['', '| L | target budget (MB) | smallest plan peak (MB) |'
            ' budget used (MB) |', '|---:|---:|---:|---:|']
  for r in report['results']:
    srch = r['autochunk_search']
    lines.append(f"| {r['L']} | {mb(srch['target_budget_bytes'])} | "
                 f"{mb(srch['smallest_plan_compiled_memory']['peak'])} | "
                 f"{mb(srch['budget_bytes'])} |")
  lines += ['', '| L | budget (MB) | AutoChunk compiles (search s) | activations cut | '
            'compiled peak cut | peak RSS cut | RSS added cut | slower (best) |',
            '|---:|---:|---:|---:|---:|---:|---:|---:|']
  for r in report['results']:
    q, srch = r.get('ratios'), r['autochunk_search']
    b = r['sides'].get('autochunk', {})
    if q is None and 'compiled_memory' in b and 'unchunked_compiled_memory' in srch:
      # The unchunked side did not run: the compiled figures still compare.
      um, bm_ = srch['unchunked_compiled_memory'], b['compiled_memory']
      lines.append(f"| {r['L']} | {mb(srch['budget_bytes'])} | {srch['compiles']} "
                   f"({srch['seconds']:.0f}) | {1 - bm_['temp'] / um['temp']:.0%} | "
                   f"{1 - bm_['peak'] / um['peak']:.0%} | unchunked did not run | | |")
      continue
    if q is None:
      lines.append(f"| {r['L']} | {mb(srch['budget_bytes'])} | "
                   f"{srch.get('error', 'failed')} | | | | | |")
      continue
    lines.append(f"| {r['L']} | {mb(srch['budget_bytes'])} | {srch['compiles']} "
                 f"({srch['seconds']:.0f}) | {q['activation_reduction']:.0%} | "
                 f"{q['compiled_peak_reduction']:.0%} | {q['peak_rss_reduction']:.0%} | "
                 f"{q['rss_growth_reduction']:.0%} | {q['slowdown_best']:+.0%} |")
  lines += full_model_markdown(report)
  lines += confirm_markdown(report)
  lines += common.json_link(FLAGS.json_out, FLAGS.results_md) + ['', _END]
  return '\n'.join(lines) + '\n'




def main(argv):
  del argv
  import jax
  jax.config.update('jax_enable_compilation_cache', False)
  if FLAGS.child:
    print(json.dumps(run_child(json.loads(FLAGS.child)), allow_nan=False))
    return
  if FLAGS.confirm_child:
    print(json.dumps(run_confirm_child(json.loads(FLAGS.confirm_child)), allow_nan=False))
    return
  if FLAGS.confirm:
    confirm(FLAGS.confirm)
    return
  from absl import logging
  logging.set_verbosity(logging.INFO)
  cfg = block_config()
  c_m, c_z = block_dims(cfg)
  report = {
      'benchmark': 'memory',
      'command': 'PYTHONPATH=. python bench/memory.py ' + ' '.join(sys.argv[1:]),
      'machine': common.machine_info(),
      'settings': {'preset': FLAGS.preset, 'c_m': c_m, 'c_z': c_z, 'num_seq': FLAGS.num_seq,
                   'activation_fraction': FLAGS.activation_fraction, 'reps': FLAGS.reps,
                   'max_compiles': FLAGS.max_compiles, 'dtype': 'float32',
                   'machine_gb': FLAGS.machine_gb,
                   'process_margin_gb': FLAGS.process_margin_gb,
                   'budget_capped_at_default': True},
      'results': [run_length(int(n)) for n in FLAGS.lengths],
      'full_model': [full_model(int(n), bf16) for n in FLAGS.full_lengths
                     for bf16 in (False, True)],
      'json_path': os.path.relpath(FLAGS.json_out, os.getcwd()) if FLAGS.json_out else None,
  }
  carry_over(report)
  text = json.dumps(report, indent=1, allow_nan=False)
  print(text)
  if FLAGS.json_out:
    os.makedirs(os.path.dirname(FLAGS.json_out), exist_ok=True)
    with open(FLAGS.json_out, 'w') as f:
      f.write(text + '\n')
  if FLAGS.results_md:
    common.write_section(FLAGS.results_md, markdown(report), _BEGIN, _END)


if __name__ == '__main__':
  app.run(main)
