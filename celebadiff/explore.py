"""Figures that describe a face data set (notebook 01): attribute frequencies and correlations,
faces grouped by attribute, exact counterfactuals of the built-in set, and the loader's framing.

Every plotting function returns a matplotlib Figure and never calls show().
"""

import textwrap

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.patches import Rectangle
from PIL import Image

from .data import crop_side, load_image
from .plotting import image_grid
from .synthfaces import DRAWN, counterfactual, render


def attribute_correlations(labels):
    """Pearson correlation between binary attributes (the phi coefficient).

    Args:
        labels: (N, A) float 0/1.
    Returns:
        (A, A) float64 in [-1, 1]; rho_ab = cov(y_a, y_b) / (sigma_a sigma_b). An attribute that never
        varies (e.g. an undrawn one of the built-in set) has no correlation: its row and column are 0.
    """
    y = labels.double()
    centred = y - y.mean(0)
    cov = centred.T @ centred / len(y)
    sigma = cov.diagonal().sqrt()
    rho = cov / (sigma[:, None] * sigma[None, :])
    return torch.nan_to_num(rho, nan=0.0)


def strongest_pairs(rho, names, k=6):
    """The k attribute pairs with the largest |rho|, as [(name_a, name_b, rho), ...]."""
    a, b = torch.triu_indices(len(names), len(names), offset=1)
    order = rho[a, b].abs().argsort(descending=True)[:k]
    return [(names[a[i]], names[b[i]], float(rho[a[i], b[i]])) for i in order]


