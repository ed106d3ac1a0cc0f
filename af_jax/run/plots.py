"""The pictures people look at first: pLDDT along the chain and the PAE heat map.

matplotlib with the Agg backend (no display needed); figures are written through
outputs.write_with, so a PNG appears only when complete. For a complex, pass the
chains' residue counts (`chain_lengths`, in file order): lines mark where each
chain ends and the chains' names label the axes. Residues are numbered from 1 on
both plots, as in the structure files. Each function returns its (closed) Figure, so
a caller or a test can read what was drawn.
"""

from __future__ import annotations

import pathlib
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np

from af_jax.common import protein
from af_jax.run import outputs

if TYPE_CHECKING:  # matplotlib is imported when a plot is drawn, not with this module
  from matplotlib.figure import Figure

# AlphaFold DB's pLDDT bands (low, high), colours and names; the report's viewer uses them too.
PLDDT_BANDS = ((90, 100, '#0053d6', 'very high (> 90)'),
               (70, 90, '#65cbf3', 'confident (70-90)'),
               (50, 70, '#ffdb13', 'low (50-70)'), (0, 50, '#ff7d45', 'very low (< 50)'))


def _pyplot():
  import matplotlib
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt
  return plt


def _chains(chain_lengths: Sequence[int], chain_ids: Sequence[str] | None,
            num_res: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
  """Where chains meet and chain midpoints (1-based residue positions), names.

  Boundary b lies between residues b and b + 1.
  """
  lengths = np.asarray(chain_lengths, int)
  if lengths.ndim != 1 or np.any(lengths <= 0) or lengths.sum() != num_res:
    raise ValueError(f'chain_lengths={list(lengths)} must be positive counts adding up to '
                     f'the {num_res} residues plotted')
  names = list(chain_ids) if chain_ids is not None else list(protein.pdb_chain_ids(len(lengths)))
  if len(names) != len(lengths):
    raise ValueError(f'chain_ids={names} names {len(names)} chains; chain_lengths has '
                     f'{len(lengths)}')
  ends = np.cumsum(lengths)
  return ends[:-1] + 0.5, ends - lengths / 2 + 0.5, names


def plot_plddt(path: pathlib.Path, plddts: Mapping[str, np.ndarray], title: str, *,
               chain_lengths: Sequence[int] | None = None,
               chain_ids: Sequence[str] | None = None) -> Figure:
  """pLDDT per residue, one line per prediction (in ranking order), on AlphaFold DB bands.

  Args:
    path: the PNG to write.
    plddts: prediction name -> [N_res] pLDDT.
    title: the figure's title.
    chain_lengths: residues per chain, for a complex: a line where each chain ends,
      the chain names along the top.
    chain_ids: the chains' names (default A, B, ...).

  Returns:
    The figure written: the predictions' legend (mean pLDDT in brackets) and the
    bands' legend on its one axis.
  """
  plt = _pyplot()
  fig, ax = plt.subplots(figsize=(8, 4), dpi=100)
  bands = [ax.axhspan(low, high, color=colour, alpha=0.15, lw=0, label=label)
           for low, high, colour, label in PLDDT_BANDS]
  for name, plddt in plddts.items():
    plddt = np.asarray(plddt)
    ax.plot(np.arange(1, len(plddt) + 1), plddt, lw=1.2,
            label=f'{name} ({plddt.mean():.1f})')
  num_res = len(np.asarray(next(iter(plddts.values()))))
  ax.set(xlabel='residue', ylabel='pLDDT', ylim=(0, 100), xlim=(0.5, num_res + 0.5),
         title=title)
  if chain_lengths is not None:
    bounds, middles, names = _chains(chain_lengths, chain_ids, num_res)
    for b in bounds:
      ax.axvline(b, color='black', lw=0.8)
    top = ax.secondary_xaxis('top')
    top.set_xticks(middles, names)
    top.set_xlabel('chain')
  lines = ax.legend(handles=ax.get_lines(), fontsize=7, loc='lower right')
  ax.add_artist(lines)  # a second legend would otherwise replace it
  ax.legend(handles=bands, title='confidence', fontsize=7, title_fontsize=7, loc='lower left')
  fig.tight_layout()
  outputs.write_with(path, lambda tmp: fig.savefig(tmp, format='png', bbox_inches='tight'))
  plt.close(fig)
  return fig


def plot_pae(path: pathlib.Path, paes: Mapping[str, np.ndarray], title: str,
             max_pae: float = 31.75, *, chain_lengths: Sequence[int] | None = None,
             chain_ids: Sequence[str] | None = None,
             scores: Mapping[str, Mapping[str, float]] | None = None) -> Figure:
  """PAE heat maps (expected error in Å of residue y when aligned on residue x), side by side.

  Args:
    path: the PNG to write.
    paes: prediction name -> [N_res, N_res] PAE.
    title: the figure's title.
    max_pae: the colour scale's top (Å).
    chain_lengths: residues per chain, for a complex: lines between the chains'
      blocks, chain names on the top and right axes.
    chain_ids: the chains' names (default A, B, ...).
    scores: prediction name -> {'pTM': ..., 'ipTM': ...} (either or both), shown under
      the prediction's name in its panel's title.

  Returns:
    The figure written, one axis per prediction (then the colour bar's).
  """
  plt = _pyplot()
  names: Sequence[str] = list(paes)
  fig, axes = plt.subplots(1, len(names), figsize=(max(5.0, 3.6 * len(names)), 3.6), dpi=100,
                           squeeze=False)
  image = None
  for ax, name in zip(axes[0], names):
    pae = np.asarray(paes[name])
    n = pae.shape[0]
    # Residue i (1-based) is the pixel centred on i, as on the pLDDT plot.
    image = ax.imshow(pae, cmap='Greens_r', vmin=0, vmax=max_pae,
                      extent=(0.5, n + 0.5, n + 0.5, 0.5))
    score = ', '.join(f'{k} {v:.3f}' for k, v in sorted((scores or {}).get(name, {}).items()))
    # Above the chain names of the top axis, when there are any.
    ax.set_title(f'{name}\n{score}' if score else name, fontsize=8,
                 pad=14 if chain_lengths is not None else 6)
    ax.set(xlabel='scored residue', ylabel='aligned residue')
    if chain_lengths is not None:
      bounds, middles, chain_names = _chains(chain_lengths, chain_ids, n)
      for b in bounds:
        ax.axhline(b, color='black', lw=0.8)
        ax.axvline(b, color='black', lw=0.8)
      top, right = ax.secondary_xaxis('top'), ax.secondary_yaxis('right')
      top.set_xticks(middles, chain_names, fontsize=7)
      right.set_yticks(middles, chain_names, fontsize=7)
  if chain_lengths is not None:
    fig.subplots_adjust(wspace=0.45)  # room for the right-hand chain names
  fig.suptitle(title, fontsize=8, y=1.04 if chain_lengths is not None else 0.98)
  fig.colorbar(image, ax=axes[0].tolist(), label='expected position error (Å)', shrink=0.8)
  outputs.write_with(path, lambda tmp: fig.savefig(tmp, format='png', bbox_inches='tight'))
  plt.close(fig)
  return fig
