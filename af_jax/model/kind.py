"""What differs between AlphaFold and AlphaFold-Multimer around the network: one ModelKind each.

A preset's kind (`for_config`) knows its input features (data.schema), how a target's raw
features become a padded batch, the label of a bucket's executable, what a warm-up
compiles from shapes alone, the score predictions are ranked by and how a prediction
becomes a Protein. Inference, the runner and the warm-up ask it instead of testing for
multimer mode themselves.
"""

from __future__ import annotations

import pathlib
from collections.abc import Mapping, Sequence

import jax
import numpy as np

from af_jax.common import protein
from af_jax.data import (features, parsers, pipeline, pipeline_multimer, schema, transforms,
                         transforms_multimer)
from af_jax.errors import InputError
from configs import buckets as bucket_lists

Shapes = dict[str, tuple[tuple[int, ...], type]]


class ModelKind:
  """The monomer's or the multimer's answers; `MONOMER` and `MULTIMER` are the two."""

  name: str
  # ranking_debug.json's key for the scores (AlphaFold's).
  score_label: str
  # Whether a target's batch (and so its chunk plan) is made again for every seed.
  batch_per_seed: bool
  # Whether the template embedding sums the templates' pair features one at a time
  # (Multimer) instead of attending over all of them at each pair position (Alg. 17).
  sums_templates: bool

  def owns(self, batch: Mapping) -> bool:
    """Whether `batch` (arrays or shapes) is this kind's."""
    raise NotImplementedError

  def mismatch(self, model_name: str) -> str:
    """What to say when `model_name`, of this kind, is given the other kind's batch."""
    raise NotImplementedError

  def inputs(self, batch: Mapping, use_templates: bool) -> dict[str, type]:
    """The inputs the model reads (names and dtypes); InputError if `batch` lacks any."""
    raise NotImplementedError

  def select(self, batch: Mapping, use_templates: bool) -> dict[str, np.ndarray]:
    """The model's inputs from a batch of this kind, with checked names, ranks and dtypes."""
    raise NotImplementedError

  def input_shapes(self, batch: Mapping, use_templates: bool) -> Shapes:
    """name -> (shape, dtype) of the model's inputs, from a batch of arrays or shapes."""
    return {k: (tuple(np.shape(batch[k])), dt)
            for k, dt in self.inputs(batch, use_templates).items()}

  def with_seed(self, batch: Mapping, random_seed: int) -> Mapping:
    """The batch a prediction with `random_seed` runs on."""
    return batch

  def module_class(self) -> type:
    """The network (model.build builds it with its weights)."""
    raise NotImplementedError

  def apply(self, model, batch: dict, plan, mesh, *, report_progress: bool = False) -> dict:
    """Run `model` (built for this kind) on selected inputs (reporting every recycle to
    `model.progress` with `report_progress`)."""
    return model(batch, plan, mesh=mesh, report_progress=report_progress)

  def bucket_label(self, model_name: str, shapes: Mapping) -> str:
    """`model_1_ptm/L128/msa512x1024/t4/r4`: what an executable for `shapes` is for."""
    raise NotImplementedError

  def label(self, model_name: str, shapes: Mapping, model_config) -> str:
    """The executable's name in the compile cache (bucket_label, and the recycles if a loop
    bound rather than an input shape)."""
    return self.bucket_label(model_name, shapes)

  def make_raw_features(self, record: parsers.FastaRecord,
                        chains: Sequence[parsers.FastaRecord], target_dir: pathlib.Path,
                        options: pipeline.PipelineOptions, *,
                        uniprot_database: str | None = None) -> dict:
    """A target's raw features from its sequences (searches land in target_dir/msas)."""
    raise NotImplementedError

  def describe_features(self, raw: Mapping) -> str:
    """What to log of a target's raw features before their time ('' or 'a, b; ')."""
    return ''

  def num_residues(self, raw: Mapping) -> int:
    """The target's residues (before padding)."""
    raise NotImplementedError

  def make_batch(self, raw: Mapping, config, random_seed: int,
                 length_buckets: Sequence[int]) -> dict[str, np.ndarray]:
    """The model's batch from raw features, padded to the buckets the target falls in."""
    raise NotImplementedError

  def dummy_batch(self, config, num_res: int, msa_clusters: int,
                  extra_msa: int) -> dict[str, np.ndarray]:
    """A one-residue batch padded to a bucket: its shapes are those of any target there."""
    raise NotImplementedError

  def preset_depths(self, config) -> tuple[int, int]:
    """The preset's own MSA depths (cluster centres, extra rows): what a deep MSA fills."""
    raise NotImplementedError

  def single_sequence_depths(self) -> tuple[int, int]:
    """The MSA depths (cluster centres, extra rows) of a target folded from its sequence
    alone: the query row, or a complex's MSA padded to the multimer pipeline's minimum."""
    raise NotImplementedError

  def trunk_sizes(self, model_config, shapes: Mapping, use_templates: bool
                  ) -> tuple[int, int, int]:
    """(MSA rows, extra MSA rows, templates) the trunk of `model_config` (the `model`
    sub-config) works on for inputs of `shapes`; template rows that join the MSA are
    counted in the first."""
    raise NotImplementedError

  def template_channels(self, model_config) -> int:
    """Channels of one template's pair features after the template pair stack."""
    raise NotImplementedError

  def ranking_score(self, out: Mapping) -> float:
    """What predictions of one target are ranked by (AlphaFold's)."""
    raise NotImplementedError

  def summary(self, out: Mapping) -> str:
    """A prediction's scores for the log."""
    raise NotImplementedError

  def protein_fields(self, raw: Mapping) -> dict[str, np.ndarray]:
    """aatype, residue_index (and a complex's asym_id) of the Protein a prediction becomes."""
    raise NotImplementedError

  def plot_labels(self, name: str, num_res: int, first: protein.Protein) -> tuple[str, dict]:
    """The plots' title and their chain marks (plots.plot_plddt's keywords), from the
    best-ranked prediction."""
    return f'{name} ({num_res} residues)', {}

  def __repr__(self) -> str:
    return f'ModelKind({self.name!r})'


