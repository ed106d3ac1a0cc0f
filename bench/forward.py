"""Forward-pass benchmark: af_jax against the reference AlphaFold, in one process.

Both sides get the same perturbed random parameters (model_1_ptm dimensions)
and the same random processed features, and run the same function: ONE
recycling iteration (trunk + structure module + heads + confidence metrics),
in float32. af_jax runs with `model.num_recycle = 0`; the reference's
`RunModel.apply` always runs one iteration (its recycles are driven from
Python), with zero `prev` inputs. Block counts are cut to keep the run short on
a CPU (flags); everything else has model_1_ptm's dimensions.

For each sequence length L and each side it reports:
- compile seconds: `jit(...).lower(args)` + `.compile()`, with the persistent
  compilation cache off;
- steady-state seconds per prediction: best and median of `--reps` calls of
  the compiled executable on device-resident inputs, the two sides
  interleaved. The best is the headline: on a shared machine other processes
  only ever add time;
- peak memory: XLA's buffer assignment of the compiled executable
  (`memory_analysis()`: arguments + outputs + temporaries - aliased), the
  parameters included as arguments;
- model FLOPs: matmul (dot_general) FLOPs counted on the jaxpr, with scan
  bodies multiplied by their length (XLA's `cost_analysis()` counts a
  while/scan body once, which under-counts both sides; its number is kept in
  the JSON as `xla_cost_analysis_flops` for reference);
- achieved FLOP/s = model FLOPs / best seconds, and that as a percentage of
  the machine's float32 matmul rate (a jitted n^3 matmul, sampled at the start
  and after every length of the same run; the best sample);
- progress on vs off: af_jax again with `report_progress=True` (run_inference.py's
  default `--progress`: each iteration's pLDDT, pTM and CA change computed inside the loop
  and sent to the host), timed interleaved with the other two; the ratio of its time to
  af_jax's, whether its outputs are bit-identical, and the time of the two metrics alone
  (the pLDDT head + mean; the PAE head + pTM), each jitted on its own at that length.

Results go to stdout and `--json_out` as JSON (default bench/results/forward.json, or
forward_<md_section>.json), and into `--results_md` as markdown tables with a link to the JSON
(between markers, so notes outside them are kept).

Usage:
  PYTHONPATH=. python bench/forward.py --lengths=64,128,256
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time

from absl import app, flags

# `python bench/forward.py` puts bench/ first on sys.path, where bench/compile_cache.py would
# shadow the compile_cache package that af_jax imports: the repository root goes first instead.
if sys.path and os.path.abspath(sys.path[0] or '.') == os.path.dirname(os.path.abspath(__file__)):
  sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

from bench import common  # noqa: E402
from bench.common import (  # noqa: E402
    Side, count_flops, load_average, matmul_rate, xla_flops)

flags.DEFINE_list('lengths', ['64', '128', '256'], 'Sequence lengths L to run.')
flags.DEFINE_integer('num_seq', 128, 'MSA clusters N_seq (msa_feat rows; model_1_ptm '
                     'appends one row per template).')
flags.DEFINE_integer('num_extra', 256, 'Extra MSA sequences N_extra.')
flags.DEFINE_integer('num_templates', 4, 'Templates T.')
flags.DEFINE_integer('evoformer_blocks', 2, 'Evoformer blocks (48 in the real model).')
flags.DEFINE_integer('extra_blocks', 1, 'Extra-MSA stack blocks (4 in the real model).')
flags.DEFINE_integer('template_blocks', 2, 'Template pair stack blocks (2 in the real model).')
flags.DEFINE_integer('reps', 4, 'Timed calls per side and length (after one warm-up call).')
flags.DEFINE_integer('matmul_n', 2048, 'Size n of the n x n x n float32 matmul that '
                     'measures the machine matmul rate.')
flags.DEFINE_integer('ref_subbatch_size', -1,
                     "Reference global_config.subbatch_size: -1 keeps the reference's "
                     'default (4: its attention runs 4 rows at a time); 0 sets None '
                     '(unchunked, as --af_jax_chunk=none).')
flags.DEFINE_string('af_jax_chunk', 'auto',
                    "af_jax's ChunkPlan: 'auto' (what run_inference.py's default --chunk=auto "
                    'picks with memory to spare, per length: on a CPU the cache-sized plan), '
                    "'none' (unchunked) or N (every axial op but the template point-wise "
                    'attention at chunk N).')
flags.DEFINE_string('preset', 'model_1_ptm', 'Model preset (both sides).')
flags.DEFINE_integer('seed', 0, 'Seed for parameters and features.')
flags.DEFINE_string('json_out', None, 'Write the JSON results here (default: '
                    'bench/results/forward.json, forward_<md_section>.json for another '
                    'section; "" to skip).')
flags.DEFINE_string('results_md', os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                               'RESULTS.md'),
                    'Markdown file to write the table into ("" to skip).')

flags.DEFINE_string('md_section', 'main',
                    'Name of the section of --results_md this run replaces (one per '
                    'configuration, e.g. "main", "chunk16").')

FLAGS = flags.FLAGS


def json_path() -> str:
  """Where the JSON goes: --json_out, or bench/results/forward[_<md_section>].json."""
  if FLAGS.json_out is not None:
    return FLAGS.json_out
  name = 'forward.json' if FLAGS.md_section == 'main' else f'forward_{FLAGS.md_section}.json'
  return os.path.join(os.path.dirname(os.path.abspath(__file__)), 'results', name)


def _markers(section: str) -> tuple[str, str]:
  return (f'<!-- bench/forward.py:{section}:begin (generated; edit outside these markers) -->',
          f'<!-- bench/forward.py:{section}:end -->')


# ----------------------------------------------------------------------------
# Inputs and parameters.


def make_batch(n_res: int, n_seq: int, n_extra: int, n_templ: int, seed: int) -> dict:
  """A random processed batch (one recycle slice) with AlphaFold's processed names."""
  import numpy as np

  from af_jax.common import residue_constants as rc
  from af_jax.model import all_atom
  rng = np.random.default_rng(seed)
  aatype = rng.integers(0, 20, n_res)
  # target_feat: has_break + one-hot over 21 residue types.
  target_feat = np.concatenate([np.zeros((n_res, 1)), np.eye(21)[aatype]], -1)
  # msa_feat: msa one-hot (23), has_deletion, deletion_value, cluster profile (23),
  # deletion mean: 49 channels.
  msa = rng.integers(0, 22, (n_seq, n_res))
  msa[0] = aatype
  has_del = (rng.random((n_seq, n_res)) < 0.1).astype(np.float32)
  profile = rng.dirichlet(np.ones(23), (n_seq, n_res))
  msa_feat = np.concatenate([np.eye(23)[msa], has_del[..., None],
                             (rng.random((n_seq, n_res, 1)) * has_del[..., None]),
                             profile, rng.random((n_seq, n_res, 1)) * 0.1], -1)
  extra_has_del = (rng.random((n_extra, n_res)) < 0.1).astype(np.float32)
  # Templates: a random walk of CA positions with the other atoms nearby.
  t_aatype = rng.integers(0, 20, (n_templ, n_res))
  ca = np.cumsum(rng.normal(size=(n_templ, n_res, 3)), axis=1) * 2.2
  pos = ca[:, :, None, :] + rng.normal(size=(n_templ, n_res, 37, 3)) * 1.2
  pos[:, :, 1] = ca
  t_mask = np.asarray(rc.restype_atom37_mask)[t_aatype]
  pos = pos * t_mask[..., None]
  cb = np.where((t_aatype == rc.restype_order['G'])[..., None], pos[:, :, 1], pos[:, :, 3])
  batch = {
      'aatype': aatype, 'residue_index': np.arange(n_res), 'seq_mask': np.ones(n_res),
      'target_feat': target_feat, 'msa_feat': msa_feat, 'msa_mask': np.ones((n_seq, n_res)),
      'msa_row_mask': np.ones(n_seq),
      'extra_msa': rng.integers(0, 23, (n_extra, n_res)),
      'extra_msa_mask': np.ones((n_extra, n_res)), 'extra_has_deletion': extra_has_del,
      'extra_deletion_value': rng.random((n_extra, n_res)) * extra_has_del,
      'extra_msa_row_mask': np.ones(n_extra),
      'template_aatype': t_aatype, 'template_all_atom_positions': pos,
      'template_all_atom_masks': t_mask, 'template_pseudo_beta': cb,
      'template_pseudo_beta_mask': np.ones((n_templ, n_res)), 'template_mask': np.ones(n_templ),
      **{k: np.asarray(v) for k, v in all_atom.make_atom14_masks(aatype).items()},
  }
  out = {}
  for k, v in batch.items():
    v = np.asarray(v)
    v = v.astype(np.int32 if v.dtype.kind in 'iu' else np.float32)
    out[k] = v[None]  # the leading recycle axis: one slice
  return out


