"""AlphaFold2 monomer presets as ml_collections ConfigDicts.

Keys keep AlphaFold's own names (`model.num_recycle`,
`model.embeddings_and_evoformer.evoformer_num_block`, `data.eval.max_msa_clusters`)
so AlphaFold users find them. The base is the shared architecture (configs.model_base;
Jumper et al. 2021, Suppl. Table 5); `PRESET_DIFFS` is the one table of what each preset
changes. `model_config` serves the multimer presets too (configs.model_multimer).
"""

from __future__ import annotations

import copy

import ml_collections

from configs import model_base, model_multimer

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
  return ml_collections.ConfigDict(copy.deepcopy(model_base.BASE))


def model_config(name: str) -> ml_collections.ConfigDict:
  """AlphaFold's preset `name`: monomer (model_1 ... model_5, model_1_ptm ...) or
  multimer (model_1_multimer_v3 ..., configs.model_multimer)."""
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
