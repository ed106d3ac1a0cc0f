"""AutoChunk's analytic model: each chunked op's live activation bytes as a function of
its chunk size, from the shapes and the config's channels and heads.

Thresholding the model gives a ladder of plans from unchunked (fastest) to every op at
chunk 1 (smallest), each rung chunking the biggest ops a little more; `search` confirms
rungs by compiling them. On a CPU the ladder is capped at cache-sized chunks
(`ActivationModel.capped`), and `scratch_bytes` is what XLA:CPU allocates at run time
outside its buffer assignment.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np

from af_jax.chunking import ChunkPlan
from af_jax.model import kind as model_kind

FIELDS = tuple(f.name for f in dataclasses.fields(ChunkPlan))
_F32 = 4
# Chunking an op further is not worth it when it saves less than this fraction of its
# live bytes.
_NOT_WORTH = 0.03
# PERF (XLA:CPU): the chunk-dependent working set of one op above which chunking it further
# is faster, not slower (see ActivationModel.cpu_chunk_cap)...
CPU_CHUNK_BYTES = 24 * 2**20
# ...and of a transition, which runs as one YNNPACK fusion that allocates its 4x-wide hidden
# layer per call, so it is fastest at fewer rows. Numbers: bench/RESULTS.md, "Behind the code".
CPU_TRANSITION_CHUNK_BYTES = 8 * 2**20


def cpu_cap_bytes(field: str) -> int:
  """The CPU cap on `field`'s chunk-dependent bytes."""
  return CPU_TRANSITION_CHUNK_BYTES if field.endswith('_transition') else CPU_CHUNK_BYTES



@dataclasses.dataclass(frozen=True)
class Site:
  """One op that a ChunkPlan field chunks, at one place in the model.

  Live bytes while it runs: `fixed_bytes + min(chunk, n_slices) * slice_bytes`,
  on top of `resident_bytes` (what the surrounding stack holds meanwhile), less
  `in_place_bytes` when chunked: a chunked residual op adds its update into the
  activation where it lies (`axial_map`'s `residual`), so neither its update
  buffer nor the updated copy of the stream exists.
  """

  field: str
  where: str
  n_slices: int
  slice_bytes: float
  fixed_bytes: float
  resident_bytes: float
  in_place_bytes: float = 0.0

  def live_bytes(self, chunk: int | None) -> float:
    saved = self.in_place_bytes if chunk is not None and chunk < self.n_slices else 0.0
    return self.resident_bytes + self.fixed_bytes + self.chunk_bytes(chunk) - saved

  def chunk_bytes(self, chunk: int | None) -> float:
    """The part that grows with the chunk: `chunk` slices' intermediates."""
    n = self.n_slices if chunk is None else min(chunk, self.n_slices)
    return n * self.slice_bytes


def _attention_slice(q: int, k: int, h: int, d: int, act: int) -> float:
  """Bytes of one slice of gated attention: q, k, v and ONE float32 [H, Q, K] buffer.

  XLA fuses bias, softmax, gate and output projection around a single logits
  buffer (compiled figures of single modules at real dimensions match this
  within 1%).
  """
  return act * h * (q * d + 2 * k * d) + _F32 * h * q * k


def _head_dims(cfg, c_in: int, c_v: int | None = None) -> tuple[int, int, int]:
  h = int(cfg.num_head)
  key_dim = int(cfg.get('key_dim') or c_in)
  value_dim = int(cfg.get('value_dim') or (c_v or c_in))
  return h, key_dim // h, value_dim // h


