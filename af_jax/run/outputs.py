"""A target's result directory, laid out as AlphaFold's run_alphafold.py lays it out.

  <output_dir>/<target>/
    features.pkl                   raw features (AlphaFold's names)
    msas/                          the alignments the features came from
    unrelaxed_<model>.pdb / .cif   one per prediction (<model> = model_1_ptm_pred_0, ...);
                                   a complex's chains are A, B, ... in asym_id order; the
                                   mmCIF (ModelCIF) names the target and the model
    result_<model>.pkl             the prediction's arrays (AlphaFold's output names)
    confidence_<model>.json        per-residue pLDDT (AlphaFold DB format); for a complex
                                   also per-chain and interface confidence (complex_confidence)
    pae_<model>.json               PAE (AlphaFold DB format; _ptm and multimer models)
    relaxed_<model>.pdb / .cif     Amber-relaxed predictions (--models_to_relax; the PDB
                                   file has hydrogens, as AlphaFold's)
    relax_metrics.json             per relaxed prediction: remaining violations, energies,
                                   RMSD to the unrelaxed model, or the error that stopped it
    ranked_<i>.pdb / .cif          predictions ranked by mean pLDDT, complexes by
                                   0.8 ipTM + 0.2 pTM (relaxed where relaxed)
    plddt.png, pae.png             pictures of the confidences
    report.html                    one self-contained page to open in a browser: the ranked
                                   structures in a 3D viewer coloured by pLDDT, the plots,
                                   the ranking and the job's settings (af_jax.run.report)
    timings.json                   seconds per stage (write_timings), a flat mapping
    ranking_debug.json             ranking scores and order, and the job that made them
                                   (af_jax.run.job); written last, so its presence (with every
                                   file it names) means the target is complete for that job

Every file is written under a temporary name and renamed when complete (common.files);
temporary files a killed run left behind are removed by the next run that completes.
"""

from __future__ import annotations

import fnmatch
import json
import os
import pathlib
import pickle
import re
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from af_jax.common import confidence, files, protein
from af_jax.errors import InputError, PredictionError
from af_jax.model import kind as model_kind

RANKING_FILE = 'ranking_debug.json'
RELAX_METRICS_FILE = 'relax_metrics.json'
JOB_KEY = 'job'  # ranking_debug.json's key for the job record (af_jax.run.job)

# Every file a fold writes into a target's directory (msas/ holds inputs and is not one).
# features.npz: the pickle-free copy of features.pkl.
OUTPUT_PATTERNS = (
    RANKING_FILE, RELAX_METRICS_FILE, 'timings.json', 'plddt.png', 'pae.png', 'report.html',
    'features.pkl',
    'features.npz', 'ranked_*.pdb', 'ranked_*.cif', 'unrelaxed_*.pdb', 'unrelaxed_*.cif',
    'relaxed_*.pdb', 'relaxed_*.cif', 'result_*.pkl', 'confidence_*.json', 'pae_*.json')
# Temporary names of those files: write_atomic's, write_with's, write_features_pkl's.
_TEMP_NAME = re.compile(r'^\.(?:(?P<atomic>.+)\.tmp-\d+|tmp-\d+-(?P<with>.+)|features-\w+\.tmp)$')


def write_atomic(path: str | os.PathLike, data: str | bytes) -> None:
  """Write `data` to `path` through a temporary file in the same directory (removed on
  failure; see common.files)."""
  files.write_atomic(path, data)


def write_with(path: str | os.PathLike, writer: Callable[[str], None]) -> None:
  """Let `writer(tmp_path)` write a file (e.g. matplotlib's savefig, told the format: the
  temporary name has no extension), then rename it."""
  with files.writing(path) as tmp:
    writer(str(tmp))


def plddt_category(score: float) -> str:
  """AlphaFold DB's band: D (<50), L (<70), M (<90), H (>=90)."""
  if not np.isfinite(score):
    # Every comparison with NaN is false: it would fall through to H, very high.
    raise PredictionError(f'pLDDT {score} is not a finite number: a prediction with '
                          'non-finite outputs has no confidence to write')
  if score < 50:
    return 'D'
  if score < 70:
    return 'L'
  if score < 90:
    return 'M'
  return 'H'


def confidence_json(plddt: np.ndarray) -> str:
  """Per-residue pLDDT in the AlphaFold DB's confidence JSON format.

  The text is AlphaFold's `confidence.confidence_json`: compact separators, scores
  rounded to 2 decimals, each category from the unrounded score (49.996 is written
  as 50.0 in band D).
  """
  return json.dumps({
      'residueNumber': list(range(1, len(plddt) + 1)),
      'confidenceScore': [round(float(s), 2) for s in plddt],
      'confidenceCategory': [plddt_category(float(s)) for s in plddt],
  }, separators=(',', ':'), allow_nan=False)


