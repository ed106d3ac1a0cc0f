"""Autotuning profiles: presets, free flags, subdirectory names."""

import pytest

from compile_cache import profiles
from compile_cache.errors import CompileCacheError


def test_default_profile_adds_no_flags():
  profile = profiles.resolve('default')
  assert profile.flags == ()
  assert profile.dirname == 'default'


def test_free_flags_override_the_preset_and_name_their_own_directory():
  profile = profiles.resolve('fast_compile', '--xla_gpu_autotune_level=1')
  assert profile.flags == ('--xla_gpu_enable_triton_gemm=false', '--xla_gpu_autotune_level=1')
  assert profile.dirname.startswith('fast_compile+')
  assert profiles.resolve('fast_compile', '--xla_gpu_autotune_level=1').dirname == profile.dirname
  assert profiles.resolve('fast_compile', '--xla_gpu_autotune_level=2').dirname != profile.dirname


def test_every_profile_resolves_to_distinct_directories():
  dirnames = {profiles.resolve(name).dirname for name in profiles.PROFILES}
  assert len(dirnames) == len(profiles.PROFILES)


def test_unknown_profile_names_the_choices():
  with pytest.raises(CompileCacheError, match="autotune_profile='fastest'.*max_autotune"):
    profiles.resolve('fastest')


def test_malformed_flag_is_rejected():
  with pytest.raises(CompileCacheError, match='gpu_autotune_level=2'):
    profiles.parse_flags('gpu_autotune_level=2')


def test_merge_keeps_unrelated_flags():
  merged = profiles.merge_flags(['--xla_force_host_platform_device_count=8',
                                 '--xla_gpu_autotune_level=2'], ['--xla_gpu_autotune_level=0'])
  assert merged == ('--xla_force_host_platform_device_count=8', '--xla_gpu_autotune_level=0')
