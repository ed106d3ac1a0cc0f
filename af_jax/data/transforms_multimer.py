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

from af_jax.errors import InputError

# Raw multimer features the model reads, with their dtypes.
MULTIMER_INPUTS = {
    'aatype': np.int32, 'residue_index': np.int32, 'asym_id': np.int32,
    'entity_id': np.int32, 'sym_id': np.int32, 'seq_mask': np.float32,
    'msa': np.int32, 'msa_mask': np.float32, 'deletion_matrix': np.float32,
    'cluster_bias_mask': np.float32, 'bert_mask': np.float32,
    'template_aatype': np.int32, 'template_all_atom_positions': np.float32,
    'template_all_atom_mask': np.float32,
}
# Which axes of each input are residues, MSA rows or template slots.
_RESIDUE_AXES = {'msa': (1,), 'msa_mask': (1,), 'deletion_matrix': (1,), 'bert_mask': (1,),
                 'template_aatype': (1,), 'template_all_atom_positions': (1,),
                 'template_all_atom_mask': (1,), 'cluster_bias_mask': ()}
_ROW_FEATURES = ('msa', 'msa_mask', 'deletion_matrix', 'bert_mask', 'cluster_bias_mask')
_TEMPLATE_FEATURES = ('template_aatype', 'template_all_atom_positions', 'template_all_atom_mask')


def natural_sizes(raw: Mapping[str, np.ndarray]) -> tuple[int, int, int]:
  """(residues, MSA rows, template slots) of a complex's raw features."""
  missing = [k for k in MULTIMER_INPUTS if k not in raw]
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
  for key, dtype in MULTIMER_INPUTS.items():
    x = np.asarray(raw[key]).astype(dtype)
    if key in _TEMPLATE_FEATURES:
      x = _pad_axis(x[:num_templates], 0, num_templates)
    if key in _ROW_FEATURES:
      x = _pad_axis(x, 0, num_seq)
    for axis in _RESIDUE_AXES.get(key, (0,)):
      x = _pad_axis(x, axis, num_res)
    out[key] = x
  return out