def pae_json(pae: np.ndarray, max_pae: float) -> str:
  """Predicted aligned error in the AlphaFold DB's PAE JSON format (a one-entry list).

  The text is AlphaFold's `confidence.pae_json` as run_alphafold.py calls it: errors
  rounded to 1 decimal, the maximum written as the float it is (unrounded).
  """
  return json.dumps([{
      'predicted_aligned_error': np.round(np.asarray(pae, np.float64), 1).tolist(),
      'max_predicted_aligned_error': float(max_pae),
  }], separators=(',', ':'), allow_nan=False)


def residue_axes(path: tuple[str, ...]) -> tuple[int, ...]:
  """Which axes of the output at `path` run over residues (AlphaFold's output names)."""
  name = path[-1]
  if path[0] in ('masked_msa',) or name == 'msa' or path[:2] == ('structure_module', 'sidechains'):
    return (1,)  # [N_seq or N_layer, N_res, ...]
  if name == 'traj':
    return (1,)
  if path[0] in ('distogram', 'predicted_aligned_error_head') and name == 'logits':
    return (0, 1)
  if name in ('aligned_confidence_probs', 'predicted_aligned_error', 'pair'):
    return (0, 1)
  if name in ('bin_edges', 'breaks') or not path:
    return ()
  return (0,)


def unpad_prediction(out: Mapping, num_res: int) -> dict:
  """Cut a prediction made on a padded bucket back to the target's `num_res` residues."""
  def walk(tree, path):
    if isinstance(tree, Mapping):
      return {k: walk(v, path + (k,)) for k, v in tree.items()}
    value = np.asarray(tree)
    if value.ndim == 0:
      return tree
    for axis in residue_axes(path):
      value = value.take(np.arange(num_res), axis=axis)
    return value
  return walk(out, ())


def chain_index_from_asym_id(asym_id: np.ndarray) -> np.ndarray:
  """0-based chain index [N_res] from AlphaFold-Multimer's asym_id (1..N_chains, float
  or int): chains numbered in asym_id order."""
  asym_id = np.asarray(asym_id)
  if asym_id.ndim != 1:
    raise InputError(f'asym_id has shape {asym_id.shape}; pass the unbatched [N_res] feature')
  if asym_id.size and asym_id.min() < 1:
    raise InputError('asym_id has entries below 1 (padding is 0); pass the target\'s '
                     'residues only (unpad_prediction, raw features)')
  return np.unique(asym_id, return_inverse=True)[1].reshape(-1).astype(np.int32)


def prediction_protein(out: Mapping, aatype: np.ndarray, residue_index: np.ndarray,
                       chain_id: str = 'A', *, asym_id: np.ndarray | None = None,
                       chain_ids: Sequence[str] | None = None) -> protein.Protein:
  """A Protein from a prediction, pLDDT in the B-factor column (as AlphaFold writes it).

  Args:
    out: the (unpadded) prediction.
    aatype: [N_res] residue types.
    residue_index: [N_res] residue numbers from 0 (per chain for a complex); files
      number from 1.
    chain_id: the chain's name for a monomer.
    asym_id: [N_res] for a complex (AlphaFold-Multimer's feature): each residue's
      chain, named A, B, ... in asym_id order (AlphaFold names them from
      asym_id itself).
    chain_ids: the complex's chain names in asym_id order instead of A, B, ...
  """
  sm = out['structure_module']
  plddt = np.asarray(out['plddt'])
  mask = np.asarray(sm['final_atom_mask'])
  chains = {'chain_id': chain_id}
  if asym_id is not None:
    # DIFFERS FROM AF2: AlphaFold's from_prediction uses asym_id (from 1) as the chain
    # index, so its complexes' chains are B, C, ... (google-deepmind/alphafold#251);
    # here they start at A, as the input's chain_id_map.json names them.
    chains = {'chain_index': chain_index_from_asym_id(asym_id),
              'chain_ids': None if chain_ids is None else tuple(chain_ids)}
  return protein.Protein(
      atom_positions=np.asarray(sm['final_atom_positions']), atom_mask=mask,
      aatype=np.asarray(aatype), residue_index=np.asarray(residue_index) + 1,
      b_factors=plddt[:, None] * mask, **chains)


