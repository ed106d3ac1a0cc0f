"""ModelCIF metadata of a predicted structure, and the mmCIF text helpers that write it.

The categories are those AlphaFold's `mmcif_metadata.add_metadata_to_mmcif` writes
(the ModelCIF dictionary it conforms to, the AlphaFold paper, the software, the
modelling steps and the pLDDT metrics), plus the per-residue pLDDT
(`_ma_qa_metric_local`) that the AlphaFold DB's files carry and AlphaFold's omit.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from importlib import metadata

# The ModelCIF dictionary version AlphaFold declares; every category written here is in it.
MODELCIF_DICT = ('mmcif_ma.dic', '1.3.9',
                 'https://raw.githubusercontent.com/ihmwg/ModelCIF/master/dist/mmcif_ma.dic')

# Jumper et al. (2021), Nature 596, 583-589: the method every model here comes from.
_CITATION = (
    ('id', 'primary'),
    ('title', 'Highly accurate protein structure prediction with AlphaFold'),
    ('journal_full', 'Nature'),
    ('journal_volume', '596'),
    ('page_first', '583'),
    ('page_last', '589'),
    ('year', '2021'),
    ('journal_id_ASTM', 'NATUAS'),
    ('country', 'UK'),
    ('journal_id_ISSN', '0028-0836'),
    ('journal_id_CSD', '0006'),
    ('book_publisher', '?'),
    ('pdbx_database_id_PubMed', '34265844'),
    ('pdbx_database_id_DOI', '10.1038/s41586-021-03819-2'),
)
_PAPER_AUTHORS = (
    'Jumper, John', 'Evans, Richard', 'Pritzel, Alexander', 'Green, Tim', 'Figurnov, Michael',
    'Ronneberger, Olaf', 'Tunyasuvunakool, Kathryn', 'Bates, Russ', 'Zidek, Augustin',
    'Potapenko, Anna', 'Bridgland, Alex', 'Meyer, Clemens', 'Kohl, Simon A. A.',
    'Ballard, Andrew J.', 'Cowie, Andrew', 'Romera-Paredes, Bernardino', 'Nikolov, Stanislav',
    'Jain, Rishub', 'Adler, Jonas', 'Back, Trevor', 'Petersen, Stig', 'Reiman, David',
    'Clancy, Ellen', 'Zielinski, Michal', 'Steinegger, Martin', 'Pacholska, Michalina',
    'Berghammer, Tamas', 'Silver, David', 'Vinyals, Oriol', 'Senior, Andrew W.',
    'Kavukcuoglu, Koray', 'Kohli, Pushmeet', 'Hassabis, Demis',
)
# The steps of an AlphaFold run, as AlphaFold lists them (the template search is listed
# whether or not templates were used, as there).
_PROTOCOL_STEPS = ('coevolution MSA', 'template search', 'modeling')

# _chem_comp names (wwPDB Chemical Component Dictionary) of the residues a Protein holds.
CHEM_COMP_NAMES = {
    'ALA': 'ALANINE', 'ARG': 'ARGININE', 'ASN': 'ASPARAGINE', 'ASP': 'ASPARTIC ACID',
    'CYS': 'CYSTEINE', 'GLN': 'GLUTAMINE', 'GLU': 'GLUTAMIC ACID', 'GLY': 'GLYCINE',
    'HIS': 'HISTIDINE', 'ILE': 'ISOLEUCINE', 'LEU': 'LEUCINE', 'LYS': 'LYSINE',
    'MET': 'METHIONINE', 'PHE': 'PHENYLALANINE', 'PRO': 'PROLINE', 'SER': 'SERINE',
    'THR': 'THREONINE', 'TRP': 'TRYPTOPHAN', 'TYR': 'TYROSINE', 'VAL': 'VALINE',
    'UNK': 'UNKNOWN',
}


def chem_comp_type(res_name: str) -> str:
  """The residue's _chem_comp.type: glycine has no chiral centre, so no L."""
  return 'peptide linking' if res_name == 'GLY' else 'L-peptide linking'


def software_version() -> str:
  """af_jax's installed version, or '?' (mmCIF's unknown) when it runs uninstalled."""
  try:
    return metadata.version('af_jax')
  except metadata.PackageNotFoundError:
    return '?'


_RESERVED = re.compile(r'(data|loop|save|global|stop)_', re.IGNORECASE)


def cif_value(value) -> str:
  """One mmCIF value, quoted where the bare text would read as something else.

  '.' and '?' pass bare: they are mmCIF's "not applicable" and "unknown".
  """
  text = str(value)
  # Bare values are ASCII (as CIF 1.1 has it; gemmi reads others only quoted).
  if (text.isascii() and text and not re.search(r'\s', text) and text[0] not in '_#$\'";[]'
      and not _RESERVED.match(text)):
    return text
  if '\n' not in text:
    # A quote ends a quoted value only where whitespace (or the end) follows it.
    if not re.search(r"'(\s|$)", text):
      return f"'{text}'"
    if not re.search(r'"(\s|$)', text):
      return f'"{text}"'
  return f';{text}\n;'


