"""Runs test code in a fresh Python process: JAX's config and backend are process-global."""

from __future__ import annotations

import json
import os
from pathlib import Path
import subprocess
import sys
import textwrap
from typing import Any

ROOT = Path(__file__).resolve().parents[2]

PRELUDE = '''
import json, os, sys
import jax, jax.numpy as jnp
import compile_cache
from tests.compile_cache import warm_specs
EVENTS = []
jax.monitoring.register_event_listener(lambda event, **kw: EVENTS.append(event))
def count(event):
  return sum(e == '/jax/compilation_cache/' + event for e in EVENTS)
def result(**kw):
  print('RESULT ' + json.dumps(kw))
'''


def run_code(code: str, *, check: bool = True) -> dict[str, Any]:
  """Runs PRELUDE + `code` in a child; returns what it passed to `result(...)`."""
  return _run([sys.executable, '-c', PRELUDE + textwrap.dedent(code)], check=check)


def run_cli(*args: str, check: bool = True) -> subprocess.CompletedProcess:
  """Runs `python -m compile_cache ARGS` in a child."""
  return _spawn([sys.executable, '-m', 'compile_cache', *args], check=check)


def _spawn(cmd: list[str], *, check: bool) -> subprocess.CompletedProcess:
  env = dict(os.environ, PYTHONPATH=str(ROOT), JAX_PLATFORMS='cpu')
  proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
  if check and proc.returncode != 0:
    raise AssertionError(f'{cmd[:3]} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}')
  return proc


def _run(cmd: list[str], *, check: bool) -> dict[str, Any]:
  proc = _spawn(cmd, check=check)
  for line in proc.stdout.splitlines():
    if line.startswith('RESULT '):
      return json.loads(line[len('RESULT '):])
  raise AssertionError(f'child printed no RESULT:\n{proc.stdout}\n{proc.stderr}')
