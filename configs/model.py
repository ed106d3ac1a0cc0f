"""AlphaFold2 monomer presets as ml_collections ConfigDicts.

Keys keep AlphaFold's own names (`model.num_recycle`,
`model.embeddings_and_evoformer.evoformer_num_block`, `data.eval.max_msa_clusters`)
so AlphaFold users find them. The base is the shared architecture (Jumper et al.
2021, Suppl. Table 5); `PRESET_DIFFS` is the one table of what each preset changes.
"""

from __future__ import annotations

import copy

import ml_collections


def _attention(num_head: int, orientation: str, dropout: float, **extra) -> dict:
  return dict(dropout_rate=dropout, gating=True, num_head=num_head,
              orientation=orientation, shared_dropout=True, **extra)


def _trimul(equation: str, channels: int) -> dict:
  return dict(dropout_rate=0.25, equation=equation, num_intermediate_channel=channels,
              orientation='per_row', shared_dropout=True)


def _transition(factor: int) -> dict:
  return dict(dropout_rate=0.0, num_intermediate_factor=factor, orientation='per_row',
              shared_dropout=True)


_EVOFORMER_BLOCK = dict(
    msa_row_attention_with_pair_bias=_attention(8, 'per_row', 0.15),
    msa_column_attention=_attention(8, 'per_column', 0.0),
    msa_transition=_transition(4),
    outer_product_mean=dict(first=False, chunk_size=128, dropout_rate=0.0,
                            num_outer_channel=32, orientation='per_row',
                            shared_dropout=True),
    triangle_attention_starting_node=_attention(4, 'per_row', 0.25),
    triangle_attention_ending_node=_attention(4, 'per_column', 0.25),
    triangle_multiplication_outgoing=_trimul('ikc,jkc->ijc', 128),
    triangle_multiplication_incoming=_trimul('kjc,kic->ijc', 128),
    pair_transition=_transition(4),
)

_TEMPLATE = dict(
    attention=dict(gating=False, key_dim=64, num_head=4, value_dim=64),
    dgram_features=dict(min_bin=3.25, max_bin=50.75, num_bins=39),
    embed_torsion_angles=False,
    enabled=False,
    template_pair_stack=dict(
        num_block=2,
        triangle_attention_starting_node=_attention(4, 'per_row', 0.25, key_dim=64,
                                                    value_dim=64),
        triangle_attention_ending_node=_attention(4, 'per_column', 0.25, key_dim=64,
                                                  value_dim=64),
        triangle_multiplication_outgoing=_trimul('ikc,jkc->ijc', 64),
        triangle_multiplication_incoming=_trimul('kjc,kic->ijc', 64),
        pair_transition=_transition(2),
    ),
    max_templates=4,
    subbatch_size=128,
    use_template_unit_vector=False,
)

_BASE = dict(
    data=dict(
        common=dict(
            masked_msa=dict(profile_prob=0.1, same_prob=0.1, uniform_prob=0.1),
            max_extra_msa=1024,
            msa_cluster_features=True,
            num_recycle=3,
            reduce_msa_clusters_by_max_templates=False,
            resample_msa_in_recycling=True,
            use_templates=False,
        ),
        eval=dict(
            fixed_size=True,
            subsample_templates=False,
            masked_msa_replace_fraction=0.15,
            max_msa_clusters=512,
            max_templates=4,
            num_ensemble=1,
        ),
    ),
    model=dict(
        embeddings_and_evoformer=dict(
            evoformer_num_block=48,
            evoformer=_EVOFORMER_BLOCK,
            extra_msa_channel=64,
            extra_msa_stack_num_block=4,
            max_relative_feature=32,
            msa_channel=256,
            pair_channel=128,
            prev_pos=dict(min_bin=3.25, max_bin=20.75, num_bins=15),
            recycle_features=True,
            recycle_pos=True,
            seq_channel=384,
            template=_TEMPLATE,
        ),
        global_config=dict(
            # NUMERICS: float32 by default (parity); True computes matmuls in
            # bfloat16 with softmax, layer norm and coordinates in float32.
            bfloat16=False,
            deterministic=False,
            subbatch_size=4,
            use_remat=False,
            zero_init=True,
        ),
        heads=dict(
            distogram=dict(first_break=2.3125, last_break=21.6875, num_bins=64, weight=0.3),
            predicted_aligned_error=dict(max_error_bin=31.0, num_bins=64, num_channels=128,
                                         filter_by_resolution=True, min_resolution=0.1,
                                         max_resolution=3.0, weight=0.0),
            experimentally_resolved=dict(filter_by_resolution=True, max_resolution=3.0,
                                         min_resolution=0.1, weight=0.01),
            structure_module=dict(
                num_layer=8,
                fape=dict(clamp_distance=10.0, clamp_type='relu', loss_unit_distance=10.0),
                angle_norm_weight=0.01,
                chi_weight=0.5,
                clash_overlap_tolerance=1.5,
                compute_in_graph_metrics=True,
                dropout=0.1,
                num_channel=384,
                num_head=12,
                num_layer_in_transition=3,
                num_point_qk=4,
                num_point_v=8,
                num_scalar_qk=16,
                num_scalar_v=16,
                position_scale=10.0,
                sidechain=dict(atom_clamp_distance=10.0, num_channel=128,
                               num_residual_block=2, weight_frac=0.5, length_scale=10.0),
                structural_violation_loss_weight=1.0,
                # The violation loss's CA-C-N band, violation_tolerance_factor times the C-N
                # bond length's stddev (False: AlphaFold 2.3, under which the published weights
                # were trained) or the angle's own cosine stddev (True: DeepMind's 2025
                # correction, 2.2x wider).
                # False keeps fine-tuning those weights on their own objective and the loss at
                # parity with AlphaFold 2.3; DeepMind's multimer loss still has it too.
                # Relaxation's check always uses the corrected band.
                use_ca_c_n_angle_stddev=False,
                violation_tolerance_factor=12.0,
                weight=1.0,
            ),
            predicted_lddt=dict(filter_by_resolution=True, max_resolution=3.0,
                                min_resolution=0.1, num_bins=50, num_channels=128,
                                weight=0.01),
            masked_msa=dict(num_output=23, weight=2.0),
        ),
        num_recycle=3,
        resample_msa_in_recycling=True,
        # Stop recycling early once CA-CA distances move less than this (Å,
        # RMS over pairs) between recycles; 0 runs every recycle.
        recycle_early_stop_tolerance=0.0,
    ),
)

