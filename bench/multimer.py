"""Multimer forward-pass benchmark: af_jax against the reference AlphaFold-Multimer, in one process.

The method is bench/forward.py's, for AlphaFold-Multimer (model_1_multimer_v3
dimensions). Both sides get the same perturbed random parameters (the
published v3 layout) and the same random raw complex features, and run the
same function: ONE recycling iteration -- in-model MSA sampling (cluster
sample, BERT mask, cluster profiles, extra MSA) with the same key, embeddings,
multimer templates, extra-MSA stack, Evoformer, multimer structure module,
heads and confidence metrics including ipTM -- in float32. The reference is
alphafold-colabfold's `modules_multimer.AlphaFold` under `hk.transform`, which
runs one iteration per call with zero `prev` inputs (its recycles are driven
from Python). af_jax is `AlphaFoldMultimer` with `model.num_recycle = 0`,
called through `jax.jit` of a pure `(state, batch, key)` function; it draws
the iteration's sampling key as `recycle_key(key, 0)`, which the reference
gets directly. Block counts are cut by flags to keep a CPU run short.

For each total length L and each side it reports:
- compile seconds: `jit(...).lower(args)` + `.compile()`, persistent
  compilation cache off;
- steady-state seconds per prediction: best and median of `--reps` calls of
  the compiled executable on device-resident inputs, the two sides
  interleaved (the best is the headline: on a shared machine other processes
  only add time);
- peak memory: XLA's buffer assignment of the compiled executable
  (`memory_analysis()`: arguments incl. parameters + outputs + temporaries -
  aliased);
- model FLOPs: dot_general FLOPs of the jaxpr with scan bodies times their
  length (equal on both sides when both compute the same thing);
- ratios reference / af_jax for time, compile and peak memory (> 1: af_jax
  is faster or smaller);
- a sanity check that both sides computed the same thing: max |Δ| of
  `final_atom_positions` over the atoms that exist, of pLDDT, pTM and ipTM.

Results go to stdout and `--json_out` as JSON, and into `--results_md` as a
markdown section between this script's markers.

Usage (from the repository root):
  PYTHONPATH=. python bench/multimer.py --lengths=64,128,256
"""

from __future__ import annotations

import json
import os
import statistics
import sys

from absl import app, flags

# `python bench/multimer.py` puts bench/ first on sys.path, where bench/compile_cache.py would
# shadow the compile_cache package that af_jax imports: the repository root goes first instead.
if sys.path and os.path.abspath(sys.path[0] or '.') == os.path.dirname(os.path.abspath(__file__)):
  sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

from bench import common  # noqa: E402

_BENCH = os.path.dirname(os.path.abspath(__file__))

flags.DEFINE_list('lengths', ['64', '128', '256'], 'Total complex lengths L (residues, '
                  'all chains plus padding) to run.')
flags.DEFINE_list('chain_entities', ['1', '1', '2'],
                  'Entity id of each chain: chains of one entity are copies (same sequence). '
                  'Each chain gets L // n_chains residues; the remainder is padding.')
flags.DEFINE_integer('num_msa', 128, 'MSA rows sampled as clusters (config num_msa; the '
                     'model appends one row per template).')
flags.DEFINE_integer('num_extra', 256, 'Extra MSA rows (config num_extra_msa). The raw MSA '
                     'has num_msa + num_extra rows, so the extra MSA is full.')
flags.DEFINE_integer('num_templates', 4, 'Templates T.')
flags.DEFINE_integer('evoformer_blocks', 2, 'Evoformer blocks (48 in the real model).')
flags.DEFINE_integer('extra_blocks', 1, 'Extra-MSA stack blocks (4 in the real model).')
flags.DEFINE_integer('template_blocks', 2, 'Template pair stack blocks (2 in the real model).')
flags.DEFINE_integer('reps', 4, 'Timed calls per side and length (after one warm-up call).')
flags.DEFINE_integer('ref_subbatch_size', -1,
                     "Reference global_config.subbatch_size: -1 keeps the reference's "
                     'default (4: its attention runs 4 rows at a time); 0 sets None '
                     '(unchunked, as af_jax by default).')
flags.DEFINE_integer('af_jax_chunk', 0, 'af_jax chunk size for every axial op '
                     '(ChunkPlan.uniform); 0 runs unchunked (the default plan).')
