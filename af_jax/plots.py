"""The pictures people look at first: pLDDT along the chain and the PAE heat map.

matplotlib with the Agg backend (no display needed); figures are written through
outputs.write_with, so a PNG appears only when complete.
"""

from __future__ import annotations

import pathlib
from collections.abc import Mapping, Sequence

import numpy as np

from af_jax import outputs

# AlphaFold DB's pLDDT bands and colours.
_BANDS = ((90, 100, '#0053d6'), (70, 90, '#65cbf3'), (50, 70, '#ffdb13'), (0, 50, '#ff7d45'))


def _pyplot():
  import matplotlib
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt
  return plt


def plot_plddt(path: pathlib.Path, plddts: Mapping[str, np.ndarray], title: str) -> None:
  """pLDDT per residue, one line per prediction (in ranking order), on AlphaFold DB bands."""
  plt = _pyplot()
  fig, ax = plt.subplots(figsize=(8, 4), dpi=100)
  for low, high, colour in _BANDS:
    ax.axhspan(low, high, color=colour, alpha=0.15, lw=0)
  for name, plddt in plddts.items():
    plddt = np.asarray(plddt)
    ax.plot(np.arange(1, len(plddt) + 1), plddt, lw=1.2,
            label=f'{name} ({plddt.mean():.1f})')
  ax.set(xlabel='residue', ylabel='pLDDT', ylim=(0, 100), title=title)
  ax.legend(fontsize=7, loc='lower right')
  fig.tight_layout()
  outputs.write_with(path, lambda tmp: fig.savefig(tmp, format='png', bbox_inches='tight'))
  plt.close(fig)


def plot_pae(path: pathlib.Path, paes: Mapping[str, np.ndarray], title: str,
             max_pae: float = 31.75) -> None:
  """PAE heat maps (expected error in Å of residue y when aligned on residue x), side by side."""
  plt = _pyplot()
  names: Sequence[str] = list(paes)
  fig, axes = plt.subplots(1, len(names), figsize=(max(5.0, 3.6 * len(names)), 3.6), dpi=100,
                           squeeze=False)
  image = None
  for ax, name in zip(axes[0], names):
    image = ax.imshow(np.asarray(paes[name]), cmap='Greens_r', vmin=0, vmax=max_pae)
    ax.set_title(name, fontsize=8)
    ax.set(xlabel='scored residue', ylabel='aligned residue')
  fig.suptitle(title, fontsize=8)
  fig.colorbar(image, ax=axes[0].tolist(), label='expected position error (Å)', shrink=0.8)
  outputs.write_with(path, lambda tmp: fig.savefig(tmp, format='png', bbox_inches='tight'))
  plt.close(fig)