def complex_confidence(out: Mapping, prot: protein.Protein) -> dict:
  """Per-residue, per-chain and interface confidence of a multimer prediction.

  AlphaFold DB's per-residue lists (residueNumber: position in the complex, as the
  PAE matrix's rows; confidenceScore; confidenceCategory) with each residue's
  chainId and chainResidueNumber (as in the PDB/mmCIF files), then per chain, in
  the order of chain_ids, AlphaFold 3's summary names: chain_mean_plddt, chain_ptm
  (the chain's pTM alone), chain_pair_iptm ([i][j]: ipTM of chains i and j alone,
  in the frames of chain i; the diagonal is chain_ptm; see
  confidence.chain_pair_tm_scores), and the model's iptm, ptm and
  ranking_confidence (0.8 ipTM + 0.2 pTM).

  Args:
    out: the (unpadded) prediction, with the PAE head's logits and breaks.
    prot: its structure (prediction_protein with asym_id): the chains.

  Returns:
    A JSON-ready dict; pLDDT rounded to 2 decimals, TM-scores to 4.
  """
  plddt = np.asarray(out['plddt'], np.float64)
  if plddt.shape != (len(prot.aatype),):
    raise InputError(f'plddt has shape {plddt.shape} for {len(prot.aatype)} residues; unpad '
                     'the prediction (unpad_prediction) before writing it')
  data = json.loads(confidence_json(plddt))
  index = np.asarray(prot.chain_index)
  data['chainId'] = [prot.chain_ids[c] for c in index]
  data['chainResidueNumber'] = [int(r) for r in prot.residue_index]
  head = out['predicted_aligned_error_head']
  tm = np.asarray(confidence.chain_pair_tm_scores(
      np.asarray(head['logits']), np.asarray(head['breaks']), index, len(prot.chain_ids)),
      np.float64)
  present = [c for c in range(len(prot.chain_ids)) if np.any(index == c)]
  tm = tm[np.ix_(present, present)]
  data['chain_ids'] = [prot.chain_ids[c] for c in present]
  data['chain_mean_plddt'] = [round(float(plddt[index == c].mean()), 2) for c in present]
  data['chain_ptm'] = [round(float(v), 4) for v in np.diag(tm)]
  data['chain_pair_iptm'] = np.round(tm, 4).tolist()
  iptm, ptm = float(out['iptm']), float(out['ptm'])
  ranking = float(out.get('ranking_confidence', 0.8 * iptm + 0.2 * ptm))
  data.update(iptm=round(iptm, 4), ptm=round(ptm, 4), ranking_confidence=round(ranking, 4))
  return data


def complex_confidence_json(out: Mapping, prot: protein.Protein) -> str:
  """complex_confidence as JSON text (compact, as confidence_json)."""
  return json.dumps(complex_confidence(out, prot), separators=(',', ':'), allow_nan=False)


def _mmcif(target_dir: pathlib.Path, model_name: str, prot: protein.Protein) -> str:
  """A prediction's mmCIF text, naming the target (its directory) and the model."""
  model_type = 'Multimer' if 'multimer' in model_name else 'Monomer'
  return protein.to_mmcif(prot, model_name=model_name, target_name=target_dir.name,
                          model_type=model_type)


def write_prediction(target_dir: pathlib.Path, model_name: str, out: Mapping,
                     prot: protein.Protein) -> None:
  """Structure, result arrays and confidence JSON of one prediction.

  A multimer prediction (one with `iptm`) gets complex_confidence_json, on the
  chains of `prot`; a monomer's is confidence_json.
  """
  write_atomic(target_dir / f'unrelaxed_{model_name}.pdb', protein.to_pdb(prot))
  write_atomic(target_dir / f'unrelaxed_{model_name}.cif', _mmcif(target_dir, model_name, prot))
  write_atomic(target_dir / f'result_{model_name}.pkl',
               pickle.dumps(_to_numpy(out), protocol=pickle.HIGHEST_PROTOCOL))
  # DIFFERS FROM AF2: AlphaFold-Multimer writes a complex's file as a monomer's; here the
  # same three lists come first and per-chain and interface confidence follow them.
  conf = (complex_confidence_json(out, prot) if 'iptm' in out
          else confidence_json(out['plddt']))
  write_atomic(target_dir / f'confidence_{model_name}.json', conf)
  if 'predicted_aligned_error' in out:
    write_atomic(target_dir / f'pae_{model_name}.json',
                 pae_json(out['predicted_aligned_error'], out['max_predicted_aligned_error']))