def category(name: str, columns: Sequence[str], rows: Sequence[Sequence]) -> list[str]:
  """An mmCIF category: `key value` pairs for one row, a loop for several, then `#`;
  nothing for no rows."""
  def join(values):
    text = ''
    for v in values:
      if v[0] == ';':  # a text field starts a line, and its closing `;` ends one
        text += ('\n' if text else '') + v + '\n'
      else:
        text += ('' if not text or text[-1] == '\n' else ' ') + v
    return text.rstrip('\n')

  if not rows:
    return []
  if len(rows) == 1:
    width = max(len(c) for c in columns) + len(name) + 1
    return [join([f'{name}.{c}'.ljust(width), cif_value(v)])
            for c, v in zip(columns, rows[0])] + ['#']
  return (['loop_'] + [f'{name}.{c}' for c in columns]
          + [join([cif_value(v) for v in row]) for row in rows] + ['#'])


def model_metadata(*, model_name: str, model_type: str, entity_ids: Sequence[int],
                   asym_entities: Sequence[tuple[str, int]], global_plddt: float | None,
                   local_plddt: Sequence[tuple[str, int, str, float]],
                   type_symbols: Sequence[str]) -> list[str]:
  """The ModelCIF categories of one model, as mmCIF lines.

  Args:
    model_name: the prediction's name (_ma_model_list.model_name).
    model_type: 'Monomer' or 'Multimer', as in AlphaFold's model group name.
    entity_ids: the polymer entities.
    asym_entities: (label_asym_id, entity id) of each chain.
    global_plddt: the model's mean pLDDT; None for a model without atoms.
    local_plddt: (label_asym_id, label_seq_id, label_comp_id, pLDDT) per residue.
    type_symbols: the elements of the model's atoms.

  Returns:
    Lines, each category closed by `#`.
  """
  version = software_version()
  lines = category('_audit_conform', ('dict_name', 'dict_version', 'dict_location'),
                   [MODELCIF_DICT])
  # DIFFERS FROM AF2: no _audit_author and no _pdbx_data_usage. AlphaFold names the
  # paper's authors as the file's and states DeepMind's licence and disclaimer for its
  # data; a file written here is its user's, whose authors and terms are theirs to add.
  lines += category('_citation', [k for k, _ in _CITATION], [[v for _, v in _CITATION]])
  lines += category('_citation_author', ('citation_id', 'name', 'ordinal'),
                    [('primary', a, i) for i, a in enumerate(_PAPER_AUTHORS, 1)])
  # DIFFERS FROM AF2: the software is af_jax at its version, not AlphaFold v2.3.2:
  # AlphaFold's network with DeepMind's parameters, run by this package.
  lines += category('_software', ('pdbx_ordinal', 'name', 'version', 'type', 'description',
                                  'classification', 'date'),
                    [(1, 'af_jax', f'v{version}' if version != '?' else '?', 'package',
                      'Structure prediction', 'other', '?')])
  lines += category('_ma_software_group', ('ordinal_id', 'group_id', 'software_id'),
                    [(1, 1, 1)])
  lines += category('_ma_data', ('id', 'name', 'content_type'),
                    [(1, 'Model', 'model coordinates')])
  lines += category('_ma_target_entity', ('entity_id', 'data_id', 'origin'),
                    [(e, 1, '.') for e in entity_ids])
  lines += category('_ma_target_entity_instance', ('asym_id', 'entity_id', 'details'),
                    [(a, e, '.') for a, e in asym_entities])
  # DIFFERS FROM AF2: AlphaFold names every model 'Top ranked model', ranked or not; here
  # the model is the prediction it is (model_1_ptm_pred_0, ...).
  lines += category('_ma_model_list', ('ordinal_id', 'model_id', 'model_group_id',
                                       'model_name', 'model_group_name', 'data_id',
                                       'model_type'),
                    [(1, 1, 1, model_name, f'AlphaFold {model_type} model (af_jax)', 1,
                      'Ab initio model')])
  lines += category('_ma_protocol_step', ('ordinal_id', 'protocol_id', 'step_id',
                                          'method_type'),
                    [(i, 1, i, step) for i, step in enumerate(_PROTOCOL_STEPS, 1)])
  lines += category('_ma_qa_metric', ('id', 'name', 'type', 'mode', 'software_group_id'),
                    [(1, 'pLDDT', 'pLDDT', 'global', 1), (2, 'pLDDT', 'pLDDT', 'local', 1)])
  value = '?' if global_plddt is None else f'{global_plddt:.2f}'
  lines += category('_ma_qa_metric_global', ('ordinal_id', 'model_id', 'metric_id',
                                             'metric_value'), [(1, 1, 1, value)])
  if local_plddt:
    lines += category('_ma_qa_metric_local', ('ordinal_id', 'model_id', 'label_asym_id',
                                              'label_seq_id', 'label_comp_id', 'metric_id',
                                              'metric_value'),
                      [(i, 1, asym, seq, comp, 2, f'{v:.2f}')
                       for i, (asym, seq, comp, v) in enumerate(local_plddt, 1)])
  lines += category('_atom_type', ('symbol',), [(s,) for s in sorted(set(type_symbols))])
  return lines
