"""The report's result figures: grids of test faces edited one attribute at a time.

Rows are test faces in four groups (female / male, without / with glasses); columns are

    source | reconstruction | Smiling | Mouth open | Eyeglasses | hair colour | Male

"reconstruction" is the face edited to its own attributes (DDIB: DDIM inversion then regeneration,
strength 0; SDEdit: noised to t0 and denoised under its own attributes). Each edit column flips one
attribute (on where the face lacks it, off where it has it; the caption under each cell says which),
except hair colour, which turns blond hair black and any other colour blond; as in
`synthfaces.counterfactual`, turning one hair colour on turns the others off.

The edits themselves are an `editing.Editor`'s, as in the `edit` command (one inversion per face,
six generations from it); on the built-in faces `edit_sets.counterfactual_images` renders the exact
answer of every edit.
"""

import torch

from .changes import Change
from .edit_sets import counterfactual_images, target_labels
from .editing import Editor
from .metrics import psnr
from .plotting import image_grid
from .unet import attribute_states

GROUPS = (("female\nno glasses", 0, 0), ("female\nglasses", 0, 1), ("male\nno glasses", 1, 0), ("male\nglasses", 1, 1))
FLIPPED = ("Smiling", "Mouth_Slightly_Open", "Eyeglasses")  # the edit columns that flip their attribute
COLUMNS = ("source", "reconstruction", "Smiling", "Mouth open", "Eyeglasses", "hair colour", "Male")


def pick_faces(labels, names, per_group=2):
    """The first `per_group` faces of each GROUPS entry, in group order.

    labels: (N, A) 0/1 of a split, columns `names` (must include Male and Eyeglasses).
    Returns (rows: list of int, row_labels: list of str).
    """
    male, glasses = labels[:, names.index("Male")] > 0.5, labels[:, names.index("Eyeglasses")] > 0.5
    rows, row_labels = [], []
    for label, m, g in GROUPS:
        found = torch.nonzero((male == bool(m)) & (glasses == bool(g))).flatten()[:per_group].tolist()
        if len(found) < per_group:
            raise ValueError(f"only {len(found)} faces of group {label!r} in this split; lower per_group")
        rows += found
        row_labels += [label] * per_group
    return rows, row_labels


def column_edits(labels, names):
    """One (attribute, value, caption) per edit column for each face.

    labels: (N, A) 0/1. Returns attrs, values (lists of N lists of 5) and captions (N lists of 5 str).
    """
    attrs, values, captions = [], [], []
    for row in labels:
        has = {n: bool(row[names.index(n)] > 0.5) for n in names}
        hair = "Black_Hair" if has.get("Blond_Hair") else "Blond_Hair"
        edits = [(a, int(not has[a])) for a in FLIPPED] + [(hair, 1), ("Male", int(not has["Male"]))]
        attrs.append([a for a, _ in edits])
        values.append([v for _, v in edits])
        captions.append(["added" if v else "removed" for _, v in edits[:3]]
                        + [f"to {hair.split('_')[0].lower()}", "to male" if edits[4][1] else "to female"])
    return attrs, values, captions


def edit_columns(model, schedule, x0, labels, names, method="ddib", steps=50, strength=1.0, seed=0, precision="fp32"):
    """The reconstruction and the five edits of every face (DDIB: with DiffEdit's mask, as `edit` runs it).

    x0: (N, 3, H, W) in [-1, 1]; labels: (N, A) 0/1, columns `names` (the model's attributes). One Editor
    serves every column: DDIB inverts each face once; SDEdit noises face i with the same seeded noise in
    every column, so the columns differ by the edit alone.
    Returns recon (N, 3, H, W), edits (N, 5, 3, H, W), both clamped to [-1, 1], and `column_edits`' plan.
    """
    attrs, values, captions = column_edits(labels, names)
    y_source = attribute_states(labels).to(x0.device)
    columns = [labels] + [target_labels(labels, names, [r[j] for r in attrs], [r[j] for r in values])
                          for j in range(len(attrs[0]))]  # the reconstruction's target is the source
    editor = Editor(model, schedule, steps, precision, seed=seed)
    region = None if method == "ddib" else False
    out = [editor.edit(x0, y_source, Change(attribute_states(target).to(x0.device), strength, region=region),
                       method).edited.clamp(-1, 1).cpu() for target in columns]
    return out[0], torch.stack(out[1:], dim=1), (attrs, values, captions)


