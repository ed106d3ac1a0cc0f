"""The structure module. Jumper et al. (2021) Suppl. Alg. 20, 23, 24.

Eight iterations of one `fold_iteration` layer (shared weights, run with
`jax.lax.scan` so the layer compiles once) refine per-residue backbone frames
with invariant point attention; a small ResNet predicts torsion angles from
which all heavy atoms are placed. The frame convention is a part the module is
given: the monomer's quaternion affines (`QUAT_AFFINE_FRAMES`, here) or
Multimer's rotation matrices (`structure_module_multimer.RIGID_FRAMES`).

Units: inside the loop frames are in AlphaFold's internal units (Å divided by
`position_scale` = 10); every output is in Å.
"""

from __future__ import annotations

import dataclasses

import chex
import jax
import jax.numpy as jnp
from flax import nnx

from af_jax.common.geometry import QuatRigid, Rigid
from af_jax.model import all_atom, dropout, primitives
from af_jax.model.ipa import InvariantPointAttention


def _suffix(i: int) -> str:
  """Haiku's name for the i-th module created with the same name: '', '_1', ..."""
  return f'_{i}' if i else ''


def _l2_normalize(x: jax.Array, eps: float = 1e-12) -> jax.Array:
  return x / jnp.sqrt(jnp.maximum(jnp.sum(jnp.square(x), axis=-1, keepdims=True), eps))


@dataclasses.dataclass(frozen=True)
class QuatAffineFrames:
  """The monomer's frame convention: the structure module's part that differs from Multimer's.

  Backbone frames are carried as quaternion affines (`QuatRigid`): the update of
  Alg. 23 is a Linear `affine_update` whose output is pre-composed as a
  quaternion; per-layer outputs are `affine` [N_res, 7] tensors, and the final
  ones `final_affines`/`traj` (quaternion, translation in Å). The other
  convention is `structure_module_multimer.RigidFrames`; a convention is
  stateless (its parameters live on the layer, under `update_name`).
  """

  update_name = 'affine_update'
  final_name = 'final_affines'
  mask_padding = False  # the monomer's final atoms are not masked by seq_mask

  def make_attention(self, config, *, c_s: int, c_z: int, zero_init: bool, rngs: nnx.Rngs):
    return InvariantPointAttention(config, c_s=c_s, c_z=c_z, zero_init=zero_init, rngs=rngs)

  def make_update(self, c: int, *, zero_init: bool, rngs: nnx.Rngs):
    return primitives.Linear(c, 6, initializer=primitives.final_init(zero_init), rngs=rngs)

  def identity(self, n: int, dtype) -> QuatRigid:
    return QuatRigid.identity((n,), dtype)

  def rigid(self, frames: QuatRigid) -> Rigid:
    """The frames as IPA takes them."""
    return frames.to_rigid()

  def update(self, frames: QuatRigid, update: jax.Array) -> QuatRigid:
    return frames.pre_compose(update)

  def scaled_rigid(self, frames: QuatRigid, scale: float) -> Rigid:
    """The frames in Å, as the sidechain takes them."""
    return frames.scale_translation(scale).to_rigid()

  def layer_outputs(self, frames: QuatRigid) -> dict:
    return {'affine': frames.to_tensor()}

  def stop_rotation_gradient(self, frames: QuatRigid) -> QuatRigid:
    return frames.stop_rotation_gradient()

  def trajectory(self, outputs: dict, scale: float, dtype) -> jax.Array:
    """[L, N_res, 7] per-layer affines, translations in Å (quaternion unchanged)."""
    return outputs['affine'] * jnp.asarray([1.0] * 4 + [scale] * 3, dtype)

  def sidechains(self, sc: dict) -> dict:
    return sc


QUAT_AFFINE_FRAMES = QuatAffineFrames()


