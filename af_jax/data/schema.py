"""Every feature the model, inference, training and warm-up read: name, dtype and axes, once.

An axis is a name (`'num_res'`, `'num_msa'`, ...: a size that varies with the input and its
bucket) or a fixed size (`37` atoms, `3` coordinates). A `Schema` gives the shapes for given
sizes (warm-up makes its dummy inputs from them), selects and casts a batch (inference,
training), and says which axis of a feature is which (padding).

Axis names:
  num_slices: processed monomer features carry one slice per recycle (num_recycle + 1).
  num_res: residues. num_msa: MSA rows (a monomer's cluster centres; all of a complex's
  rows). num_extra_msa: a monomer's extra-MSA rows. num_templates: template slots.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping

import numpy as np

from af_jax.common import residue_constants as rc

Axis = str | int


@dataclasses.dataclass(frozen=True)
class Feature:
  """One feature: its name, dtype and axes (names of varying sizes, or fixed sizes)."""
  name: str
  dtype: type
  axes: tuple[Axis, ...]

  def shape(self, sizes: Mapping[str, int]) -> tuple[int, ...]:
    """The shape for `sizes` (axis name -> size); KeyError names an axis not given."""
    return tuple(a if isinstance(a, int) else int(sizes[a]) for a in self.axes)

  def axes_named(self, axis: str) -> tuple[int, ...]:
    """The positions of the axes called `axis`."""
    return tuple(i for i, a in enumerate(self.axes) if a == axis)


@dataclasses.dataclass(frozen=True)
class Schema:
  """An ordered set of features (the order is the order batches and files are made in)."""
  features: tuple[Feature, ...]

  def __add__(self, other: Schema) -> Schema:
    return Schema(self.features + other.features)

  def __iter__(self):
    return iter(self.features)

  def __contains__(self, name: str) -> bool:
    return name in self.names

  def __getitem__(self, name: str) -> Feature:
    for f in self.features:
      if f.name == name:
        return f
    raise KeyError(name)

  @property
  def names(self) -> tuple[str, ...]:
    return tuple(f.name for f in self.features)

  @property
  def dtypes(self) -> dict[str, type]:
    """name -> dtype."""
    return {f.name: f.dtype for f in self.features}

  def shapes(self, **sizes: int) -> dict[str, tuple[int, ...]]:
    """name -> shape for the given axis sizes."""
    return {f.name: f.shape(sizes) for f in self.features}

  def zeros(self, **sizes: int) -> dict[str, np.ndarray]:
    """Zero arrays of every feature for the given axis sizes."""
    return {f.name: np.zeros(f.shape(sizes), f.dtype) for f in self.features}

  def missing(self, batch: Iterable[str]) -> list[str]:
    """The names of this schema that `batch` lacks, in order."""
    have = set(batch)
    return [n for n in self.names if n not in have]

  def select(self, batch: Mapping) -> dict[str, np.ndarray]:
    """This schema's features of `batch`, cast to their dtypes (KeyError on a missing one)."""
    return {f.name: np.asarray(batch[f.name]).astype(f.dtype) for f in self.features}


def _schema(*features: tuple[str, type, tuple[Axis, ...]]) -> Schema:
  return Schema(tuple(Feature(*f) for f in features))


_ATOMS = rc.atom_type_num  # 37
_AATYPE_GAP = len(rc.restypes_with_x_and_gap)  # 22

# A monomer's processed features (AlphaFold's RunModel.process_features), one slice per
# recycle: what the monomer model reads.
MONOMER = _schema(
    ('aatype', np.int32, ('num_slices', 'num_res')),
    ('residue_index', np.int32, ('num_slices', 'num_res')),
    ('seq_mask', np.float32, ('num_slices', 'num_res')),
    ('target_feat', np.float32, ('num_slices', 'num_res', 22)),
    ('msa_feat', np.float32, ('num_slices', 'num_msa', 'num_res', 49)),
    ('msa_mask', np.float32, ('num_slices', 'num_msa', 'num_res')),
    ('extra_msa', np.int32, ('num_slices', 'num_extra_msa', 'num_res')),
    ('extra_msa_mask', np.float32, ('num_slices', 'num_extra_msa', 'num_res')),
    ('extra_has_deletion', np.float32, ('num_slices', 'num_extra_msa', 'num_res')),
    ('extra_deletion_value', np.float32, ('num_slices', 'num_extra_msa', 'num_res')),
)

