"""Sizes as people write them."""

import pytest

from compile_cache import units
from compile_cache.errors import CompileCacheError


@pytest.mark.parametrize('text, expected', [
    ('800MB', 800 * 10**6), ('1.5GB', 1_500_000_000), ('2GiB', 2 * 2**30), ('17', 17),
    ('3 kb', 3000), ('.5G', 500_000_000), (42, 42),
])
def test_parse_size(text, expected):
  assert units.parse_size(text) == expected


@pytest.mark.parametrize('text', ['', 'GB', '1.5XB', '-3MB', -1])
def test_parse_size_rejects_with_the_value_named(text):
  with pytest.raises(CompileCacheError, match='size'):
    units.parse_size(text)


def test_format_size():
  assert units.format_size(17) == '17 B'
  assert units.format_size(3556) == '3.6 kB'
  assert units.format_size(1_500_000_000) == '1.5 GB'
  assert units.format_size(2 * 10**12) == '2.00 TB'
  assert units.format_size(None) == '-'
