"""Model presets, training presets and bucket lists (ml_collections at the edge)."""

from configs.model import PRESETS, base_config, model_config
from configs.buckets import LENGTH_BUCKETS, MSA_BUCKETS, bucket_size, parse_buckets

__all__ = ['PRESETS', 'base_config', 'model_config']
__all__ += ['LENGTH_BUCKETS', 'MSA_BUCKETS', 'bucket_size', 'parse_buckets']
