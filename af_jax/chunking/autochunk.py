"""AutoChunk: the fastest ChunkPlan whose compiled peak memory fits a budget.

Chunking an axial op bounds its live activations to `chunk` slices but costs
speed (a sequential loop instead of one batched computation), so the best plan
chunks only the ops that must be chunked, and no more than they must. The plan
is chosen without running the model, in two steps:

1. An analytic model (`ActivationModel`) gives each op site's live bytes as a
   function of its chunk size, from the shapes and the config's channels and
   heads. Thresholding it gives a ladder of plans from unchunked (fastest) to
   every op at chunk 1 (smallest), each rung chunking the biggest ops a little
   more; the rung predicted to fit the budget is the first guess.
2. The guess is compiled (not run) and XLA's buffer assignment
   (`memory_analysis()`: arguments + outputs + temporaries - aliased) is the
   figure that must fit. If it does not, the model's error on that rung
   corrects the next guess, and so on: a handful of compiles at most.

On a CPU two things change (`cpu=` of `choose_plan`): the fastest plan is the
cache-sized one, not the unchunked one (a slice working set that stays in the
caches runs at the matmul rate), so every rung is capped at it; and XLA:CPU's
library fusions allocate the chunk's intermediates at run time, outside the
buffer assignment, so the model's `scratch_bytes` is added to the compiled peak.

Decisions are cached on disk beside the compilation cache, so a bucket pays the
search once. When even the smallest chunks do not fit, `choose_plan` raises
InputError before anything runs (the pre-flight check).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import pathlib
from collections.abc import Callable, Mapping
from typing import Any

import compile_cache
import jax
import numpy as np
from absl import logging

from af_jax.chunking.axial import ChunkPlan
from af_jax.errors import ConfigError, InputError

FIELDS = tuple(f.name for f in dataclasses.fields(ChunkPlan))
# Bump when the analytic model or the search changes: old cached decisions are then ignored.
_CACHE_VERSION = 4
_F32 = 4
# Chunking an op further is not worth it when it saves less than this fraction of its
# live bytes.
_NOT_WORTH = 0.03


# ----------------------------------------------------------------------------
# Memory sizes as people write them, and the default budget.


def parse_memory(text: str | int) -> int:
  """Bytes from `'1.5GB'`, `'800MB'`, `'512MiB'`, `'2G'` or a plain byte count.

  Decimal units (kB, MB, GB, TB) and binary ones (KiB, MiB, GiB, TiB), any case.

  Raises:
    ConfigError: the text is not a positive size.
  """
  import compile_cache
  try:
    value = compile_cache.parse_size(text.strip() if isinstance(text, str) else text)
  except (compile_cache.CompileCacheError, TypeError, ValueError) as e:
    raise ConfigError(f'memory size {text!r} is not understood; write bytes or a number '
                      'with a unit, such as 1.5GB, 800MB or 512MiB') from e
  if value <= 0:
    raise ConfigError(f'memory size {text!r} must be positive, such as 1.5GB or 800MB')
  return value


def format_bytes(num_bytes: int | float) -> str:
  """`1.50 GB`, `812.3 MB`: decimal units, as `parse_memory` reads them back."""
  size = float(num_bytes)
  for unit in ('B', 'kB', 'MB'):
    if abs(size) < 1000:
      return f'{size:.0f} {unit}' if unit == 'B' else f'{size:.1f} {unit}'
    size /= 1000
  return f'{size:.2f} GB'


def available_host_memory() -> int | None:
  """MemAvailable from /proc/meminfo in bytes (Linux), else None."""
  try:
    with open('/proc/meminfo') as f:
      for line in f:
        if line.startswith('MemAvailable:'):
          return int(line.split()[1]) * 1024
  except (OSError, ValueError, IndexError):
    pass
  return None


_CPU_FRACTION = 0.45  # of MemAvailable; see default_budget
# PERF (XLA:CPU): the chunk-dependent working set of one op above which chunking it further
# is faster, not slower (see ActivationModel.cpu_chunk_cap)...
CPU_CHUNK_BYTES = 24 * 2**20
# ...and of a transition, which runs as one YNNPACK fusion that allocates its 4x-wide hidden
# layer per call, so it is fastest at fewer rows. Numbers: bench/RESULTS.md, "Behind the code".
CPU_TRANSITION_CHUNK_BYTES = 8 * 2**20


def cpu_cap_bytes(field: str) -> int:
  """The CPU cap on `field`'s chunk-dependent bytes."""
  return CPU_TRANSITION_CHUNK_BYTES if field.endswith('_transition') else CPU_CHUNK_BYTES


