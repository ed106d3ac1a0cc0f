"""A run's targets: read from FASTA files (or features files), named, sorted, and the output
directory checked before any work; an OSError while folding one as one line with its fix."""

from __future__ import annotations

import dataclasses
import errno
import os
import pathlib
from collections.abc import Mapping, Sequence

import numpy as np

from af_jax.common import residue_constants as rc
from af_jax.data import features, names, parsers, pipeline_multimer
from af_jax.errors import InputError

FEATURES_FILES = ('features.pkl', 'features.npz')  # in each target's directory


@dataclasses.dataclass(frozen=True)
class Target:
  """One job: a name, its sequence, and where its raw features come from."""

  record: parsers.FastaRecord
  features_path: str | None = None  # a features.pkl/.npz to use instead of the data pipeline
  chains: tuple[parsers.FastaRecord, ...] = ()  # a complex's chains (multimer presets)
  # The features read from features_path, kept so that a pickle is loaded once per run.
  features: Mapping | None = dataclasses.field(default=None, repr=False, compare=False)


def read_targets(fasta_paths: Sequence[str], features_paths: Sequence[str] = (), *,
                 multimer: bool = False) -> list[Target]:
  """The targets, sorted by length; names unique.

  Monomer presets: every record of every FASTA file (and every features.pkl or
  features.npz, named by features_target_name) is a target. Multimer presets: every
  FASTA file is one complex (its records, and `A:B` chains within a record), named
  after the file. Every name is checked to be one safe directory name.
  """
  targets = []
  if multimer:
    if features_paths:
      raise InputError('--features_paths holds monomer features; with a multimer preset pass '
                       'each complex as one FASTA file in --fasta_paths')
    for path in fasta_paths:
      cplx = pipeline_multimer.read_complex(path)
      joined = ''.join(r.sequence for r in cplx.chains)
      targets.append(Target(parsers.FastaRecord(cplx.name, cplx.name, joined),
                            chains=cplx.chains))
  for path in fasta_paths if not multimer else ():
    targets += [Target(r) for r in parsers.read_fasta(path)]
  for path in features_paths:
    name = names.check_path_name(
        features_target_name(path), f'--features_paths entry {names.shown(str(path))}',
        'rename the file (<name>.pkl) or the directory holding features.pkl')
    feats = features.load_features(path)
    targets.append(Target(parsers.FastaRecord(name, name, _sequence_of(feats)),
                          features_path=str(path), features=feats))
  if not targets:
    raise InputError('no targets: pass --fasta_paths (or --features_paths)')
  seen: dict[str, int] = {}
  for t in targets:
    seen[t.record.name] = seen.get(t.record.name, 0) + 1
  dupes = sorted(n for n, c in seen.items() if c > 1)
  if dupes:
    raise InputError(f'target names {dupes} occur more than once across the inputs; each '
                     'names an output directory, so rename the records')
  return sorted(targets, key=lambda t: (len(t.record.sequence), t.record.name))


def features_target_name(path: str | os.PathLike) -> str:
  """The target a features file names: the directory holding it for AlphaFold's layout
  (<target>/features.pkl, .pkl.gz or .npz), else the file name up to its first '.'."""
  p = pathlib.Path(os.path.abspath(path))  # './features.pkl' is in a directory with a name
  return p.parent.name if p.name.startswith(FEATURES_FILES) else p.name.split('.')[0]


def _sequence_of(feats: Mapping) -> str:
  if 'sequence' in feats:
    seq = feats['sequence'][0]
    return seq.decode() if isinstance(seq, bytes) else str(seq)
  aatype = np.argmax(feats['aatype'], axis=-1) if np.ndim(feats['aatype']) == 2 else feats['aatype']
  return ''.join(rc.restypes_with_x[int(a)] for a in aatype)


def check_output_dir(output_dir: pathlib.Path) -> None:
  """Fail before any work when the output directory cannot be written."""
  try:
    output_dir.mkdir(parents=True, exist_ok=True)
    probe = output_dir / f'.write-test-{os.getpid()}'
    probe.write_text('')
    probe.unlink()
  except OSError as e:
    raise InputError(f'cannot write to --output_dir={output_dir} ({e.strerror}); choose a '
                     'writable directory') from None


def check_target_dirs(output_dir: pathlib.Path, targets: Sequence[Target]) -> None:
  """Fail before any work when something other than a directory holds a target's name."""
  for t in targets:
    path = output_dir / t.record.name
    if os.path.lexists(path) and not path.is_dir():
      raise InputError(f'{names.shown(str(path))} exists and is not a directory, but target '
                       f'{t.record.name} needs it for its outputs: move it away or choose '
                       'another --output_dir')


_FILE_ERROR_FIXES = {
    errno.ENOSPC: 'free space on that file system, or choose another --output_dir',
    errno.EDQUOT: 'free space within your quota, or choose another --output_dir',
    errno.EFBIG: 'raise the file size limit (ulimit -f), or choose another --output_dir',
    errno.EACCES: 'make it writable, or choose another --output_dir',
    errno.EPERM: 'make it writable, or choose another --output_dir',
    errno.EROFS: 'choose an --output_dir on a writable file system',
    errno.EEXIST: 'move the file in the way, or choose another --output_dir',
    errno.ENOTDIR: 'move the file in the way, or choose another --output_dir',
    errno.EISDIR: 'move the directory in the way, or choose another --output_dir',
}


def file_error(e: OSError, target: str) -> InputError:
  """An OSError while folding `target` as one line: what failed, on which file, the fix.

  Files are written under temporary names (common.files), so nothing partial is left;
  targets folded before stay complete.
  """
  where = f' ({names.shown(os.fsdecode(e.filename))})' if e.filename else ''
  fix = _FILE_ERROR_FIXES.get(e.errno, 'check that file and its file system')
  return InputError(f'target {target}: {e.strerror or e}{where}: {fix}, then run again '
                    '(finished targets are kept)')