def zero_prev(n_res: int) -> dict:
  import numpy as np
  return {'prev_msa_first_row': np.zeros((n_res, 256), np.float32),
          'prev_pair': np.zeros((n_res, n_res, 128), np.float32),
          'prev_pos': np.zeros((n_res, 37, 3), np.float32)}


def set_sizes(cfg) -> None:
  e = cfg.model.embeddings_and_evoformer
  e.evoformer_num_block = FLAGS.evoformer_blocks
  e.extra_msa_stack_num_block = FLAGS.extra_blocks
  e.template.template_pair_stack.num_block = FLAGS.template_blocks
  cfg.model.num_recycle = 0


def chunk_plan(predictor=None, batch=None):
  """af_jax's ChunkPlan from --af_jax_chunk (for 'auto', the predictor's at this batch)."""
  import dataclasses

  from af_jax import autochunk
  from af_jax.chunking import ChunkPlan
  from af_jax.inference import feature_shapes
  choice = FLAGS.af_jax_chunk.strip().lower()
  if choice == 'none':
    return ChunkPlan()
  if choice == 'auto':
    if predictor is None:
      return ChunkPlan()
    # The analytic pick (no compile): with memory to spare it is the plan the compiled
    # search confirms (run_inference.py --chunk=auto).
    return autochunk.choose_plan(predictor, feature_shapes(batch, predictor.use_templates),
                                 autochunk.default_budget(), max_compiles=0,
                                 use_cache=False).plan
  return ChunkPlan(**{f.name: int(choice) for f in dataclasses.fields(ChunkPlan)
                      if f.name != 'template_pointwise_attention'})