def default_budget(device: jax.Device | None = None, fraction: float | None = None) -> int:
  """A memory budget from the device's own limit, times a safety fraction.

  On an accelerator, XLA's allocator limit (`memory_stats()['bytes_limit']`,
  already the preallocated share of the device) times 0.9: fragmentation and
  buffers outside the compiled program (inputs in flight, the next recycle's
  features) need the rest. On CPU, the RAM available now (MemAvailable) times
  0.45: besides Python, the data pipeline and the host parameters, XLA:CPU
  (jaxlib 0.10.2) runs dots through YNNPACK fusions whose packing buffers are
  allocated at run time, outside the buffer assignment the budget is checked
  against, so a process grows well past its compiled peak (numbers: bench/RESULTS.md,
  "Behind the code").
  """
  device = device or jax.devices()[0]
  stats = None
  try:
    stats = device.memory_stats()
  except (AttributeError, NotImplementedError, RuntimeError):
    stats = None
  if stats and stats.get('bytes_limit'):
    return int(stats['bytes_limit'] * (0.9 if fraction is None else fraction))
  avail = available_host_memory()
  if avail is None:
    raise ConfigError(f'cannot tell how much memory {device} has; pass --memory_budget '
                      '(e.g. 16GB)')
  return int(avail * (_CPU_FRACTION if fraction is None else fraction))


# ----------------------------------------------------------------------------
# The analytic model of live activations.


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
    multimer = 'asym_id' in shapes
    if multimer:
      # AlphaFold-Multimer samples num_msa rows in the model; the rest are extra rows.
      rows = int(np.shape(shapes['msa'])[0])
      n_seq = min(rows, int(e.num_msa))
      n_extra = min(rows - n_seq, int(e.num_extra_msa)) if e.extra_msa_stack_num_block else 0
      n_templ = int(np.shape(shapes['template_aatype'])[0]) if use_t else 0
    else:
      n_seq = int(np.shape(shapes['msa_feat'])[-3])
      n_extra = int(np.shape(shapes['extra_msa'])[-2]) if e.extra_msa_stack_num_block else 0
      n_templ = int(np.shape(shapes['template_aatype'])[-2]) if use_t else 0
    if use_t and (multimer or e.template.embed_torsion_angles):
      n_seq += n_templ  # the torsion-angle rows join the MSA
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
      c_t = int(t.num_channels if multimer
                else t.template_pair_stack.triangle_attention_ending_node.value_dim)
      per_template = n_templ * L2 * c_t * act  # the stacked pair stack outputs
      if t.template_pair_stack.num_block:
        stack_sites('template_pair_stack', t.template_pair_stack, 0, 0,
                    per_template + 2 * pair, False, pair_only=True, c_pair=c_t)
      if multimer:
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


# ----------------------------------------------------------------------------
# Compiled figures.


def _tree_bytes(tree) -> int:
  total = 0
  for leaf in jax.tree_util.tree_leaves(tree):
    aval = getattr(leaf, '_aval', leaf)
    total += math.prod(aval.shape) * np.dtype(aval.dtype).itemsize
  return total


def io_bytes(lowered: jax.stages.Lowered) -> int:
  """Argument + output bytes of a lowered program, known before compiling it."""
  return _tree_bytes(lowered.args_info) + _tree_bytes(lowered.out_info)


def compiled_memory(compiled: jax.stages.Compiled) -> dict[str, int]:
  """XLA's buffer assignment of an executable, per device, with `peak` =
  arguments + outputs + temporaries - aliased: what must be resident at once.

  (JAX 0.10.2's CompiledMemoryStats also has `peak_memory_in_bytes`, but on CPU
  it reports arguments + outputs only, without the temporaries; kept for
  reference.)
  """
  m = compiled.memory_analysis()
  if m is None:
    return {}
  d = {k: int(getattr(m, f'{k}_size_in_bytes', 0) or 0)
       for k in ('argument', 'output', 'temp', 'alias', 'generated_code')}
  d['peak'] = d['argument'] + d['output'] + d['temp'] - d['alias']
  d['xla_peak_memory'] = int(getattr(m, 'peak_memory_in_bytes', 0) or 0)
  return d


# ----------------------------------------------------------------------------
# The decision and its cache.


