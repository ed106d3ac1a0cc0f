"""Training presets as ml_collections ConfigDicts: what to train on and how to batch it.

Keys keep AlphaFold's and OpenFold's names (`data.train.crop_size`,
`data.train.max_msa_clusters`, `data.common.max_recycling_iters`,
`data.train.uniform_recycling`) so their users find them. `_BASE` is AlphaFold's
initial-training recipe (Jumper et al. 2021, Suppl. 1.2.5 and Table 4);
`TRAIN_PRESET_DIFFS` is the one table of what each preset changes.

Sections: `data` (read by af_jax.train.data: filters, cropping, MSA sizes,
recycling, loader), `loss` (the weights the recipes switch on; they are written
into the model's heads when the train step is built), `optimizer` (Suppl.
1.11.3), `checkpoint`, and `model`: the `model` section of the AlphaFold preset
`model_preset` (configs/model.py), filled in by `train_config`, so every model
key can be overridden (`--config.model.embeddings_and_evoformer.evoformer_num_block=2`).
`remat` recomputes each block's activations in the backward pass (per-block
rematerialisation: far less memory for ~1/3 more compute); `bfloat16` computes
the trunk in bfloat16 with float32 parameters; `chunk_size` runs every axial op
over chunks of that many slices, each recomputed in the backward pass.

A file passed as `--config=configs/train.py:finetune` is read through `get_config`.
"""

from __future__ import annotations

import copy

import ml_collections

from configs.model import model_config

_BASE = dict(
    # AlphaFold preset whose architecture is trained (and whose params --init_params
    # names); `train_config` puts its `model` section under `model`.
    model_preset='model_1_ptm',
    # Seed of the parameters' random initialisation and of dropout.
    seed=0,
    remat=True,
    bfloat16=False,
    # Chunk size of every axial op in training (None: unchunked, fastest). Each chunk is
    # recomputed in the backward pass, so e.g. 32 keeps one chunk's attention logits alive
    # instead of all of them (PERF: memory figures in bench/RESULTS.md, "Training").
    chunk_size=None,
    # Jumper et al. (2021) Suppl. 1.11.3 (see af_jax.train.optimizer).
    optimizer=dict(
        learning_rate=1e-3,
        b1=0.9,
        b2=0.999,
        eps=1e-6,
        warmup_steps=1000,
        decay_after_steps=50_000,
        decay_every_steps=50_000,
        decay_factor=0.95,
        clip_global_norm=0.1,
        # Clip each example's gradient before averaging (AlphaFold: one example per core).
        clip_per_example=True,
        ema_decay=0.999,
    ),
    checkpoint=dict(
        every_steps=1000,  # also saved after the last step
        keep=3,  # the newest checkpoints kept
    ),
    data=dict(
        # Seed of every random choice of the data pipeline: epoch order, crops, MSA
        # sampling and masking, recycle counts. Same seed, same batches.
        seed=0,
        common=dict(
            masked_msa=dict(profile_prob=0.1, same_prob=0.1, uniform_prob=0.1),
            # Recycles are drawn per batch from [0, max_recycling_iters] (uniform_recycling);
            # every batch carries max_recycling_iters + 1 feature slices.
            max_recycling_iters=3,
            msa_cluster_features=True,
            reduce_msa_clusters_by_max_templates=False,
            resample_msa_in_recycling=True,
            # Needs a template mmCIF directory and `*.hhr` hits in each alignment dir.
            use_templates=False,
        ),
        train=dict(
            crop_size=256,
            max_msa_clusters=128,
            max_extra_msa=1024,
            max_templates=4,
            max_template_hits=4,
            # Templates must be released this many days before the training chain
            # (and not after max_template_date).
            template_release_gap_days=60,
            max_template_date='9999-12-31',
            masked_msa_replace_fraction=0.15,
            uniform_recycling=True,
            # Probability that an example's FAPE is clamped (`use_clamped_fape`).
            clamp_prob=0.9,
        ),
        # Chains kept for training (AlphaFold: resolution below 9 Å, no residue type
        # over 80 % of the sequence). Unknown residues (X) count as one type, so mostly
        # unknown chains are dropped too.
        filters=dict(
            min_resolution=0.0,
            max_resolution=9.0,
            min_length=1,
            max_length=None,
            max_single_aa_prop=0.8,
            max_release_date='9999-12-31',
        ),
        data_module=dict(
            data_loaders=dict(
                batch_size=1,  # per device
                num_workers=2,
                prefetch=2,  # batches prepared ahead of the one being trained on
                worker_type='thread',  # 'thread' or 'process' (spawned, no GIL contention)
            ),
        ),
    ),
    loss=dict(
        violation=dict(weight=0.0),
        experimentally_resolved=dict(weight=0.0),
    ),
)

# Jumper et al. (2021) Suppl. Table 4: initial training is the base; fine-tuning crops
# 384 residues, samples 512 clusters and 5120 extra sequences, and turns on the
# structural violation and experimentally-resolved losses.
TRAIN_PRESET_DIFFS: dict[str, dict] = {
    'initial': {},
    'finetune': {
        'optimizer.learning_rate': 5e-4,
        'data.train.crop_size': 384,
        'data.train.max_msa_clusters': 512,
        'data.train.max_extra_msa': 5120,
        'loss.violation.weight': 1.0,
        'loss.experimentally_resolved.weight': 0.01,
    },
    # Seconds on a laptop CPU: for tests and smoke runs.
    'small': {
        'data.common.max_recycling_iters': 2,
        'data.train.crop_size': 32,
        'data.train.max_msa_clusters': 8,
        'data.train.max_extra_msa': 16,
        'data.train.max_templates': 2,
        'data.train.max_template_hits': 2,
        'data.data_module.data_loaders.batch_size': 2,
        'optimizer.warmup_steps': 10,
        'checkpoint.every_steps': 10,
        'checkpoint.keep': 2,
    },
}

TRAIN_PRESETS = tuple(TRAIN_PRESET_DIFFS)


def train_config(name: str, model_preset: str | None = None) -> ml_collections.ConfigDict:
  """Training preset `name` (initial, finetune, small) for the AlphaFold preset `model_preset`.

  `model_preset` (default `model_1_ptm`) selects the architecture; the returned
  `model` section is its `configs.model.model_config(model_preset).model`.
  """
  if name not in TRAIN_PRESET_DIFFS:
    from af_jax.errors import ConfigError
    raise ConfigError(f'unknown training preset {name!r}; choose one of '
                      f'{", ".join(TRAIN_PRESETS)}')
  cfg = ml_collections.ConfigDict(copy.deepcopy(_BASE))
  cfg.update_from_flattened_dict(TRAIN_PRESET_DIFFS[name])
  cfg.train_preset = name
  if model_preset is not None:
    cfg.model_preset = model_preset
  cfg.model = model_config(cfg.model_preset).model
  return cfg


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """ml_collections' config-file entry: `--config=configs/train.py:finetune`."""
  return train_config(arg or 'initial')
