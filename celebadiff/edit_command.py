"""`python -m celebadiff edit`: edit the attributes of one face image or a folder of them.

    python -m celebadiff edit --image face.png --set Smiling=1 --set Eyeglasses=0 --out edited.png

Everything is checked before the first edit (checkpoint, every image, every attribute name and
value, the output path), and each output is written atomically, so a failed run leaves nothing
half-written. The editing itself is `celebadiff.editing.edit`, the same call the notebooks make.

Source attributes, per attribute, first found wins:
    1. `--source NAME=0|1`, given by the user;
    2. the image's row of `list_attr_celeba.txt`, when it lies in the `img_align_celeba/` folder
       of a CelebA-layout root (the built-in face set included);
    3. an attribute classifier's prediction (probability > 0.5): `--classifier`, by default the
       model's committed judge (`celeba64-judge` for `celeba64`, `demo-judge` for `demo`);
    4. UNKNOWN: the edit then uses per-attribute guidance from "unknown" instead of a flip.
"""

import os
import sys
from pathlib import Path

import torch
from PIL import Image, UnidentifiedImageError
from torchvision.transforms.v2 import functional as TF
from tqdm.auto import tqdm

from . import data
from .diffusion import NoiseSchedule
from .editing import edit, set_attributes
from .models import judge_for, load_model, resolve
from .unet import UNKNOWN

BATCH = 64
CELEBA_SIZE = (218, 178)  # (H, W) of an aligned CelebA image


def parse_pairs(pairs, flag, valid, checkpoint=""):
    """["Smiling=1", ...] -> {"Smiling": 1}; ValueError naming `flag` for a malformed pair, a value
    other than 0/1, or a name the model does not know (with close matches among `valid`)."""
    out = {}
    for pair in pairs:
        name, sep, value = (part.strip() for part in pair.partition("="))
        if not sep or not name:
            raise ValueError(f"{flag} {pair!r}: expected NAME=0 or NAME=1, e.g. {flag} Smiling=1")
        if value not in ("0", "1"):
            raise ValueError(f"{flag} {pair}: the value must be 0 or 1, got {value!r}")
        if name in data.CELEBA_ATTRIBUTES and name not in valid:
            raise ValueError(f"{flag} {pair}: the model in {checkpoint} was trained without {name}; "
                             f"it can edit only {', '.join(valid)}")
        try:
            data.resolve_attributes(name, valid=valid)
        except ValueError as err:
            raise ValueError(f"{flag} {pair}: {err}") from err
        out[name] = int(value)
    return out


def image_paths(image):
    """The image files to edit: `image` itself, or the image files directly inside a folder (sorted)."""
    path = Path(image)
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise FileNotFoundError(f"--image {path} not found: pass an image file or a folder of images")
    known = {ext for ext, fmt in Image.registered_extensions().items() if fmt in Image.OPEN}
    files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in known)
    if not files:
        raise ValueError(f"--image {path}: no image files in this folder (looked for .png, .jpg, ...)")
    return files


def frame_image(path, config):
    """Read one image at the model's resolution: (3, S, S) uint8, and a warning text or None.

    Aligned CelebA (178x218) and square images are framed exactly as the training loader frames
    them (`data.load_image`: centre crop of config.crop pixels, at most the shorter side, then an
    antialiased resize); any other image is centre-cropped to its largest square and resized.
    """
    try:
        with Image.open(path) as im:
            image = TF.pil_to_tensor(im.convert("RGB"))  # (3, H, W) uint8
    except (UnidentifiedImageError, OSError) as err:
        raise ValueError(f"cannot read image {path}: {err}; replace or remove the file") from err
    H, W = image.shape[-2:]
    S = config.image_size
    if abs(H * CELEBA_SIZE[1] - W * CELEBA_SIZE[0]) <= CELEBA_SIZE[1] or H == W:  # CelebA's aspect, any scale
        return data.frame(image, S, config.crop), None
    return data.frame(image, S, crop=None), (
        f"{path.name} is {W}x{H}, not an aligned CelebA image (178x218): centre-cropped to {min(H, W)}x{min(H, W)} "
        f"and resized to {S}x{S}; align faces like CelebA for best results")


class _DatasetRows:
    """Attribute rows of CelebA-layout roots, read once per root."""

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


def source_states(paths, images, config, given, classifier_run=None):
    """Source attribute states (N, A) long: --source, then dataset rows, then a classifier, else UNKNOWN.

    Args:
        paths: N image files; images: (N, 3, S, S) uint8, the framed images (for the classifier).
        given: {name: 0|1} from --source, applied to every image.
    Returns:
        y: (N, A) long states; origin: per image, a short text saying where they came from.
    """
    names = list(config.attributes)
    y = torch.full((len(paths), len(names)), UNKNOWN, dtype=torch.long)
    rows, from_row = _DatasetRows(), []
    for i, path in enumerate(paths):
        row = rows.row(path) or {}
        from_row.append(bool(row))
        for a, name in enumerate(names):
            y[i, a] = given[name] if name in given else row.get(name, UNKNOWN)
    if classifier_run is not None and (y == UNKNOWN).any():
        y = _fill_from_classifier(y, images, names, classifier_run)
    origin = []
    for i in range(len(paths)):
        parts = (["--source"] if given else []) + (["dataset row"] if from_row[i] else [])
        parts += ["classifier"] if classifier_run is not None and not from_row[i] else []
        unknown = int((y[i] == UNKNOWN).sum())
        parts += [f"{unknown} of {len(names)} unknown"] if unknown else []
        origin.append(", ".join(parts))
    return y, origin