def write_relaxed(target_dir: pathlib.Path, model_name: str, pdb_text: str,
                  prot: protein.Protein) -> None:
  """relaxed_<model>.pdb (OpenMM's text, hydrogens included) and .cif (heavy atoms)."""
  write_atomic(target_dir / f'relaxed_{model_name}.pdb', pdb_text)
  write_atomic(target_dir / f'relaxed_{model_name}.cif', _mmcif(target_dir, model_name, prot))


def write_relax_metrics(target_dir: pathlib.Path, metrics: Mapping[str, Mapping]) -> None:
  """relax_metrics.json: AlphaFold 2.3's per-model entries (remaining_violations,
  remaining_violations_count) plus energies and RMSD, or {'error': ...} for a failure."""
  write_atomic(target_dir / RELAX_METRICS_FILE,
               json.dumps({k: dict(v) for k, v in metrics.items()}, indent=4, allow_nan=False))


def write_ranking(target_dir: pathlib.Path, scores: Mapping[str, float],
                  proteins: Mapping[str, protein.Protein], *,
                  random_params: bool = False,
                  relaxed: Mapping[str, tuple[str, protein.Protein]] | None = None,
                  score_label: str = model_kind.MONOMER.score_label,
                  job: Mapping | None = None,
                  chunk_plans: Mapping[str, Mapping] | None = None,
                  before_ranking_file: Callable[[dict], None] | None = None) -> list[str]:
  """ranked_<i>.pdb/.cif by score (best first), then ranking_debug.json last.

  The scores are what AlphaFold ranks by: mean pLDDT for monomers, the
  ranking_confidence (0.8 ipTM + 0.2 pTM) for multimers, written under
  `score_label` (the ModelKind's: 'plddts' or 'iptm+ptm', the keys AlphaFold's
  run_alphafold.py writes) beside 'order'. A prediction in `relaxed` (name -> (relaxed PDB
  text, relaxed Protein)) is ranked by its relaxed structure, as AlphaFold does. With
  random weights the ranking file says so, so nobody mistakes a smoke test for a fold.
  `job` (af_jax.run.job.make_job) is recorded under JOB_KEY: what is_complete compares.
  `chunk_plans` (prediction -> the chunk plan it ran with, and AutoChunk's figures behind
  it) is recorded under 'chunk_plans'. `before_ranking_file(ranking)` is called with what
  ranking_debug.json will hold once the ranked structures are written and before that
  file is: what it writes (report.html) is then there whenever the target is complete.
  """
  order = sorted(scores, key=lambda name: scores[name], reverse=True)
  relaxed = relaxed or {}
  for i, name in enumerate(order):
    if name in relaxed:
      pdb_text, prot = relaxed[name]
    else:
      pdb_text, prot = protein.to_pdb(proteins[name]), proteins[name]
    write_atomic(target_dir / f'ranked_{i}.pdb', pdb_text)
    write_atomic(target_dir / f'ranked_{i}.cif', _mmcif(target_dir, name, prot))
  ranking = {score_label: {k: float(v) for k, v in scores.items()}, 'order': order}
  if random_params:
    ranking['params'] = 'RANDOM (--random_params): smoke test, the structures are meaningless'
  if job is not None:
    ranking[JOB_KEY] = dict(job)
  if chunk_plans:
    ranking['chunk_plans'] = {k: dict(v) for k, v in chunk_plans.items()}
  if before_ranking_file is not None:
    before_ranking_file(ranking)
  write_atomic(target_dir / RANKING_FILE, json.dumps(ranking, indent=4, allow_nan=False))
  return order


def write_timings(target_dir: pathlib.Path, timings: Mapping[str, float]) -> None:
  """timings.json: stage name -> seconds, a flat mapping as AlphaFold's.

  The stages do not overlap, so they add up to the target's time: features,
  process_features_<p>, chunk_plan_<p> (AutoChunk's search: tracing and measuring plans),
  compile_<p> (compiling or loading the executable, AutoChunk's compile of the chosen
  plan included), predict_<p>, relax_<p>, outputs (writing files and plots). <p> is a
  prediction; a complex's process_features and chunk_plan are per model. AlphaFold's
  predict_and_compile_<p> is chunk_plan_<p> + compile_<p> + predict_<p>.
  """
  data = {k: round(float(v), 3) for k, v in timings.items()}
  write_atomic(target_dir / 'timings.json', json.dumps(data, indent=4, allow_nan=False))


def relax_targets(order: list[str], models_to_relax: str) -> list[str]:
  """The predictions --models_to_relax names: none, the best (order[0]) or all."""
  if models_to_relax not in ('best', 'all', 'none'):
    raise ValueError(f'{models_to_relax=}: best, all or none')
  return {'best': order[:1], 'all': list(order), 'none': []}[models_to_relax]