class _Monomer(ModelKind):
  """AlphaFold: processed features with one slice per recycle, ranked by mean pLDDT."""

  name = 'monomer'
  score_label = 'plddts'  # ranking_debug.json's key for the scores, as AlphaFold writes it
  batch_per_seed = True  # the seed samples the MSA clusters on the host
  sums_templates = False

  def owns(self, batch: Mapping) -> bool:
    return 'asym_id' not in batch

  def mismatch(self, model_name: str) -> str:
    return (f'{model_name} is a monomer preset; fold complexes with a multimer preset '
            '(--model_preset=multimer)')

  def inputs(self, batch: Mapping, use_templates: bool) -> dict[str, type]:
    wanted = schema.MONOMER + schema.MONOMER_TEMPLATES if use_templates else schema.MONOMER
    missing = wanted.missing(batch)
    if missing:
      raise InputError(f'processed batch lacks {missing}; pass the output of AlphaFold\'s '
                       'RunModel.process_features (or af_jax.data processing)')
    return wanted.dtypes

  def select(self, batch: Mapping, use_templates: bool) -> dict[str, np.ndarray]:
    out = {k: np.asarray(batch[k]).astype(dt)
           for k, dt in self.inputs(batch, use_templates).items()}
    if out['aatype'].ndim != 2:
      raise InputError(f"batch['aatype'] has shape {out['aatype'].shape}; expected "
                       '[num_recycle + 1, N_res] (one slice per recycle)')
    return out

  def module_class(self) -> type:
    from af_jax.model.alphafold import AlphaFold
    return AlphaFold

  def bucket_label(self, model_name: str, shapes: Mapping) -> str:
    n_slices, n_res = shapes['aatype'].shape
    label = (f'{model_name}/L{n_res}/msa{shapes["msa_feat"].shape[1]}'
             f'x{shapes["extra_msa"].shape[1]}')
    if 'template_aatype' in shapes:
      label += f'/t{shapes["template_aatype"].shape[1]}'
    return f'{label}/r{n_slices}'

  def make_raw_features(self, record, chains, target_dir, options, *, uniprot_database=None):
    return pipeline.make_raw_features(record, target_dir, options)

  def describe_features(self, raw: Mapping) -> str:
    return f'{len(raw["msa"])} MSA rows; '

  def num_residues(self, raw: Mapping) -> int:
    return int(np.shape(raw['aatype'])[0])

  def make_batch(self, raw, config, random_seed, length_buckets):
    return transforms.process_features(raw, config, random_seed,
                                       **bucket_sizes(raw, config, length_buckets))

  def dummy_batch(self, config, num_res, msa_clusters, extra_msa):
    msa = parsers.Msa(sequences=['A'], deletion_matrix=[[0]], descriptions=['warmup'])
    raw = {**features.make_sequence_features('A', 'warmup', 1),
           **features.make_msa_features([msa]), **features.empty_template_features(1)}
    return transforms.process_features(raw, config, 0, num_res=num_res,
                                       msa_clusters=msa_clusters, extra_msa=extra_msa)

  def preset_depths(self, config) -> tuple[int, int]:
    return transforms.max_msa_clusters(config), max(int(config.data.common.max_extra_msa), 1)

  def single_sequence_depths(self) -> tuple[int, int]:
    return 1, 1

  def trunk_sizes(self, model_config, shapes, use_templates):
    e = model_config.embeddings_and_evoformer
    n_seq = int(np.shape(shapes['msa_feat'])[-3])
    n_extra = int(np.shape(shapes['extra_msa'])[-2]) if e.extra_msa_stack_num_block else 0
    n_templ = int(np.shape(shapes['template_aatype'])[-2]) if use_templates else 0
    if e.template.embed_torsion_angles:
      n_seq += n_templ
    return n_seq, n_extra, n_templ

  def template_channels(self, model_config):
    stack = model_config.embeddings_and_evoformer.template.template_pair_stack
    return int(stack.triangle_attention_ending_node.value_dim)

  def ranking_score(self, out: Mapping) -> float:
    return float(np.asarray(out['plddt']).mean())

  def summary(self, out: Mapping) -> str:
    ptm = f', pTM {float(out["ptm"]):.3f}' if 'ptm' in out else ''
    return (f'mean pLDDT {float(np.asarray(out["plddt"]).mean()):.2f}{ptm}, '
            f'{int(out["num_recycles"])} recycles')

  def protein_fields(self, raw: Mapping) -> dict[str, np.ndarray]:
    aatype = np.asarray(raw['aatype'])
    if aatype.ndim == 2:  # the raw one-hot
      aatype = np.argmax(aatype, axis=-1).astype(np.int32)
    return {'aatype': aatype, 'residue_index': np.arange(len(aatype))}