@dataclasses.dataclass(frozen=True)
class AutoChunkResult:
  """The chosen plan and the figures behind it.

  `predicted_peak_bytes` is the compiler's figure for the plan (its buffer
  assignment, nothing ran), on a CPU plus the model's `scratch_bytes`; `source`
  is 'compiled' (searched now), 'cache' (a decision from the disk cache) or
  'analytic' (the model's guess, `max_compiles=0`). `executable_seconds` is the part
  of the search spent compiling (or loading) the chosen plan's `executable`, which
  inference then reuses: a compile, not planning, in a run's timings.
  """

  plan: ChunkPlan
  predicted_peak_bytes: int
  budget_bytes: int
  source: str
  analytic_peak_bytes: int = 0
  compiles: int = 0
  executable: Any = dataclasses.field(default=None, compare=False, repr=False)
  executable_seconds: float = dataclasses.field(default=0.0, compare=False)

  def summary(self) -> str:
    return (f'AutoChunk plan {plan_summary(self.plan)}: predicted peak '
            f'{format_bytes(self.predicted_peak_bytes)}, budget {format_bytes(self.budget_bytes)}'
            f' ({self.source}, {self.compiles} compile(s))')


def plan_summary(plan: ChunkPlan) -> str:
  """`triangle_attention=16 msa_row_attention=64` or `unchunked`."""
  parts = [f'{f}={getattr(plan, f)}' for f in FIELDS if getattr(plan, f) is not None]
  return ' '.join(parts) or 'unchunked'


def default_cache_dir() -> pathlib.Path:
  """`autochunk/` beside the compilation cache's directory."""
  import compile_cache
  return pathlib.Path(compile_cache.default_dir()).parent / 'autochunk'


def _config_hash(config) -> str:
  mc = config.model if 'model' in config else config
  text = mc.to_json_best_effort(sort_keys=True) if hasattr(mc, 'to_json_best_effort') \
      else json.dumps(mc, sort_keys=True, default=str, allow_nan=False)
  return hashlib.sha256(text.encode()).hexdigest()[:16]


def _mesh_key(mesh) -> dict | None:
  if mesh is None:
    return None
  return {str(k): int(v) for k, v in dict(mesh.shape).items()}


def _cache_key(config, shapes, budget: int, device_kind: str, mesh, extra: str | None) -> dict:
  return {
      'version': _CACHE_VERSION,
      'shapes': {k: [list(np.shape(v)), str(np.dtype(getattr(v, 'dtype', np.float32)))]
                 for k, v in sorted(shapes.items())},
      'budget_bytes': int(budget),
      'device_kind': device_kind,
      'mesh': _mesh_key(mesh),
      'config': _config_hash(config),
      'jax': jax.__version__,
      'program': extra,
  }


def _cache_path(cache_dir: pathlib.Path, key: dict) -> pathlib.Path:
  text = json.dumps(key, sort_keys=True, allow_nan=False)
  digest = hashlib.sha256(text.encode()).hexdigest()[:24]
  return cache_dir / f'{digest}.json'


def _read_cache(path: pathlib.Path, key: dict) -> dict | None:
  try:
    entry = json.loads(path.read_text())
  except (OSError, ValueError):
    return None
  return entry if entry.get('key') == key else None


def _write_cache(path: pathlib.Path, entry: dict) -> None:
  try:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f'{path.name}.tmp-{os.getpid()}')
    tmp.write_text(json.dumps(entry, indent=1, sort_keys=True, allow_nan=False))
    os.replace(tmp, path)
  except OSError as e:  # a read-only cache only costs a search next time
    logging.warning('AutoChunk: cannot write decision cache %s: %s', path, e)


def _too_big(n_res: int, needed: int, budget: int) -> InputError:
  return InputError(
      f'sequence length {n_res} needs {format_bytes(needed)} even at the smallest chunk sizes '
      f'(compiled peak) but the memory budget is {format_bytes(budget)}; try '
      '--precision=bfloat16, --dap=N to split it over N devices, or a larger --memory_budget')


# ----------------------------------------------------------------------------
# The search.


def _lower_fn_of(target, shapes) -> Callable[[ChunkPlan], jax.stages.Lowered]:
  """`plan -> Lowered` for a Predictor-like target (`.config`, `.lower(shapes)`).

  A new abstract predictor of the same class per plan: the plan is fixed when a
  predictor traces its forward function.
  """
  def lower(plan: ChunkPlan) -> jax.stages.Lowered:
    if getattr(target, 'plan', None) == plan:
      return target.lower(shapes)
    return type(target)(target.config, None, plan=plan).lower(shapes)
  return lower