# A monomer's processed template features, read when the preset embeds templates.
MONOMER_TEMPLATES = _schema(
    ('template_aatype', np.int32, ('num_slices', 'num_templates', 'num_res')),
    ('template_all_atom_positions', np.float32,
     ('num_slices', 'num_templates', 'num_res', _ATOMS, 3)),
    ('template_all_atom_masks', np.float32, ('num_slices', 'num_templates', 'num_res', _ATOMS)),
    ('template_pseudo_beta', np.float32, ('num_slices', 'num_templates', 'num_res', 3)),
    ('template_pseudo_beta_mask', np.float32, ('num_slices', 'num_templates', 'num_res')),
    ('template_mask', np.float32, ('num_slices', 'num_templates')),
)

# A complex's template features (AlphaFold-Multimer's names), as the pipeline merges them.
MULTIMER_TEMPLATES = _schema(
    ('template_aatype', np.int32, ('num_templates', 'num_res')),
    ('template_all_atom_positions', np.float32, ('num_templates', 'num_res', _ATOMS, 3)),
    ('template_all_atom_mask', np.float32, ('num_templates', 'num_res', _ATOMS)),
)

# A complex's raw features (AlphaFold-Multimer's names) the multimer model reads: it samples
# and masks the MSA itself, so these are only cast and padded (transforms_multimer).
MULTIMER = _schema(
    ('aatype', np.int32, ('num_res',)),
    ('residue_index', np.int32, ('num_res',)),
    ('asym_id', np.int32, ('num_res',)),
    ('entity_id', np.int32, ('num_res',)),
    ('sym_id', np.int32, ('num_res',)),
    ('seq_mask', np.float32, ('num_res',)),
    ('msa', np.int32, ('num_msa', 'num_res')),
    ('msa_mask', np.float32, ('num_msa', 'num_res')),
    ('deletion_matrix', np.float32, ('num_msa', 'num_res')),
    ('cluster_bias_mask', np.float32, ('num_msa',)),
    ('bert_mask', np.float32, ('num_msa', 'num_res')),
) + MULTIMER_TEMPLATES

# The multimer's MSA-sampling key (raw uint32 key data), an input so that one executable
# serves every seed; inference adds it to a complex's batch.
SAMPLING_KEY = Feature('random_key', np.uint32, (2,))

# AlphaFold's raw template features (templates.TEMPLATE_FEATURES), in its order.
RAW_TEMPLATES = _schema(
    ('template_aatype', np.float32, ('num_templates', 'num_res', _AATYPE_GAP)),
    ('template_all_atom_masks', np.float32, ('num_templates', 'num_res', _ATOMS)),
    ('template_all_atom_positions', np.float32, ('num_templates', 'num_res', _ATOMS, 3)),
    ('template_domain_names', object, ('num_templates',)),
    ('template_sequence', object, ('num_templates',)),
    ('template_sum_probs', np.float32, ('num_templates', 1)),
)

# What a training step reads besides the model's inputs: masked-MSA targets, per slice.
TRAIN_TARGETS = _schema(
    ('true_msa', np.int32, ('num_slices', 'num_msa', 'num_res')),
    ('bert_mask', np.float32, ('num_slices', 'num_msa', 'num_res')),
)

# What a training step reads once per example: labels and flags.
TRAIN_EXAMPLE = _schema(
    ('all_atom_positions', np.float32, ('num_res', _ATOMS, 3)),
    ('all_atom_mask', np.float32, ('num_res', _ATOMS)),
    ('resolution', np.float32, ()),
    ('use_clamped_fape', np.float32, ()),
    ('num_recycles', np.int32, ()),
)
