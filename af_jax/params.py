"""AlphaFold `.npz` parameters <-> af_jax model state.

The rule, in one place: a model variable at nnx path `(a, b, ..., name)` is the
AlphaFold key `alphafold/alphafold_iteration/a/b/...//name`, with the path
components renamed by `_COMPONENT_TO_AF` (Haiku spellings that are not Python
names or that we do not repeat). Stacked blocks (Evoformer, extra MSA, template
pair stack) already carry their leading layer axis, as in the published files,
so loading is a copy with strict name and shape checks both ways.
"""

from __future__ import annotations

import io
import os
import pathlib
from collections.abc import Mapping

import numpy as np
from flax import nnx

from af_jax.common import files
from af_jax.errors import ParamsError

ROOT = 'alphafold/alphafold_iteration'

# Where the published weights come from, for messages about missing ones.
PARAMS_HELP = ('get them with AlphaFold\'s scripts/download_alphafold_params.sh '
               '(https://storage.googleapis.com/alphafold/alphafold_params_2022-12-06.tar)')

# af_jax attribute name -> AlphaFold (Haiku) scope name.
_COMPONENT_TO_AF = {
    'pair_activations': 'pair_activiations',  # sic: AlphaFold's spelling
    'layer_stack': '__layer_stack_no_state',  # template pair stack's layer_stack
    'relative_encoding': '~_relative_encoding',  # multimer: a Haiku method scope
}
_COMPONENT_FROM_AF = {v: k for k, v in _COMPONENT_TO_AF.items()}

# Published triangle-multiplication projections are separate left/right
# arrays; alphafold-colabfold fuses them at load time. Fused-form scope names
# are recognised on load and split back.
_FUSED_TRIMUL = {'projection': ('left_projection', 'right_projection'),
                 'gate': ('left_gate', 'right_gate')}
_FUSED_NORMS = {'left_norm_input': 'layer_norm_input', 'center_norm': 'center_layer_norm'}


def path_to_key(path: tuple, prefix: str = ROOT) -> str:
  """nnx state path -> AlphaFold flat key `scope//name`."""
  *scope, name = (str(p) for p in path)
  scope = [_COMPONENT_TO_AF.get(s, s) for s in scope]
  return '/'.join([prefix, *scope] if prefix else scope) + '//' + name


def key_to_path(key: str, prefix: str = ROOT) -> tuple[str, ...]:
  """AlphaFold flat key `scope//name` -> nnx state path."""
  scope, name = key.split('//')
  if prefix:
    if not scope.startswith(prefix):
      raise ParamsError(f'{key=} is not under {prefix!r}')
    scope = scope[len(prefix):].lstrip('/')
  parts = [_COMPONENT_FROM_AF.get(s, s) for s in scope.split('/') if s]
  return (*parts, name)


def module_to_flat(module: nnx.Module, prefix: str = ROOT) -> dict[str, np.ndarray]:
  """All nnx.Param arrays of `module` as AlphaFold flat keys."""
  flat = {}
  for path, var in nnx.to_flat_state(nnx.state(module, nnx.Param)):
    flat[path_to_key(path, prefix)] = np.asarray(var.get_value())
  return flat


