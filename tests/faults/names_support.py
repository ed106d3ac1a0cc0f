"""What the fault tests of names, inputs, full disks and signals share: run_inference.py as a
user runs it, on a tiny model with random weights, and the checks of its one-line errors."""

import pathlib
import re
import subprocess
import sys

from tests.cli_runner import child_env, scratch_dir
from tests.model.tiny import TINY

ROOT = pathlib.Path(__file__).resolve().parents[2]
SCRIPT = ROOT / 'run_inference.py'
# One compilation cache for these tests, out of the user's ~/.cache.
CACHE_DIR = scratch_dir('af_jax_faults_xla_')

MODEL = 'model_3_ptm'  # no template stack: the smallest model
TINY_ARGS = [f'--config.{k}={v}' for k, v in TINY.items()] + [
    '--config.model.embeddings_and_evoformer.evoformer_num_block=1',
    '--config.data.eval.max_msa_clusters=16', '--config.data.common.max_extra_msa=32',
    '--num_recycle=0', '--buckets=32,80', '--chunk=none', f'--model_names={MODEL}',
    '--random_params']
SEQUENCE = 'MKVLAAGIVGLLLAAGSW'

# Every temporary name af_jax uses (common.files: .<name>.tmp-<pid>), and any other name
# that says 'tmp'.
_TEMPORARY = re.compile('tmp', re.IGNORECASE)


def env(**extra: str) -> dict[str, str]:
  """The environment of a child run: CPU, one device, the shared compilation cache."""
  return child_env(CACHE_DIR, **extra)


def command(args) -> list[str]:
  return [sys.executable, str(SCRIPT), *TINY_ARGS, *map(str, args)]


def run(args, *, preexec_fn=None, timeout: float = 600) -> subprocess.CompletedProcess:
  """run_inference.py with the tiny model and `args` (which come last, so they win)."""
  return subprocess.run(command(args), cwd=ROOT, env=env(), capture_output=True, text=True,
                        timeout=timeout, preexec_fn=preexec_fn)


def assert_ok(proc: subprocess.CompletedProcess) -> None:
  assert proc.returncode == 0, f'exit {proc.returncode}\n{proc.stderr[-3000:]}'


def assert_one_error_line(proc: subprocess.CompletedProcess, *needles: str,
                          code: int = 2) -> str:
  """Exit `code`, no traceback, the last line 'error: ...' holding each needle, and no
  control character anywhere on stderr (an escape sequence must never reach a terminal)."""
  assert proc.returncode == code, f'exit {proc.returncode}\n{proc.stderr[-3000:]}'
  assert 'Traceback' not in proc.stderr, proc.stderr[-3000:]
  lines = proc.stderr.strip().splitlines()
  last = lines[-1]
  assert last.startswith('error: '), proc.stderr[-3000:]
  assert [line for line in lines if line.startswith('error: ')] == [last]
  for needle in needles:
    assert needle in last, last
  assert not [c for c in proc.stderr if not c.isprintable() and c not in '\n'], \
      repr(proc.stderr[-500:])
  return last


def temporary_files(directory: pathlib.Path) -> list[pathlib.Path]:
  """Everything under `directory` whose name looks temporary."""
  return sorted(p for p in pathlib.Path(directory).rglob('*') if _TEMPORARY.search(p.name))


def fasta(path: pathlib.Path, name: str = 't1', sequence: str = SEQUENCE) -> pathlib.Path:
  path.write_text(f'>{name}\n{sequence}\n')
  return path
