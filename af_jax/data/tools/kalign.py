"""Pairwise alignment with the kalign binary.

Template realignment needs one global alignment of two sequences: the template
sequence HHsearch saw and the SEQRES of the mmCIF that is actually on disk.
AlphaFold called kalign 2; Debian ships kalign 3 (3.3.x), whose command line
(`-i IN -o OUT --format fasta`) also accepts AlphaFold's, and which keeps the
input order in its aligned-FASTA output. We still match rows by name.
"""

from __future__ import annotations

import os
import tempfile

from af_jax.data.tools import runner
from af_jax.errors import InputError, ToolError


def align_pair(seq_a: str, seq_b: str, *, binary_path: str | None = None,
               timeout_s: float = 120.0) -> tuple[str, str]:
  """Globally aligns two protein sequences.

  Args:
    seq_a: first sequence (one-letter, no gaps).
    seq_b: second sequence.
    binary_path: kalign executable (--kalign_binary_path); default `kalign` on PATH.
    timeout_s: give up after this many seconds.

  Returns:
    (aligned_a, aligned_b), equal lengths, '-' for gaps, letters upper-case.

  Raises:
    InputError: if a sequence is empty or not letters.
    ToolError: if kalign is missing, fails or times out.
  """
  for name, seq in (('seq_a', seq_a), ('seq_b', seq_b)):
    if not seq or not seq.isalpha():
      raise InputError(f'{name}={seq!r} cannot be aligned with kalign; pass a non-empty '
                       'sequence of letters')
  binary = runner.find_binary('kalign', binary_path)
  with tempfile.TemporaryDirectory(prefix='af_jax_kalign_') as tmp:
    in_path, out_path = os.path.join(tmp, 'in.fasta'), os.path.join(tmp, 'out.fasta')
    with open(in_path, 'w') as f:
      f.write(f'>a\n{seq_a.upper()}\n>b\n{seq_b.upper()}\n')
    runner.run_tool([binary, '-i', in_path, '-o', out_path, '--format', 'fasta'],
                    timeout=timeout_s)
    if not os.path.exists(out_path):
      raise ToolError(f'kalign ({binary}) wrote no alignment; check that it is kalign 2 or 3')
    with open(out_path) as f:
      rows = _read_fasta(f.read())
  if set(rows) != {'a', 'b'} or len(rows['a']) != len(rows['b']):
    raise ToolError(f'kalign ({binary}) wrote an unexpected alignment {rows}; '
                    'use kalign 2 or 3')
  return rows['a'], rows['b']


def _read_fasta(text: str) -> dict[str, str]:
  """Aligned FASTA -> {name: aligned row} (kalign wraps long rows)."""
  rows: dict[str, list[str]] = {}
  name = None
  for line in text.splitlines():
    line = line.strip()
    if line.startswith('>'):
      name = line[1:].split()[0] if line[1:].split() else ''
      rows[name] = []
    elif line and name is not None:
      rows[name].append(line)
  return {k: ''.join(v).upper().replace('.', '-') for k, v in rows.items()}
