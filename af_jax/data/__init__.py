"""From FASTA and alignments to the model's processed batch, in numpy (no JAX, no TensorFlow).

parsers (FASTA, a3m, Stockholm, hhr) -> features (raw AlphaFold feature dicts) ->
transforms (seeded processing, bucket padding). tools/ runs the MSA search binaries,
mmcif/templates turn template hits into template features, pipeline ties them together.
"""
