"""What every benchmark shares: the machine it ran on, and where its results go.

Each script writes its full report as JSON to bench/results/ and its markdown section into
bench/RESULTS.md between its own markers (replacing its previous section, so re-running a
benchmark updates it in place). RESULTS.md holds the tables, the command and the machine line,
and links the JSON (`json_link`); the JSON itself is never pasted into it.
"""

from __future__ import annotations

import datetime
import json
import math
import os
import platform
import statistics
import time


def machine_info() -> dict:
  """Date, CPU, device, library versions and load: what a figure needs beside it."""
  import jax
  import jaxlib
  cpu = platform.processor() or 'unknown'
  try:
    with open('/proc/cpuinfo') as f:
      cpu = next((line.split(':', 1)[1].strip() for line in f
                  if line.startswith('model name')), cpu)
  except OSError:
    pass
  try:
    with open('/proc/loadavg') as f:
      load = [float(x) for x in f.read().split()[:3]]
  except OSError:
    load = None
  devices = jax.devices()
  return {
      'date': datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC'),
      'nproc': os.cpu_count(),
      'affinity_cpus': (len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity')
                        else None),
      'cpu': cpu,
      'device': str(devices[0]),
      'device_count': len(devices),
      'gpu': any(d.platform == 'gpu' for d in devices),
      'jax': jax.__version__,
      'jaxlib': jaxlib.__version__,
      'python': platform.python_version(),
      'load_average': load,
      'mem_total_bytes': os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES'),
  }


def markers(script: str, section: str | None = None) -> tuple[str, str]:
  """The begin/end comments around a script's section of RESULTS.md."""
  name = script + (f' [{section}]' if section else '')
  return (f'<!-- {name}:begin (generated; edit outside these markers) -->',
          f'<!-- {name}:end -->')


def write_section(path: str, text: str, begin: str, end: str) -> None:
  """Replace the section between `begin` and `end` in `path`, or append it (one rename)."""
  old = ''
  if os.path.exists(path):
    with open(path) as f:
      old = f.read()
  if begin in old and end in old:
    head, rest = old.split(begin, 1)
    tail = rest.split(end, 1)[1].lstrip('\n')
    new = head + text.rstrip('\n') + '\n' + ('\n' + tail if tail else '')
  elif old:
    new = old.rstrip('\n') + '\n\n' + text
  else:
    new = '# Benchmark results\n\n' + text
  tmp = f'{path}.tmp-{os.getpid()}'
  with open(tmp, 'w') as f:
    f.write(new)
  os.replace(tmp, path)


def json_link(json_path: str | None, results_md: str) -> list[str]:
  """Markdown lines that point a RESULTS.md section at its JSON file (none if none was written).

  Args:
    json_path: where the script wrote its JSON report, or None/'' when it wrote none.
    results_md: the markdown file the section goes into; the link is relative to it.

  Returns:
    A blank line and the link line, to append to the section's lines.
  """
  if not json_path:
    return []
  path = os.path.abspath(json_path)
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  rel = os.path.relpath(path, os.path.dirname(os.path.abspath(results_md)))
  shown = os.path.relpath(path, root) if path.startswith(root + os.sep) else path
  return ['', f'JSON (every sample and setting): [{shown}]({rel}).']


def write_json(path: str, report: dict) -> str:
  """Write the report (indented JSON) and return its text."""
  text = json.dumps(report, indent=1, allow_nan=False)
  if path:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f'{path}.tmp-{os.getpid()}'
    with open(tmp, 'w') as f:
      f.write(text + '\n')
    os.replace(tmp, path)
  return text


def block_shapes(n_res: int, n_seq: int, c_m: int, c_z: int) -> tuple:
  """Abstract (msa, pair, msa_mask, pair_mask) of one Evoformer block, float32."""
  import jax
  import jax.numpy as jnp
  f32 = jnp.float32
  return (jax.ShapeDtypeStruct((n_seq, n_res, c_m), f32),
          jax.ShapeDtypeStruct((n_res, n_res, c_z), f32),
          jax.ShapeDtypeStruct((n_seq, n_res), f32), jax.ShapeDtypeStruct((n_res, n_res), f32))


def random_batch(shapes: dict, rng) -> dict:
  """Random model inputs of a bucket's shapes: masks set, indices in range."""
  import numpy as np
  out = {}
  for name, struct in shapes.items():
    shape, dtype = struct.shape, np.dtype(struct.dtype)
    if name == 'residue_index':
      value = np.broadcast_to(np.arange(shape[-1]), shape)
    elif 'mask' in name:
      value = np.ones(shape)
    elif np.issubdtype(dtype, np.integer):
      value = rng.integers(0, 21, size=shape)
    else:
      value = rng.random(shape)
    out[name] = np.asarray(value, dtype)
  return out


def random_state(structs, rng):
  """Random weights (N(0, 0.02)) of a state's shapes, drawn in numpy and placed with
  `jax.device_put` (`jnp.asarray` would compile a small executable per distinct shape)."""
  import jax
  return jax.tree_util.tree_map(
      lambda s: jax.device_put((0.02 * rng.standard_normal(s.shape)).astype(s.dtype)), structs)


def mb(x: float) -> str:
  """Bytes as whole megabytes with thousands separators, for the markdown tables."""
  return f'{x / 1e6:,.0f}'


def current_rss() -> int:
  """This process's resident set size now, in bytes."""
  with open('/proc/self/statm') as f:
    return int(f.read().split()[1]) * os.sysconf('SC_PAGE_SIZE')


def peak_rss() -> int:
  """This process's peak resident set size so far, in bytes (`ru_maxrss`: KiB on Linux)."""
  import resource
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def run_child(script: str, args: list[str]) -> dict:
  """Run `python <script> args` with the repository root on PYTHONPATH (so its peak memory
  is its own) and return the JSON object on its last stdout line, or {'error': ...}."""
  import subprocess
  import sys
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  env = dict(os.environ)
  env['PYTHONPATH'] = os.pathsep.join(p for p in (root, env.get('PYTHONPATH')) if p)
  proc = subprocess.run([sys.executable, os.path.abspath(script), *args], capture_output=True,
                        text=True, env=env)
  if proc.returncode != 0:
    sys.stderr.write(proc.stderr[-4000:])
    if proc.returncode == -9:  # SIGKILL: on this machine the kernel's out-of-memory killer
      return {'error': 'killed (SIGKILL: out of memory)'}
    return {'error': f'exit {proc.returncode}: ' + proc.stderr.strip().splitlines()[-1]}
  return json.loads(proc.stdout.strip().splitlines()[-1])


def load_average() -> list[float] | None:
  """The 1, 5 and 15 minute load averages (None where /proc is missing)."""
  try:
    return [float(x) for x in open('/proc/loadavg').read().split()[:3]]
  except OSError:
    return None


def matmul_rate(n: int, reps: int = 10) -> dict:
  """float32 FLOP/s of a jitted n x n @ n x n matmul (best and median of `reps`)."""
  import jax
  import jax.numpy as jnp
  a = jax.random.normal(jax.random.PRNGKey(1), (n, n), jnp.float32)
  b = jax.random.normal(jax.random.PRNGKey(2), (n, n), jnp.float32)
  f = jax.jit(jnp.matmul)
  f(a, b).block_until_ready()
  times = []
  for _ in range(reps):
    t = time.perf_counter()
    f(a, b).block_until_ready()
    times.append(time.perf_counter() - t)
  flops = 2.0 * n ** 3
  return {'n': n, 'reps': reps, 'best_s': min(times), 'median_s': statistics.median(times),
          'flops_per_s': flops / min(times), 'median_flops_per_s': flops / statistics.median(times)}


# ----------------------------------------------------------------------------
# FLOP counting on a jaxpr (scan bodies times their length).


