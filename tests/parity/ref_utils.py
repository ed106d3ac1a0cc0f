"""Drive the reference AlphaFold (alphafold-colabfold==2.3.20) in float32.

Shared by the parity tests: build a Haiku module, initialise it, perturb every
array (the reference zero-initialises output layers, which hides bugs), and
hand the same numbers to af_jax through its own loader.
"""

from __future__ import annotations

import contextlib

import haiku as hk
import jax
import numpy as np
from alphafold.model import all_atom as ref_all_atom
from alphafold.model import config as ref_config
from alphafold.model import modules as ref_modules

from af_jax import params as af_params


def ref_model_config(preset: str = 'model_1_ptm'):
  """Reference config in float32 (its default is bfloat16)."""
  cfg = ref_config.model_config(preset)
  cfg.model.global_config.bfloat16 = False
  cfg.model.global_config.bfloat16_output = False
  return cfg


def perturb(tree, seed: int, scale: float = 1.0):
  """Every array drawn afresh: init + N(0, scale * max(std(init), 0.1)).

  scale=1 (module tests) makes output layers as large as hidden ones; whole
  models use a smaller scale so that random weights stay in the
  well-conditioned regime trained weights live in (large random backbone
  updates make the structure module chaotic: the reference then disagrees
  with itself, jitted vs op by op, by 1e-3 relative).
  """
  rng = np.random.default_rng(seed)

  def one(x):
    x = np.asarray(x, np.float32)
    sd = scale * max(float(x.std()), 0.1)
    return (x + rng.normal(size=x.shape) * sd).astype(np.float32)

  return jax.tree_util.tree_map(one, tree)


def flatten(haiku_params) -> dict[str, np.ndarray]:
  """Haiku {scope: {name: array}} -> {'scope//name': array}."""
  return {f'{scope}//{name}': np.asarray(v)
          for scope, d in haiku_params.items() for name, v in d.items()}


def unflatten(flat) -> dict:
  out: dict = {}
  for key, v in flat.items():
    scope, name = key.split('//')
    out.setdefault(scope, {})[name] = v
  return out


def run_ref(fn, *args, seed: int = 0):
  """Init the Haiku function `fn(*args)`, perturb its params, apply.

  Returns:
    (outputs, flat perturbed params)
  """
  transformed = hk.transform(fn)
  params = transformed.init(jax.random.PRNGKey(seed), *args)
  params = perturb(hk.data_structures.to_mutable_dict(params), seed + 1)
  out = jax.jit(transformed.apply)(params, jax.random.PRNGKey(seed + 2), *args)
  return jax.tree_util.tree_map(np.asarray, out), flatten(params)


def load_into(module, flat, prefix: str):
  """Copy reference params into an af_jax module through params.assign_flat."""
  af_params.assign_flat(module, flat, prefix=prefix, source='reference')
  return module


def rel_err(out, ref) -> float:
  out = np.asarray(out, np.float64)
  ref = np.asarray(ref, np.float64)
  return float(np.linalg.norm(out - ref) / max(np.linalg.norm(ref), 1e-30))


@contextlib.contextmanager
def undefined_torsions_zeroed():
  """Make the reference zero its undefined template torsions, as af_jax does.

  Their (sin, cos) come from degenerate frames (missing atoms, e.g. the first
  residue's pre-omega): the reference's jitted and eager runs disagree on them.
  See embedders.template_single_features. Defined torsions are untouched.
  """
  original = ref_all_atom.atom37_to_torsion_angles

  def masked(*args, **kwargs):
    out = dict(original(*args, **kwargs))
    mask = out['torsion_angles_mask'][..., None]
    for key in ('torsion_angles_sin_cos', 'alt_torsion_angles_sin_cos'):
      out[key] = out[key] * mask
    return out

  ref_modules.all_atom.atom37_to_torsion_angles = masked
  try:
    yield
  finally:
    ref_modules.all_atom.atom37_to_torsion_angles = original


@contextlib.contextmanager
def self_unit_vectors_zeroed():
  """Make the reference multimer's template unit vector of a residue to itself zero, as af_jax.

  The reference computes it as R^T t_i - R^T t_i: float rounding noise of size
  ~1e-6, which `normalized` (clipped at 1e-6) blows up to O(1) values that
  differ between jitted and eager runs. See embedders_multimer.template_pair_features.
  Vectors longer than 1e-3 Å (every real inter-residue vector) are untouched.
  """
  from alphafold.model.geometry import vector

  original = vector.Vec3Array.normalized

  def normalized(self, epsilon: float = 1e-6):
    out = original(self, epsilon)
    keep = (self.norm(epsilon) > 1e-3).astype(out.x.dtype)
    return out * keep

  vector.Vec3Array.normalized = normalized
  try:
    yield
  finally:
    vector.Vec3Array.normalized = original
