"""MSA and template search binaries (jackhmmer, hhblits, hhsearch, mmseqs2, kalign).

Each runs as a subprocess with a timeout.
"""