def attribute_frequencies(labels_by_split, names, title=None):
    """Horizontal bars: the fraction of faces with each attribute, one bar per split.

    Args:
        labels_by_split: {split name: (N, A) float 0/1}; empty splits are left out.
        names: the A attribute names.
    """
    splits = {s: y for s, y in labels_by_split.items() if len(y)}
    height = 0.8 / len(splits)
    fig, ax = plt.subplots(figsize=(6.5, 0.9 + 0.28 * len(names) * max(1, len(splits) / 2)))
    rows = np.arange(len(names))
    for k, (split, y) in enumerate(splits.items()):
        freq = y.float().mean(0).numpy()
        ax.barh(rows + (k - (len(splits) - 1) / 2) * height, freq, height, label=f"{split} ({len(y):,})")
    ax.set_yticks(rows, names, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("fraction of faces with the attribute")
    ax.grid(axis="x", alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    ax.set_title(title or "Attribute frequencies", fontsize=10)
    fig.tight_layout()
    return fig


def correlation_heatmap(rho, names, title=None):
    """The (A, A) correlation matrix as a red (positive) / blue (negative) heatmap, values written
    in the cells when there are few attributes."""
    n = len(names)
    side = 2.5 + 0.3 * n
    fig, ax = plt.subplots(figsize=(side + 1.2, side))
    image = ax.imshow(rho.numpy(), cmap="RdBu_r", vmin=-1, vmax=1)
    fontsize = 8 if n <= 16 else 6
    ax.set_xticks(range(n), names, rotation=90, fontsize=fontsize)
    ax.set_yticks(range(n), names, fontsize=fontsize)
    if n <= 16:
        for i in range(n):
            for j in range(n):
                if i != j:
                    value = float(rho[i, j])
                    ax.text(j, i, f"{value:.2f}".replace("0.", ".").replace("-.00", ".00"),
                            ha="center", va="center", fontsize=6.5,
                            color="white" if abs(value) > 0.6 else "black")
    fig.colorbar(image, ax=ax, shrink=0.8, label="correlation")
    ax.set_title(title or "Attribute correlations", fontsize=10)
    fig.tight_layout()
    return fig


def samples_by_attribute(dataset, names, per_row=8, title=None):
    """A grid with one row per attribute: the first `per_row` faces of `dataset` that have it.

    Args:
        dataset: a CelebADataset whose attribute_names include `names`.
    """
    rows = []
    for name in names:
        column = dataset.attribute_names.index(name)
        having = torch.nonzero(dataset.labels[:, column]).flatten()[:per_row].tolist()
        rows.append([dataset.image_uint8(i) for i in having] or [None])
    return image_grid(rows, row_labels=list(names), title=title)


def counterfactual_figure(identity, attributes, indices, size=64, names=DRAWN):
    """Built-in faces next to every single-attribute flip of them, with where each flip changed pixels.

    For each face in `indices`: a row with the face and, per attribute of `names`, the face
    re-rendered with only that attribute flipped (+ switched on, - off), then a row showing the
    pixels that the flip changed (red, over a faded copy of the face) and their share of the image.
    These are exact counterfactuals: nothing else about the face moves.

    Args:
        identity, attributes: as from synthfaces.load_identities (dicts of (N,) arrays).
        indices: row numbers (image file i + 1) of the faces to show.
    """
    fig = plt.figure(figsize=(0.95 * (len(names) + 1), 2.3 * len(indices)), layout="constrained")
    for group, i in zip(np.atleast_1d(fig.subfigures(len(indices), 1)), indices):
        axes = group.subplots(2, len(names) + 1)
        one_id = {k: v[i:i + 1] for k, v in identity.items()}
        one_attr = {k: np.asarray(v[i:i + 1], dtype=bool) for k, v in attributes.items()}
        base = render(one_id, one_attr, size)[0]
        flips = [render(one_id, counterfactual(one_attr, n, not one_attr[n][0]), size)[0] for n in names]
        titles = ["original"] + [textwrap.fill(("\u2212" if one_attr[n][0] else "+") + n.replace("_", " "), 14)
                                 for n in names]
        faded = 0.75 + 0.25 * base.mean(-1, keepdims=True) / 255  # (H, W, 1): light grey face
        for j, (image, text) in enumerate(zip([base, *flips], titles)):
            top, bottom = axes[0][j], axes[1][j]
            top.imshow(image, interpolation="nearest")
            top.set_title(text, fontsize=6)
            changed = np.abs(image.astype(int) - base).max(-1, keepdims=True) > 0  # (H, W, 1)
            bottom.imshow(np.where(changed, [0.85, 0.1, 0.1], faded), interpolation="nearest")
            if j:
                bottom.text(0.97, 0.03, f"{changed.mean():.0%}", transform=bottom.transAxes, fontsize=6,
                            ha="right", va="bottom", bbox={"facecolor": "white", "alpha": 0.7, "pad": 0.5, "lw": 0})
        axes[1][0].set_ylabel("changed\npixels", fontsize=6)
        for ax in axes.flat:
            ax.set_xticks([]), ax.set_yticks([])
    fig.suptitle("Exact counterfactuals: each face re-rendered with one attribute flipped", fontsize=9)
    return fig


def framing_figure(path, size=64, crop=140):
    """An image as stored, with the centre crop the loader takes outlined, next to the framed result."""
    with Image.open(path) as im:
        raw = np.asarray(im.convert("RGB"))
    height, width = raw.shape[:2]
    side = crop_side(height, width, crop)  # scales with the width on CelebA's aspect (a half-size image: 70 px)
    top, left = (height - side) / 2, (width - side) / 2
    framed = load_image(path, size, crop).permute(1, 2, 0).numpy()
    fig, (a, b) = plt.subplots(1, 2, figsize=(6, 3.4), width_ratios=[width, side])
    a.imshow(raw)
    a.add_patch(Rectangle((left - 0.5, top - 0.5), side, side, fill=False, edgecolor="yellow", lw=1.5))
    whole = " (smaller than the crop: used whole)" if side == min(height, width) else f", centre crop {side:g}x{side:g}"
    a.set_title(f"stored: {width}x{height}{whole}", fontsize=8)
    b.imshow(framed, interpolation="nearest")
    b.set_title(f"framed: {size}x{size}", fontsize=8)
    for ax in (a, b):
        ax.set_xticks([]), ax.set_yticks([])
    fig.tight_layout()
    return fig
