"""AlphaFold-Multimer presets (`model_{1..5}_multimer_v3`) as ml_collections ConfigDicts.

Keys keep AlphaFold's names (`model.embeddings_and_evoformer.num_msa`,
`model.num_recycle`, ...). The blocks reuse the monomer's definitions
(configs.model_base); what differs is listed here, after Evans et al. (2021) and
AlphaFold v2.3's `CONFIG_MULTIMER`. float32 by default, as for the monomer.
"""

from __future__ import annotations

import copy

import ml_collections

from configs import model_base


def _trimul(equation: str, channels: int) -> dict:
  return {**model_base.trimul(equation, channels), 'fuse_projection_weights': True}


_EVOFORMER_BLOCK = copy.deepcopy(model_base.EVOFORMER_BLOCK)
_EVOFORMER_BLOCK['outer_product_mean']['first'] = True
_EVOFORMER_BLOCK['triangle_multiplication_outgoing'] = _trimul('ikc,jkc->ijc', 128)
_EVOFORMER_BLOCK['triangle_multiplication_incoming'] = _trimul('kjc,kic->ijc', 128)

_TEMPLATE = dict(
    attention=dict(gating=False, num_head=4),
    dgram_features=dict(min_bin=3.25, max_bin=50.75, num_bins=39),
    enabled=True,
    max_templates=4,
    num_channels=64,
    subbatch_size=128,
    template_pair_stack=dict(
        num_block=2,
        triangle_attention_starting_node=model_base.attention(4, 'per_row', 0.25),
        triangle_attention_ending_node=model_base.attention(4, 'per_column', 0.25),
        triangle_multiplication_outgoing=_trimul('ikc,jkc->ijc', 64),
        triangle_multiplication_incoming=_trimul('kjc,kic->ijc', 64),
        pair_transition=model_base.transition(2),
    ),
)

_STRUCTURE_MODULE = copy.deepcopy(model_base.BASE['model']['heads']['structure_module'])
_STRUCTURE_MODULE.update(
    position_scale=20.0,
    interface_fape=dict(atom_clamp_distance=1000.0, loss_unit_distance=20.0),
    intra_chain_fape=dict(atom_clamp_distance=10.0, loss_unit_distance=10.0),
    sidechain=dict(atom_clamp_distance=10.0, loss_unit_distance=10.0, num_channel=128,
                   num_residual_block=2, weight_frac=0.5),
)
del _STRUCTURE_MODULE['fape']

_HEADS = copy.deepcopy(model_base.BASE['model']['heads'])
_HEADS['structure_module'] = _STRUCTURE_MODULE
_HEADS['predicted_aligned_error']['weight'] = 0.1
_HEADS['masked_msa'] = dict(num_output=22, weight=2.0)  # 20 + X + gap: no mask token

_BASE = dict(
    data=dict(
        common=dict(max_templates=4, use_templates=True),
    ),
    model=dict(
        embeddings_and_evoformer=dict(
            evoformer_num_block=48,
            evoformer=_EVOFORMER_BLOCK,
            extra_msa_channel=64,
            extra_msa_stack_num_block=4,
            masked_msa=dict(profile_prob=0.1, replace_fraction=0.15, same_prob=0.1,
                            uniform_prob=0.1),
            max_relative_chain=2,
            max_relative_idx=32,
            msa_channel=256,
            num_extra_msa=2048,
            num_msa=508,
            pair_channel=128,
            prev_pos=dict(min_bin=3.25, max_bin=20.75, num_bins=15),
            recycle_features=True,
            recycle_pos=True,
            seq_channel=384,
            template=_TEMPLATE,
            use_chain_relative=True,
            use_cluster_profile=True,
        ),
        global_config=dict(
            bfloat16=False,
            deterministic=False,
            multimer_mode=True,
            subbatch_size=4,
            use_remat=False,
            zero_init=True,
        ),
        heads=_HEADS,
        num_ensemble_eval=1,
        num_recycle=20,
        # Stop once CA-CA distances move less than this (Å) between recycles.
        recycle_early_stop_tolerance=0.5,
        resample_msa_in_recycling=True,
    ),
)

# AlphaFold v2.3: models 4 and 5 were trained with fewer extra MSA rows.
MULTIMER_PRESET_DIFFS: dict[str, dict] = {
    'model_1_multimer_v3': {},
    'model_2_multimer_v3': {},
    'model_3_multimer_v3': {},
    'model_4_multimer_v3': {'model.embeddings_and_evoformer.num_extra_msa': 1152},
    'model_5_multimer_v3': {'model.embeddings_and_evoformer.num_extra_msa': 1152},
}
MULTIMER_PRESETS = tuple(MULTIMER_PRESET_DIFFS)


def multimer_base_config() -> ml_collections.ConfigDict:
  """The architecture shared by the multimer presets."""
  return ml_collections.ConfigDict(copy.deepcopy(_BASE))


def multimer_config(name: str) -> ml_collections.ConfigDict:
  """AlphaFold-Multimer preset `name` (model_1_multimer_v3 ... model_5_multimer_v3)."""
  if name not in MULTIMER_PRESET_DIFFS:
    from af_jax.errors import ConfigError
    raise ConfigError(f'unknown multimer preset {name!r}; choose one of '
                      f'{", ".join(MULTIMER_PRESETS)}')
  cfg = multimer_base_config()
  cfg.update_from_flattened_dict(MULTIMER_PRESET_DIFFS[name])
  cfg.model_name = name
  return cfg
