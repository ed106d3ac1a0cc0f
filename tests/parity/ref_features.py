"""Raw AlphaFold features of a real protein, built with the reference's own pipeline.

2Q2K chain A (70 residues) from ../shared/data: its real jackhmmer/hhblits MSAs
and, as a template, its own experimental chain. Used by the end-to-end parity
test and to regenerate examples/ (until af_jax's own data pipeline exists).
"""

import os

import numpy as np
from alphafold.common import residue_constants
from alphafold.data import mmcif_parsing, parsers, pipeline, templates

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..', '..', 'shared',
                    'data', 'chains_with_msa', 'openfold_2q2k')


def raw_features(with_template: bool) -> dict:
  """Sequence + MSA (+ template) features of 2Q2K chain A, AlphaFold's raw names."""
  cif = mmcif_parsing.parse(file_id='2q2k',
                            mmcif_string=open(os.path.join(DATA, '2q2k.cif')).read())
  obj = cif.mmcif_object
  seq = obj.chain_to_seqres['A']
  msas = []
  for name in ('uniref90_hits.sto', 'mgnify_hits.sto', 'bfd_uniclust_hits.a3m'):
    text = open(os.path.join(DATA, 'alignments', '2q2k_A', name)).read()
    msas.append(parsers.parse_stockholm(text) if name.endswith('.sto') else
                parsers.parse_a3m(text))
  feats = {**pipeline.make_sequence_features(seq, '2q2k_A', len(seq)),
           **pipeline.make_msa_features(msas)}
  if with_template:
    pos, mask = templates._get_atom_positions(obj, 'A', max_ca_ca_distance=150.0)
    aatype = residue_constants.sequence_to_onehot(
        seq, residue_constants.HHBLITS_AA_TO_ID)
    feats.update({
        'template_aatype': aatype[None].astype(np.float32),
        'template_all_atom_positions': pos[None].astype(np.float32),
        'template_all_atom_masks': mask[None].astype(np.float32),
        'template_sum_probs': np.array([[0.9]], np.float32),
        'template_domain_names': np.array([b'2q2k_A'], dtype=object),
    })
  return feats
