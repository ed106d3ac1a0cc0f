"""af_jax: AlphaFold2 on JAX/XLA with AlphaFold's own parameters."""
