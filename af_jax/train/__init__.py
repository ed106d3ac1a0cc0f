"""Training and fine-tuning: labels, AlphaFold's losses, train state and step, checkpoints.

The Python API, for a researcher's own loop:

    cfg = configs.train.train_config('finetune', 'model_1_ptm')
    state = af_jax.train.init_train_state(cfg, '/data/alphafold/params')
    data = af_jax.train.TrainingData(alignment_dir, mmcif_dir, cfg.data)
    step = af_jax.train.make_train_step(cfg, state, mesh=af_jax.parallel.make_mesh(dap=2))
    with af_jax.train.BatchLoader(data, num_steps=1000) as batches:
      for batch in batches:
        state, metrics = step(state, batch)

`af_jax.train.trainer.train` is that loop with metrics, checkpoints and export
(what run_train.py runs). Names are imported on first use, so loader worker
processes that only need `af_jax.train.data` stay numpy-only.
"""

import importlib

_EXPORTS = {
    'TrainState': 'state', 'init_train_state': 'state', 'abstract_train_state': 'state',
    'export_params': 'state', 'make_optimizer': 'optimizer',
    'learning_rate_schedule': 'optimizer', 'TrainStep': 'step', 'EvalStep': 'step',
    'make_train_step': 'step', 'make_eval_step': 'step', 'make_gradient_fn': 'step',
    'Checkpointer': 'checkpoint', 'TrainingData': 'data', 'BatchLoader': 'loader',
    'TrainOptions': 'trainer', 'train': 'trainer', 'load_config': 'trainer',
    'alphafold_loss': 'losses',
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
  if name in _EXPORTS:
    module = importlib.import_module(f'af_jax.train.{_EXPORTS[name]}')
    return getattr(module, name)
  raise AttributeError(f'module af_jax.train has no attribute {name!r}')