_WITH_TEMPLATES = {
    'data.common.reduce_msa_clusters_by_max_templates': True,
    'data.common.use_templates': True,
    'model.embeddings_and_evoformer.template.embed_torsion_angles': True,
    'model.embeddings_and_evoformer.template.enabled': True,
}
_BIG_EXTRA_MSA = {'data.common.max_extra_msa': 5120}
_PTM = {'model.heads.predicted_aligned_error.weight': 0.1}

# Jumper et al. (2021) Suppl. Table 5, models 1.1.1, 1.1.2, 1.2.1, 1.2.2, 1.2.3;
# the _ptm presets add the predicted aligned error head.
PRESET_DIFFS: dict[str, dict] = {
    'model_1': {**_BIG_EXTRA_MSA, **_WITH_TEMPLATES},
    'model_2': {**_WITH_TEMPLATES},
    'model_3': {**_BIG_EXTRA_MSA},
    'model_4': {**_BIG_EXTRA_MSA},
    'model_5': {},
}
PRESET_DIFFS.update({f'{name}_ptm': {**diff, **_PTM} for name, diff in list(PRESET_DIFFS.items())})

PRESETS = tuple(PRESET_DIFFS)


def base_config() -> ml_collections.ConfigDict:
  """The architecture shared by all monomer presets."""
  return ml_collections.ConfigDict(copy.deepcopy(_BASE))


def model_config(name: str) -> ml_collections.ConfigDict:
  """AlphaFold's preset `name`: monomer (model_1 ... model_5, model_1_ptm ...) or
  multimer (model_1_multimer_v3 ..., configs.model_multimer)."""
  from configs import model_multimer
  if name in model_multimer.MULTIMER_PRESET_DIFFS:
    return model_multimer.multimer_config(name)
  if name not in PRESET_DIFFS:
    from af_jax.errors import ConfigError
    choices = PRESETS + model_multimer.MULTIMER_PRESETS
    raise ConfigError(f'unknown model preset {name!r}; choose one of {", ".join(choices)}')
  cfg = base_config()
  cfg.update_from_flattened_dict(PRESET_DIFFS[name])
  cfg.model_name = name
  return cfg


# Integers that may be 0; every other integer of a config counts blocks, heads, channels,
# bins, rows or sizes, where 0 builds no model (or an empty, meaningless one).
_MAY_BE_ZERO = ('num_recycle',)
# Floats that are probabilities or fractions.
_FRACTIONS = ('dropout', 'dropout_rate', 'profile_prob', 'same_prob', 'uniform_prob',
              'replace_fraction', 'masked_msa_replace_fraction', 'weight_frac')
# (lower, upper) pairs of bin edges that must be increasing.
_RANGES = (('min_bin', 'max_bin'), ('first_break', 'last_break'))
# Values the published weight shapes fix (the template embedders take 39 distance bins).
_FIXED = {'template.dgram_features.num_bins': 39}


def check_values(cfg: ml_collections.ConfigDict) -> None:
  """Refuse values no model can be built or run with (after --config overrides).

  Integers (other than _MAY_BE_ZERO's) at least 1, and those the weights fix (_FIXED) as
  they are; floats finite, probabilities in [0, 1] and masked_msa's three summing to at
  most 1; bin ranges increasing.

  Raises:
    ConfigError: naming the key, its value and what it must be.
  """
  from af_jax.errors import ConfigError

  def walk(node, prefix):
    for key, value in node.items():
      path = f'{prefix}{key}'
      if isinstance(value, ml_collections.ConfigDict):
        walk(value, path + '.')
        lower, upper = next(((lo, hi) for lo, hi in _RANGES if lo in value and hi in value),
                            (None, None))
        if lower and not value[lower] < value[upper]:
          raise ConfigError(f'{path}.{lower}={value[lower]} is not below {path}.{upper}='
                            f'{value[upper]}: set --config.{path}.{lower} lower')
        probs = [value[k] for k in ('uniform_prob', 'profile_prob', 'same_prob') if k in value]
        if len(probs) == 3 and sum(probs) > 1:
          raise ConfigError(f'{path}: uniform_prob + profile_prob + same_prob = {sum(probs):g} '
                            'is above 1; lower them')
      elif isinstance(value, bool):
        continue
      elif isinstance(value, int):
        least = 0 if key in _MAY_BE_ZERO else 1
        if value < least:
          raise ConfigError(f'--config.{path}={value} must be at least {least}')
        fixed = next((v for k, v in _FIXED.items() if path.endswith(k)), value)
        if value != fixed:
          raise ConfigError(f'--config.{path}={value}: the model takes {fixed} only (the '
                            'published weights have that shape)')
      elif isinstance(value, float):
        if value != value or value in (float('inf'), float('-inf')):
          raise ConfigError(f'--config.{path}={value} must be a finite number')
        if key in _FRACTIONS and not 0 <= value <= 1:
          raise ConfigError(f'--config.{path}={value} is a probability: set it in [0, 1]')

  walk(cfg, '')