def plan_setting() -> str:
  """The --af_jax_chunk setting in words, for the report."""
  choice = FLAGS.af_jax_chunk.strip().lower()
  if choice == 'none':
    return 'unchunked (ChunkPlan())'
  if choice == 'auto':
    return ("AutoChunk's pick per length with memory to spare (run_inference.py's default "
            '--chunk=auto; the plans are in the JSON)')
  return f'{choice} for every axial op'


def reference_config():
  from tests.parity import ref_utils
  cfg = ref_utils.ref_model_config(FLAGS.preset)
  set_sizes(cfg)
  if FLAGS.ref_subbatch_size >= 0:
    cfg.model.global_config.subbatch_size = FLAGS.ref_subbatch_size or None
  return cfg


def make_params(runner, seed: int):
  """Reference-initialised params, every array perturbed: (fused haiku, unfused flat)."""
  import jax
  from alphafold.model import utils as ref_model_utils

  from tests.parity import ref_utils
  n = 16
  batch = make_batch(n, 8, 8, FLAGS.num_templates, seed)
  init = runner.init(jax.random.PRNGKey(seed), {**batch, 'prev': zero_prev(n)})
  # The e2e parity scale: every array random, structure module well-conditioned.
  fused_flat = ref_utils.perturb(ref_utils.flatten(init), seed + 1, scale=0.2)
  fused = ref_model_utils.flat_params_to_haiku(fused_flat, fuse=True, to_jnp=True)
  unfused = ref_utils.flatten(
      ref_model_utils.flat_params_to_haiku(fused_flat, fuse=False, to_jnp=False))
  return fused, unfused


