"""A complex's model inputs: AlphaFold-Multimer's raw features, cast and padded to a bucket.

The multimer samples and masks its MSA inside the model (every recycle), so on
the host there is only selection, casting and zero padding: residues (seq_mask
0, asym_id 0: no chain), MSA rows (msa_mask 0: never sampled before a real row)
and template slots. The model's random draws are padding-consistent, so a
padded complex folds as the unpadded one.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from af_jax.data import schema
from af_jax.errors import InputError


def natural_sizes(raw: Mapping[str, np.ndarray]) -> tuple[int, int, int]:
  """(residues, MSA rows, template slots) of a complex's raw features."""
  missing = schema.MULTIMER.missing(raw)
  if missing:
    raise InputError(f'multimer features lack {missing}; build them with '
                     'af_jax.data.pipeline_multimer (a multimer preset needs complex features)')
  return (int(np.shape(raw['aatype'])[0]), int(np.shape(raw['msa'])[0]),
          int(np.shape(raw['template_aatype'])[0]))


def _pad_axis(x: np.ndarray, axis: int, size: int) -> np.ndarray:
  if x.shape[axis] > size:
    raise InputError(f'cannot pad an axis of {x.shape[axis]} down to {size}')
  pad = [(0, 0)] * x.ndim
  pad[axis] = (0, size - x.shape[axis])
  return np.pad(x, pad)


def make_batch(raw: Mapping[str, np.ndarray], *, num_res: int | None = None,
               num_seq: int | None = None, num_templates: int | None = None
               ) -> dict[str, np.ndarray]:
  """The model's inputs, zero-padded to (num_res, num_seq, num_templates) (None: natural).

  Template slots beyond `num_templates` are dropped (the pipeline orders them
  best first); residues and MSA rows are never cut.
  """
  n_res, n_seq, n_templ = natural_sizes(raw)
  num_res = n_res if num_res is None else num_res
  num_seq = n_seq if num_seq is None else num_seq
  num_templates = n_templ if num_templates is None else num_templates
  if num_res < n_res or num_seq < n_seq:
    raise InputError(f'a complex of {n_res} residues and {n_seq} MSA rows does not fit a '
                     f'bucket of {num_res} x {num_seq}; use larger buckets')
  out = {}
  for feature in schema.MULTIMER:
    x = np.asarray(raw[feature.name]).astype(feature.dtype)
    for axis in feature.axes_named('num_templates'):
      x = _pad_axis(x[(slice(None),) * axis + (slice(num_templates),)], axis, num_templates)
    for axis in feature.axes_named('num_msa'):
      x = _pad_axis(x, axis, num_seq)
    for axis in feature.axes_named('num_res'):
      x = _pad_axis(x, axis, num_res)
    out[feature.name] = x
  return out
