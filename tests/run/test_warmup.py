"""Warm-up specs carry the fold's executable labels, with and without per-recycle progress.

Abstract Predictors only (shapes, no weights, nothing compiles): the labels come from the
same `inference.Predictor.label` the fold's compile passes to the cache.
"""

import pytest

from af_jax.inference import Predictor
from af_jax.run import warmup
from tests.model.tiny import tiny_config

BUCKET = (32, 8, 16)  # residues, MSA clusters, extra rows


@pytest.mark.parametrize('progress', [True, False])
def test_warm_up_labels_are_the_folds(progress):
  cfg = tiny_config('model_1_ptm')
  (label, _, _), = warmup.bucket_specs(cfg, [BUCKET], chunk='none', progress=progress)
  fold = Predictor(cfg, None, report_progress=progress)
  assert label == fold.label(warmup.bucket_shapes(cfg, *BUCKET))
  # `compile_cache list` tells a --progress executable from a --noprogress one.
  assert label.endswith('/progress') == progress
  assert label.removesuffix('/progress') == fold.with_progress(False).label(
      warmup.bucket_shapes(cfg, *BUCKET))