# ----------------------------------------------------------------------------
# Measuring one side.


def run_length(n_res: int, ref_runner, ref_params, predictor) -> dict:
  import jax
  import numpy as np

  from af_jax import inference
  print(f'--- L = {n_res}', file=sys.stderr, flush=True)
  batch = make_batch(n_res, FLAGS.num_seq, FLAGS.num_extra, FLAGS.num_templates,
                     FLAGS.seed + n_res)

  # Reference: RunModel.apply(params, key, {batch slice, prev}).
  ref_feats = jax.device_put({**batch, 'prev': zero_prev(n_res)})
  ref = Side('reference', ref_runner.apply, (ref_params, jax.random.PRNGKey(0), ref_feats))
  # af_jax: the Predictor's jitted (state, features) -> outputs, compiled through
  # Predictor.lower; called directly so that both sides time only the executable.
  if FLAGS.af_jax_chunk.strip().lower() == 'auto':
    predictor = predictor.with_plan(chunk_plan(predictor, batch))
  feats = jax.device_put(inference.select_features(batch, predictor.use_templates))
  ours = Side('af_jax', predictor._forward, (predictor._state, feats),  # noqa: SLF001
              lower=lambda: predictor.lower(batch))
  reporting = predictor.with_progress(True)
  progress_side = Side('af_jax_progress', reporting._forward,  # noqa: SLF001
                       (reporting._state, feats), lower=lambda: reporting.lower(batch))  # noqa: SLF001
  sides = (ref, ours, progress_side)

  from af_jax import autochunk
  result = {'L': n_res, 'af_jax_plan': autochunk.plan_summary(predictor.plan),
            'load_average_before': load_average(), 'sides': {}}
  for s in sides:
    print(f'compiling {s.name}', file=sys.stderr, flush=True)
    s.compile()
    s.out, first_s = s.call()  # warm-up
    flops = count_flops(jax.make_jaxpr(s.jitted)(*s.args).jaxpr, while_trips=1)
    result['sides'][s.name] = {
        'compile_s': s.compile_s, 'first_call_s': first_s,
        'memory_bytes': autochunk.compiled_memory(s.compiled),
        'model_flops': flops['matmul'], 'elementwise_ops': flops['other'],
        'while_loops_counted_once': flops['while_loops'],
        'xla_cost_analysis_flops': xla_flops(s.compiled),
    }
    print(f'{s.name}: compile {s.compile_s:.1f}s, first call {first_s:.2f}s', file=sys.stderr,
          flush=True)
  # Interleaved (ABBA...) so that drifts in machine load hit both sides alike.
  common.time_interleaved(sides, FLAGS.reps)
  result['load_average_after'] = load_average()
  for s in sides:
    r = result['sides'][s.name]
    r['times_s'] = s.times
    r['best_s'] = min(s.times)
    r['median_s'] = statistics.median(s.times)

  a, b = result['sides']['reference'], result['sides']['af_jax']
  on = result['sides']['af_jax_progress']
  result['progress'] = {
      'on_over_off_best': on['best_s'] / b['best_s'],
      'on_over_off_median': on['median_s'] / b['median_s'],
      'outputs_identical': _identical(ours.out, progress_side.out),
      **metric_seconds(predictor, n_res),
  }
  result['ratios'] = {
      'speedup_best': a['best_s'] / b['best_s'],
      'speedup_median': a['median_s'] / b['median_s'],
      'compile_ref_over_af_jax': a['compile_s'] / b['compile_s'],
      'peak_memory_af_jax_over_ref': (b['memory_bytes'].get('peak', 0) /
                                      max(a['memory_bytes'].get('peak', 0), 1)),
  }
  ref_pos = np.asarray(ref.out['structure_module']['final_atom_positions'])
  pos = np.asarray(ours.out['structure_module']['final_atom_positions'])
  result['sanity'] = {
      'max_abs_diff_final_atom_positions_A': float(np.max(np.abs(pos - ref_pos))),
      'max_abs_diff_plddt': float(np.max(np.abs(np.asarray(ours.out['plddt']) -
                                                np.asarray(ref.out['plddt'])))),
      'ptm_reference_af_jax': [float(ref.out['ptm']), float(ours.out['ptm'])],
  }
  print(json.dumps({'L': n_res, 'ratios': result['ratios'], 'sanity': result['sanity']},
                   allow_nan=False),
        file=sys.stderr, flush=True)
  return result


