"""mmCIF values and categories read back as written by gemmi and biopython."""

import io

import gemmi
import pytest
from Bio.PDB.MMCIF2Dict import MMCIF2Dict

from af_jax.common import mmcif_metadata as mm

_VALUES = ['plain', 'two words', "O5'", "it's", "'leading", '"leading', '_x', '#x', '$x',
           '[x', ';x', 'data_x', 'loop_', 'Save_x', "a' b", 'a" b', "a' b\" c", '', 'é']


@pytest.mark.parametrize('rows', [1, 2])
def test_values_read_back_as_written(rows):
  table = [[i, v] for i, v in enumerate(_VALUES)]
  lines = ['data_x', '#']
  for i, v in enumerate(_VALUES):
    lines += mm.category(f'_c{i}', ('id', 'value'), [table[i]] * rows)
  text = '\n'.join(lines) + '\n'
  block = gemmi.cif.read_string(text).sole_block()
  for i, v in enumerate(_VALUES):
    column = block.find_values(f'_c{i}.value')
    assert [gemmi.cif.as_string(column[k]) for k in range(rows)] == [v] * rows
  # Biopython's tokenizer takes a quoted 'loop_' for the keyword: leave that one out.
  lines = ['data_x', '#']
  for i, v in enumerate(_VALUES):
    if v != 'loop_':
      lines += mm.category(f'_c{i}', ('id', 'value'), [table[i]] * rows)
  bio = MMCIF2Dict(io.StringIO('\n'.join(lines) + '\n'))
  for i, v in enumerate(_VALUES):
    if v != 'loop_':
      assert bio[f'_c{i}.value'] == [v] * rows


def test_unknown_and_inapplicable_stay_bare():
  assert mm.cif_value('?') == '?' and mm.cif_value('.') == '.'
  assert mm.cif_value(3) == '3'
