"""Drive the reference AlphaFold (alphafold-colabfold==2.3.20) in float32.

Shared by the parity tests: build a Haiku module, initialise it, perturb every
array (the reference zero-initialises output layers, which hides bugs), and
hand the same numbers to af_jax through its own loader.
"""

from __future__ import annotations

import contextlib

import haiku as hk
import jax
import jax.numpy as jnp
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


def perturb_by_spread(tree, seed: int, floor: float = 0.02):
  """Every array plus N(0, max(std(array), floor)): noise at each array's own spread.

  Unlike `perturb`'s scaled noise, this moves near-constant arrays (layer-norm
  offsets, zero-initialised biases) as far as the rest, so no path stays near
  zero and hidden.
  """
  rng = np.random.default_rng(seed)

  def one(x):
    x = np.asarray(x, np.float32)
    return (x + rng.normal(size=x.shape) * max(float(x.std()), floor)).astype(np.float32)

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


def _collinear(u, v, sine: float = 1e-4):
  """u, v [..., 3] both non-zero with |sin(angle)| < sine (written apart from af_jax's test)."""
  nu = jnp.linalg.norm(u, axis=-1)
  nv = jnp.linalg.norm(v, axis=-1)
  safe = lambda n: jnp.where(n > 0, n, 1.0)  # noqa: E731
  sin = jnp.linalg.norm(jnp.cross(u / safe(nu)[..., None], v / safe(nv)[..., None]), axis=-1)
  return (nu > 0) & (nv > 0) & (sin < sine)


def undefined_dihedrals(points):
  """[..., 4, 3] -> [...] bool: the dihedral of the 4 points is undefined.

  It is when three consecutive points are distinct and collinear: atoms 0-1-2
  (the frame AlphaFold builds) or 1-2-3 (the fourth atom on the frame's axis).
  """
  axis = points[..., 2, :] - points[..., 1, :]
  return (_collinear(axis, points[..., 0, :] - points[..., 2, :])
          | _collinear(axis, points[..., 3, :] - points[..., 2, :]))


def torsion_points(aatype, positions):
  """[B, N, 7, 4, 3]: the atoms of each residue's 7 torsions, in AlphaFold's order."""
  aatype = jnp.minimum(aatype, 20)
  prev = jnp.concatenate([jnp.zeros_like(positions[:, :1]), positions[:, :-1]], axis=1)
  backbone = jnp.stack([
      jnp.stack([prev[:, :, 1], prev[:, :, 2], positions[:, :, 0], positions[:, :, 1]], -2),
      jnp.stack([prev[:, :, 2], positions[:, :, 0], positions[:, :, 1], positions[:, :, 2]], -2),
      jnp.stack([positions[:, :, 0], positions[:, :, 1], positions[:, :, 2], positions[:, :, 4]],
                -2)], axis=2)
  index = jnp.asarray(ref_all_atom.get_chi_atom_indices())[aatype]  # [B, N, 4, 4]
  chis = jnp.take_along_axis(positions[:, :, None], index[..., None], axis=3)
  return jnp.concatenate([backbone, chis], axis=2)


@contextlib.contextmanager
def undefined_torsions_pinned():
  """Pin the reference's undefined template torsions to (0, 0), as af_jax does.

  A dihedral with three consecutive collinear points (the first residue's
  pre-omega, whose previous atoms are the zero padding, and any residue after
  a gap) has no value: the reference returns rounding noise blown up to a unit
  vector, different jitted and eager (tests/model/test_all_atom.py shows it).
  Every other torsion, masked or not, keeps the reference's own value. Patch
  before the reference's first jit: a traced function keeps what it traced.
  """
  original = ref_all_atom.atom37_to_torsion_angles

  def pinned(aatype, all_atom_pos, all_atom_mask, placeholder_for_undefined=False):
    out = dict(original(aatype, all_atom_pos, all_atom_mask, placeholder_for_undefined))
    undefined = undefined_dihedrals(torsion_points(aatype, all_atom_pos))[..., None]
    for key in ('torsion_angles_sin_cos', 'alt_torsion_angles_sin_cos'):
      out[key] = jnp.where(undefined, 0.0, out[key])
    return out

  ref_modules.all_atom.atom37_to_torsion_angles = pinned
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