def _identical(a, b) -> bool:
  import jax
  import numpy as np
  pairs = zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b), strict=True)
  return all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in pairs)


def metric_seconds(predictor, n_res: int) -> dict:
  """Best-of-reps seconds of what a progress line computes, each part jitted alone on
  random representations of length `n_res`: the pLDDT head and its mean, the PAE head and
  pTM."""
  import jax
  import jax.numpy as jnp
  from flax import nnx

  from af_jax.common import confidence
  model = nnx.merge(predictor._graphdef, predictor._state)  # noqa: SLF001
  cfg = predictor.config.model
  key_a, key_p = jax.random.split(jax.random.key(FLAGS.seed))
  act = jax.random.normal(key_a, (n_res, cfg.heads.structure_module.num_channel))
  pair = jax.random.normal(key_p, (n_res, n_res, cfg.embeddings_and_evoformer.pair_channel))
  mask = jnp.ones((n_res,))

  def plddt(act):
    return jnp.mean(confidence.plddt(model.predicted_lddt_head(act)['logits']))

  def ptm(pair):
    pae = model.predicted_aligned_error_head(pair)
    return confidence.predicted_tm_score(pae['logits'], pae['breaks'], mask)

  out = {}
  for name, fn, arg in (('plddt_metric_s', plddt, act), ('ptm_metric_s', ptm, pair),
                        ('callback_s', _callback_loop(True), jnp.float32(0)),
                        ('no_callback_s', _callback_loop(False), jnp.float32(0))):
    compiled = jax.jit(fn).lower(arg).compile()
    jax.block_until_ready(compiled(arg))
    times = []
    for _ in range(max(FLAGS.reps, 3)):
      t = time.perf_counter()
      jax.block_until_ready(compiled(arg))
      times.append(time.perf_counter() - t)
    out[name] = min(times)
  # One report's host round trip: a loop of _CALLBACK_TRIPS reports minus the same loop
  # without them, per trip.
  out['callback_s'] = (out['callback_s'] - out.pop('no_callback_s')) / _CALLBACK_TRIPS
  return out


_CALLBACK_TRIPS = 100


def _callback_loop(report: bool):
  """A while loop of scalar steps that sends four scalars to the host each trip (as
  model.progress.report does) or not."""
  import jax
  import jax.numpy as jnp
  from jax.experimental import io_callback

  def body(carry):
    i, x = carry
    x = jnp.sin(x) + 1.0
    if report:
      io_callback(lambda *values: None, None, i, x, x * 2, x * 3, ordered=False)
    return i + 1, x

  return lambda x: jax.lax.while_loop(lambda c: c[0] < _CALLBACK_TRIPS, body, (0, x))[1]


def add_rates(results: list[dict], machine_rate: float) -> None:
  """Achieved FLOP/s (model FLOPs / best time) and its share of the machine's matmul rate."""
  for r in results:
    for d in r['sides'].values():
      d['flops_per_s'] = d['model_flops'] / d['best_s']
      d['pct_of_matmul_rate'] = 100.0 * d['flops_per_s'] / machine_rate
      d['xla_flops_per_s'] = (d['xla_cost_analysis_flops'] or 0.0) / d['best_s']


# ----------------------------------------------------------------------------
# Report.


def command_line() -> str:
  args = ' '.join(sys.argv[1:])
  return f'PYTHONPATH=. python bench/forward.py {args}'.rstrip()


