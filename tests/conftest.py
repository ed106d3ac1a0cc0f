"""Test-wide settings: 8 fake CPU devices, float32 matmuls at full precision, repo on sys.path."""

import os
import sys

# Sharding tests run on 8 fake CPU devices; single-device code runs on the first one.
# Set before jax is imported anywhere (subprocesses inherit it).
if '--xla_force_host_platform_device_count' not in os.environ.get('XLA_FLAGS', ''):
  os.environ['XLA_FLAGS'] = (os.environ.get('XLA_FLAGS', '') +
                             ' --xla_force_host_platform_device_count=8').strip()

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402

jax.config.update('jax_default_matmul_precision', 'highest')
