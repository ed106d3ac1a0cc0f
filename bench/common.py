"""What every benchmark shares: the machine it ran on, and where its results go.

Each script writes its JSON to bench/results/ and its markdown section into
bench/RESULTS.md between its own markers (replacing its previous section, so
re-running a benchmark updates it in place).
"""

from __future__ import annotations

import datetime
import json
import os
import platform


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


def write_json(path: str, report: dict) -> str:
  """Write the report (indented JSON) and return its text."""
  text = json.dumps(report, indent=1)
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


def mb(x: float) -> str:
  """Bytes as whole megabytes with thousands separators, for the markdown tables."""
  return f'{x / 1e6:,.0f}'


def current_rss() -> int:
  """This process's resident set size now, in bytes."""
  with open('/proc/self/statm') as f:
    return int(f.read().split()[1]) * os.sysconf('SC_PAGE_SIZE')


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
    return {'error': f'exit {proc.returncode}: ' + proc.stderr.strip().splitlines()[-1]}
  return json.loads(proc.stdout.strip().splitlines()[-1])