class MultiRigidSidechain(nnx.Module):
  """Torsion angles from the single representation, then all atoms. Alg. 20 lines 11-14, Alg. 24.

  Parameters: `input_projection` (for `act`), `input_projection_1` (for the
  initial single representation), residual blocks `resblock1`/`resblock2`,
  `resblock1_1`/`resblock2_1`, ..., and `unnormalized_angles`.

  Args:
    config: AlphaFold's `structure_module.sidechain` config.
    c_act: channels of the iterated activations.
    c_initial: channels of the initial single representation.
    zero_init: zero-initialise the last layer of each residual block.
    rngs: random streams.
  """

  def __init__(self, config, *, c_act: int, c_initial: int, zero_init: bool = True,
               rngs: nnx.Rngs):
    c = config.num_channel
    self.num_residual_block = config.num_residual_block
    self.input_projection = primitives.Linear(c_act, c, rngs=rngs)
    self.input_projection_1 = primitives.Linear(c_initial, c, rngs=rngs)
    for i in range(self.num_residual_block):
      setattr(self, f'resblock1{_suffix(i)}',
              primitives.Linear(c, c, initializer='relu', rngs=rngs))
      setattr(self, f'resblock2{_suffix(i)}',
              primitives.Linear(c, c, initializer=primitives.final_init(zero_init), rngs=rngs))
    self.unnormalized_angles = primitives.Linear(c, 14, rngs=rngs)

  def __call__(self, frames: Rigid, act: jax.Array, initial_act: jax.Array,
               aatype: jax.Array) -> dict[str, jax.Array]:
    """Torsions and atoms for the current backbone frames.

    Args:
      frames: Rigid [N_res], backbone frames in Å.
      act: [N_res, c_act] iterated single activations.
      initial_act: [N_res, c_initial] normalised single representation.
      aatype: [N_res] int.

    Returns:
      angles_sin_cos and unnormalized_angles_sin_cos [N_res, 7, 2], atom_pos
      [N_res, 14, 3] (Å), frames [N_res, 8, 12] (flat12 rigid-group frames, Å).
    """
    n = act.shape[0]
    # Alg. 20 line 11 (the concatenation as a sum of two projections).
    a = (self.input_projection(jax.nn.relu(act))
         + self.input_projection_1(jax.nn.relu(initial_act)))
    for i in range(self.num_residual_block):  # Alg. 20 lines 12-13
      block1 = getattr(self, f'resblock1{_suffix(i)}')
      block2 = getattr(self, f'resblock2{_suffix(i)}')
      a = a + block2(jax.nn.relu(block1(jax.nn.relu(a))))
    unnormalized = jnp.reshape(self.unnormalized_angles(jax.nn.relu(a)), (n, 7, 2))
    angles = _l2_normalize(unnormalized)  # Alg. 20 line 14
    group_frames = all_atom.torsion_angles_to_frames(aatype, frames, angles)
    atom_pos = all_atom.frames_and_literature_positions_to_atom14_pos(aatype, group_frames)
    return {'angles_sin_cos': angles, 'unnormalized_angles_sin_cos': unnormalized,
            'atom_pos': atom_pos, 'frames': group_frames.to_flat12()}


