"""What a face to edit shows before the edit: its source attribute states y_source.

Per attribute, first found wins:
    1. given by the user (`edit --source NAME=0|1`);
    2. the image's row of `list_attr_celeba.txt`, when it lies in the `img_align_celeba/` folder of a
       CelebA-layout root (the built-in face set included);
    3. an attribute classifier's reading of the aligned face (probability > 0.5): the command's
       `--classifier`, by default the model's committed judge; the editor's classifier for an upload;
    4. UNKNOWN: the edit then uses per-attribute guidance from "unknown" instead of a flip.
"""

from pathlib import Path

import torch

from . import data
from .unet import UNKNOWN


class DatasetRows:
    """Attribute rows of CelebA-layout roots, each root's file read once."""

    def __init__(self):
        self.roots = {}

    def row(self, path):
        """{name: 0|1} of the image's row, or None when it is not a dataset image."""
        path = Path(path).resolve()
        root = path.parent.parent
        if path.parent.name != data.IMAGE_DIR or not (root / data.ATTR_FILE).is_file():
            return None
        if root not in self.roots:
            names, files, labels = data.read_attribute_file(root / data.ATTR_FILE)
            self.roots[root] = (names, {f: i for i, f in enumerate(files)}, labels)
        names, index, labels = self.roots[root]
        if path.name not in index:
            return None
        return {n: int(v > 0) for n, v in zip(names, labels[index[path.name]].tolist())}


def classifier_states(classifier, images, names, y=None):
    """Fill the UNKNOWN entries of states y (N, A) (default: all UNKNOWN) with a classifier's reading.

    images: (N, 3, S, S) uint8 aligned faces, or float in [-1, 1]; names: the model's attributes (A). An
    attribute the classifier knows is read present where its probability is over 0.5; the others stay as y
    has them. ValueError when it knows none of them. Returns a new (N, A) long tensor.
    """
    from .classifier import predict  # a classifier is only needed here

    if y is None:
        y = torch.full((len(images), len(names)), UNKNOWN, dtype=torch.long)
    known = [(a, list(classifier.attribute_names).index(n)) for a, n in enumerate(names)
             if n in classifier.attribute_names]
    if not known:
        raise ValueError(f"the classifier knows none of the model's attributes ({', '.join(names)}); pass a "
                         "classifier trained on them, or give the source attributes (--source NAME=0|1)")
    images = data.to_model_range(images) if images.dtype == torch.uint8 else images
    present = (predict(classifier, images) > 0.5).long().cpu()  # (N, the classifier's A)
    y = y.clone()
    for a, c in known:
        y[:, a] = torch.where(y[:, a] == UNKNOWN, present[:, c], y[:, a])
    return y


def source_states(paths, images, config, given, classifier_run=None, rows=None):
    """Source attribute states (N, A) long: `given`, then dataset rows, then a classifier, else UNKNOWN.

    Args:
        paths: N image files; images: (N, 3, S, S) uint8, the framed images (for the classifier).
        config: the model's Config (its attributes). given: {name: 0|1} (--source), for every image.
        classifier_run: a classifier's name, run or file (`classifier.load_classifier`), or None.
        rows: a DatasetRows to reuse (the command reads them once for framing too).
    Returns:
        y: (N, A) long states; origin: per image, a short text saying where they came from.
    """
    names = list(config.attributes)
    y = torch.full((len(paths), len(names)), UNKNOWN, dtype=torch.long)
    rows, from_row = rows or DatasetRows(), []
    for i, path in enumerate(paths):
        row = rows.row(path) or {}
        from_row.append(bool(row))
        for a, name in enumerate(names):
            y[i, a] = given[name] if name in given else row.get(name, UNKNOWN)
    if classifier_run is not None and (y == UNKNOWN).any():
        from .classifier import load_classifier  # only a --classifier run needs it

        classifier = load_classifier(classifier_run)
        try:
            y = classifier_states(classifier, images, names, y)
        except ValueError as err:
            raise ValueError(f"--classifier {classifier_run}: {err}") from err
    origin = []
    for i in range(len(paths)):
        parts = (["--source"] if given else []) + (["dataset row"] if from_row[i] else [])
        parts += ["classifier"] if classifier_run is not None and not from_row[i] else []
        unknown = int((y[i] == UNKNOWN).sum())
        parts += [f"{unknown} of {len(names)} unknown"] if unknown else []
        origin.append(", ".join(parts))
    return y, origin
