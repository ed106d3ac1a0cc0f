"""Where the real test proteins live: ../shared/data beside the checkout (see its MANIFEST.md)."""

import pathlib

SHARED_DATA = pathlib.Path(__file__).resolve().parents[3] / 'shared' / 'data'
CHAIN_2Q2K = SHARED_DATA / 'chains_with_msa' / 'openfold_2q2k'
TEMPLATE_FIXTURE = SHARED_DATA / 'template_search' / 'openfold_short_query'
MINI_DATABASES = SHARED_DATA / 'seq_databases' / 'af3_miniature_databases'
# Debian package mmseqs2-examples: 500 query and 20,000 target UniProt sequences.
MMSEQS2_EXAMPLES = pathlib.Path('/usr/share/doc/mmseqs2/example-data')
