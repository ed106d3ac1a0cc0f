"""Presets carry AlphaFold's values; overrides are typed and checked."""

import pytest

import af_jax
from af_jax.errors import ConfigError
from configs import overrides as config_overrides


def test_ten_presets_with_alphafold_values():
  assert set(af_jax.PRESETS) == {f'model_{i}{s}' for i in range(1, 6) for s in ('', '_ptm')}
  for name in af_jax.PRESETS:
    cfg = af_jax.model_config(name)
    e = cfg.model.embeddings_and_evoformer
    assert e.evoformer_num_block == 48
    assert e.extra_msa_stack_num_block == 4
    assert e.template.template_pair_stack.num_block == 2
    assert cfg.model.heads.structure_module.num_layer == 8
    assert cfg.model.num_recycle == 3
    number = int(name.split('_')[1])
    assert e.template.enabled == (number in (1, 2))
    assert e.template.embed_torsion_angles == (number in (1, 2))
    assert cfg.data.common.max_extra_msa == (5120 if number in (1, 3, 4) else 1024)
    assert bool(cfg.model.heads.predicted_aligned_error.weight) == name.endswith('_ptm')
    assert cfg.data.eval.max_msa_clusters == 512
    assert cfg.model.global_config.bfloat16 is False


def test_unknown_preset_names_the_choices():
  with pytest.raises(ConfigError, match='model_1_ptm'):
    af_jax.model_config('model_6')


def test_command_line_overrides():
  argv, overrides = config_overrides.split_config_overrides(
      ['prog', '--config.model.num_recycle=6', '--x=1',
       '--config.model.recycle_early_stop_tolerance=0.5',
       '--config.model.global_config.bfloat16=true'])
  assert argv == ['prog', '--x=1']
  cfg = af_jax.model_config('model_3')
  config_overrides.apply_overrides(cfg, overrides)
  assert cfg.model.num_recycle == 6
  assert cfg.model.recycle_early_stop_tolerance == 0.5
  assert cfg.model.global_config.bfloat16 is True


@pytest.mark.parametrize('arg,match', [
    ('--config.model.num_recycles=2', 'unknown config key'),
    ('--config.model.num_recycle=two', 'not a valid int'),
    ('--config.model.num_recycle', 'has no value'),
])
def test_bad_overrides_are_one_clear_error(arg, match):
  with pytest.raises(ConfigError, match=match):
    _, overrides = config_overrides.split_config_overrides([arg])
    config_overrides.apply_overrides(af_jax.model_config('model_1'), overrides)