def markdown(report: dict) -> str:
  m, s, mr = report['machine'], report['settings'], report['matmul_rate']
  begin, end = _markers(FLAGS.md_section)
  title = '' if FLAGS.md_section == 'main' else f' [{FLAGS.md_section}]'
  lines = [
      begin,
      f'## Forward pass: af_jax vs reference AlphaFold (`bench/forward.py`){title}',
      '',
      f"- Date: {m['date']}; machine: {m['nproc']} CPU(s) ({m['cpu']}), {m['device']}; "
      f"jax {m['jax']}, jaxlib {m['jaxlib']}, Python {m['python']}.",
      f"- Command (from the repository root): `{report['command']}`",
      f"- Function: one recycling iteration (embeddings, templates, extra-MSA stack, Evoformer, "
      f"structure module, heads, confidence) of {s['preset']} in float32, the same perturbed "
      f"random parameters and random processed features on both sides; "
      f"N_seq={s['num_seq']} (+{s['num_templates']} template rows), N_extra={s['num_extra']}, "
      f"T={s['num_templates']}, Evoformer blocks={s['evoformer_blocks']}, extra-MSA blocks="
      f"{s['extra_blocks']}, template pair blocks={s['template_blocks']} "
      f"({s['param_bytes'] / 2**20:.0f} MB of parameters); reference `subbatch_size`="
      f"{s['ref_subbatch_size']}, af_jax chunk plan: {s['af_jax_chunk_plan']}.",
      f"- Machine float32 matmul rate ({mr['n']}^3 jitted matmul, measured "
      f"{mr['measurements']} times through the run): best {mr['best'] / 1e9:.1f} GFLOP/s, "
      f"median {mr['median'] / 1e9:.1f} GFLOP/s; % of matmul rate below is against the best.",
      f"- Times: {s['reps']} interleaved calls per side of the compiled executable after a "
      'warm-up; best and median. Compile = lower + compile, persistent cache off. Peak memory = '
      "XLA's buffer assignment of the executable (arguments incl. parameters + outputs + "
      'temporaries). Model FLOPs = dot_general FLOPs of the jaxpr with every scan body times '
      "its length (XLA's `cost_analysis()` counts each loop body once; its figures are in the "
      'JSON).',
      '',
      '| L | side | compile (s) | best (s/pred) | median (s/pred) | peak mem (MB) | '
      'model GFLOP | GFLOP/s | % of matmul rate |',
      '|---:|---|---:|---:|---:|---:|---:|---:|---:|',
  ]
  for r in report['results']:
    for name in ('reference', 'af_jax'):
      d = r['sides'][name]
      lines.append(
          f"| {r['L']} | {name} | {d['compile_s']:.1f} | {d['best_s']:.3f} | "
          f"{d['median_s']:.3f} | {d['memory_bytes'].get('peak', 0) / 2**20:.0f} | "
          f"{d['model_flops'] / 1e9:.1f} | {d['flops_per_s'] / 1e9:.1f} | "
          f"{d['pct_of_matmul_rate']:.1f} |")
  lines += ['', '| L | speedup, best (ref / af_jax) | speedup, median | compile (ref / af_jax) '
            '| peak memory (af_jax / ref) | max abs Δ final atom positions (Å) |',
            '|---:|---:|---:|---:|---:|---:|']
  for r in report['results']:
    q = r['ratios']
    lines.append(f"| {r['L']} | {q['speedup_best']:.2f}x | {q['speedup_median']:.2f}x | "
                 f"{q['compile_ref_over_af_jax']:.2f} | {q['peak_memory_af_jax_over_ref']:.2f} | "
                 f"{r['sanity']['max_abs_diff_final_atom_positions_A']:.1e} |")
  lines += ['', 'Progress (`report_progress=True`, run_inference.py `--progress`) on vs off, the '
            'same af_jax executable otherwise, timed interleaved with the two sides above; '
            'one iteration of the cut-down trunk, so the ratio overstates the share in a real '
            "model's iteration (48 Evoformer blocks). Metric times: each part jitted alone.",
            '', '| L | off best (s) | on best (s) | on / off, best | on / off, median | '
            'pLDDT metric (ms) | PAE head + pTM (ms) | host callback (ms) | outputs identical |',
            '|---:|---:|---:|---:|---:|---:|---:|---:|---|']
  for r in report['results']:
    p, d = r['progress'], r['sides']
    lines.append(f"| {r['L']} | {d['af_jax']['best_s']:.3f} | "
                 f"{d['af_jax_progress']['best_s']:.3f} | {p['on_over_off_best']:.3f} | "
                 f"{p['on_over_off_median']:.3f} | {1e3 * p['plddt_metric_s']:.2f} | "
                 f"{1e3 * p['ptm_metric_s']:.2f} | {1e3 * p['callback_s']:.3f} | "
                 f"{'yes' if p['outputs_identical'] else 'NO'} |")
  plans = [f"L={r['L']}: {r['af_jax_plan']}" for r in report['results'] if 'af_jax_plan' in r]
  if plans:
    lines += ['', "af_jax's chunk plans: " + '; '.join(plans) + '.']
  lines += common.json_link(json_path(), FLAGS.results_md) + ['', end]
  return '\n'.join(lines) + '\n'




