"""Figures for the notebooks and the report. Every function returns a matplotlib Figure and never
calls show(); `save_figure` writes figures/NAME.png, and only headless runs (papermill) should call it.
"""

import os
from pathlib import Path

import matplotlib.pyplot as plt
import torch

FIGURES = Path(os.environ.get("CELEBADIFF_FIGURES", Path(__file__).parents[1] / "figures"))


def save_figure(fig, name, folder=None):
    """Write `fig` to figures/NAME.png (150 dpi, tight) and return the path."""
    folder = Path(folder or FIGURES)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.png"
    fig.savefig(path, dpi=150, bbox_inches="tight")
    return path


def _to_hwc(image):
    """(3, H, W) tensor in [-1, 1] (float) or [0, 255] (uint8) -> (H, W, 3) float array in [0, 1]."""
    image = image.detach().cpu()
    image = image.float() / 255 if image.dtype == torch.uint8 else image.float().add(1).div(2)
    return image.clamp(0, 1).permute(1, 2, 0).numpy()


def image_grid(images, row_labels=None, col_labels=None, title=None, cell=1.1):
    """A grid of images with optional row and column labels.

    Args:
        images: (R, C, 3, H, W) tensor, or a list of R lists of (3, H, W) tensors; float in [-1, 1]
            or uint8. A None entry leaves its cell empty.
    """
    rows = [list(r) for r in images]
    R, C = len(rows), max(len(r) for r in rows)
    fig, axes = plt.subplots(R, C, figsize=(cell * C, cell * R + (0.4 if title else 0)), squeeze=False)
    for i, row in enumerate(rows):
        for j in range(C):
            ax = axes[i][j]
            ax.set_xticks([]), ax.set_yticks([])
            for side in ax.spines.values():
                side.set_visible(False)
            if j < len(row) and row[j] is not None:
                ax.imshow(_to_hwc(row[j]), interpolation="nearest")
            if col_labels and i == 0 and j < len(col_labels):
                ax.set_title(col_labels[j], fontsize=8)
            if row_labels and j == 0 and i < len(row_labels):
                ax.set_ylabel(row_labels[i], fontsize=8, rotation=0, ha="right", va="center")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig
