"""Figures for the diffusion notebooks (02 forward process .. 05 sampling).

Every function takes tensors or file paths the notebook already has and returns a matplotlib
Figure; none calls show() or saves (the notebook calls `plotting.save_figure`). Images go through
`plotting.image_grid`, so they are (3, H, W) in [-1, 1].
"""

import csv
from pathlib import Path

import matplotlib.pyplot as plt
import torch

from .plotting import image_grid


def schedule_curves(schedules):
    """alpha_bar_t and log10 SNR_t against t for each schedule.

    Args:
        schedules: {label: NoiseSchedule}, e.g. {"linear": NoiseSchedule.linear(), "cosine": ...}.
    """
    fig, (ax_a, ax_s) = plt.subplots(1, 2, figsize=(9, 3.2))
    for label, schedule in schedules.items():
        t = torch.arange(schedule.T)
        ax_a.plot(t, schedule.alpha_bar, label=label)
        ax_s.plot(t, schedule.snr.log10(), label=label)
    ax_a.set(xlabel="t", ylabel=r"$\bar\alpha_t$", title=r"signal kept: $\bar\alpha_t$")
    ax_s.set(xlabel="t", ylabel=r"$\log_{10}$ SNR", title=r"SNR $=\bar\alpha_t / (1-\bar\alpha_t)$")
    ax_s.axhline(0, color="grey", lw=0.8, ls=":")
    for ax in (ax_a, ax_s):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    return fig


def moment_check(t, empirical_mean, empirical_std, theory_mean, theory_std, x0_values):
    """Empirical mean and std of x_t (dots) over the closed form's (lines), one colour per x0 value.

    Args:
        t: (K,) timesteps; empirical_*, theory_*: (K, V) for the V starting values `x0_values`.
    """
    fig, (ax_m, ax_s) = plt.subplots(1, 2, figsize=(9, 3.2))
    for v, x0 in enumerate(x0_values):
        colour = f"C{v}"
        ax_m.plot(t, theory_mean[:, v], color=colour, lw=1, label=f"$x_0$ = {x0:g}")
        ax_m.plot(t, empirical_mean[:, v], "o", color=colour, ms=3)
        ax_s.plot(t, theory_std[:, v], color=colour, lw=1)
        ax_s.plot(t, empirical_std[:, v], "o", color=colour, ms=3)
    ax_m.set(xlabel="t", ylabel="mean of $x_t$", title=r"mean: $\sqrt{\bar\alpha_t}\,x_0$")
    ax_s.set(xlabel="t", ylabel="std of $x_t$", title=r"std: $\sqrt{1-\bar\alpha_t}$")
    ax_m.legend(fontsize=7)
    for ax in (ax_m, ax_s):
        ax.grid(alpha=0.3)
    fig.text(0.5, -0.02, "dots: iterating the one-step form; lines: closed form", ha="center", fontsize=8)
    fig.tight_layout()
    return fig


def time_embedding(t, emb, max_t=None):
    """The sinusoidal embedding as an image (t x dimension) and the cosine similarity of t to t'.

    Args:
        t: (N,) timesteps, ascending; emb: (N, D) their embeddings (`unet.timestep_embedding`).
    """
    fig, (ax_e, ax_c) = plt.subplots(1, 2, figsize=(9, 3.4), gridspec_kw={"width_ratios": [1.3, 1]})
    extent = [0, emb.shape[1], float(t[-1]), float(t[0])]
    im = ax_e.imshow(emb, aspect="auto", cmap="RdBu_r", vmin=-1, vmax=1, extent=extent, interpolation="nearest")
    ax_e.set(xlabel="dimension (cos | sin)", ylabel="t", title="embedding of t")
    fig.colorbar(im, ax=ax_e, fraction=0.05)
    unit = torch.nn.functional.normalize(emb, dim=1)
    extent = [float(t[0]), float(t[-1]), float(t[-1]), float(t[0])]
    im = ax_c.imshow(unit @ unit.T, cmap="viridis", extent=extent, interpolation="nearest")
    ax_c.set(xlabel="t'", ylabel="t", title="cosine similarity of embeddings")
    fig.colorbar(im, ax=ax_c, fraction=0.05)
    fig.tight_layout()
    return fig