class _Multimer(ModelKind):
  """AlphaFold-Multimer: a complex's raw features, sampled in the model; ranked by
  0.8 ipTM + 0.2 pTM (its ranking_confidence)."""

  name = 'multimer'
  score_label = 'iptm+ptm'
  batch_per_seed = False  # the model samples the MSA from the seed's key
  sums_templates = True

  def owns(self, batch: Mapping) -> bool:
    return 'asym_id' in batch

  def mismatch(self, model_name: str) -> str:
    return (f'{model_name} is a multimer preset: pass complex features '
            '(af_jax.data.pipeline_multimer), not a monomer batch')

  def inputs(self, batch: Mapping, use_templates: bool) -> dict[str, type]:
    missing = schema.MULTIMER.missing(batch)
    if missing:
      raise InputError(f'multimer batch lacks {missing}; build it with '
                       'af_jax.data.transforms_multimer.make_batch')
    return {**schema.MULTIMER.dtypes, schema.SAMPLING_KEY.name: schema.SAMPLING_KEY.dtype}

  def select(self, batch: Mapping, use_templates: bool) -> dict[str, np.ndarray]:
    wanted = self.inputs(batch, use_templates)
    if schema.SAMPLING_KEY.name not in batch:
      raise InputError('multimer batch lacks its sampling key; predict it with '
                       'Predictor.predict_processed(batch, random_seed=...)')
    out = {k: np.asarray(batch[k]).astype(dt) for k, dt in wanted.items()}
    if out['aatype'].ndim != 1:
      raise InputError(f"multimer batch['aatype'] has shape {out['aatype'].shape}; expected "
                       '[N_res] (the multimer samples its MSA per recycle in the model)')
    return out

  def input_shapes(self, batch: Mapping, use_templates: bool) -> Shapes:
    key = schema.SAMPLING_KEY  # added at prediction time
    return {k: (key.shape({}) if k == key.name else tuple(np.shape(batch[k])), dt)
            for k, dt in self.inputs(batch, use_templates).items()}

  def with_seed(self, batch: Mapping, random_seed: int) -> Mapping:
    key = jax.random.key_data(jax.random.PRNGKey(random_seed))
    return {**batch, schema.SAMPLING_KEY.name: np.asarray(key, schema.SAMPLING_KEY.dtype)}

  def module_class(self) -> type:
    from af_jax.model.alphafold_multimer import AlphaFoldMultimer
    return AlphaFoldMultimer

  def apply(self, model, batch: dict, plan, mesh, *, report_progress: bool = False) -> dict:
    batch = dict(batch)
    return model(batch, batch.pop(schema.SAMPLING_KEY.name), plan, mesh=mesh,
                 report_progress=report_progress)

  def bucket_label(self, model_name: str, shapes: Mapping) -> str:
    return (f'{model_name}/L{shapes["aatype"].shape[0]}/msa{shapes["msa"].shape[0]}'
            f'/t{shapes["template_aatype"].shape[0]}')

  def label(self, model_name: str, shapes: Mapping, model_config) -> str:
    # The recycle count is the loop's bound, not an input shape.
    return f'{self.bucket_label(model_name, shapes)}/r{int(model_config.num_recycle) + 1}'

  def make_raw_features(self, record, chains, target_dir, options, *, uniprot_database=None):
    cplx = pipeline_multimer.Complex(record.name, tuple(chains))
    return pipeline_multimer.make_complex_features(cplx, target_dir, options,
                                                   uniprot_database=uniprot_database)

  def describe_features(self, raw: Mapping) -> str:
    return (f'{len(np.unique(raw["asym_id"]))} chains, {self.num_residues(raw)} residues, '
            f'{int(raw["num_alignments"])} MSA rows; ')

  def num_residues(self, raw: Mapping) -> int:
    return transforms_multimer.natural_sizes(raw)[0]

  def make_batch(self, raw, config, random_seed, length_buckets):
    return transforms_multimer.make_batch(raw, **complex_bucket_sizes(raw, config,
                                                                      length_buckets))

  def dummy_batch(self, config, num_res, msa_clusters, extra_msa):
    # One MSA depth, msa_clusters (all rows; the model samples them): extra_msa is unused.
    n_templ = int(config.model.embeddings_and_evoformer.template.max_templates)
    raw = schema.MULTIMER.zeros(num_res=1, num_msa=1, num_templates=n_templ)
    return transforms_multimer.make_batch(raw, num_res=num_res, num_seq=msa_clusters,
                                          num_templates=n_templ)

  def single_sequence_depths(self) -> tuple[int, int]:
    return pipeline_multimer.MIN_NUM_SEQ, 0

  def preset_depths(self, config) -> tuple[int, int]:
    # The rows it can read, sampled + extra, rounded up to an MSA bucket; no extra MSA.
    e = config.model.embeddings_and_evoformer
    return bucket_lists.bucket_size(int(e.num_msa) + int(e.num_extra_msa),
                                    bucket_lists.MSA_BUCKETS), 0

  def trunk_sizes(self, model_config, shapes, use_templates):
    # AlphaFold-Multimer samples num_msa rows in the model; the rest are extra rows. Every
    # template adds its torsion-angle row to the MSA.
    e = model_config.embeddings_and_evoformer
    rows = int(np.shape(shapes['msa'])[0])
    n_seq = min(rows, int(e.num_msa))
    n_extra = min(rows - n_seq, int(e.num_extra_msa)) if e.extra_msa_stack_num_block else 0
    n_templ = int(np.shape(shapes['template_aatype'])[0]) if use_templates else 0
    return n_seq + n_templ, n_extra, n_templ

  def template_channels(self, model_config):
    return int(model_config.embeddings_and_evoformer.template.num_channels)

  def ranking_score(self, out: Mapping) -> float:
    return float(out['ranking_confidence'])

  def summary(self, out: Mapping) -> str:
    return (f'ipTM {float(out["iptm"]):.3f}, pTM {float(out["ptm"]):.3f}, mean pLDDT '
            f'{float(np.asarray(out["plddt"]).mean()):.2f}, {int(out["num_recycles"])} '
            f'recycles (tolerance {float(out["tol"]):.2f} A)')

  def protein_fields(self, raw: Mapping) -> dict[str, np.ndarray]:
    return {'aatype': raw['aatype'], 'residue_index': raw['residue_index'],
            'asym_id': raw['asym_id']}

  def plot_labels(self, name: str, num_res: int, first: protein.Protein) -> tuple[str, dict]:
    lengths = [end - begin for _, begin, end in protein.chain_runs(first)]
    return (f'{name} ({len(lengths)} chains, {num_res} residues)',
            {'chain_lengths': lengths, 'chain_ids': first.chain_ids})


