"""DAP benchmark: per-device memory and communication of one Evoformer block vs dap size.

One Evoformer block at real dimensions (model_1_ptm: c_m=256, c_z=128; N_seq
MSA rows; float32) is compiled for dap = 1 (one device, no mesh) and dap = 2, 4,
8 (Dynamic Axial Parallelism over fake CPU devices,
`--xla_force_host_platform_device_count`). Nothing runs: the figures come from
the compiled SPMD program, which is what each device would execute:

- per-device memory from XLA's buffer assignment (arguments, outputs,
  temporaries). "Activations" are temporaries + outputs: what the block adds
  beyond its parameters and inputs. The target is at most 1.25/dap of dap=1;
- collectives: the count and kind of each in the block, and the bytes each
  device receives per block (an all-gather or all-to-all of R result bytes
  brings in R x (dap-1)/dap).

Times need several real devices; on this CPU the fake devices share the same
cores, so none are reported. Results go to stdout, `--json_out` and a section
of `--results_md`.

Usage:
  python bench/dap.py --lengths=1024 --daps=1,2,4,8
"""

from __future__ import annotations

import os
import re
import sys
import time

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if sys.path and os.path.abspath(sys.path[0] or '.') == os.path.dirname(os.path.abspath(__file__)):
  sys.path[0] = _ROOT
if '--xla_force_host_platform_device_count' not in os.environ.get('XLA_FLAGS', ''):
  os.environ['XLA_FLAGS'] = (os.environ.get('XLA_FLAGS', '') +
                             ' --xla_force_host_platform_device_count=8').strip()

from absl import app, flags  # noqa: E402

from bench import common  # noqa: E402

flags.DEFINE_list('lengths', ['1024'], 'Sequence lengths L.')
flags.DEFINE_list('daps', ['1', '2', '4', '8'], 'DAP sizes (1: one device, no mesh).')
flags.DEFINE_integer('num_seq', 128, 'MSA rows N_seq.')
flags.DEFINE_string('preset', 'model_1_ptm', 'Model preset whose Evoformer block is compiled.')
flags.DEFINE_string('json_out', os.path.join(_ROOT, 'bench', 'results', 'dap.json'),
                    'Write the JSON results here ("" to skip).')
flags.DEFINE_string('results_md', os.path.join(_ROOT, 'bench', 'RESULTS.md'),
                    'Markdown file to write the section into ("" to skip).')
FLAGS = flags.FLAGS
MARKERS = common.markers('bench/dap.py')

_DTYPE_BYTES = {'f32': 4, 'bf16': 2, 'f16': 2, 's32': 4, 'u32': 4, 'pred': 1, 's8': 1, 'u8': 1}
_COLLECTIVE = re.compile(r'=\s*(\(.*?\)|\S+)\s+(all-to-all|all-gather|all-reduce|reduce-scatter|'
                         r'collective-permute)(?:-start)?\(')
_SHAPE = re.compile(r'(\w+)\[([\d,]*)\]')


def collectives(hlo: str) -> dict[str, dict[str, int]]:
  """Per collective kind: its count and its result bytes (per device) in the HLO."""
  out: dict[str, dict[str, int]] = {}
  for line in hlo.splitlines():
    m = _COLLECTIVE.search(line)
    if not m:
      continue
    size = 0
    for dtype, dims in _SHAPE.findall(m.group(1)):
      n = 1
      for d in filter(None, dims.split(',')):
        n *= int(d)
      size += n * _DTYPE_BYTES.get(dtype, 4)
    entry = out.setdefault(m.group(2), {'count': 0, 'result_bytes': 0})
    entry['count'] += 1
    entry['result_bytes'] += size
  return out


