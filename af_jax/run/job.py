"""The job a target's outputs were made by: what it records, and how two are compared.

A result is trusted only for the job that made it (DESIGN.md, decision 10). A job is a
small JSON-ready dict, one field per thing that changes the result: the sequence(s), the
MSA and template inputs (or the features file), the weights, models, seeds, recycles,
precision, the rest of the model config, and af_jax's version. File inputs enter as
sha256 digests of their contents. ranking_debug.json, the last file of a target, records
it under outputs.JOB_KEY; a re-run skips a target only when the recorded job equals the one
asked, and otherwise names the fields that differ.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import os
import pathlib
from collections.abc import Mapping, Sequence

import af_jax
from af_jax.data import msa_search, pipeline

# Fields whose value maps model name -> value; only models run in both jobs are compared
# (a change of models is the `models` field's).
PER_MODEL_FIELDS = ('weights', 'recycles', 'config')

# Config leaves that do not change the function the model computes: chunking and
# rematerialisation (af_jax plans those itself), and zero_init (initialisation only;
# random weights are recorded as such in `weights`). num_recycle and bfloat16 have
# their own fields.
_NO_EFFECT_LEAVES = frozenset({'subbatch_size', 'chunk_size', 'use_remat', 'zero_init'})
_OWN_FIELD_LEAVES = frozenset({'num_recycle', 'bfloat16'})

# MSA and template files a pipeline reads from <target>/msas (and its chain directories).
_INPUT_SUFFIXES = pipeline.MSA_SUFFIXES + ('.hhr',)

# Search modes write their results into msas/ and reuse them on later runs.
_SEARCH_MODES = ('jackhmmer', 'hhblits', 'mmseqs2')

_digests: dict[tuple, str] = {}


def file_digest(path: str | os.PathLike) -> str:
  """`sha256:<hex>` of a file's contents, computed once per run for an unchanged file.

  Remembered by (real path, size, modification time), so params files of hundreds of MB
  are read once per run however many targets ask.
  """
  real = os.path.realpath(path)
  st = os.stat(real)
  key = (real, st.st_size, st.st_mtime_ns)
  if key not in _digests:
    digest = hashlib.sha256()
    with open(real, 'rb') as f:
      while block := f.read(1 << 20):
        digest.update(block)
    _digests[key] = 'sha256:' + digest.hexdigest()
  return _digests[key]


def text_digest(text: str) -> str:
  """`sha256:<hex>` of a text (UTF-8)."""
  return 'sha256:' + hashlib.sha256(text.encode()).hexdigest()


def config_digest(cfg) -> str:
  """Digest of a model config (ConfigDict) without the leaves that do not change the
  function (or that other fields record)."""
  def strip(node):
    if isinstance(node, Mapping):
      return {k: strip(v) for k, v in node.items()
              if k not in _NO_EFFECT_LEAVES | _OWN_FIELD_LEAVES}
    return node
  tree = strip(copy.deepcopy(cfg.to_dict()))
  return text_digest(json.dumps(tree, sort_keys=True, default=repr, allow_nan=False))


def msa_input_files(msa_dir: pathlib.Path, msa_paths: Sequence[str] = ()) -> dict[str, str]:
  """Digest of every MSA and template-hit file a run would read, by its name in msa_dir.

  The files already in msa_dir (and its chain subdirectories) with `msa_paths`, the
  precomputed files that run copies in, laid over them under the names they get there.
  """
  files = {}
  if msa_dir.is_dir():
    for path in sorted(msa_dir.rglob('*')):
      rel = path.relative_to(msa_dir)
      # Hidden names are temporary files and search scratch directories.
      if (path.is_file() and path.name.endswith(_INPUT_SUFFIXES)
          and not any(part.startswith('.') for part in rel.parts)):
        files[rel.as_posix()] = file_digest(path)
  for given in msa_paths:
    src = pathlib.Path(given)
    if src.is_file():  # a missing one fails the run later, with its own message
      name = msa_search.TEMPLATES_HHR if src.suffix == '.hhr' else src.name
      files[name] = file_digest(src)
  return files


def _digest_if_file(path: str | None) -> str | None:
  # A missing file fails the run later, with its own message.
  return file_digest(path) if path and os.path.isfile(path) else path


def _set_databases(databases: msa_search.Databases) -> dict[str, str]:
  """The database paths given (binary paths do not change results)."""
  return {f.name: getattr(databases, f.name) for f in dataclasses.fields(databases)
          if not f.name.endswith('_binary') and getattr(databases, f.name)}


def data_fields(target_dir: pathlib.Path, options: pipeline.PipelineOptions, *,
                features_path: str | None = None,
                uniprot_database: str | None = None) -> dict:
  """The `features`, `msas` and `templates` fields of a target's job.

  A features file stands for all three (its digest); otherwise the MSA mode, the input
  files in target_dir/msas (and --msa_paths), the databases a search mode would search,
  and the template settings.
  """
  if features_path is not None:
    return {'features': file_digest(features_path), 'msas': None, 'templates': None}
  msas: dict = {'mode': options.msa_mode,
                'files': msa_input_files(target_dir / 'msas', options.msa_paths)}
  if options.msa_mode in _SEARCH_MODES:
    msas['databases'] = _set_databases(options.databases)
  if uniprot_database:
    msas['uniprot_database'] = uniprot_database
  templates: dict = {'use_templates': options.use_templates}
  if options.use_templates:
    templates.update(mmcif_dir=options.template_mmcif_dir,
                     max_template_date=options.max_template_date,
                     max_templates=options.max_templates,
                     obsolete_pdbs=_digest_if_file(options.obsolete_pdbs_path))
    if options.msa_mode != 'precomputed':
      templates['pdb70'] = options.databases.pdb70
  return {'features': None, 'msas': msas, 'templates': templates}


def make_job(*, sequences: Sequence[str], data: Mapping, weights: Mapping[str, str],
             configs: Mapping, random_seed: int, num_seeds: int, precision: str) -> dict:
  """A target's job record.

  Args:
    sequences: the target's sequence, or a complex's chain sequences in order.
    data: data_fields(...) of the target.
    weights: model name -> file_digest of its params file, or a description of random
      weights.
    configs: model name -> its config, the run's overrides applied (run.options.model_config).
    random_seed, num_seeds, precision: the run's settings.
  """
  job = {
      'af_jax_version': af_jax.__version__,
      'sequence': text_digest(':'.join(sequences)),
      **data,
      'models': list(configs),
      'weights': dict(weights),
      # Prediction k of model m uses seed base + k * num_models + m (run_inference.py).
      'seeds': {'base': int(random_seed), 'per_model': int(num_seeds)},
      'recycles': {name: int(cfg.model.num_recycle) for name, cfg in configs.items()},
      'precision': precision,
      'config': {name: config_digest(cfg) for name, cfg in configs.items()},
  }
  return json.loads(json.dumps(job, allow_nan=False))  # as it reads back from the record


def changed_fields(recorded: Mapping, asked: Mapping) -> list[str]:
  """The names of the fields in which two jobs differ (a field only one has counts).

  Per-model fields count only for the models both jobs ran.
  """
  changed = []
  for name in dict.fromkeys([*asked, *recorded]):
    old, new = recorded.get(name), asked.get(name)
    if name in PER_MODEL_FIELDS and isinstance(old, Mapping) and isinstance(new, Mapping):
      common = set(old) & set(new)
      if any(old[m] != new[m] for m in common):
        changed.append(name)
    elif old != new:
      changed.append(name)
  return changed

