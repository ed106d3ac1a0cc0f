"""MSA and template search binaries (jackhmmer, hhblits, hhsearch, mmseqs2, kalign) as subprocesses."""
