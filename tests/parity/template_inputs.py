"""Template inputs as users have them, for the parity tests.

Real template hits carry missing atoms (unobserved side chains, G/A without
chi1), residues with no atoms at all (alignment gaps, unobserved loops) and
coordinates far from the origin; missing atoms sit at the origin, as
AlphaFold's template featurizer leaves them. Random coordinates with random
masks exercise none of the cases that differ.
"""

import gzip
import pathlib
import pickle

import numpy as np

from af_jax.common import residue_constants as rc
from af_jax.data import parsers, pipeline
from tests.data.shared_data import SHARED_DATA, TEMPLATE_FIXTURE

_8D27 = SHARED_DATA / 'chains_with_msa' / 'unifold_8d27_features' / 'pdb_features'
BACKBONE_AND_CB = ('N', 'CA', 'C', 'O', 'CB')


def hits_8d27(n_templ: int, start: int, n_res: int) -> dict[str, np.ndarray]:
  """Residues [start, start + n_res) of the first n_templ real PDB hits of 8D27 A.

  From Uni-Fold's AlphaFold feature file: atom37 coordinates of 20 hits as
  AlphaFold's template featurizer wrote them (gaps, unobserved atoms).

  Returns:
    template_aatype [T, N] int32 (af_jax's residue order, 21 = gap),
    template_all_atom_positions [T, N, 37, 3],
    template_all_atom_masks [T, N, 37].
  """
  with gzip.open(_8D27 / '8d27_A.feature.pkl.gz', 'rb') as f:
    feats = pickle.load(f)
  window = slice(start, start + n_res)
  hhblits = np.argmax(feats['template_aatype'][:n_templ, window], -1)  # HHblits' letter order
  return {
      'template_aatype': np.asarray(rc.MAP_HHBLITS_AATYPE_TO_OUR_AATYPE, np.int32)[hhblits],
      'template_all_atom_positions': feats['template_all_atom_positions'][
          :n_templ, window].astype(np.float32),
      'template_all_atom_masks': feats['template_all_atom_masks'][:n_templ, window].astype(
          np.float32),
  }


def keep_atoms(positions: np.ndarray, masks: np.ndarray, names=BACKBONE_AND_CB
               ) -> tuple[np.ndarray, np.ndarray]:
  """Only the named atoms observed (a template without side chains); others at the origin."""
  keep = np.zeros(37, np.float32)
  keep[[rc.atom_order[n] for n in names]] = 1
  return positions * keep[:, None], masks * keep


def drop_residues(positions: np.ndarray, masks: np.ndarray, residues) -> tuple[np.ndarray,
                                                                                 np.ndarray]:
  """Residues with no atoms at all (a gap in the template's alignment)."""
  positions, masks = positions.copy(), masks.copy()
  positions[..., residues, :, :] = 0
  masks[..., residues, :] = 0
  return positions, masks


def glycine_alanine_rich(aatype: np.ndarray, positions: np.ndarray, masks: np.ndarray,
                         every: int = 2) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Every `every`-th residue made G or A (alternately), with only the atoms that type has.

  A template of a G/A-rich homolog: no chi angle at those residues, no CB at
  the glycines (the pseudo-beta is CA there).
  """
  aatype, positions, masks = aatype.copy(), positions.copy(), masks.copy()
  for k, i in enumerate(range(0, aatype.shape[-1], every)):
    letter = 'GA'[k % 2]
    aatype[..., i] = rc.restype_order[letter]
    exists = np.asarray(rc.restype_atom37_mask[rc.restype_order[letter]], np.float32)
    masks[..., i, :] *= exists
    positions[..., i, :, :] *= exists[:, None]
  return aatype, positions, masks


def edit_raw_templates(raw: dict, edit) -> dict:
  """Raw features whose templates went through `edit(aatype, positions, masks)`.

  Raw template_aatype is one-hot in HHblits' letter order; `edit` sees and
  returns af_jax's residue indices.
  """
  to_ours = np.asarray(rc.MAP_HHBLITS_AATYPE_TO_OUR_AATYPE)
  aatype, pos, mask = edit(to_ours[np.argmax(raw['template_aatype'], -1)],
                           raw['template_all_atom_positions'], raw['template_all_atom_masks'])
  return {**raw, 'template_aatype': np.eye(22, dtype=np.float32)[np.argsort(to_ours)[aatype]],
          'template_all_atom_positions': pos.astype(np.float32),
          'template_all_atom_masks': mask.astype(np.float32)}


def strip_gap_and_glycine_alanine(aatype, positions, masks, gap=(40, 41, 42)):
  """Backbone and CB only, a stretch without atoms, every other residue G or A."""
  positions, masks = drop_residues(*keep_atoms(positions, masks), list(gap))
  return glycine_alanine_rich(aatype, positions, masks, every=2)


def pipeline_raw_features(workdir: pathlib.Path) -> dict:
  """The short query's raw features from af_jax's own pipeline, templates included.

  Its real jackhmmer/hhblits MSAs and HHsearch hits against PDB70, featurized
  from the hit mmCIFs (missing atoms, gaps where a hit does not cover the query).
  """
  record = parsers.read_fasta(str(TEMPLATE_FIXTURE / 'short.fasta'))[0]
  alignments = TEMPLATE_FIXTURE / 'alignments'
  options = pipeline.PipelineOptions(
      msa_mode='precomputed', msa_paths=tuple(str(p) for p in sorted(alignments.iterdir())),
      use_templates=True, template_mmcif_dir=str(TEMPLATE_FIXTURE / 'template_mmcifs'),
      max_template_date='2100-01-01')
  return pipeline.make_raw_features(record, workdir, options)