def _fill_from_classifier(y, images, names, run):
    """Fill the UNKNOWN entries of y (N, A) that the classifier knows with its prediction (p > 0.5)."""
    from .classifier import load_classifier, predict  # only a --classifier run needs it

    classifier = load_classifier(run)
    known = [(a, list(classifier.attribute_names).index(n)) for a, n in enumerate(names)
             if n in classifier.attribute_names]
    if not known:
        raise ValueError(f"--classifier {run} knows none of the model's attributes ({', '.join(names)}); "
                         "pass a classifier trained on them, or give --source NAME=0|1 pairs")
    present = (predict(classifier, data.to_model_range(images)) > 0.5).long().cpu()  # (N, classifier's A)
    y = y.clone()
    for a, c in known:
        y[:, a] = torch.where(y[:, a] == UNKNOWN, present[:, c], y[:, a])
    return y


def output_paths(paths, image, out):
    """One output path per input; ValueError for a clash with an input or between outputs."""
    out = Path(out)
    if Path(image).is_file():
        if out.is_dir():
            raise ValueError(f"--out {out} is a folder; for one --image give an output file such as edited.png")
        targets = [out]
    else:
        if out.exists() and not out.is_dir():
            raise ValueError(f"--out {out} is a file; for a folder --image give an output folder")
        if out.resolve() == Path(image).resolve():
            raise ValueError(f"--out {out} is the input folder; choose another folder so inputs are not overwritten")
        targets = [out / (p.stem + ".png") for p in paths]
    fmt = Image.registered_extensions().get(targets[0].suffix.lower())
    if fmt is None or fmt not in Image.SAVE:
        raise ValueError(f"--out {targets[0]}: cannot tell the image format from {targets[0].suffix!r}; "
                         "end the name in .png (lossless) or .jpg")
    inputs = {p.resolve() for p in paths}
    seen = {}
    for p, t in zip(paths, targets):
        if t.resolve() in inputs:
            raise ValueError(f"--out {t} would overwrite the input image; choose another name")
        if t in seen:
            raise ValueError(f"{seen[t].name} and {p.name} would both be written to {t}; rename one of them")
        seen[t] = p
    return targets, fmt


def save_atomic(image, path, fmt):
    """Write a (3, H, W) uint8 image via a temporary file in the same folder and os.replace."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        Image.fromarray(image.permute(1, 2, 0).cpu().numpy()).save(tmp, format=fmt)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def run_edit(args):
    """The `edit` command; see the module docstring. Returns the paths written."""
    if not args.set:
        raise ValueError("nothing to edit: give at least one --set NAME=0|1, e.g. --set Smiling=1")
    if args.steps < 1:
        raise ValueError(f"--steps {args.steps}: give a positive number of DDIM steps, e.g. 50")
    checkpoint = resolve(args.checkpoint)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model, config, _ = load_model(checkpoint, device=device)
    names = list(config.attributes)
    targets = parse_pairs(args.set, "--set", names, checkpoint)
    given = parse_pairs(args.source, "--source", names, checkpoint)

    paths = image_paths(args.image)
    outputs, fmt = output_paths(paths, args.image, args.out)
    framed = [frame_image(p, config) for p in paths]
    images = torch.stack([image for image, _ in framed])  # (N, 3, S, S) uint8
    warnings = [w for _, w in framed if w]
    for w in warnings[:3]:
        print(f"warning: {w}", file=sys.stderr)
    if len(warnings) > 3:
        print(f"warning: {len(warnings) - 3} more images were not aligned CelebA images", file=sys.stderr)
    y_source, origin = source_states(paths, images, config, given, args.classifier or judge_for(checkpoint))
    y_target = set_attributes(y_source, names, targets)
    unchanged = int((y_target == y_source).all(1).sum())
    if unchanged:
        print(f"warning: {unchanged} of {len(paths)} images already have {', '.join(args.set)}: their output is "
              "the DDIM reconstruction", file=sys.stderr)

    schedule = NoiseSchedule.named(config.schedule, config.T)
    outputs[0].parent.mkdir(parents=True, exist_ok=True)
    # disable=None: a bar on a terminal only, none in logs; none for a single image
    bar = tqdm(total=len(paths), desc="edit", unit="image", disable=True if len(paths) == 1 else None)
    for s in range(0, len(paths), BATCH):
        x0 = data.to_model_range(images[s:s + BATCH]).to(device)
        edited = edit(model, schedule, x0, y_source[s:s + BATCH].to(device), y_target[s:s + BATCH].to(device),
                      method=args.method, strength=args.strength, steps=args.steps, seed=args.seed, mask=args.mask)
        for image, path in zip(data.to_uint8(edited), outputs[s:s + BATCH]):
            save_atomic(image, path, fmt)
        bar.update(len(x0))
    bar.close()

    change = ", ".join(f"{k}={v}" for k, v in targets.items())
    if len(paths) == 1:
        print(f"wrote {outputs[0]} ({change}; source attributes: {origin[0]}; {args.method}, strength {args.strength})")
    else:
        print(f"wrote {len(outputs)} images to {Path(args.out)} ({change}; {args.method}, strength {args.strength})")
    return outputs