def read_ranking(target_dir: pathlib.Path) -> dict | None:
  """ranking_debug.json's contents, or None when it is missing or unreadable."""
  try:
    ranking = json.loads((target_dir / RANKING_FILE).read_text())
  except (OSError, ValueError):
    return None
  return ranking if isinstance(ranking, dict) else None


def is_complete(target_dir: pathlib.Path, models_to_relax: str = 'none',
                job: Mapping | None = None) -> bool:
  """True when ranking_debug.json exists and every file it implies is there.

  With `job` (af_jax.run.job.make_job), the job recorded there must also equal it: outputs
  of another job (other sequence, weights, settings) are not this job's result. With
  relaxation asked for, relax_metrics.json must also report on each prediction to relax
  (a failure reported there counts: running again would fail again).
  """
  ranking = read_ranking(target_dir)
  if ranking is None or not isinstance(ranking.get('order'), list):
    return False
  if job is not None and ranking.get(JOB_KEY) != json.loads(json.dumps(job, allow_nan=False)):
    return False
  order = ranking['order']
  needed = [f'ranked_{i}.pdb' for i in range(len(order))]
  needed += [f'unrelaxed_{name}.pdb' for name in order]
  needed += [f'result_{name}.pkl' for name in order]
  if not (order and all((target_dir / n).is_file() for n in needed)):
    return False
  to_relax = relax_targets(order, models_to_relax)
  if not to_relax:
    return True
  try:
    metrics = json.loads((target_dir / RELAX_METRICS_FILE).read_text())
  except (OSError, ValueError):
    return False
  return all(name in metrics and ('error' in metrics[name]
                                  or (target_dir / f'relaxed_{name}.pdb').is_file())
             for name in to_relax)


def remove_outputs(target_dir: pathlib.Path, keep: Sequence[str | os.PathLike] = ()) -> list[str]:
  """Delete the files a fold wrote into target_dir (OUTPUT_PATTERNS and their temporary
  names), ranking_debug.json first, so that a crash halfway leaves an incomplete target.

  Anything else there (msas/, a user's own files) stays, and so do the files in `keep`
  (inputs that sit where an output would, e.g. --features_paths=<target>/features.pkl).

  Returns:
    The names deleted.
  """
  if not target_dir.is_dir():
    return []
  kept = {os.path.realpath(p) for p in keep}
  ours = sorted((p for p in target_dir.iterdir() if p.is_file() and not p.is_symlink()
                 and _is_output_name(p.name) and os.path.realpath(p) not in kept),
                key=lambda p: p.name != RANKING_FILE)
  for path in ours:
    path.unlink(missing_ok=True)
  return [p.name for p in ours]


def _is_output_name(name: str) -> bool:
  temp = _TEMP_NAME.match(name)
  if temp and name.startswith('.features-'):
    return True
  if temp:
    name = temp.group('atomic') or temp.group('with')
  return any(fnmatch.fnmatchcase(name, pattern) for pattern in OUTPUT_PATTERNS)


# The outputs a user reads first, named first when several are not finite.
_KEY_OUTPUTS = ('structure_module/final_atom_positions ', 'plddt ', 'ptm ', 'iptm ',
                'predicted_aligned_error ')


def check_finite(out: Mapping, what: str) -> None:
  """Raise PredictionError when any floating-point output of a prediction is NaN or inf.

  Args:
    out: the (unpadded) prediction, AlphaFold's output names.
    what: the prediction, for the message (target, model and seed).
  """
  bad = []
  def walk(tree, path):
    if isinstance(tree, Mapping):
      for k, v in tree.items():
        walk(v, path + (k,))
      return
    value = np.asarray(tree)
    if np.issubdtype(value.dtype, np.floating) and not np.isfinite(value).all():
      bad.append(f'{"/".join(path)} ({int(np.isnan(value).sum())} NaN, '
                 f'{int(np.isinf(value).sum())} inf of {value.size})')
  walk(out, ())
  if bad:
    bad.sort(key=lambda entry: not entry.startswith(_KEY_OUTPUTS))
    shown = ', '.join(bad[:3]) + (f' and {len(bad) - 3} more' if len(bad) > 3 else '')
    raise PredictionError(f'{what}: non-finite outputs in {shown}; no structure written. The '
                          'weights or the input features hold or produce NaN or inf: check '
                          'the params file and the target\'s inputs')


def _to_numpy(tree):
  if isinstance(tree, Mapping):
    return {k: _to_numpy(v) for k, v in tree.items()}
  return np.asarray(tree) if not isinstance(tree, (int, float, str)) else tree
