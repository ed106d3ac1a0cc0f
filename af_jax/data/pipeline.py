"""One target's raw features: its sequence, its alignments and (optionally) its templates.

The steps AlphaFold's DataPipeline takes, in numpy: search (or reuse) the MSAs in
`<target>/msas/`, check each against the target's sequence, merge them with the
query itself, and featurize template hits from `pdb_hits.hhr`.
"""

from __future__ import annotations

import dataclasses
import pathlib
from collections.abc import Sequence

from absl import logging

from af_jax.data import features, msa_search, parsers, templates

MSA_SUFFIXES = ('.a3m', '.sto', '.a3m.gz', '.sto.gz')
TEMPLATE_HITS = 'pdb_hits.hhr'


@dataclasses.dataclass(frozen=True)
class PipelineOptions:
  """How a target's MSAs and templates are obtained.

  Attributes:
    msa_mode: single_sequence | precomputed | jackhmmer | hhblits | mmseqs2.
    databases: search databases and binary paths (msa_search.Databases).
    msa_paths: precomputed a3m/sto (and .hhr) files for --msa_mode=precomputed.
    use_templates: featurize template hits (needs pdb70 or a precomputed .hhr,
      and template_mmcif_dir).
    template_mmcif_dir: directory of template mmCIF files (<pdb_id>.cif[.gz]).
    max_template_date: YYYY-MM-DD; templates released later are skipped.
    max_templates: at most this many templates.
    kalign_binary_path, obsolete_pdbs_path: passed to the template featurizer.
    n_cpu, timeout: for each search binary.
  """

  msa_mode: str = 'single_sequence'
  databases: msa_search.Databases = dataclasses.field(default_factory=msa_search.Databases)
  msa_paths: tuple[str, ...] = ()
  use_templates: bool = False
  template_mmcif_dir: str | None = None
  max_template_date: str = '9999-12-31'
  max_templates: int = 4
  kalign_binary_path: str | None = None
  obsolete_pdbs_path: str | None = None
  n_cpu: int = 2
  timeout: float = 3600.0


def query_msa(record: parsers.FastaRecord) -> parsers.Msa:
  """The target alone, as a one-row alignment (the whole MSA in single-sequence mode)."""
  return parsers.Msa(sequences=[record.sequence],
                     deletion_matrix=[[0] * len(record.sequence)],
                     descriptions=[record.name])


def read_msas(paths: Sequence[pathlib.Path], record: parsers.FastaRecord, *,
              log: bool = True) -> list[parsers.Msa]:
  """Parse each alignment file and check that its first row is the target.

  `log`: one line per file with its depth (inference); training reads every chain
  again each epoch and passes False.
  """
  msas = []
  for path in paths:
    if not str(path).endswith(MSA_SUFFIXES):
      continue
    msa = parsers.read_msa(path)
    parsers.check_msa_query(msa, record.sequence, str(path), target=record.name)
    if log:
      logging.debug('%s: %d sequences from %s', record.name, len(msa), path.name)
    msas.append(msa)
  return msas


def make_raw_features(record: parsers.FastaRecord, target_dir: pathlib.Path,
                      options: PipelineOptions) -> dict:
  """AlphaFold's raw feature dict for one FASTA record; alignments land in target_dir/msas."""
  msa_dir = target_dir / 'msas'
  msa_dir.mkdir(parents=True, exist_ok=True)
  paths = msa_search.search_msas(
      record.sequence, record.name, msa_dir, options.msa_mode, options.databases,
      n_cpu=options.n_cpu, timeout=options.timeout, msa_paths=options.msa_paths,
      # Precomputed alignments bring their own pdb_hits.hhr, or fold without templates.
      search_templates=options.use_templates and options.msa_mode != 'precomputed')
  msas = [query_msa(record)] + read_msas(paths, record)
  feats = {**features.make_sequence_features(record.sequence, record.description,
                                             len(record.sequence)),
           **features.make_msa_features(msas)}
  logging.debug('%s: %d unique MSA rows', record.name, int(feats['num_alignments'][0]))
  feats.update(template_features(record, msa_dir, options))
  return feats


def template_features(record: parsers.FastaRecord, msa_dir: pathlib.Path,
                      options: PipelineOptions) -> dict:
  """Template features from `pdb_hits.hhr` (none when templates are off or nothing was hit)."""
  num_res = len(record.sequence)
  if not options.use_templates:
    return features.empty_template_features(num_res)
  hhr = msa_dir / TEMPLATE_HITS
  if not hhr.is_file():
    # Precomputed directories from other tools name it differently (OpenFold: pdb70_hits.hhr).
    others = sorted(msa_dir.glob('*.hhr'))
    hhr = others[0] if len(others) == 1 else hhr
  if not hhr.is_file():
    logging.warning('%s: templates asked for but no %s in %s; folding without templates',
                    record.name, TEMPLATE_HITS, msa_dir)
    return features.empty_template_features(num_res)
  hits = parsers.parse_hhr(hhr.read_text(), source=str(hhr))
  featurizer = templates.TemplateFeaturizer(
      mmcif_dir=options.template_mmcif_dir, max_template_date=options.max_template_date,
      max_hits=options.max_templates, kalign_binary_path=options.kalign_binary_path,
      obsolete_pdbs_path=options.obsolete_pdbs_path)
  result = featurizer.get_templates(record.sequence, hits)
  for warning in result.warnings:
    logging.warning('%s: template: %s', record.name, warning)
  count = len(result.features['template_domain_names'])
  logging.info('%s: %d templates from %d hits', record.name, count, len(hits))
  if count == 0:
    return features.empty_template_features(num_res)
  return dict(result.features)
