"""Each Evoformer op alone, af_jax vs the reference, across chunk sizes (float32).

Why: the forward pass hides which op is slow and which chunk size each op wants;
AutoChunk's CPU caps (`autochunk.cpu_cap_bytes`) are read off this table. Both
sides run in one process on the same perturbed random parameters and random
inputs at real dimensions (model_1_ptm: c_m=256, c_z=128); each side's jitted op
is called `--reps` times after a warm-up, interleaved, best kept. The relative
error of each af_jax output against the reference's is reported beside its time.

Each op's matmul FLOPs (dot_general on its jaxpr) against the machine's float32
matmul rate (a 2048^3 matmul, measured before and after) say how far an op is
from being matmul-bound: the reference's time over the op's FLOPs at that rate
is the most any implementation of the same function could gain on this machine.

  PYTHONPATH=. python bench/ops.py --length=256 --num_seq=128
"""

from __future__ import annotations

import os
import sys

from absl import app, flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from bench import common  # noqa: E402

flags.DEFINE_integer('length', 256, 'Residues L.')
flags.DEFINE_integer('num_seq', 128, 'MSA rows.')
flags.DEFINE_list('chunks', ['none', '4', '8', '16', '32', '64'],
                  "af_jax chunk sizes to time ('none' = unchunked).")
flags.DEFINE_list('ops', [], 'Only these ops (default: all).')
flags.DEFINE_integer('reps', 3, 'Timed calls per side and setting (after a warm-up).')
flags.DEFINE_integer('seed', 0, 'Seed for parameters and inputs.')
flags.DEFINE_string('json_out', None, 'JSON results (default: bench/results/ops.json, '
                    'ops_<md_section>.json with --md_section).')
flags.DEFINE_string('results_md', os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                               'RESULTS.md'),
                    'Markdown file to write the table into ("" to skip).')
flags.DEFINE_string('md_section', None,
                    'Section of --results_md this run replaces (default: the L = 256 one).')
FLAGS = flags.FLAGS

MATMUL_N = 2048  # the n x n x n float32 matmul that measures the machine's matmul rate

# AlphaFold's name of the op (its scope and config key) -> (ChunkPlan field, inputs).
OPS = {
    'msa_row_attention_with_pair_bias': ('msa_row_attention', 'msa,msa_mask,pair'),
    'msa_column_attention': ('msa_column_attention', 'msa,msa_mask'),
    'msa_transition': ('msa_transition', 'msa,msa_mask'),
    'outer_product_mean': ('outer_product_mean', 'msa,msa_mask'),
    'triangle_multiplication_outgoing': ('triangle_multiplication', 'pair,pair_mask'),
    'triangle_multiplication_incoming': ('triangle_multiplication', 'pair,pair_mask'),
    'triangle_attention_starting_node': ('triangle_attention', 'pair,pair_mask'),
    'triangle_attention_ending_node': ('triangle_attention', 'pair,pair_mask'),
    'pair_transition': ('pair_transition', 'pair,pair_mask'),
}


def modules(name: str, cfg, gc, c_m: int, c_z: int):
  """(reference module factory, af_jax module) for one op."""
  from alphafold.model import modules as ref
  from flax import nnx

  from af_jax.model import msa, outer_product_mean, transition, triangle
  c = cfg[name]
  rngs = nnx.Rngs(0)
  if name == 'msa_row_attention_with_pair_bias':
    return (lambda: ref.MSARowAttentionWithPairBias(c, gc),
            msa.MSARowAttentionWithPairBias(c, c_m=c_m, c_z=c_z, rngs=rngs))
  if name == 'msa_column_attention':
    return lambda: ref.MSAColumnAttention(c, gc), msa.MSAColumnAttention(c, c_m=c_m, rngs=rngs)
  if name == 'outer_product_mean':
    return (lambda: ref.OuterProductMean(c, gc, c_z),
            outer_product_mean.OuterProductMean(c, c_m=c_m, c_z=c_z, rngs=rngs))
  if name.endswith('transition'):
    ch = c_m if name == 'msa_transition' else c_z
    return (lambda: ref.Transition(c, gc, name=name), transition.Transition(c, c=ch, rngs=rngs))
  if name.startswith('triangle_multiplication'):
    return (lambda: ref.TriangleMultiplication(c, gc, name=name),
            triangle.TriangleMultiplication(c, c_z=c_z, rngs=rngs))
  return (lambda: ref.TriangleAttention(c, gc, name=name),
          triangle.TriangleAttention(c, c_z=c_z, rngs=rngs))


