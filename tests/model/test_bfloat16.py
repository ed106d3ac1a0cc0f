"""`global_config.bfloat16`: bfloat16 matmuls in the trunk and heads, float32 outputs.

One forward per precision on the tiny config (random parameters, zero_init off).
The bfloat16 error is judged against the effect of a small deliberate change to
the float32 model (every parameter perturbed by 2%): a correct bfloat16 model
stays well inside it, a broken one (a wrong cast, a bfloat16 softmax or
normalisation) does not.
"""

import re

import jax
import numpy as np
import pytest
from flax import nnx

from af_jax import params as af_params
from af_jax.inference import Predictor, select_features
from af_jax.model.build import build_model
from tests.model.tiny import random_batch, tiny_config

# A bfloat16 dot or convolution in StableHLO: `stablehlo.dot_general ... -> tensor<...xbf16>`.
_BF16_DOT = re.compile(r'stablehlo\.(?:dot_general|convolution)[^\n]*xbf16>')


# PERF: halves the CPU compile time; both precisions compile with the same options.
_FAST_COMPILE = {'xla_backend_optimization_level': 0, 'xla_llvm_disable_expensive_passes': True}


def _config(bfloat16: bool):
  return tiny_config(**{'model.global_config.bfloat16': bfloat16,
                        'model.global_config.zero_init': False})


def _random_params() -> dict:
  """Random parameters of realistic scale (numpy: jitting the real init takes ~20 s).

  Weights ~ N(0, 1/fan_in), layer norms near identity, small biases.
  """
  graphdef, shapes = nnx.split(nnx.eval_shape(lambda: build_model(_config(False).model)))
  zeros = jax.tree_util.tree_map(lambda x: np.zeros(x.shape, np.float32), shapes)
  rng = np.random.default_rng(1)
  flat = {}
  for key, v in sorted(af_params.module_to_flat(nnx.merge(graphdef, zeros)).items()):
    name = key.rsplit('//', 1)[1]
    stacked = any(s in key for s in ('evoformer_iteration/', 'extra_msa_stack/', 'layer_stack'))
    shape = v.shape[1:] if stacked else v.shape
    noise = rng.standard_normal(v.shape).astype(np.float32)
    if name == 'scale':
      flat[key] = 1 + 0.1 * noise
    elif len(shape) <= 1 or name in ('offset', 'gating_b'):
      flat[key] = (name == 'gating_b') + 0.1 * noise
    else:
      # Attention's query/key/value/gating_w [c, (H,) d] read c channels.
      fan_in = shape[0] if name.endswith('_w') and name != 'output_w' else np.prod(shape[:-1])
      flat[key] = noise / np.sqrt(fan_in)
  return flat


def _state(flat: dict):
  return nnx.split(build_model(_config(False).model, flat))[1]


@pytest.fixture(scope='module')
def runs():
  batch = random_batch(seed=5, n_res=16)
  feats = select_features(batch, use_templates=True)
  flat = _random_params()
  # The same parameters with every value perturbed by 2%: the yardstick.
  rng = np.random.default_rng(0)
  wrong = {k: v * (1 + 0.02 * rng.standard_normal(v.shape)).astype(np.float32)
           for k, v in flat.items()}
  out = {}
  for name, bfloat16 in (('f32', False), ('bf16', True)):
    lowered = Predictor(_config(bfloat16), flat).lower(batch)
    out[f'hlo_{name}'] = lowered.as_text()
    forward = lowered.compile(compiler_options=_FAST_COMPILE)
    out[name] = jax.device_get(forward(_state(flat), feats))
    if not bfloat16:  # one executable for both float32 runs
      out['perturbed'] = jax.device_get(forward(_state(wrong), feats))
  return out


def _errors(a: dict, b: dict) -> dict:
  pos = lambda o: o['structure_module']['final_atom_positions']  # noqa: E731
  mask = a['structure_module']['final_atom_mask'][..., None]
  return {
      'positions': float(np.sqrt(np.sum(np.square(pos(a) - pos(b)) * mask) / np.sum(mask))),
      'plddt': float(np.max(np.abs(a['plddt'] - b['plddt']))),
      'pae': float(np.max(np.abs(a['predicted_aligned_error'] - b['predicted_aligned_error']))),
      'distogram': float(np.sqrt(np.mean(np.square(a['distogram']['logits']
                                                    - b['distogram']['logits'])))),
  }


def test_flag_puts_matmuls_in_bfloat16(runs):
  assert not _BF16_DOT.search(runs['hlo_f32'])
  assert 'bf16' not in runs['hlo_f32']
  # Every trunk op and the big heads: well over a hundred dots on the tiny model.
  assert len(_BF16_DOT.findall(runs['hlo_bf16'])) > 100


def test_outputs_are_float32_and_finite(runs):
  for path, x in jax.tree_util.tree_leaves_with_path(runs['bf16']):
    x = np.asarray(x)
    if np.issubdtype(x.dtype, np.floating):
      assert x.dtype == np.float32, jax.tree_util.keystr(path)
      assert np.isfinite(x).all(), jax.tree_util.keystr(path)


def test_bfloat16_is_close_to_float32(runs):
  err = _errors(runs['f32'], runs['bf16'])
  wrong = _errors(runs['f32'], runs['perturbed'])
  print('bf16 vs f32:', err, '\n2% perturbed vs f32:', wrong)
  # Measured: RMS positions 1.5 A, pLDDT 0.10, PAE 2.8 A (max), distogram logits
  # 0.42 RMS; the 2% perturbation moves them 7.3 A, 0.48, 5.5 A and 0.85.
  assert err['positions'] < 3.0
  assert err['plddt'] < 1.0
  assert err['pae'] < 5.0
  for k in ('positions', 'plddt'):
    assert err[k] < 0.5 * wrong[k], k
  for k in ('pae', 'distogram'):
    assert err[k] < 0.8 * wrong[k], k