def _sub_jaxprs(params):
  from jax.extend import core as jex_core
  for v in params.values():
    vs = v if isinstance(v, (tuple, list)) else (v,)
    for x in vs:
      if isinstance(x, jex_core.ClosedJaxpr):
        yield x.jaxpr
      elif isinstance(x, jex_core.Jaxpr):
        yield x


# Primitives counted as one FLOP per output element ("other" FLOPs).
_ELEMENTWISE = frozenset("""
add sub mul div neg max min exp exp2 log log1p logistic tanh rsqrt sqrt pow integer_pow
square abs sign erf sin cos atan2 select_n clamp
""".split())
_REDUCTIONS = frozenset('reduce_sum reduce_max reduce_min argmax argmin'.split())


def count_flops(jaxpr, while_trips: int = 1) -> dict:
  """{'matmul': dot_general FLOPs, 'other': element/reduction op count, 'while_loops': n}.

  Scan bodies count `length` times, while-loop bodies `while_trips` times,
  `cond` its most expensive branch.
  """
  total = {'matmul': 0.0, 'other': 0.0, 'while_loops': 0}

  def add(d, mult):
    total['matmul'] += mult * d['matmul']
    total['other'] += mult * d['other']
    total['while_loops'] += d['while_loops']

  for eqn in jaxpr.eqns:
    name = eqn.primitive.name
    if name == 'dot_general':
      (lc, _), _ = eqn.params['dimension_numbers']
      lhs = eqn.invars[0].aval.shape
      out = eqn.outvars[0].aval.shape
      total['matmul'] += 2.0 * math.prod(out) * math.prod(lhs[d] for d in lc)
    elif name == 'scan':
      add(count_flops(eqn.params['jaxpr'].jaxpr, while_trips), eqn.params['length'])
    elif name == 'while':
      total['while_loops'] += 1
      add(count_flops(eqn.params['body_jaxpr'].jaxpr, while_trips), while_trips)
      add(count_flops(eqn.params['cond_jaxpr'].jaxpr, while_trips), while_trips)
    elif name == 'cond':
      branches = [count_flops(b.jaxpr, while_trips) for b in eqn.params['branches']]
      add(max(branches, key=lambda d: d['matmul'] + d['other']), 1)
    elif name in _ELEMENTWISE:
      total['other'] += math.prod(eqn.outvars[0].aval.shape)
    elif name in _REDUCTIONS:
      total['other'] += math.prod(eqn.invars[0].aval.shape)
    else:
      for sub in _sub_jaxprs(eqn.params):
        add(count_flops(sub, while_trips), 1)
  return total


# ----------------------------------------------------------------------------
# Measuring one side.


def xla_flops(compiled) -> float | None:
  """XLA's `cost_analysis()` FLOPs (each while/scan body counted once)."""
  c = compiled.cost_analysis()
  if isinstance(c, (list, tuple)):
    c = c[0] if c else None
  return float(c['flops']) if c and 'flops' in c else None


class Side:
  """One implementation: a jitted function, its device-resident args, the compiled executable."""

  def __init__(self, name: str, jitted, args: tuple, lower=None):
    self.name = name
    self.jitted = jitted
    self.args = args
    self._lower = lower or (lambda: jitted.lower(*args))
    self.times: list[float] = []
    self.compiled = None
    self.compile_s = None
    self.out = None

  def compile(self):
    t = time.perf_counter()
    self.compiled = self._lower().compile()
    self.compile_s = time.perf_counter() - t

  def call(self):
    import jax
    t = time.perf_counter()
    out = jax.block_until_ready(self.compiled(*self.args))
    return out, time.perf_counter() - t


def time_interleaved(sides, reps: int) -> None:
  """Call each Side `reps` times, alternating the order (ABBA...) so that drifts in
  machine load hit both sides alike; the times go to each side's `times`."""
  import sys
  for rep in range(reps):
    for s in (sides if rep % 2 == 0 else sides[::-1]):
      _, dt = s.call()
      s.times.append(dt)
    print(f'rep {rep}: ' + ', '.join(f'{s.name} {s.times[-1]:.2f}s' for s in sides),
          file=sys.stderr, flush=True)