def run() -> dict:
  import haiku as hk
  import jax
  import jax.numpy as jnp
  import numpy as np
  from flax import nnx

  import af_jax
  from af_jax import autochunk
  from af_jax.run.warmup import bucket_shapes
  from tests.parity import ref_utils

  L, S = FLAGS.length, FLAGS.num_seq
  ref_cfg = ref_utils.ref_model_config('model_1_ptm')
  e, gc = ref_cfg.model.embeddings_and_evoformer, ref_cfg.model.global_config
  c_m, c_z = int(e.msa_channel), int(e.pair_channel)
  rng = np.random.default_rng(FLAGS.seed)
  inputs = {
      'msa': jnp.asarray(rng.normal(size=(S, L, c_m)), jnp.float32),
      'pair': jnp.asarray(rng.normal(size=(L, L, c_z)), jnp.float32),
      'msa_mask': jnp.asarray(rng.random((S, L)) > 0.1, jnp.float32),
      'pair_mask': jnp.ones((L, L), jnp.float32),
  }
  cfg = af_jax.model_config('model_1_ptm')
  model = autochunk.ActivationModel.from_config(cfg, bucket_shapes(cfg, L, S, 1024))
  chunks = [None if c == 'none' else int(c) for c in FLAGS.chunks]
  rates = [common.matmul_rate(MATMUL_N)]
  rows = []
  for name, (field, arg_names) in OPS.items():
    if FLAGS.ops and name not in FLAGS.ops:
      continue
    args = [inputs[a] for a in arg_names.split(',')]
    ref_factory, mod = modules(name, e.evoformer, gc, c_m, c_z)
    # is_training=False: the inference path (Transition and OuterProductMean default to
    # training, which skips their `subbatch_size` loop).
    transformed = hk.transform(lambda *a, f=ref_factory: f()(*a, is_training=False))
    params = transformed.init(jax.random.PRNGKey(FLAGS.seed), *args)
    params = ref_utils.perturb(hk.data_structures.to_mutable_dict(params), FLAGS.seed + 1)
    ref_utils.load_into(mod, ref_utils.flatten(params), name)
    graphdef, state = nnx.split(mod)
    key = jax.random.PRNGKey(0)
    sides = [common.Side('reference', jax.jit(transformed.apply), (params, key, *args))]
    for chunk in chunks:
      sides.append(common.Side(f'af_jax chunk {chunk}',
                               jax.jit(lambda st, *a, c=chunk: nnx.merge(graphdef, st)(*a, c)),
                               (state, *args)))
    for s in sides:
      s.compile()
      s.out, _ = s.call()
    common.time_interleaved(sides, FLAGS.reps)
    ref_out = np.asarray(sides[0].out)
    flops = common.count_flops(jax.make_jaxpr(sides[1].jitted)(*sides[1].args).jaxpr)
    row = {'op': name, 'plan_field': field, 'reference_s': min(sides[0].times),
           'matmul_flops': flops['matmul'], 'other_flops': flops['other'],
           'cpu_cap_chunk': model.cpu_chunk_cap(field), 'af_jax': []}
    for chunk, s in zip(chunks, sides[1:]):
      row['af_jax'].append({'chunk': chunk, 'best_s': min(s.times), 'times_s': s.times,
                            'rel_err': ref_utils.rel_err(np.asarray(s.out), ref_out)})
    rows.append(row)
    print(name, f"ref {row['reference_s']:.3f}s", ' '.join(
        f"{r['chunk']}:{r['best_s']:.3f}s" for r in row['af_jax']), file=sys.stderr, flush=True)
  rates.append(common.matmul_rate(MATMUL_N))
  rate = max(r['flops_per_s'] for r in rates)
  for row in rows:
    row['reference_pct_of_matmul_rate'] = 100 * row['matmul_flops'] / row['reference_s'] / rate
    row['ceiling_speedup'] = row['reference_s'] * rate / row['matmul_flops']
    for a in row['af_jax']:
      a['pct_of_matmul_rate'] = 100 * row['matmul_flops'] / a['best_s'] / rate
  return {'benchmark': 'ops', 'command': 'PYTHONPATH=. python bench/ops.py ' + ' '.join(
      sys.argv[1:]), 'machine': common.machine_info(),
          'settings': {'length': L, 'num_seq': S, 'reps': FLAGS.reps, 'chunks': FLAGS.chunks,
                       'md_section': FLAGS.md_section,
                       'cpu_chunk_bytes': autochunk.CPU_CHUNK_BYTES,
                       'cpu_transition_chunk_bytes': autochunk.CPU_TRANSITION_CHUNK_BYTES},
          'matmul_rate': {'n': MATMUL_N, 'best': rate, 'samples': rates},
          'results': rows}