def compile_block(n_res: int, dap: int) -> dict:
  import jax
  from flax import nnx

  import af_jax
  from af_jax.autochunk import compiled_memory
  from af_jax.model.evoformer import EvoformerIteration
  from af_jax.parallel import dap as dap_lib
  from af_jax.parallel import make_mesh

  cfg = af_jax.model_config(FLAGS.preset).model.embeddings_and_evoformer
  c_m, c_z = int(cfg.msa_channel), int(cfg.pair_channel)
  block = nnx.eval_shape(lambda: EvoformerIteration(cfg.evoformer, c_m=c_m, c_z=c_z,
                                                    is_extra_msa=False, zero_init=False,
                                                    rngs=nnx.Rngs(0)))
  graphdef, state = nnx.split(block)
  mesh = make_mesh(dap, data=1) if dap > 1 else None

  def forward(state, msa, pair, msa_mask, pair_mask):
    blk = nnx.merge(graphdef, state)
    return dap_lib.evoformer_stack(lambda d, *a: blk(*a, dap=d), mesh, msa, pair, msa_mask,
                                   pair_mask)

  shapes = common.block_shapes(n_res, FLAGS.num_seq, c_m, c_z)
  start = time.monotonic()
  compiled = jax.jit(forward).lower(state, *shapes).compile()
  seconds = time.monotonic() - start
  memory = compiled_memory(compiled)
  param_bytes = sum(x.size * x.dtype.itemsize for x in jax.tree_util.tree_leaves(state))
  comm = collectives(compiled.as_text())
  received = sum(v['result_bytes'] for k, v in comm.items()
                 if k in ('all-gather', 'all-to-all')) * (dap - 1) / dap
  return {'dap': dap, 'compile_s': round(seconds, 1), 'memory': memory,
          'parameter_bytes': int(param_bytes),
          'activation_bytes': memory.get('temp', 0) + memory.get('output', 0),
          'collectives': comm, 'received_bytes_per_block': int(received)}


def run_length(n_res: int) -> dict:
  rows = [compile_block(n_res, int(d)) for d in FLAGS.daps]
  base = next((r for r in rows if r['dap'] == 1), None)
  for r in rows:
    if base is not None:
      r['activation_vs_dap1'] = r['activation_bytes'] / base['activation_bytes']
      r['target'] = 1.25 / r['dap']
      r['meets_target'] = r['activation_vs_dap1'] <= r['target']
  return {'L': n_res, 'rows': rows}


def markdown(report: dict) -> str:
  m, s = report['machine'], report['settings']
  lines = [
      MARKERS[0],
      '## DAP: one Evoformer block per device, dap = 1..8 (`bench/dap.py`)',
      '',
      f"- Date: {m['date']}; compiled for {m['device_count']} fake CPU devices "
      f"({m['cpu']}); jax {m['jax']}.",
      f"- Command (from the repository root): `{report['command']}`",
      f"- One Evoformer block of {s['preset']} (c_m={s['c_m']}, c_z={s['c_z']}), "
      f"N_seq={s['num_seq']}, float32, unchunked. Figures are per device, from the compiled "
      'SPMD program (nothing runs). Activations = temporaries + outputs; target: at most '
      '1.25/dap of dap=1. Received = what one device receives per block through '
      'all-gather and all-to-all. No times: the fake devices share two CPU cores.',
      '',
      '| L | dap | activations (MB) | vs dap=1 | target | compiled peak (MB) | '
      'all-gather | all-to-all | all-reduce | received per block (MB) |',
      '|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
  ]
  for res in report['results']:
    for r in res['rows']:
      c = r['collectives']
      ratio, target = r.get('activation_vs_dap1'), r.get('target')
      lines.append(
          f"| {res['L']} | {r['dap']} | {r['activation_bytes'] / 1e6:,.0f} | "
          f"{'' if ratio is None else format(ratio, '.3f')} | "
          f"{'' if target is None else format(target, '.3f')} | "
          f"{r['memory'].get('peak', 0) / 1e6:,.0f} | "
          f"{c.get('all-gather', {}).get('count', 0)} | "
          f"{c.get('all-to-all', {}).get('count', 0)} | "
          f"{c.get('all-reduce', {}).get('count', 0)} | "
          f"{r['received_bytes_per_block'] / 1e6:,.1f} |")
  lines += common.json_link(FLAGS.json_out, FLAGS.results_md) + ['', MARKERS[1]]
  return '\n'.join(lines) + '\n'


def main(argv):
  del argv
  import jax
  jax.config.update('jax_enable_compilation_cache', False)
  import af_jax
  e = af_jax.model_config(FLAGS.preset).model.embeddings_and_evoformer
  report = {
      'benchmark': 'dap',
      'command': 'python bench/dap.py ' + ' '.join(sys.argv[1:]),
      'machine': common.machine_info(),
      'settings': {'preset': FLAGS.preset, 'c_m': int(e.msa_channel), 'c_z': int(e.pair_channel),
                   'num_seq': FLAGS.num_seq, 'dtype': 'float32', 'plan': 'unchunked'},
      'results': [run_length(int(n)) for n in FLAGS.lengths],
      'json_path': os.path.relpath(FLAGS.json_out, os.getcwd()) if FLAGS.json_out else None,
  }
  print(common.write_json(FLAGS.json_out, report))
  if FLAGS.results_md:
    common.write_section(FLAGS.results_md, markdown(report), *MARKERS)


if __name__ == '__main__':
  app.run(main)
