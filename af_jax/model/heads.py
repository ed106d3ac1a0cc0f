"""Output heads. Jumper et al. (2021) Suppl. 1.9.6-1.9.10.

NUMERICS: the big projections (distogram and aligned error from the pair,
masked MSA from the MSA) compute in the trunk's dtype (bfloat16 with
`global_config.bfloat16`) and return float32 logits (the matmul's float32
accumulator); the small per-residue heads are float32.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from af_jax.model import primitives


class DistogramHead(nnx.Module):
  """Symmetrised pair logits over 64 distance bins. Suppl. 1.9.8."""

  def __init__(self, config, *, c_z: int, zero_init: bool = True, dtype=jnp.float32,
               rngs: nnx.Rngs):
    self.config = config
    self.half_logits = primitives.Linear(c_z, config.num_bins,
                                         initializer=primitives.final_init(zero_init),
                                         dtype=dtype, out_dtype=jnp.float32, rngs=rngs)

  def __call__(self, pair: jax.Array) -> dict:
    half = self.half_logits(pair)
    c = self.config
    return {'logits': half + jnp.swapaxes(half, 0, 1),
            'bin_edges': jnp.linspace(c.first_break, c.last_break, c.num_bins - 1)}


class MaskedMsaHead(nnx.Module):
  """Logits of the masked MSA residues (BERT objective). Suppl. 1.9.9."""

  def __init__(self, config, *, c_m: int, zero_init: bool = True, dtype=jnp.float32,
               rngs: nnx.Rngs):
    self.logits = primitives.Linear(c_m, config.num_output,
                                    initializer=primitives.final_init(zero_init),
                                    dtype=dtype, out_dtype=jnp.float32, rngs=rngs)

  def __call__(self, msa: jax.Array) -> dict:
    return {'logits': self.logits(msa)}


class PredictedLDDTHead(nnx.Module):
  """Per-residue binned lDDT-Ca from the structure module's single act. Suppl. Alg. 29."""

  def __init__(self, config, *, c_s: int, zero_init: bool = True, rngs: nnx.Rngs):
    n = config.num_channels
    self.input_layer_norm = primitives.LayerNorm(c_s)
    self.act_0 = primitives.Linear(c_s, n, initializer='relu', rngs=rngs)
    self.act_1 = primitives.Linear(n, n, initializer='relu', rngs=rngs)
    self.logits = primitives.Linear(n, config.num_bins,
                                    initializer=primitives.final_init(zero_init), rngs=rngs)

  def __call__(self, structure_act: jax.Array) -> dict:
    x = self.input_layer_norm(structure_act)
    x = jax.nn.relu(self.act_0(x))
    x = jax.nn.relu(self.act_1(x))
    return {'logits': self.logits(x)}


class ExperimentallyResolvedHead(nnx.Module):
  """Per-atom (atom37) logits that the atom is resolved experimentally. Suppl. 1.9.10."""

  def __init__(self, config, *, c_s: int, zero_init: bool = True, rngs: nnx.Rngs):
    del config
    self.logits = primitives.Linear(c_s, 37, initializer=primitives.final_init(zero_init),
                                    rngs=rngs)

  def __call__(self, single: jax.Array) -> dict:
    return {'logits': self.logits(single)}


class PredictedAlignedErrorHead(nnx.Module):
  """Binned aligned error of residue j in the frame of residue i. Suppl. 1.9.7."""

  def __init__(self, config, *, c_z: int, zero_init: bool = True, dtype=jnp.float32,
               rngs: nnx.Rngs):
    self.config = config
    self.logits = primitives.Linear(c_z, config.num_bins,
                                    initializer=primitives.final_init(zero_init),
                                    dtype=dtype, out_dtype=jnp.float32, rngs=rngs)

  def __call__(self, pair: jax.Array) -> dict:
    c = self.config
    return {'logits': self.logits(pair),
            'breaks': jnp.linspace(0.0, c.max_error_bin, c.num_bins - 1)}