def json_path() -> str:
  """Where the JSON goes: --json_out, or bench/results/ops[_<md_section>].json."""
  name = f'ops_{FLAGS.md_section}.json' if FLAGS.md_section else 'ops.json'
  return FLAGS.json_out or os.path.join(os.path.dirname(os.path.abspath(__file__)), 'results',
                                        name)


def markdown(report: dict) -> str:
  m, s = report['machine'], report['settings']
  begin, end = common.markers('bench/ops.py', s.get('md_section'))
  chunks = [r['chunk'] for r in report['results'][0]['af_jax']] if report['results'] else []
  head = ' | '.join('unchunked' if c is None else f'chunk {c}' for c in chunks)
  lines = [
      begin, '## Evoformer ops one by one: af_jax vs reference (`bench/ops.py`)'
      + (f" [{s['md_section']}]" if s.get('md_section') else ''), '',
      f"- Date: {m['date']}; machine: {m['nproc']} CPU(s) ({m['cpu']}), {m['device']}; "
      f"jax {m['jax']}.",
      f"- Command (from the repository root): `{report['command']}`",
      f"- Each op alone at L = {s['length']}, N_seq = {s['num_seq']}, model_1_ptm dimensions, "
      f"float32; best of {s['reps']} interleaved calls after a warm-up; reference with its "
      "default `subbatch_size` (4). af_jax times in ms with the speedup over the reference; "
      "**bold**: the chunk AutoChunk's CPU cap gives the op "
      f"({s['cpu_chunk_bytes'] / 2**20:.0f} MB of chunk-dependent bytes, "
      f"{s.get('cpu_transition_chunk_bytes', 0) / 2**20:.0f} MB for transitions). Largest relative "
      'error against the reference in the last column.', '',
      f'| op | reference (ms) | {head} | max rel. err |',
      '|---|---:|' + '---:|' * len(chunks) + '---:|',
  ]
  for r in report['results']:
    cells = []
    for a in r['af_jax']:
      text = f"{a['best_s'] * 1e3:.0f} ({r['reference_s'] / a['best_s']:.2f}x)"
      capped = (a['chunk'] == r['cpu_cap_chunk'])
      cells.append(f'**{text}**' if capped else text)
    err = max(a['rel_err'] for a in r['af_jax'])
    lines.append(f"| {r['op']} | {r['reference_s'] * 1e3:.0f} | {' | '.join(cells)} | "
                 f'{err:.0e} |')
  if report['results']:
    lines += [
        '', f"Against the machine's float32 matmul rate ({report['matmul_rate']['best'] / 1e9:.0f} "
        f"GFLOP/s, best {report['matmul_rate']['n']}^3 matmul): each op's matmul FLOPs, the "
        'share of that rate each '
        "side reaches, and the ceiling: the reference's time over the op's FLOPs at the "
        'matmul rate, the most any implementation of the same function could gain here.', '',
        "| op | GFLOP | reference | af_jax at AutoChunk's chunk | best af_jax (chunk) | "
        'ceiling |', '|---|---:|---:|---:|---:|---:|']
    for r in report['results']:
      best = min(r['af_jax'], key=lambda a: a['best_s'])
      capped = [a for a in r['af_jax'] if a['chunk'] == r['cpu_cap_chunk']]
      cap = f"{capped[0]['pct_of_matmul_rate']:.0f}%" if capped else '-'
      lines.append(f"| {r['op']} | {r['matmul_flops'] / 1e9:.2f} | "
                   f"{r['reference_pct_of_matmul_rate']:.0f}% | {cap} | "
                   f"{best['pct_of_matmul_rate']:.0f}% ({best['chunk'] or 'none'}) | "
                   f"{r['ceiling_speedup']:.2f}x |")
  lines += common.json_link(json_path(), FLAGS.results_md) + ['', end]
  return '\n'.join(lines) + '\n'


def main(argv):
  del argv
  import jax
  jax.config.update('jax_enable_compilation_cache', False)
  report = run()
  common.write_json(json_path(), report)
  if FLAGS.results_md:
    common.write_section(FLAGS.results_md, markdown(report),
                         *common.markers('bench/ops.py', FLAGS.md_section))
  print(markdown(report))


if __name__ == '__main__':
  app.run(main)
