"""The faces a scorecard edits: one attribute flipped per face, spread evenly over attributes and
both directions, with the exact answer of each edit on the built-in faces.

    choose_edits            which face gets which flip (`EDITED`, each on and off, evenly)
    target_labels           the labels after a flip (a hair colour turned on turns the others off)
    counterfactual_images   the renderer's exact edit of a built-in face (`synthfaces.counterfactual`)
    EditSet                 all of it for a split, a model and a judge: what `scorecard` edits and judges
"""

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from . import synthfaces
from .data import CelebADataset, default_cache_dir, frame, other_hair_colours, to_model_range
from .unet import attribute_states

EDITED = ("Smiling", "Eyeglasses", "Male", "Blond_Hair", "Wearing_Hat")  # the built-in faces' scorecard
REAL_EDITED = ("Smiling", "Mouth_Slightly_Open", "Eyeglasses", "Male", "Blond_Hair")  # real faces' scorecard


def choose_edits(labels, names, attributes, n, seed=0):
    """Spread n one-attribute edits evenly over `attributes` and both directions.

    labels: (N, A) 0/1 of a split, columns `names`. Cell (a, on) takes faces where a is absent, cell
    (a, off) faces where it is present, in one seeded random order, preferring faces that no earlier
    cell took; a cell with fewer candidates than its share takes all it has (so the result can hold
    fewer than n edits). Returns (rows (M,) int64, attribute names (M,), target values (M,) int64),
    grouped by cell.
    """
    labels = np.asarray(labels) > 0.5
    cells = [(a, v) for a in attributes for v in (1, 0)]
    order = np.random.default_rng(seed).permutation(len(labels))
    used = np.zeros(len(labels), bool)
    rows, attrs, values = [], [], []
    for i, (name, value) in enumerate(cells):
        share = n // len(cells) + (i < n % len(cells))
        candidates = order[labels[order, names.index(name)] != bool(value)]
        pick = np.concatenate([candidates[~used[candidates]], candidates[used[candidates]]])[:share]
        used[pick] = True
        rows += pick.tolist()
        attrs += [name] * len(pick)
        values += [value] * len(pick)
    return np.array(rows, dtype=np.int64), attrs, np.array(values, dtype=np.int64)


def target_labels(labels, names, attrs, values):
    """Source labels (M, A) with row i's attribute attrs[i] set to values[i]; turning a hair colour on
    turns the other hair colours off (`data.other_hair_colours`), as `synthfaces.counterfactual` does.
    Returns a new (M, A) tensor."""
    target = labels.clone()
    for i, (name, value) in enumerate(zip(attrs, values)):
        if value:
            target[i, [names.index(h) for h in other_hair_colours(name, names)]] = 0.0
        target[i, names.index(name)] = float(value)
    return target


def counterfactual_images(root, files, attrs, values, size, crop=140):
    """The renderer's exact edits of built-in faces, framed to `size` as the loader frames them.

    files: image file names of `root` (row i of identities.npz is file i + 1); attrs, values: the edit
    of each. Returns (M, 3, size, size) uint8 (with values equal to the labels, the images themselves).
    """
    identity, attributes = synthfaces.load_identities(root)
    with np.load(Path(root) / synthfaces.IDENTITY_FILE) as z:
        rendered_size = int(z["size"])
    rows = np.array([int(Path(f).stem) - 1 for f in files])
    identity = {k: v[rows] for k, v in identity.items()}
    attributes = {k: v[rows] for k, v in attributes.items()}
    for name in dict.fromkeys(attrs):
        mask = np.array([a == name for a in attrs])
        edited = synthfaces.counterfactual(attributes, name, np.asarray(values, dtype=bool))
        attributes = {k: np.where(mask, edited[k], attributes[k]) for k in attributes}
    images = torch.from_numpy(synthfaces.render(identity, attributes, rendered_size)).permute(0, 3, 1, 2)
    return frame(images, size, crop)


def is_builtin(root):
    """Whether a data root (a folder or a list of them) is the built-in face set, which has counterfactuals."""
    roots = [root] if isinstance(root, (str, Path)) else list(root)
    return len(roots) == 1 and (Path(roots[0]) / synthfaces.IDENTITY_FILE).is_file()


@dataclass
class EditSet:
    """The one-attribute edits of a split that a scorecard scores, and what judging them needs.

    data: the split, its columns `names` (the model's attributes, then the judge's others); edited: the
    attributes edited (those the model and the judge both know); rows (M,) int64: the faces edited, in
    `choose_edits`' cell order; attrs (M names), values (M,) int64 0/1: each face's flip; images:
    (M, 3, S, S) in [-1, 1]; source, target: (M, len(names)) 0/1 labels before and after the flip;
    y_source, y_target: (M, A) the model's states; judged: the columns of `names` the judge reads, in
    its order.
    """

    data: CelebADataset
    names: list
    edited: list
    rows: np.ndarray
    attrs: list
    values: np.ndarray
    images: torch.Tensor
    source: torch.Tensor
    target: torch.Tensor
    y_source: torch.Tensor
    y_target: torch.Tensor
    judged: list

    @classmethod
    def choose(cls, config, root, split, n, judge, seed=0):
        """n edits of a split (`choose_edits`) of the attributes a model (its Config) and a judge both know:
        EDITED on the built-in faces, REAL_EDITED on real ones. ValueError when they share none."""
        model_names = list(config.attributes)
        names = list(dict.fromkeys([*model_names, *judge.attribute_names]))
        data = CelebADataset(root, split, attributes=names, size=config.image_size, crop=config.crop,
                             cache_dir=default_cache_dir())
        wanted = EDITED if is_builtin(root) else REAL_EDITED
        edited = [a for a in wanted if a in model_names and a in judge.attribute_names]
        if not edited:
            raise ValueError(f"the model and the judge share none of {', '.join(wanted)}; train them with those")
        rows, attrs, values = choose_edits(data.labels, names, edited, n, seed)
        source = data.labels[torch.from_numpy(rows)]
        target = target_labels(source, names, attrs, values)
        model_cols = [names.index(a) for a in model_names]
        return cls(data, names, edited, rows, attrs, values, to_model_range(data.images[torch.from_numpy(rows)]),
                   source, target, attribute_states(source[:, model_cols]), attribute_states(target[:, model_cols]),
                   [names.index(a) for a in judge.attribute_names])

    def cells(self):
        """The (attribute, target value) cells, each with its (M,) bool mask of edits, on then off per attribute."""
        attrs = np.array(self.attrs)
        return [(name, value, torch.from_numpy((attrs == name) & (self.values == value)))
                for name in self.edited for value in (1, 0)]

    def counterfactuals(self, root, config):
        """The exact answer of every edit (M, 3, S, S) in [-1, 1] on the built-in faces, else None."""
        if not is_builtin(root):
            return None
        root = root if isinstance(root, (str, Path)) else root[0]
        files = [self.data.files[r] for r in self.rows]
        return to_model_range(counterfactual_images(root, files, self.attrs, self.values, config.image_size,
                                                    config.crop))

    def reference_rows(self, seed):
        """Rows of the split showing each edit's target value, as many per cell as there are edits: real
        faces to measure the edits' feature distances against."""
        rng = np.random.default_rng(seed + 1)
        rows = []
        for name, value, mask in self.cells():
            candidates = np.flatnonzero((self.data.labels[:, self.names.index(name)].numpy() > 0.5) == bool(value))
            rows += rng.permutation(candidates)[:int(mask.sum())].tolist()
        return rows