MONOMER: ModelKind = _Monomer()
MULTIMER: ModelKind = _Multimer()


def for_config(model_config) -> ModelKind:
  """The kind of a `model` config (AlphaFold-Multimer's have global_config.multimer_mode)."""
  return MULTIMER if model_config.global_config.get('multimer_mode', False) else MONOMER


def of_batch(batch: Mapping) -> ModelKind:
  """The kind whose batch `batch` is: a complex's carries asym_id."""
  return MULTIMER if MULTIMER.owns(batch) else MONOMER


def bucket_sizes(raw: Mapping, config, length_buckets: Sequence[int]) -> dict[str, int]:
  """Padded sizes for a monomer target: its length and MSA depths rounded up to buckets.

  MSA depths use configs.MSA_BUCKETS, capped at the preset's own maxima (which
  are then the bucket), so a set of proteins needs a handful of executables.
  """
  num_res, clusters, extra = transforms.natural_sizes(raw, config)
  return {
      'num_res': bucket_lists.bucket_size(num_res, length_buckets),
      'msa_clusters': min(bucket_lists.bucket_size(clusters, bucket_lists.MSA_BUCKETS),
                          transforms.max_msa_clusters(config)),
      'extra_msa': min(bucket_lists.bucket_size(extra, bucket_lists.MSA_BUCKETS),
                       max(int(config.data.common.max_extra_msa), 1)),
  }


def complex_bucket_sizes(raw: Mapping, config, length_buckets: Sequence[int]) -> dict[str, int]:
  """Padded sizes of a complex: residues and MSA rows rounded up to buckets, the preset's
  template slots. Every MSA row is kept (the model samples from all of them)."""
  num_res, num_seq, _ = transforms_multimer.natural_sizes(raw)
  return {'num_res': bucket_lists.bucket_size(num_res, length_buckets),
          'num_seq': bucket_lists.bucket_size(num_seq, bucket_lists.MSA_BUCKETS),
          'num_templates': int(config.model.embeddings_and_evoformer.template.max_templates)}