flags.DEFINE_string('preset', 'model_1_multimer_v3', 'Multimer preset (both sides).')
flags.DEFINE_integer('seed', 0, 'Seed for parameters, features and the MSA-sampling key.')
flags.DEFINE_string('json_out', os.path.join(_BENCH, 'results', 'multimer.json'),
                    'Write the JSON results here ("" to skip).')
flags.DEFINE_string('results_md', os.path.join(_BENCH, 'RESULTS.md'),
                    'Markdown file to write the section into ("" to skip).')
flags.DEFINE_string('md_section', '', 'Name of the section of --results_md this run replaces '
                    '("": the main one; e.g. "chunk16" for another configuration).')
flags.DEFINE_string('note', '', 'A note on the conditions of this run, printed with the table.')

FLAGS = flags.FLAGS

C_M, C_Z = 256, 128  # the recycled msa_first_row and pair channels


# ----------------------------------------------------------------------------
# Inputs, configs and parameters.


def chain_layout(n_res: int, entities: list[int]) -> tuple[list[dict], int]:
  """Chains of L // n residues each (asym_id from 1, sym_id counting copies of an entity)
  and the number of padding residues at the end."""
  n = len(entities)
  length = n_res // n
  if length < 1:
    raise ValueError(f'L={n_res} is too short for {n} chains; pass longer --lengths')
  chains, copies = [], {}
  for i, entity in enumerate(entities):
    copies[entity] = copies.get(entity, 0) + 1
    chains.append({'asym_id': i + 1, 'entity_id': entity, 'sym_id': copies[entity],
                   'length': length})
  return chains, n_res - n * length