def main(argv):
  del argv
  import jax
  # Cold compiles on both sides: no persistent cache hits.
  jax.config.update('jax_enable_compilation_cache', False)
  from alphafold.model import model as ref_model

  import af_jax
  from af_jax.inference import Predictor

  machine = common.machine_info()
  matmuls = [matmul_rate(FLAGS.matmul_n)]
  print(f"matmul rate: {matmuls[-1]['flops_per_s'] / 1e9:.1f} GFLOP/s", file=sys.stderr,
        flush=True)

  ref_cfg = reference_config()
  runner = ref_model.RunModel(ref_cfg)
  ref_params, flat = make_params(runner, FLAGS.seed)
  param_bytes = sum(v.nbytes for v in flat.values())
  cfg = af_jax.model_config(FLAGS.preset)
  set_sizes(cfg)
  predictor = Predictor(cfg, flat, plan=chunk_plan())
  del flat

  results = []
  for n in FLAGS.lengths:
    results.append(run_length(int(n), runner, ref_params, predictor))
    matmuls.append(matmul_rate(FLAGS.matmul_n))  # the machine is shared: sample it again
  machine_rate = max(m['flops_per_s'] for m in matmuls)
  add_rates(results, machine_rate)
  report = {
      'benchmark': 'forward',
      'command': command_line(),
      'machine': machine,
      'settings': {
          'preset': FLAGS.preset, 'num_seq': FLAGS.num_seq, 'num_extra': FLAGS.num_extra,
          'num_templates': FLAGS.num_templates, 'evoformer_blocks': FLAGS.evoformer_blocks,
          'extra_blocks': FLAGS.extra_blocks, 'template_blocks': FLAGS.template_blocks,
          'reps': FLAGS.reps, 'iterations_per_prediction': 1, 'param_bytes': param_bytes,
          'ref_subbatch_size': ref_cfg.model.global_config.subbatch_size,
          'af_jax_chunk_plan': plan_setting(),
          'dtype': 'float32',
      },
      'matmul_rate': {
          'n': FLAGS.matmul_n, 'measurements': len(matmuls), 'best': machine_rate,
          'median': statistics.median(m['median_flops_per_s'] for m in matmuls),
          'samples': matmuls,
      },
      'results': results,
  }
  print(common.write_json(json_path(), report))
  if FLAGS.results_md:
    common.write_section(FLAGS.results_md, markdown(report), *_markers(FLAGS.md_section))


def main_with_same_template_features(argv):
  # Both sides must see the same features: af_jax zeroes undefined template
  # torsions (DIFFERS FROM AF2, see model/embedders.py); make the reference do
  # the same so the sanity column compares like with like.
  from tests.parity import ref_utils
  with ref_utils.undefined_torsions_pinned():
    main(argv)


if __name__ == '__main__':
  app.run(main_with_same_template_features)