def _captions(fig, cell_labels, fontsize=7):
    """Write cell_labels[i][j] under cell (i, j) of a figure made by image_grid."""
    columns = max(len(r) for r in cell_labels)
    width, height = fig.get_size_inches()
    fig.set_size_inches(width, height + 0.15 * len(cell_labels))  # room for a caption line under every row
    for i, row in enumerate(cell_labels):
        for j, text in enumerate(row):
            if text:
                fig.axes[i * columns + j].set_xlabel(text, fontsize=fontsize, labelpad=1)
    fig.tight_layout(h_pad=0.2, w_pad=0.2)
    return fig


def edit_grid(x0, recon, edits, captions, row_labels, title=None):
    """Figure: per face, source | reconstruction | its five edits, each edit captioned with its direction.

    x0, recon: (N, 3, H, W); edits: (N, 5, 3, H, W), all in [-1, 1]; captions: N lists of 5 str.
    """
    rows = [[x0[i], recon[i], *edits[i]] for i in range(len(x0))]
    recon_psnr = psnr(recon.clamp(-1, 1), x0)
    cells = [["", f"{recon_psnr[i]:.1f} dB", *captions[i]] for i in range(len(x0))]
    fig = image_grid(rows, row_labels=row_labels, col_labels=list(COLUMNS), title=title, cell=1.15)
    return _captions(fig, cells)


def ground_truth(root, files, attrs, values, config):
    """The renderer's exact answer to every edit of `column_edits`: (N, 5, 3, S, S) uint8, framed like the loader."""
    N, E = len(attrs), len(attrs[0])
    flat_files = [f for f in files for _ in range(E)]
    images = counterfactual_images(root, flat_files, [a for r in attrs for a in r], [v for r in values for v in r],
                                   config.image_size, config.crop)
    return images.reshape(N, E, *images.shape[1:])


def edit_psnr(edits, truth):
    """PSNR (dB) of each edit against its counterfactual. edits: (N, E, 3, H, W) in [-1, 1]; truth: uint8 -> (N, E)."""
    N, E = edits.shape[:2]
    return psnr(edits.flatten(0, 1), truth.flatten(0, 1).float().div(127.5).sub(1)).reshape(N, E)


def column_psnr(x0, recon, edits, truth):
    """Mean PSNR (dB) per column over the faces: the reconstruction against the source, then each edit
    column against its counterfactuals. Returns a list of 1 + E floats."""
    return [psnr(recon, x0).mean().item(), *edit_psnr(edits, truth).mean(0).tolist()]


def counterfactual_grid(x0, recon, edits, truth, captions, row_labels, method="DDIB", title=None):
    """Figure: for each face its row of edits, then the exact counterfactuals under it.

    x0: (N, 3, H, W) in [-1, 1]; recon: (N, 3, H, W) and edits: (N, 5, 3, H, W) in [-1, 1], or dicts
    {row name: tensor} of several models or methods on the same faces (one row each, above the truth);
    truth: (N, 5, 3, H, W) uint8. Under each edit its PSNR against the counterfactual, under the
    reconstruction its PSNR against the source (the reconstruction's ground truth); the truth row says
    which way each attribute was edited.
    Returns the Figure and the (N, 5) PSNR of the edits (for dicts, a dict of them).
    """
    named = isinstance(edits, dict)
    recons, edit_sets = (recon, edits) if named else ({method: recon}, {method: edits})
    scores = {name: edit_psnr(e, truth) for name, e in edit_sets.items()}
    recon_psnr = {name: psnr(r, x0) for name, r in recons.items()}
    rows, cells, labels = [], [], []
    for i in range(len(x0)):
        for name, e in edit_sets.items():
            rows.append([x0[i], recons[name][i], *e[i]])
            cells.append(["", *(f"{p:.1f} dB" for p in [recon_psnr[name][i], *scores[name][i]])])
            labels.append(f"{row_labels[i]}\n{name}")
        rows.append([None, x0[i], *truth[i]])
        cells.append(["", "", *captions[i]])
        labels.append("ground\ntruth")
    fig = image_grid(rows, row_labels=labels, col_labels=list(COLUMNS), title=title, cell=1.15)
    return _captions(fig, cells), (scores if named else scores[method])


def strength_row(rows, strengths, row_labels, truth=None, title=None):
    """Figure: one face edited at increasing strengths (columns), one row per method.

    rows: list of (len(strengths), 3, H, W) tensors in [-1, 1]; truth: optional (3, H, W) shown last.
    """
    cols = [f"strength {s:g}" for s in strengths]
    images = [list(r) for r in rows]
    if truth is not None:
        cols.append("ground truth")
        images[0].append(truth)
        for r in images[1:]:
            r.append(None)
    return image_grid(images, row_labels=row_labels, col_labels=cols, title=title, cell=1.15)
