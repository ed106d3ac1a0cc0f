"""run_inference.py --model_preset=multimer on a real heteromer: files, chains, confidence.

A tiny multimer (tests/model/tiny.py) with random weights; the real command line
otherwise: one FASTA file is one complex (2Q2K : peptide : 2Q2K written as
ColabFold's A:B:C), 2Q2K's real MSAs precomputed in AlphaFold's msas/<chain_id>/
layout, two predictions per model, the structures read back with Biopython.
"""

import json
import pickle
import re
import shutil

import numpy as np
import pytest
from Bio.PDB import MMCIFParser, PDBParser

from tests.cli_runner import recycle_lines, run_script, scratch_dir
from tests.data.test_msa_pairing import ALIGN_2Q2K, SEQ_2Q2K
from tests.data.test_pipeline_multimer import MSAS_7A4D, PEPTIDE_7A4D
from tests.model.tiny import TINY_MULTIMER

CACHE_DIR = scratch_dir('af_jax_test_xla_')
SMALL = [f'--config.{k}={v}' for k, v in TINY_MULTIMER.items()] + [
    '--num_recycle=1', '--buckets=192,256', '--random_params']


def run(args, check=True):
  return run_script('run_inference.py', args, cache_dir=CACHE_DIR, check=check)


@pytest.fixture(scope='module')
def heteromer(tmp_path_factory):
  tmp = tmp_path_factory.mktemp('complex')
  out = tmp / 'out'
  fasta = tmp / 'cplx.fasta'
  fasta.write_text(f'>cplx 2Q2K with a coiled-coil peptide\n{SEQ_2Q2K}:{PEPTIDE_7A4D}:'
                   f'{SEQ_2Q2K}\n')
  msa_dir = out / 'cplx' / 'msas' / 'A'
  msa_dir.mkdir(parents=True)
  for f in ALIGN_2Q2K.iterdir():
    shutil.copy(f, msa_dir / f.name)
  (out / 'cplx' / 'msas' / 'B').mkdir()  # the peptide: its real MSA is its query alone
  shutil.copy(MSAS_7A4D / '7a4d-assembly1E_protein.a3m',
              out / 'cplx' / 'msas' / 'B' / 'bfd_uniref_hits.a3m')
  args = [f'--fasta_paths={fasta}', f'--output_dir={out}', '--msa_mode=precomputed',
          '--model_names=model_1_multimer_v3', '--num_multimer_predictions_per_model=2',
          *SMALL]
  return out / 'cplx', args, run(args)


def test_complex_outputs(heteromer):
  target, _, proc = heteromer
  assert '3 chains, 180 residues' in proc.stderr
  ranking = json.loads((target / 'ranking_debug.json').read_text())
  assert set(ranking['iptm+ptm']) == {'model_1_multimer_v3_pred_0', 'model_1_multimer_v3_pred_1'}
  assert ranking['order'][0] == max(ranking['iptm+ptm'], key=ranking['iptm+ptm'].get)
  # Different sampling seeds: different predictions.
  scores = list(ranking['iptm+ptm'].values())
  assert scores[0] != scores[1]
  best = ranking['order'][0]
  conf = json.loads((target / f'confidence_{best}.json').read_text())
  assert conf['chain_ids'] == ['A', 'B', 'C']
  assert abs(0.8 * conf['iptm'] + 0.2 * conf['ptm'] - ranking['iptm+ptm'][best]) < 1e-3
  assert np.array(conf['chain_pair_iptm']).shape == (3, 3)
  assert len(conf['confidenceScore']) == 180
  # Chains with their ids and lengths, in PDB and mmCIF; merged by entity: 2Q2K, 2Q2K, peptide.
  for parser, name in ((PDBParser(QUIET=True), 'ranked_0.pdb'),
                       (MMCIFParser(QUIET=True), 'ranked_0.cif')):
    model = next(iter(parser.get_structure('x', str(target / name))))
    lengths = {c.id: len(c) for c in model}
    assert lengths == {'A': 70, 'B': 70, 'C': 40}, (name, lengths)
  assert (target / 'pae.png').stat().st_size > 0
  # The report names the complex and its ranking score.
  page = (target / 'report.html').read_text(encoding='utf-8')
  assert '<h1>cplx (3 chains, 180 residues)</h1>' in page and 'score (iptm+ptm)' in page
  chain_map = json.loads((target / 'msas' / 'chain_id_map.json').read_text())
  assert chain_map['B']['sequence'] == PEPTIDE_7A4D
  # timings.json: flat; the batch and plan once per model (under its first prediction: a
  # complex's seeds share them), compile and predict per prediction; the stages add up to
  # the target's wall time.
  model, preds = 'model_1_multimer_v3', sorted(ranking['iptm+ptm'])
  timings = json.loads((target / 'timings.json').read_text())
  assert set(timings) == {'features', 'outputs', f'process_features_{model}_pred_0',
                          f'chunk_plan_{model}_pred_0'} | {f'{stage}_{p}' for p in preds
                                                           for stage in ('compile', 'predict')}
  wall = float(re.search(r'\] cplx done in ([\d.]+) s', proc.stderr)[1])
  assert sum(timings.values()) == pytest.approx(wall, rel=0.05, abs=0.05), (timings, wall)
  assert set(ranking['chunk_plans']) == set(preds)
  # A line per iteration of each prediction (the loop's bound is TINY_MULTIMER's
  # model.num_recycle, which its --config flag sets after --num_recycle), with the ipTM.
  lines = recycle_lines(proc.stderr)
  ran = {p: pickle.loads((target / f'result_{p}.pkl').read_bytes())['num_recycles']
         for p in preds}
  assert [(d['pred'], d['recycle']) for d in lines] == [(p, r) for p in preds
                                                         for r in range(ran[p] + 1)]
  assert {d['of'] for d in lines} == {TINY_MULTIMER['model.num_recycle']}
  assert all(d['target'] == 'cplx' and 0 < d['iptm'] <= 1 and 0 < d['ptm'] <= 1
             and 0 < d['plddt'] < 100 for d in lines), lines
  assert '] run: 1/1 targets done, ' in proc.stderr


def test_rerun_skips_complete_complex(heteromer):
  target, args, _ = heteromer
  before = (target / 'ranked_0.pdb').stat().st_mtime_ns
  proc = run(args)
  assert 'outputs complete' in proc.stderr
  assert (target / 'ranked_0.pdb').stat().st_mtime_ns == before


def test_multimer_errors_are_one_line(tmp_path):
  fasta = tmp_path / 'bad.fasta'
  fasta.write_text(f'>bad\n{SEQ_2Q2K}::{PEPTIDE_7A4D}\n')
  proc = run([f'--fasta_paths={fasta}', f'--output_dir={tmp_path / "out"}',
              '--model_preset=multimer', *SMALL], check=False)
  assert_one_error_line(proc, 'empty chain')
  mixed = run([f'--fasta_paths={fasta}', f'--output_dir={tmp_path / "out"}',
               '--model_names=model_1_ptm,model_1_multimer_v3', *SMALL], check=False)
  assert_one_error_line(mixed, 'mixes monomer and multimer')
  assert not list(tmp_path.rglob('*.pdb'))


def assert_one_error_line(proc, needle):
  assert proc.returncode == 2, proc.stderr[-2000:]
  assert 'Traceback' not in proc.stderr
  last = proc.stderr.strip().splitlines()[-1]
  assert last.startswith('error: ') and needle in last, last
