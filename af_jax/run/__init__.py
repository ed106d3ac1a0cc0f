"""The layer that runs things: folding targets into AlphaFold's output layout, warm-up,
outputs and plots, job records, and the command lines' shared plumbing.

It sits on top of the library (ARCHITECTURE.md): nothing else in af_jax imports it, and
training (af_jax.train) runs without it. Importing this package imports none of its
modules, so a command line can import `af_jax.run.cli` first and cheaply.
"""