def unfuse(flat: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
  """Split alphafold-colabfold's fused triangle-multiplication keys."""
  out = {}
  for key, value in flat.items():
    scope, name = key.split('//')
    head, _, leaf = scope.rpartition('/')
    if leaf in _FUSED_TRIMUL and head.rpartition('/')[2].startswith('triangle_multiplication'):
      left, right = _FUSED_TRIMUL[leaf]
      half = value.shape[-1] // 2
      out[f'{head}/{left}//{name}'] = value[..., :half]
      out[f'{head}/{right}//{name}'] = value[..., half:]
    elif leaf in _FUSED_NORMS and head.rpartition('/')[2].startswith('triangle_multiplication'):
      out[f'{head}/{_FUSED_NORMS[leaf]}//{name}'] = value
    else:
      out[key] = value
  return out


def assign_flat(module: nnx.Module, flat: Mapping[str, np.ndarray], prefix: str = ROOT,
                *, preset: str | None = None, source: str = 'parameters') -> None:
  """Copy AlphaFold flat arrays into `module`, strictly.

  Raises:
    ParamsError: naming every missing, extra or wrongly shaped key.
  """
  flat = unfuse(flat)
  state = nnx.state(module, nnx.Param)
  expected = {path_to_key(p, prefix): (p, v) for p, v in nnx.to_flat_state(state)}
  where = f'{source}' + (f' (preset {preset!r})' if preset else '')
  missing = sorted(set(expected) - set(flat))
  extra = sorted(set(flat) - set(expected))
  if missing:
    raise ParamsError(f'{len(missing)} key(s) missing from {where}, first {missing[0]!r}; '
                      'use the params file of the same preset')
  if extra:
    raise ParamsError(f'{len(extra)} unexpected key(s) in {where}, first {extra[0]!r}; '
                      'use the params file of the same preset')
  for key, (path, var) in expected.items():
    value = np.asarray(flat[key])
    want = tuple(var.get_value().shape)
    if value.shape != want:
      raise ParamsError(f'{key=} has shape {value.shape} in {where}, expected {want}')
    var.set_value(value.astype(np.float32))


def read_npz(path: str | os.PathLike) -> dict[str, np.ndarray]:
  """Read an AlphaFold `params_model_*.npz` (no pickles); every array must be finite.

  Raises:
    ParamsError: the file is missing or unreadable, or an array holds NaN or inf (named).
  """
  try:
    with np.load(path, allow_pickle=False) as data:
      flat = {k: data[k] for k in data.files}
  except FileNotFoundError:
    raise ParamsError(f'params file {str(path)!r} not found; pass the path to a '
                      'params_model_*.npz from AlphaFold\'s parameter release') from None
  except MemoryError:
    raise
  except Exception as e:  # noqa: BLE001 - zipfile, zlib and numpy each raise their own
    # A truncated download is a zipfile.BadZipFile, a damaged member a zlib.error or a
    # CRC error, an odd entry a ValueError: all say the file is not what it should be.
    raise ParamsError(f'params file {str(path)!r} is not a readable .npz '
                      f'({type(e).__name__}: {str(e)[:200]}); re-download or regenerate '
                      'it') from None
  check_finite(flat, f'params file {str(path)!r}')
  return flat


def check_finite(flat: Mapping[str, np.ndarray], where: str) -> None:
  """Raise ParamsError naming the first array of `flat` that holds NaN or inf.

  Non-finite weights fold every target into non-finite coordinates.
  """
  for key, value in flat.items():
    value = np.asarray(value)
    if np.issubdtype(value.dtype, np.inexact) and not np.isfinite(value).all():
      raise ParamsError(f'{key!r} in {where} holds {int(np.isnan(value).sum())} NaN and '
                        f'{int(np.isinf(value).sum())} inf of {value.size} values: the file is '
                        'damaged or was saved from a diverged model; re-download or '
                        're-export it')


def write_npz(path: str | os.PathLike, flat: Mapping[str, np.ndarray]) -> None:
  """Write flat arrays as `.npz`, atomically (temporary name, then rename)."""
  buf = io.BytesIO()
  np.savez(buf, **{k: np.asarray(v) for k, v in flat.items()})
  files.write_atomic(path, buf.getvalue())


def params_path(params_dir: str | os.PathLike, model_name: str) -> pathlib.Path:
  """`params_<model_name>.npz` in params_dir or params_dir/params (AlphaFold's data_dir).

  Raises:
    ParamsError: neither holds the file (naming both and where to get the weights).
  """
  name = f'params_{model_name}.npz'
  for candidate in (pathlib.Path(params_dir) / name, pathlib.Path(params_dir) / 'params' / name):
    if candidate.is_file():
      return candidate
  raise ParamsError(f'{name} not found in --params_dir={params_dir} (nor in its params/); '
                    f'{PARAMS_HELP}, or pass --random_params for a smoke test')