def choose_plan(predictor_or_config, shapes: Mapping[str, Any], budget_bytes: int | str, *,
                cache_dir: str | os.PathLike | None = None, device_kind: str | None = None,
                mesh=None, lower_fn: Callable[[ChunkPlan], jax.stages.Lowered] | None = None,
                model: ActivationModel | None = None, max_compiles: int = 4,
                use_cache: bool = True, program_key: str | None = None,
                cpu: bool | None = None) -> AutoChunkResult:
  """The fastest ChunkPlan whose compiled peak memory fits `budget_bytes`.

  Nothing runs: plans are ranked by the analytic model and confirmed by
  compiling them. The decision is logged in one line and cached on disk.

  Args:
    predictor_or_config: an `af_jax.inference.Predictor` (any object with
      `.config` and `.lower(shapes)`; compiled per plan as an abstract
      predictor of the same class), or a preset config together with
      `lower_fn` (chunking sits below inference and cannot build one itself).
    shapes: the bucket's model inputs (`warmup.bucket_shapes`), arrays or
      ShapeDtypeStructs, leading recycle axis included.
    budget_bytes: bytes, or text such as '1.5GB' (`parse_memory`).
    cache_dir: decision cache (default: `autochunk/` beside the compilation
      cache); None with `use_cache=False` for no cache.
    device_kind: part of the cache key (default: the first device's kind).
    mesh: the jax.sharding.Mesh the program runs on (cache key; its `dap` axis
      divides the analytic activations). `lower_fn` must lower for it.
    lower_fn: `plan -> jax.stages.Lowered`; overrides the predictor's.
    model: the analytic model (default: `ActivationModel.from_config`).
    max_compiles: compiles the search may spend before settling on the best
      plan confirmed so far (one more may go to the smallest plan, to tell
      whether anything fits).
    use_cache: read and write the decision cache.
    program_key: distinguishes programs that share config and shapes (e.g. one
      block benchmarked alone) in the cache key.
    cpu: XLA:CPU's rules (default: whether the first device is a CPU): the
      fastest plan is the cache-sized one (`ActivationModel.capped`), not the
      unchunked one, and each plan's peak adds the run-time scratch its buffer
      assignment does not show (`ActivationModel.scratch_bytes`).

  Returns:
    The AutoChunkResult.

  Raises:
    InputError: not even the smallest chunks fit (the pre-flight check).
    ConfigError: a budget that is not a size.
  """
  budget = parse_memory(budget_bytes)
  target = predictor_or_config
  config = target.config if hasattr(target, 'lower') and hasattr(target, 'config') else target
  if lower_fn is None:
    if not hasattr(target, 'lower'):
      raise TypeError('choose_plan needs a Predictor, or a config and lower_fn')
    lower_fn = _lower_fn_of(target, shapes)
  dap = int(dict(mesh.shape).get('dap', 1)) if mesh is not None else 1
  model = model or ActivationModel.from_config(config, shapes, dap=dap)
  device_kind = device_kind or jax.devices()[0].device_kind
  cpu = jax.devices()[0].platform == 'cpu' if cpu is None else bool(cpu)
  cache_path = None
  if use_cache:
    key = _cache_key(config, shapes, budget, device_kind, mesh, program_key)
    key['cpu_rules'] = cpu
    cache_path = _cache_path(pathlib.Path(cache_dir) if cache_dir else default_cache_dir(), key)
    entry = _read_cache(cache_path, key)
    if entry is not None:
      if not entry['fits']:
        raise _too_big(model.n_res, entry['needed_bytes'], budget)
      result = AutoChunkResult(ChunkPlan(**entry['plan']), entry['predicted_peak_bytes'],
                               budget, 'cache', entry.get('analytic_peak_bytes', 0), 0)
      _log_decision(result, model.n_res)
      return result

  result, needed = _search(model, lower_fn, budget, max_compiles, cpu)
  if cache_path is not None:
    entry = {'key': key, 'fits': result is not None, 'needed_bytes': needed}
    if result is not None:
      entry.update(plan=dataclasses.asdict(result.plan),
                   predicted_peak_bytes=result.predicted_peak_bytes,
                   analytic_peak_bytes=result.analytic_peak_bytes)
    _write_cache(cache_path, entry)
  if result is None:
    raise _too_big(model.n_res, needed, budget)
  _log_decision(result, model.n_res)
  return result


