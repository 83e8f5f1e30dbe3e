"""Figures for the notebooks and the report. Every function returns a matplotlib Figure and never
calls show(); `save_figure` writes figures/NAME.png, and only headless runs (papermill) should call it.

    image_grid                  a grid of images with row and column labels
    plot_strength_curve         the scorecard's success against preservation as an edit is pushed harder
    plot_success_by_attribute   the scorecard's edit success per attribute and direction
"""

import os
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch

from .scorecard import METHOD_NAMES, TARGETS

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


def plot_strength_curve(curve, preservation_target=None):
    """Edit success (y) against preservation (x), a line per method, points labelled with their knob.

    preservation_target: the left edge of the shaded target region (default: the built-in faces' 0.95;
    on real faces the unchanged photos' preservation minus REAL_PRESERVATION_SLACK)."""
    fig, ax = plt.subplots(figsize=(5.5, 4.2))
    left = TARGETS["preservation"][1] if preservation_target is None else preservation_target
    ax.fill_between([left, 1.0], TARGETS["edit_success"][1], 1.0, color="tab:green", alpha=0.12,
                    label="target region")
    labels = []  # (x, y, text) of every point, placed once the axes' scale is final
    for method, entry in curve.items():
        prefix = "s=" if entry["knob"] == "strength" else "t0="
        x = [p["preservation"] for p in entry["points"]]
        y = [p["edit_success"] for p in entry["points"]]
        ax.plot(x, y, marker="o", label=f"{METHOD_NAMES.get(method, method)} (varying {entry['knob']})")
        labels += [(p["preservation"], p["edit_success"], f"{prefix}{p['value']:g}") for p in entry["points"]]
    ax.set_xlabel("preservation (other attributes kept)")
    ax.set_ylabel("edit success (target attribute read)")
    ax.set_ylim(-0.03, 1.05)
    _place_labels(ax, labels)
    ax.legend(fontsize=8, loc="lower left")
    ax.set_title("Pushing an edit harder: success against preservation", fontsize=10)
    fig.tight_layout()
    return fig


def _place_labels(ax, labels, fontsize=7):
    """Annotate each (x, y, text) at the first of a few offsets where its box overlaps no label placed
    before it: points of a curve, or of two curves, can nearly coincide. Returns the annotations."""
    ax.autoscale_view()
    (x0, x1), (y0, y1) = ax.get_xlim(), ax.get_ylim()
    width_pt, height_pt = (size * 72 / ax.figure.dpi for size in (ax.bbox.width, ax.bbox.height))
    placed, annotations = [], []
    for x, y, text in labels:
        px, py = (x - x0) / (x1 - x0) * width_pt, (y - y0) / (y1 - y0) * height_pt  # the point, in points
        w = 0.6 * fontsize * len(text)  # about the text's width
        for dx, dy in ((4, 3), (4, -9), (-4 - w, 3), (-4 - w, -9), (4, 12), (4, -18), (-4 - w, 12), (-4 - w, -18)):
            box = (px + dx, py + dy, px + dx + w, py + dy + fontsize)
            if not any(box[0] < b[2] and b[0] < box[2] and box[1] < b[3] and b[1] < box[3] for b in placed):
                break
        placed.append(box)
        annotations.append(ax.annotate(text, (x, y), xytext=(dx, dy), textcoords="offset points", fontsize=fontsize))
    return annotations


def plot_success_by_attribute(metrics):
    """Grouped bars: edit success per edited attribute, per direction (on/off) and method."""
    methods = list(metrics["methods"])
    attrs = list(metrics["attributes"])
    fig, ax = plt.subplots(figsize=(1.3 * len(attrs) + 2, 3.6))
    width = 0.8 / (2 * len(methods))
    for m, method in enumerate(methods):
        cells = metrics["methods"][method]["success_by_attribute"]
        for d, direction in enumerate(("on", "off")):
            k = 2 * m + d
            values = [cells[a][direction] if cells[a][direction] is not None else np.nan for a in attrs]
            ax.bar(np.arange(len(attrs)) + (k + 0.5) * width - 0.4, values, width, color=f"C{m}",
                   alpha=1.0 if direction == "on" else 0.5, hatch=None if direction == "on" else "//",
                   label=f"{METHOD_NAMES.get(method, method)}: turn {direction}")
    ax.axhline(TARGETS["edit_success"][1], color="k", lw=0.8, ls="--", label="target")
    ax.set_xticks(np.arange(len(attrs)), [a.replace("_", " ") for a in attrs], fontsize=8)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("edit success")
    ax.legend(fontsize=7, ncol=len(methods) + 1, loc="upper center", bbox_to_anchor=(0.5, -0.12))
    fig.tight_layout()
    return fig