class FoldIteration(nnx.Module):
  """One structure-module layer. Alg. 20 lines 6-14 and Alg. 23 (backbone update).

  In training (a `key`), dropout at rate `config.dropout` acts on the single
  activations after the attention and after the transition residuals, before
  each layer norm, as AlphaFold does (on the sum, not on the update).

  Parameters: `invariant_point_attention`, `attention_layer_norm`,
  `transition`, `transition_1`, ..., `transition_layer_norm`, the backbone
  update (`frames.update_name`) and `rigid_sidechain`. `frames` is the frame
  convention (QUAT_AFFINE_FRAMES, or Multimer's `RIGID_FRAMES`): it makes the
  attention and the update and carries the frames.
  """

  def __init__(self, config, *, c_s: int, c_z: int, zero_init: bool = True,
               frames=QUAT_AFFINE_FRAMES, rngs: nnx.Rngs):
    c = config.num_channel
    self.frames = frames
    self.num_layer_in_transition = config.num_layer_in_transition
    self.position_scale = config.position_scale
    self.dropout_rate = float(config.get('dropout', 0.0))
    self.invariant_point_attention = frames.make_attention(config, c_s=c, c_z=c_z,
                                                           zero_init=zero_init, rngs=rngs)
    self.attention_layer_norm = primitives.LayerNorm(c)
    for i in range(self.num_layer_in_transition):
      last = i == self.num_layer_in_transition - 1
      init = primitives.final_init(zero_init) if last else 'relu'
      setattr(self, f'transition{_suffix(i)}',
              primitives.Linear(c, c, initializer=init, rngs=rngs))
    self.transition_layer_norm = primitives.LayerNorm(c)
    setattr(self, frames.update_name, frames.make_update(c, zero_init=zero_init, rngs=rngs))
    self.rigid_sidechain = MultiRigidSidechain(config.sidechain, c_act=c, c_initial=c_s,
                                               zero_init=zero_init, rngs=rngs)

  def __call__(self, act: jax.Array, frames, *, initial_act: jax.Array,
               pair: jax.Array, seq_mask: jax.Array, aatype: jax.Array,
               key: jax.Array | None = None) -> tuple[jax.Array, object, dict]:
    """One layer.

    Args:
      act: [N_res, c] single activations.
      frames: [N_res] backbone frames (internal units) in the layer's convention
        (QuatRigid, or Rigid for Multimer's).
      initial_act: [N_res, c_s] normalised single representation.
      pair: [N_res, N_res, c_z] normalised pair representation.
      seq_mask: [N_res].
      aatype: [N_res] int.
      key: dropout key (training) or None.

    Returns:
      (act, frames for the next layer (rotation gradient stopped), outputs)
      with outputs the convention's frames ('affine' [N_res, 7] or 'rigid' Rigid
      [N_res], internal units) and 'sc' (sidechains).
    """
    conv = self.frames
    k_attn, k_transition = jax.random.split(key) if key is not None else (None, None)
    # Alg. 20 lines 6-7.
    act = act + self.invariant_point_attention(act, pair, seq_mask, conv.rigid(frames))
    act = self.attention_layer_norm(dropout.apply(act, self.dropout_rate, k_attn))
    # Alg. 20 lines 8-9: transition.
    x = act
    for i in range(self.num_layer_in_transition):
      x = getattr(self, f'transition{_suffix(i)}')(x)
      if i < self.num_layer_in_transition - 1:
        x = jax.nn.relu(x)
    act = self.transition_layer_norm(dropout.apply(act + x, self.dropout_rate, k_transition))
    # Alg. 20 line 10, Alg. 23: backbone update.
    frames = conv.update(frames, getattr(self, conv.update_name)(act))
    sc = self.rigid_sidechain(conv.scaled_rigid(frames, self.position_scale), act, initial_act,
                              aatype)
    outputs = {**conv.layer_outputs(frames), 'sc': sc}
    return act, conv.stop_rotation_gradient(frames), outputs  # Alg. 20 line 20


def run_layers(layer: nnx.Module, num_layer: int, act: jax.Array, frames, kw: dict,
               keys: jax.Array | None, unroll: bool = False):
  """`num_layer` iterations of one shared fold iteration `layer(act, frames, **kw, key=)`.

  Returns the last (act, frames) and each iteration's outputs stacked on a
  leading layer axis. `unroll` runs a Python loop (same numbers; for tests).
  """
  if unroll:
    per_layer = []
    for i in range(num_layer):
      act, frames, out = layer(act, frames, **kw, key=None if keys is None else keys[i])
      per_layer.append(out)
    return act, frames, jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *per_layer)
  # PERF: one compiled layer, its weights closed over (shared, not stacked).
  graphdef, state = nnx.split(layer)

  def step(carry, k):
    act, frames = carry
    act, frames, out = nnx.merge(graphdef, state)(act, frames, **kw, key=k)
    return (act, frames), out

  (act, frames), outputs = jax.lax.scan(step, (act, frames), keys, length=num_layer)
  return act, frames, outputs


class StructureModule(nnx.Module):
  """Structure module head. Jumper et al. (2021) Suppl. Alg. 20.

  Parameters: `single_layer_norm`, `initial_projection`, `pair_layer_norm` and
  one `fold_iteration` whose weights all `config.num_layer` iterations share.

  Args:
    config: AlphaFold's (or AlphaFold-Multimer's) `model.heads.structure_module` config.
    c_s: single channels (384).
    c_z: pair channels (128).
    zero_init: zero-initialise output layers (AlphaFold's global zero_init).
    frames: the frame convention, QUAT_AFFINE_FRAMES (monomer) or
      `structure_module_multimer.RIGID_FRAMES`.
    rngs: random streams.
  """

  def __init__(self, config, *, c_s: int, c_z: int, zero_init: bool = True,
               frames=QUAT_AFFINE_FRAMES, rngs: nnx.Rngs):
    self.frames = frames
    self.num_layer = config.num_layer
    self.position_scale = config.position_scale
    self.single_layer_norm = primitives.LayerNorm(c_s)
    self.initial_projection = primitives.Linear(c_s, config.num_channel, rngs=rngs)
    self.pair_layer_norm = primitives.LayerNorm(c_z)
    self.fold_iteration = FoldIteration(config, c_s=c_s, c_z=c_z, zero_init=zero_init,
                                        frames=frames, rngs=rngs)

  @jax.named_scope('structure_module')
  def __call__(self, single: jax.Array, pair: jax.Array, seq_mask: jax.Array,
               aatype: jax.Array, *, key: jax.Array | None = None,
               unroll: bool = False) -> dict:
    """Fold: frames, torsions and atoms from the trunk's representations.

    Args:
      single: [N_res, c_s] single representation.
      pair: [N_res, N_res, c_z] pair representation.
      seq_mask: [N_res] 1 for residues, 0 for padding.
      aatype: [N_res] int residue types (20 = unknown).
      key: dropout key (training; one per layer is split from it) or None.
      unroll: run the layers as a Python loop instead of one `lax.scan`
        (same numbers; for tests and debugging).

    Returns:
      final_atom_positions [N_res, 37, 3] (Å, zero for absent atoms, and for
      padding under Multimer's convention), final_atom_mask [N_res, 37],
      final_atom14_positions [N_res, 14, 3], final_atom14_mask [N_res, 14]
      (with Multimer's convention both masks are zero on padding, as its
      reference's), the frames of the last layer and of every layer in Å
      (monomer: final_affines [N_res, 7] and traj [L, N_res, 7], quaternion then
      translation; Multimer: final_rigids [N_res, 3, 4] and traj [L, N_res, 3, 4],
      rotation | translation), sidechains (per layer: angles_sin_cos,
      unnormalized_angles_sin_cos [L, N_res, 7, 2], atom_pos [L, N_res, 14, 3],
      frames [L, N_res, 8, 12] flat, or [L, N_res, 8, 3, 4] under Multimer's),
      act [N_res, c] (the single representation for the pLDDT head).
    """
    chex.assert_rank([single, pair, seq_mask, aatype], [2, 3, 1, 1])
    conv = self.frames
    n = single.shape[0]
    # Alg. 20 lines 1-4.
    initial_act = self.single_layer_norm(single)
    act = self.initial_projection(initial_act)
    pair = self.pair_layer_norm(pair)
    frames = conv.identity(n, act.dtype)  # Alg. 20 line 4: black-hole init
    kw = dict(initial_act=initial_act, pair=pair, seq_mask=seq_mask, aatype=aatype)
    keys = jax.random.split(key, self.num_layer) if key is not None else None

    act, _, outputs = run_layers(self.fold_iteration, self.num_layer, act, frames, kw, keys,
                                 unroll)

    traj = conv.trajectory(outputs, self.position_scale, act.dtype)
    sc = conv.sidechains(outputs['sc'])
    masks = all_atom.make_atom14_masks(aatype)
    atom37_mask, atom14_mask = masks['atom37_atom_exists'], masks['atom14_atom_exists']
    if conv.mask_padding:
      atom37_mask = atom37_mask * seq_mask[:, None]
      atom14_mask = atom14_mask * seq_mask[:, None]
    atom14 = sc['atom_pos'][-1]
    # atom14_to_atom37 zeroes atoms the residue type lacks (atom37_atom_exists).
    atom37 = all_atom.atom14_to_atom37(atom14, aatype)
    if conv.mask_padding:
      atom37 = atom37 * atom37_mask[..., None]
    return {
        'final_atom_positions': atom37,
        'final_atom_mask': atom37_mask,
        'final_atom14_positions': atom14,
        'final_atom14_mask': atom14_mask,
        conv.final_name: traj[-1],
        'traj': traj,
        'sidechains': sc,
        'act': act,
    }