@dataclasses.dataclass(frozen=True)
class ActivationModel:
  """Per-op live activation bytes as a function of chunk size (per device).

  Built by `from_config`; `sites` lists every chunked op, `floor_bytes` what is
  live outside any chunked op (the largest resident set).
  """

  n_res: int
  sites: tuple[Site, ...]
  floor_bytes: float = 0.0

  @classmethod
  def from_config(cls, config, shapes: Mapping[str, Any], *, dap: int = 1) -> ActivationModel:
    """The model for AlphaFold's trunk at `shapes` (model inputs, leading recycle axis).

    Args:
      config: a preset ConfigDict (root or its `model` sub-config).
      shapes: the model inputs (arrays or ShapeDtypeStructs) by AlphaFold name.
      dap: devices along the mesh's `dap` axis; activations are split over them.
    """
    mc = config.model if 'model' in config else config
    e = mc.embeddings_and_evoformer
    act = 2 if mc.global_config.get('bfloat16') else _F32
    n_res = int(np.shape(shapes['aatype'])[-1])
    use_t = bool(e.template.enabled) and 'template_aatype' in shapes
    kind = model_kind.for_config(mc)
    n_seq, n_extra, n_templ = kind.trunk_sizes(mc, shapes, use_t)
    c_m, c_z, c_e = int(e.msa_channel), int(e.pair_channel), int(e.extra_msa_channel)
    L, L2 = n_res, n_res * n_res
    pair = L2 * c_z * act
    sites: list[Site] = []

    def stack_sites(where, ev, rows, c_msa, outside, column_global, pair_only=False,
                    c_pair=c_z):
      """The sites of one Evoformer-like block over an MSA [rows, L, c_msa] and pair;
      `outside`: bytes the rest of the model holds meanwhile."""
      p = L2 * c_pair * act
      msa = rows * L * c_msa * act
      # Residents: the stream being updated and the updated copy (compiled figures of one
      # block: 4 pair-sized buffers live during an unchunked triangle multiplication, 2 of
      # them its own). Chunked, the update is added in place: the copy and the op's output
      # buffer go (`in_place`; 2 pair-sized buffers left, the stream and the right
      # projection).
      pair_resident = outside + 2 * p
      resident = outside + 2 * msa
      # Triangle multiplication: the right projection [L, L, c] and the output
      # buffer live whole; each row i adds its left projection, [L, c] product,
      # layer norm (float32) and [L, c_z] outputs.
      c_mid = int(ev.triangle_multiplication_outgoing.num_intermediate_channel)
      sites.append(Site('triangle_multiplication', where, L,
                        L * (c_mid * (2 * act + _F32) + 2 * c_pair * act),
                        L2 * (c_mid + c_pair) * act, pair_resident, 2 * p))
      # Triangle attention: the bias [H, L, L] (float32) and the normalised pair live
      # whole; each row is one attention of L queries over L keys.
      h, d, dv = _head_dims(ev.triangle_attention_starting_node, c_pair)
      sites.append(Site('triangle_attention', where, L,
                        _attention_slice(L, L, h, max(d, dv), act),
                        h * L2 * _F32 + p, pair_resident, 2 * p))
      f = float(ev.pair_transition.num_intermediate_factor)
      sites.append(Site('pair_transition', where, L, L * c_pair * (f + 1) * act, p,
                        pair_resident, 2 * p))
      if pair_only:
        return
      h, d, dv = _head_dims(ev.msa_row_attention_with_pair_bias, c_msa)
      sites.append(Site('msa_row_attention', where, rows,
                        _attention_slice(L, L, h, max(d, dv), act),
                        h * L2 * _F32 + p + msa, resident, 2 * msa))
      h, d, dv = _head_dims(ev.msa_column_attention, c_msa)
      if column_global:
        # One mean query per column: keys and values [rows, d], logits [H, rows],
        # the result broadcast back to every row and gated.
        sites.append(Site('msa_column_global_attention', where, L,
                          rows * (d + dv + 2 * h * dv + c_msa) * act + 2 * h * rows * _F32,
                          msa, resident, 2 * msa))
      else:
        sites.append(Site('msa_column_attention', where, L,
                          _attention_slice(rows, rows, h, max(d, dv), act), msa, resident,
                          2 * msa))
      f = float(ev.msa_transition.num_intermediate_factor)
      sites.append(Site('msa_transition', where, rows, L * c_msa * (f + 1) * act, msa,
                        resident, 2 * msa))
      # Outer product mean: per residue i, the [L, c, c] outer products (twice:
      # the einsum's result and its [L, c*c] relayout for the projection) and the
      # float32 [L, c_z] projection; the projections [rows, L, c] live whole.
      c_o = int(ev.outer_product_mean.num_outer_channel)
      sites.append(Site('outer_product_mean', where, L,
                        L * (2 * c_o * c_o * act + c_pair * _F32),
                        2 * rows * L * c_o * act, resident))

    msa_main = n_seq * L * c_m * act
    stack_sites('evoformer', e.evoformer, n_seq, c_m, 0, False)
    floor = 2 * (msa_main + pair)
    if n_extra:
      extra = n_extra * L * c_e * act
      stack_sites('extra_msa_stack', e.evoformer, n_extra, c_e, msa_main, True)
      floor = max(floor, 2 * (extra + pair) + msa_main)
    if use_t:
      t = e.template
      c_t = kind.template_channels(mc)
      per_template = n_templ * L2 * c_t * act  # the stacked pair stack outputs
      if t.template_pair_stack.num_block:
        stack_sites('template_pair_stack', t.template_pair_stack, 0, 0,
                    per_template + 2 * pair, False, pair_only=True, c_pair=c_t)
      if kind.sums_templates:
        # Templates are summed one at a time into one [L, L, c_t] accumulator.
        floor = max(floor, 2 * pair + 3 * L2 * c_t * act)
      else:
        # Alg. 17: each pair position attends over its T templates, read in place from
        # the stacked [T, L*L, c_t] outputs (no transposed copy).
        h, d, dv = _head_dims(t.attention, c_z, c_t)
        sites.append(Site('template_pointwise_attention', 'template_embedding', L2,
                          _attention_slice(1, n_templ, h, max(d, dv), act) + c_z * act,
                          per_template, 2 * pair))
        floor = max(floor, 2 * pair + 2 * per_template)
    dap = max(int(dap), 1)
    if dap > 1:
      # DAP splits every MSA and pair activation over `dap` devices.
      sites = [dataclasses.replace(s, slice_bytes=s.slice_bytes / dap,
                                   fixed_bytes=s.fixed_bytes / dap,
                                   resident_bytes=s.resident_bytes / dap,
                                   in_place_bytes=s.in_place_bytes / dap) for s in sites]
      floor /= dap
    return cls(n_res=n_res, sites=tuple(sites), floor_bytes=floor)

  def fields(self) -> tuple[str, ...]:
    """The ChunkPlan fields this model has sites for."""
    return tuple(f for f in FIELDS if any(s.field == f for s in self.sites))

  def op_bytes(self, field: str, chunk: int | None) -> float:
    """Live bytes of the largest site of `field` at `chunk`: monotone in chunk."""
    return max((s.live_bytes(chunk) for s in self.sites if s.field == field), default=0.0)

  def activation_bytes(self, plan: ChunkPlan) -> float:
    """Predicted peak activation bytes of `plan` (arguments and outputs excluded)."""
    return max([self.floor_bytes] + [self.op_bytes(f, getattr(plan, f)) for f in self.fields()])

  def scratch_bytes(self, plan: ChunkPlan) -> float:
    """Run-time buffers XLA:CPU's buffer assignment does not show: the largest op's
    chunk-dependent intermediates at `plan`.

    XLA:CPU (jaxlib 0.10.2) runs each op's dots with their softmax, bias, gate and
    reductions as one YNNPACK fusion that allocates its intermediates (the attention
    logits, the transition's hidden layer) when it runs; this figure added to the
    compiled peak comes close to the measured peak RSS (numbers: bench/RESULTS.md,
    "Behind the code"). One op runs at a time, so the largest counts.
    """
    return max((s.chunk_bytes(getattr(plan, s.field)) for s in self.sites), default=0.0)

  def cpu_chunk_cap(self, field: str) -> int | None:
    """The largest power-of-two chunk of `field` whose chunk-dependent bytes fit
    `cpu_cap_bytes(field)` (None: the whole axis fits).

    On a CPU the unchunked ops are not the fastest: a chunk whose working set stays
    in the caches runs at the matmul rate, a whole axis at the memory bandwidth.
    PERF: bench/RESULTS.md, "Behind the code"; the bench/ops.py tables' bold cells
    are these caps.
    """
    cap_bytes = cpu_cap_bytes(field)
    n = max((s.n_slices for s in self.sites if s.field == field), default=1)
    per = max((s.slice_bytes for s in self.sites if s.field == field), default=0.0)
    if per * n <= cap_bytes:
      return None
    c = 1
    while 2 * c * per <= cap_bytes:
      c *= 2
    return c

  def capped(self, plan: ChunkPlan) -> ChunkPlan:
    """`plan` with no op chunked more coarsely than `cpu_chunk_cap`."""
    sizes = {}
    for f in FIELDS:
      chunk, cap = getattr(plan, f), (self.cpu_chunk_cap(f) if f in self.fields() else None)
      sizes[f] = cap if chunk is None else (chunk if cap is None else min(chunk, cap))
    return ChunkPlan(**sizes)

  def candidates(self, field: str) -> list[int | None]:
    """Chunk sizes worth trying for `field`, largest first: None, then powers of two
    below the axis size, down to the largest whose live bytes are within
    `_NOT_WORTH` of chunk 1's (smaller chunks would save next to nothing and cost
    speed: the triangle multiplication at chunk 1 reads the whole right projection
    once per row)."""
    n = max((s.n_slices for s in self.sites if s.field == field), default=1)
    least = self.op_bytes(field, 1)
    out: list[int | None] = [None]
    c = 1 << max(n - 1, 1).bit_length() - 1
    while c >= 1 and self.op_bytes(field, out[-1]) > least * (1 + _NOT_WORTH):
      if c < n:
        out.append(c)
      c //= 2
    return out

  def plan_at(self, threshold: float) -> ChunkPlan:
    """Each op at its largest chunk whose live bytes are at most `threshold`."""
    sizes = {}
    for f in self.fields():
      cands = self.candidates(f)
      sizes[f] = next((c for c in cands if self.op_bytes(f, c) <= threshold), cands[-1])
    return ChunkPlan(**sizes)

  def ladder(self, cpu: bool = False) -> list[ChunkPlan]:
    """Plans from unchunked to all-at-1, each rung chunking the largest ops further;
    with `cpu` (XLA:CPU), every rung `capped` and the first the cache-sized plan.

    Predicted activation bytes fall (never rise) along the ladder.
    """
    if cpu:
      rungs = []
      for plan in self.ladder():
        plan = self.capped(plan)
        if not rungs or plan != rungs[-1]:
          rungs.append(plan)
      return rungs
    thresholds = sorted({self.op_bytes(f, c) for f in self.fields()
                         for c in self.candidates(f)}, reverse=True)
    rungs: list[ChunkPlan] = []
    for t in thresholds:
      plan = self.plan_at(t)
      if not rungs or plan != rungs[-1]:
        rungs.append(plan)
    smallest = ChunkPlan(**{f: self.candidates(f)[-1] for f in self.fields()})
    if rungs[-1] != smallest:
      rungs.append(smallest)
    return rungs