def make_complex(n_res: int, entities: list[int], n_rows: int, n_templ: int,
                 seed: int) -> dict:
  """Random raw multimer features (AlphaFold-Multimer's names and dtypes).

  Copies of an entity share a sequence. The MSA's first row is the query, then
  a quarter of the rows span every chain (paired), the rest cover one chain
  each with gaps elsewhere (block-diagonal, as the multimer pipeline merges
  unpaired rows). Templates are a random walk of CA positions per chain with
  the other atoms nearby. Padding residues have every mask zero.
  """
  import numpy as np

  from af_jax.common import residue_constants as rc
  from af_jax.data import schema
  rng = np.random.default_rng(seed)
  chains, n_pad = chain_layout(n_res, entities)
  seqs = {}
  aatype, ids = [], {'asym_id': [], 'entity_id': [], 'sym_id': [], 'residue_index': []}
  for ch in chains:
    n = ch['length']
    seq = seqs.setdefault(ch['entity_id'], rng.integers(0, 20, n))
    aatype.append(seq)
    for k in ('asym_id', 'entity_id', 'sym_id'):
      ids[k].append(np.full(n, ch[k]))
    ids['residue_index'].append(np.arange(n))
  pad = np.zeros(n_pad, np.int64)
  aatype = np.concatenate(aatype + [pad])
  ids = {k: np.concatenate(v + [pad]) for k, v in ids.items()}
  seq_mask = np.concatenate([np.ones(n_res - n_pad), np.zeros(n_pad)])
  starts = np.cumsum([0] + [ch['length'] for ch in chains])

  msa = rng.integers(0, 21, (n_rows, n_res))
  msa[0] = aatype
  for r in range(max(1, n_rows // 4), n_rows):  # unpaired rows: one chain, gaps elsewhere
    c = rng.integers(len(chains))
    row = np.full(n_res, 21)
    row[starts[c]:starts[c + 1]] = msa[r, starts[c]:starts[c + 1]]
    msa[r] = row
  msa[:, n_res - n_pad:] = 0
  msa_mask = np.broadcast_to(seq_mask, (n_rows, n_res)).copy()
  deletion = (rng.random((n_rows, n_res)) < 0.1) * rng.integers(1, 6, (n_rows, n_res))

  t_aatype = np.where(rng.random((n_templ, n_res)) < 0.2, rng.integers(0, 20, (n_templ, n_res)),
                      aatype[None])
  steps = rng.normal(size=(n_templ, n_res, 3)) * 2.2
  steps[:, starts[:-1]] = rng.normal(size=(n_templ, len(chains), 3)) * 10.0  # chain starts
  ca = np.cumsum(steps, axis=1)
  pos = ca[:, :, None, :] + rng.normal(size=(n_templ, n_res, 37, 3)) * 1.2
  pos[:, :, 1] = ca
  t_mask = np.asarray(rc.restype_atom37_mask)[t_aatype] * seq_mask[None, :, None]
  feats = {
      'aatype': aatype, **ids, 'seq_mask': seq_mask, 'msa': msa, 'msa_mask': msa_mask,
      'deletion_matrix': deletion * msa_mask,
      'cluster_bias_mask': np.eye(n_rows)[0], 'bert_mask': msa_mask.copy(),
      'template_aatype': t_aatype, 'template_all_atom_positions': pos * t_mask[..., None],
      'template_all_atom_mask': t_mask,
  }
  assert not schema.MULTIMER.missing(feats)
  return {k: np.asarray(v).astype(np.int32 if np.asarray(v).dtype.kind in 'iu' else np.float32)
          for k, v in feats.items()}


def reference_batch(feats: dict) -> dict:
  """The reference's inputs: the raw features, zero `prev` (one iteration, the first) and
  zero `all_atom_positions`, without which its `AlphaFoldIteration` skips the structure
  module (its test for a multimer batch; unread at inference)."""
  import numpy as np
  n_res = feats['aatype'].shape[0]
  prev = {'prev_msa_first_row': np.zeros((n_res, C_M), np.float32),
          'prev_pair': np.zeros((n_res, n_res, C_Z), np.float32),
          'prev_pos': np.zeros((n_res, 37, 3), np.float32)}
  return {**feats, 'all_atom_positions': np.zeros((n_res, 37, 3), np.float32), 'prev': prev}


def set_sizes(cfg) -> None:
  """The flags' block counts and MSA sizes, one iteration (both sides' configs)."""
  e = cfg.model.embeddings_and_evoformer
  e.evoformer_num_block = FLAGS.evoformer_blocks
  e.extra_msa_stack_num_block = FLAGS.extra_blocks
  e.template.template_pair_stack.num_block = FLAGS.template_blocks
  e.num_msa = FLAGS.num_msa
  e.num_extra_msa = FLAGS.num_extra
  cfg.model.num_recycle = 0


def reference_config():
  from tests.parity import ref_utils
  cfg = ref_utils.ref_model_config(FLAGS.preset)
  set_sizes(cfg)
  # As tests/parity/test_multimer_end_to_end.py: no extended pTM (af_jax has none).
  cfg.model.calc_extended_ptm = False
  cfg.model.use_probs_extended = False
  if FLAGS.ref_subbatch_size >= 0:
    cfg.model.global_config.subbatch_size = FLAGS.ref_subbatch_size or None
  return cfg


def reference_forward(ref_cfg):
  """hk.transform of the reference multimer: apply(params, rng, batch + prev, safe_key)."""
  import haiku as hk
  from alphafold.model import modules_multimer
  return hk.transform(lambda b, k: modules_multimer.AlphaFold(ref_cfg.model)(
      b, is_training=False, safe_key=k))


def make_params(forward, seed: int) -> dict:
  """Reference-initialised params (the published v3 layout), every array perturbed (flat)."""
  import jax
  import jax.numpy as jnp

  from tests.parity import ref_utils
  batch = make_complex(16, [int(e) for e in FLAGS.chain_entities],
                       FLAGS.num_msa + FLAGS.num_extra, FLAGS.num_templates, seed)
  batch = jax.tree_util.tree_map(jnp.asarray, reference_batch(batch))
  init = forward.init(jax.random.PRNGKey(seed), batch, jax.random.PRNGKey(seed + 1))
  # The e2e parity scale: every array random, structure module well-conditioned.
  return ref_utils.perturb(ref_utils.flatten(init), seed + 1, scale=0.2)


def af_jax_side(flat: dict):
  """af_jax's model with `flat` loaded: (jitted pure (state, batch, key) -> outputs, state)."""
  import jax
  from flax import nnx

  import af_jax
  from af_jax import params as af_params
  from af_jax.chunking import ChunkPlan
  from af_jax.model.alphafold_multimer import AlphaFoldMultimer
  cfg = af_jax.model_config(FLAGS.preset)
  set_sizes(cfg)
  model = nnx.eval_shape(lambda: AlphaFoldMultimer(cfg.model, rngs=nnx.Rngs(0)))
  af_params.assign_flat(model, flat, preset=FLAGS.preset)
  graphdef, state = nnx.split(model)
  plan = ChunkPlan.uniform(FLAGS.af_jax_chunk) if FLAGS.af_jax_chunk else ChunkPlan()

  def forward(state, batch, key):
    return nnx.merge(graphdef, state)(batch, key, plan)

  # device_put, not jnp.asarray: no small executable compiled per weight shape.
  return jax.jit(forward), jax.device_put(state)


# ----------------------------------------------------------------------------
# One length.


def run_length(n_res: int, ref_apply, ref_params, ours_jitted, ours_state) -> dict:
  import jax
  import numpy as np

  from af_jax.autochunk import compiled_memory
  from af_jax.model.alphafold_multimer import recycle_key
  print(f'--- L = {n_res}', file=sys.stderr, flush=True)
  entities = [int(e) for e in FLAGS.chain_entities]
  chains, n_pad = chain_layout(n_res, entities)
  feats = make_complex(n_res, entities, FLAGS.num_msa + FLAGS.num_extra, FLAGS.num_templates,
                       FLAGS.seed + n_res)
  msa_key = jax.random.PRNGKey(FLAGS.seed + 1000 + n_res)

  ref = common.Side('reference', ref_apply,
                    (ref_params, jax.random.PRNGKey(0),
                     jax.device_put(reference_batch(feats)),
                     recycle_key(msa_key, 0)))
  ours = common.Side('af_jax', ours_jitted, (ours_state, jax.device_put(feats), msa_key))
  sides = (ref, ours)

  result = {'L': n_res, 'chain_lengths': [c['length'] for c in chains], 'padding': n_pad,
            'load_average_before': common.load_average(), 'sides': {}}
  for s in sides:
    print(f'compiling {s.name}', file=sys.stderr, flush=True)
    s.compile()
    s.out, first_s = s.call()  # warm-up
    flops = common.count_flops(jax.make_jaxpr(s.jitted)(*s.args).jaxpr, while_trips=1)
    result['sides'][s.name] = {
        'compile_s': s.compile_s, 'first_call_s': first_s,
        'memory_bytes': compiled_memory(s.compiled),
        'model_flops': flops['matmul'], 'elementwise_ops': flops['other'],
        'while_loops_counted_once': flops['while_loops'],
        'xla_cost_analysis_flops': common.xla_flops(s.compiled),
    }
    print(f'{s.name}: compile {s.compile_s:.1f}s, first call {first_s:.2f}s', file=sys.stderr,
          flush=True)
  common.time_interleaved(sides, FLAGS.reps)
  result['load_average_after'] = common.load_average()
  for s in sides:
    r = result['sides'][s.name]
    r['times_s'] = s.times
    r['best_s'] = min(s.times)
    r['median_s'] = statistics.median(s.times)
    r['flops_per_s'] = r['model_flops'] / r['best_s']

  a, b = result['sides']['reference'], result['sides']['af_jax']
  result['ratios'] = {
      'speedup_best': a['best_s'] / b['best_s'],
      'speedup_median': a['median_s'] / b['median_s'],
      'compile_ref_over_af_jax': a['compile_s'] / b['compile_s'],
      'peak_memory_ref_over_af_jax': (a['memory_bytes'].get('peak', 0) /
                                      max(b['memory_bytes'].get('peak', 0), 1)),
  }
  ro, oo = ref.out, ours.out
  real = feats['seq_mask'] > 0
  exists = (np.asarray(oo['structure_module']['final_atom_mask']) > 0) & real[:, None]
  dpos = np.abs(np.asarray(oo['structure_module']['final_atom_positions']) -
                np.asarray(ro['structure_module']['final_atom_positions']))
  result['sanity'] = {
      'max_abs_diff_final_atom_positions_A': float(np.max(dpos[exists])),
      'max_abs_diff_final_atom_positions_all_atoms_A': float(np.max(dpos)),
      'max_abs_diff_plddt': float(np.max(np.abs(np.asarray(oo['plddt']) -
                                                np.asarray(ro['plddt']))[real])),
      'ptm_reference_af_jax': [float(ro['ptm']), float(oo['ptm'])],
      'iptm_reference_af_jax': [float(ro['iptm']), float(oo['iptm'])],
      # The reference reports 80 ipTM + 20 pTM; af_jax AlphaFold's own [0, 1] scale.
      'ranking_confidence_reference_af_jax': [float(ro['ranking_confidence']) / 100,
                                              float(oo['ranking_confidence'])],
      'num_recycles_af_jax': int(oo['num_recycles']),
  }
  print(json.dumps({'L': n_res, 'ratios': result['ratios'], 'sanity': result['sanity']},
                   allow_nan=False),
        file=sys.stderr, flush=True)
  return result


# ----------------------------------------------------------------------------
# Report.


def _repo_path(path: str) -> str:
  """`path` relative to the repository root when inside it, else absolute."""
  root = os.path.dirname(_BENCH)
  path = os.path.abspath(path)
  return os.path.relpath(path, root) if path.startswith(root + os.sep) else path


def command_line() -> str:
  import shlex
  return ' '.join(['PYTHONPATH=. python bench/multimer.py',
                   *map(shlex.quote, sys.argv[1:])]).rstrip()


def markdown(report: dict) -> str:
  m, s = report['machine'], report['settings']
  begin, end = common.markers('bench/multimer.py', FLAGS.md_section or None)
  title = f' [{FLAGS.md_section}]' if FLAGS.md_section else ''
  load = (f"; load average at start {m['load_average']}" if m.get('load_average') else '')
  lines = [
      begin,
      '## Multimer forward pass: af_jax vs reference AlphaFold-Multimer '
      f'(`bench/multimer.py`){title}',
      '',
      f"- Date: {m['date']}; machine: {m['nproc']} CPU(s) ({m['cpu']}), device {m['device']}"
      f" ({'GPU' if m['gpu'] else 'CPU only'}); jax {m['jax']}, jaxlib {m['jaxlib']}, "
      f"Python {m['python']}{load}.",
      f"- Command (from the repository root): `{report['command']}`",
      f"- Function: one recycling iteration of {s['preset']} in float32 -- in-model MSA "
      'sampling with the same key, embeddings, multimer templates, extra-MSA stack, Evoformer, '
      'multimer structure module, heads, confidence with pTM and ipTM -- with the same perturbed '
      'random parameters (published v3 layout) and the same random raw complex features on '
      "both sides. Reference: alphafold-colabfold's `modules_multimer.AlphaFold` (one iteration "
      "per call, zero `prev`); af_jax: `AlphaFoldMultimer`, `num_recycle=0`, `jax.jit` of a pure "
      '(state, batch, key) function.',
      f"- Sizes: chains with entities {s['chain_entities']} (copies of an entity share a "
      'sequence; each chain L // n_chains residues, the remainder padding); '
      f"raw MSA {s['msa_rows']} rows -> {s['num_msa']} sampled (+{s['num_templates']} template "
      f"rows) and {s['num_extra']} extra; T={s['num_templates']}; Evoformer blocks="
      f"{s['evoformer_blocks']}, extra-MSA blocks={s['extra_blocks']}, template pair blocks="
      f"{s['template_blocks']} ({s['param_bytes'] / 2**20:.0f} MB of parameters); reference "
      f"`subbatch_size`={s['ref_subbatch_size']}, af_jax chunk plan: {s['af_jax_chunk_plan']}.",
      f"- Times: {s['reps']} interleaved calls per side of the compiled executable after a "
      'warm-up; best and median. Compile = lower + compile, persistent cache off. Peak memory = '
      "XLA's buffer assignment (arguments incl. parameters + outputs + temporaries). Model "
      'FLOPs = dot_general FLOPs of the jaxpr, scan bodies times their length. Ratios are '
      'reference / af_jax (> 1: af_jax faster, compiles faster, smaller).',
  ]
  if report.get('note'):
    lines.append(f"- Note: {report['note']}")
  lines += [
      '',
      '| L | chains (+pad) | side | compile (s) | best (s/pred) | median (s/pred) | '
      'peak mem (MB) | model GFLOP | GFLOP/s |',
      '|---:|---|---|---:|---:|---:|---:|---:|---:|',
  ]
  for r in report['results']:
    chains = '+'.join(map(str, r['chain_lengths'])) + (f" (+{r['padding']})" if r['padding']
                                                        else '')
    for name in ('reference', 'af_jax'):
      d = r['sides'][name]
      lines.append(
          f"| {r['L']} | {chains} | {name} | {d['compile_s']:.1f} | {d['best_s']:.3f} | "
          f"{d['median_s']:.3f} | {d['memory_bytes'].get('peak', 0) / 2**20:.0f} | "
          f"{d['model_flops'] / 1e9:.1f} | {d['flops_per_s'] / 1e9:.1f} |")
  lines += ['', '| L | speedup, best (ref / af_jax) | speedup, median | compile (ref / af_jax) '
            '| peak memory (ref / af_jax) | max abs Δ final atom positions (Å) '
            '| max abs Δ pLDDT | ipTM ref / af_jax |',
            '|---:|---:|---:|---:|---:|---:|---:|---|']
  for r in report['results']:
    q, z = r['ratios'], r['sanity']
    iptm = z['iptm_reference_af_jax']
    lines.append(f"| {r['L']} | {q['speedup_best']:.2f}x | {q['speedup_median']:.2f}x | "
                 f"{q['compile_ref_over_af_jax']:.2f} | {q['peak_memory_ref_over_af_jax']:.2f} | "
                 f"{z['max_abs_diff_final_atom_positions_A']:.1e} | "
                 f"{z['max_abs_diff_plddt']:.1e} | {iptm[0]:.4f} / {iptm[1]:.4f} |")
  lines += common.json_link(FLAGS.json_out, FLAGS.results_md)
  lines.append(end)
  return '\n'.join(lines) + '\n'


def main(argv):
  del argv
  import jax
  # Cold compiles on both sides: no persistent cache hits.
  jax.config.update('jax_enable_compilation_cache', False)

  machine = common.machine_info()
  ref_cfg = reference_config()
  forward = reference_forward(ref_cfg)
  flat = make_params(forward, FLAGS.seed)
  param_bytes = sum(v.nbytes for v in flat.values())
  from tests.parity import ref_utils
  ref_params = jax.device_put(ref_utils.unflatten(flat))
  ours_jitted, ours_state = af_jax_side(flat)
  del flat
  ref_apply = jax.jit(forward.apply)

  results = [run_length(int(n), ref_apply, ref_params, ours_jitted, ours_state)
             for n in FLAGS.lengths]
  report = {
      'benchmark': 'multimer',
      'command': command_line(),
      'machine': machine,
      'note': FLAGS.note,
      'settings': {
          'preset': FLAGS.preset, 'chain_entities': [int(e) for e in FLAGS.chain_entities],
          'msa_rows': FLAGS.num_msa + FLAGS.num_extra, 'num_msa': FLAGS.num_msa,
          'num_extra': FLAGS.num_extra, 'num_templates': FLAGS.num_templates,
          'evoformer_blocks': FLAGS.evoformer_blocks, 'extra_blocks': FLAGS.extra_blocks,
          'template_blocks': FLAGS.template_blocks, 'reps': FLAGS.reps,
          'iterations_per_prediction': 1, 'param_bytes': param_bytes,
          'ref_subbatch_size': ref_cfg.model.global_config.subbatch_size,
          'af_jax_chunk_plan': (f'{FLAGS.af_jax_chunk} for every axial op'
                                if FLAGS.af_jax_chunk else 'unchunked (ChunkPlan())'),
          'dtype': 'float32', 'seed': FLAGS.seed,
      },
      'json_out': _repo_path(FLAGS.json_out) if FLAGS.json_out else None,
      'results': results,
  }
  print(common.write_json(FLAGS.json_out, report))
  if FLAGS.results_md:
    common.write_section(FLAGS.results_md, markdown(report),
                         *common.markers('bench/multimer.py', FLAGS.md_section or None))


def main_with_same_template_features(argv):
  # Both sides must see the same template features: af_jax zeroes the unit vector of a
  # residue to itself (rounding noise that the reference normalises to O(1), differently
  # jitted and eager; see embedders_multimer.template_pair_features); make the reference do
  # the same, as the parity tests do, so the sanity columns compare like with like.
  from tests.parity import ref_utils
  with ref_utils.self_unit_vectors_zeroed():
    main(argv)


if __name__ == '__main__':
  app.run(main_with_same_template_features)