def _log_decision(result: AutoChunkResult, n_res: int) -> None:
  """One short INFO line (the figures); the plan itself, which can be long, at DEBUG (and
  in the caller's records)."""
  chunked = sum(getattr(result.plan, f) is not None for f in FIELDS)
  logging.info('AutoChunk L=%d: %d of %d op kinds chunked, predicted peak %s, budget %s (%s, %d '
               'compile(s))', n_res, chunked, len(FIELDS),
               format_bytes(result.predicted_peak_bytes), format_bytes(result.budget_bytes),
               result.source, result.compiles)
  logging.debug('%s, L=%d', result.summary(), n_res)


def _search(model: ActivationModel, lower_fn, budget: int, max_compiles: int,
            cpu: bool = False) -> tuple[AutoChunkResult | None, int]:
  """Walk the ladder with compiles; (result or None, peak of the smallest plan compiled)."""
  ladder = model.ladder(cpu)
  scratch = [int(model.scratch_bytes(p)) if cpu else 0 for p in ladder]
  act = [model.activation_bytes(p) + x for p, x in zip(ladder, scratch)]
  first = lower_fn(ladder[0])
  static = io_bytes(first)  # parameters, features and outputs: the same for every plan
  predicted = [int(static + a) for a in act]
  lowered = {0: first}
  measured: dict[int, dict] = {}
  executables: dict[int, Any] = {}
  seconds: dict[int, float] = {}

  def measure(i: int) -> int:
    lo = lowered.pop(i, None) or lower_fn(ladder[i])
    # Through the persistent cache (logged as a hit or a miss): the chosen plan's
    # executable is then the one inference loads, not a second compile.
    result = compile_cache.compile_with_cache(f'autochunk/{plan_summary(ladder[i])}', lo)
    compiled, seconds[i] = result.compiled, result.seconds
    measured[i] = compiled_memory(compiled)
    peak = measured[i]['peak'] = measured[i]['peak'] + scratch[i]
    if peak <= budget and (not executables or i < min(executables)):
      executables.clear()  # keep only the executable of the best fitting plan
      executables[i] = compiled
    logging.debug('AutoChunk: rung %d/%d %s: compiled peak %s%s (analytic %s), budget %s', i,
                 len(ladder) - 1, plan_summary(ladder[i]), format_bytes(peak),
                 f' incl. {format_bytes(scratch[i])} run-time scratch' if cpu else '',
                 format_bytes(predicted[i]), format_bytes(budget))
    return peak

  def first_fitting(lo: int, hi: int, delta: float) -> int | None:
    return next((j for j in range(lo, hi) if predicted[j] + delta <= budget), None)

  if max_compiles <= 0:
    i = first_fitting(0, len(ladder), 0)
    i = len(ladder) - 1 if i is None else i
    return AutoChunkResult(ladder[i], predicted[i], budget, 'analytic', predicted[i], 0), 0

  bad, fit = -1, None  # largest rung known not to fit; smallest rung known to fit
  i = first_fitting(0, len(ladder), 0)
  i = len(ladder) - 1 if i is None else i
  while True:
    peak = measure(i)
    if peak <= budget:
      fit = i if fit is None else min(fit, i)
    else:
      bad = max(bad, i)
    if fit is not None and fit == bad + 1:
      break  # the boundary is found
    delta = peak - predicted[i]  # the model's error here corrects the next guess
    hi = fit if fit is not None else len(ladder)
    j = first_fitting(bad + 1, hi, delta)
    if j is None:
      if fit is not None:
        break  # nothing less chunked than the known fit is predicted to fit
      j = len(ladder) - 1  # does anything fit at all?
      if j in measured:
        break
    if len(measured) >= max_compiles:
      if fit is not None:
        break  # out of compiles: settle on the best plan confirmed so far
      j = len(ladder) - 1  # but always learn whether anything fits at all
      if j in measured:
        break
    i = j
  if fit is None:
    smallest = len(ladder) - 1
    needed = measured[smallest]['peak'] if smallest in measured else predicted[smallest]
    return None, int(needed)
  return AutoChunkResult(ladder[fit], measured[fit]['peak'], budget, 'compiled', predicted[fit],
                         len(measured), executables.get(fit),
                         seconds[fit] if fit in executables else 0.0), measured[fit]['peak']