def conditioning_difference(x_t, x0_hats, eps_hats, labels, title=None):
    """What changing y changes: x_t, then x0_hat and eps_hat under each y, then |difference| maps.

    Args:
        x_t: (3, H, W). x0_hats, eps_hats: two (3, H, W) tensors each, under the two attribute
            vectors named by `labels` (two strings).
    """
    fig, axes = plt.subplots(1, 7, figsize=(12, 2.3))
    # eps is N(0, 1): divide by its largest magnitude to show it in [-1, 1]; images are shown as they are
    panels = [(x_t, "$x_t$", 1), (x0_hats[0], rf"$\hat x_0$ | {labels[0]}", 1),
              (x0_hats[1], rf"$\hat x_0$ | {labels[1]}", 1)]
    panels += [(e, rf"$\hat\epsilon$ | {label}", e.abs().max().clamp(min=1)) for e, label in zip(eps_hats, labels)]
    for ax, (image, name, scale) in zip(axes, panels):
        ax.imshow((image / scale).add(1).div(2).clamp(0, 1).permute(1, 2, 0).numpy(), interpolation="nearest")
        ax.set_title(name, fontsize=8)
    for ax, diff, name in ((axes[5], x0_hats[1] - x0_hats[0], r"$|\Delta \hat x_0|$"),
                           (axes[6], eps_hats[1] - eps_hats[0], r"$|\Delta \hat\epsilon|$")):
        im = ax.imshow(diff.abs().mean(0).numpy(), cmap="magma", interpolation="nearest")
        ax.set_title(name, fontsize=8)
        fig.colorbar(im, ax=ax, fraction=0.046).ax.tick_params(labelsize=7)
    for ax in axes:
        ax.set_xticks([]), ax.set_yticks([])
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def read_loss_csv(path):
    """(steps, losses) lists from a run's loss.csv (columns step, loss, lr, images_per_s)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: train.train writes loss.csv into the run folder")
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    return [int(r["step"]) for r in rows], [float(r["loss"]) for r in rows]


def loss_curves(runs, title="training loss"):
    """Loss against step (log scale) for one or more runs.

    Args:
        runs: {label: path to a loss.csv}.
    """
    fig, ax = plt.subplots(figsize=(6, 3.2))
    for label, path in runs.items():
        steps, losses = read_loss_csv(path)
        ax.plot(steps, losses, marker="." if len(steps) < 40 else None, label=label)
    ax.set(xlabel="step", ylabel=r"$\|\epsilon - \hat\epsilon\|^2$ (mean over the log interval)", yscale="log",
           title=title)
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    fig.tight_layout()
    return fig


def sample_rows(rows, col_labels=None, title=None, cell=1.0):
    """Rows of samples, one labelled row per setting: {row label: (N, 3, H, W) in [-1, 1]}."""
    return image_grid([list(x) for x in rows.values()], row_labels=list(rows), col_labels=col_labels,
                      title=title, cell=cell)


@torch.no_grad()
def attribute_samples(model, schedule, attributes, size, switched=("Smiling", "Male", "Eyeglasses", "Blond_Hair"),
                      n=8, steps=50, seed=0, w=0.0):
    """What a model draws: samples from the same noise, unconditional, then with each attribute switched on.

    Row "(none)" leaves every attribute UNKNOWN (the unconditional model); row NAME sets NAME PRESENT and
    leaves the rest UNKNOWN, so rows differ by that attribute alone. x_T: (n, 3, size, size) from `seed`;
    DDIM, `clip=True`, guidance weight `w` (`sampling.guided`; 0: the plain conditional model).

    Returns {row label: (n, 3, H, W) in [-1, 1]}, for `sample_rows`.
    """
    from .sampling import ddim_sample, guided
    from .unet import PRESENT, UNKNOWN
    device = next(model.parameters()).device
    missing = [a for a in switched if a not in attributes]
    if missing:
        raise ValueError(f"the model has no attributes {missing}; it knows {', '.join(attributes)}")
    x_T = torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(seed)).to(device)
    net = guided(model, w) if w else model
    rows = {}
    for name in ("(none)", *switched):
        y = torch.full((n, len(attributes)), UNKNOWN, dtype=torch.long, device=device)
        if name in attributes:
            y[:, list(attributes).index(name)] = PRESENT
        rows[name] = ddim_sample(net, schedule, x_T, y, steps, clip=True)
    return rows
