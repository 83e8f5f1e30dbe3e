"""`python -m celebadiff edit` and `align`: edit the faces of photos (a file or a folder), or align them.

    python -m celebadiff edit --image photo.jpg --set Smiling=1 --out photo_smiling.jpg [--face-out face.png]
    python -m celebadiff align --image photos/ --out aligned/

`edit` writes the whole photo at its own size with its face edited: the face is found (MTCNN), aligned
like CelebA, edited at the model's resolution, and only the change is pasted back (`celebadiff.photo`,
the same calls the editor and notebook 09 make). An aligned CelebA image (178x218, or CelebA's aspect at
any scale), an image of a CelebA-layout folder (the built-in faces) or any image with --aligned is framed
exactly as the training loader frames it, without detection. Of several faces the largest is edited
(--all-faces: all). `align` writes each photo's largest face in CelebA's aligned 178x218 frame.

Everything is checked before the first edit (checkpoint, every image and its face, every attribute name
and value, the output paths), and each output is written atomically, so a failed run leaves nothing
half-written. Images that cannot be edited (unreadable, no face, a face too small) are all named in one
error; `--skip-bad` edits the others and lists them. Of an animation (a GIF's frames) the first frame is
edited, and a note says so.

Source attributes (`celebadiff.source_attributes`), per attribute, first found wins:
    1. `--source NAME=0|1`, given by the user;
    2. the image's row of `list_attr_celeba.txt`, when it lies in the `img_align_celeba/` folder
       of a CelebA-layout root (the built-in face set included);
    3. an attribute classifier's prediction on the aligned face (probability > 0.5): `--classifier`, by
       default the model's committed judge (`celeba64-judge` for `celeba64`, `demo-judge` for `demo`);
    4. UNKNOWN: the edit then uses per-attribute guidance from "unknown" instead of a flip.

Region-wise editing (`celebadiff.regions`, `editing.Editor.generate`): with a `--region NAME=MASK` or a
`--strength NAME=S`, each --set change acts only inside its own region and with its own strength, e.g.

    edit --image face.png --set Smiling=1 --set Eyeglasses=1 --region Smiling=mouth --strength Smiling=2 ...

MASK is a mask image over the aligned face (the first panel of --face-out): white = may change, black =
keep, grey in between; any size, resized to the model's; or a named region (mouth, eyes, hair, face,
all, placed from the landmark template), or `diffedit`, the change's own DiffEdit mask (the default of
a change given no --region; with --no-mask, `all`). A bare `--strength S` is every change's strength.
"""

import sys
from pathlib import Path

import torch
from PIL import Image
from tqdm.auto import tqdm

from . import data
from .changes import Change, set_attributes
from .diffusion import NoiseSchedule
from .editing import Editor
from .faces import align, detect, refine
from .models import default_strength, judge_for, load_model, resolve
from .photo import Photo, frame_faces, paste_faces, read_photo, write_photo
from .precision import describe_precision
from .regions import OWN_MASK, REGIONS, layout_of, read_region, region_changes
from .source_attributes import DatasetRows, source_states

BATCH = 64  # faces edited together


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


def parse_strengths(values, targets, default=1.0):
    """["2", "Smiling=1.5"] -> (2.0, {"Smiling": 1.5}): the global strength (`default` when none is given:
    the model's, `models.default_strength`) and per-attribute ones.

    ValueError for a value that is not a number, a negative global strength (it would reverse every change:
    --set NAME=0 removes an attribute; a per-attribute strength may be signed), a number given twice, or a
    NAME that is not a --set attribute."""
    strength, per_attribute = None, {}
    for text in values:
        name, sep, value = (part.strip() for part in text.rpartition("="))
        try:
            number = float(value)
        except ValueError:
            raise ValueError(f"--strength {text}: expected a number or NAME=number, e.g. --strength 2 or "
                             "--strength Smiling=2") from None
        if not sep:
            if strength is not None:
                raise ValueError(f"--strength {text}: the global strength is already {strength:g}; give one "
                                 "number, and NAME=S for single attributes")
            if number < 0:
                raise ValueError(f"--strength {text}: the global strength must be 0 or more (0: reconstruct, 1: "
                                 "the target); to remove an attribute set it to 0, e.g. --set Eyeglasses=0, or give "
                                 "a signed strength to one attribute, e.g. --strength Eyeglasses=-1")
            strength = number
        elif name not in targets:
            raise ValueError(f"--strength {text}: {name} is not a --set attribute ({', '.join(targets)}); "
                             "a per-attribute strength belongs to a change, so --set it too")
        else:
            per_attribute[name] = number
    return (default if strength is None else strength), per_attribute


def parse_regions(pairs, targets, size):
    """["Smiling=mouth", "Eyeglasses=m.png"] -> {"Smiling": "mouth", "Eyeglasses": (1, 1, size, size) tensor}.

    Named regions stay names (they are placed per face, `regions.layout_of`); a mask file is read now, so a
    missing or unreadable one fails before anything is written. ValueError / FileNotFoundError otherwise."""
    out = {}
    for pair in pairs:
        name, sep, spec = (part.strip() for part in pair.partition("="))
        if not sep or not name or not spec:
            raise ValueError(f"--region {pair!r}: expected NAME=MASK, e.g. --region Smiling=mouth or "
                             "--region Smiling=mask.png")
        if name not in targets:
            raise ValueError(f"--region {pair}: {name} is not a --set attribute ({', '.join(targets)}); a region "
                             "says where a --set change may act, so --set it too")
        if name in out:
            raise ValueError(f"--region {pair}: {name} already has a region; give one per attribute")
        out[name] = spec if spec in (*REGIONS, OWN_MASK) else read_region(spec, size, flag=f"--region {name}")
    return out


def _changes(targets, strength, strengths, regions, mask, by_region, y_target, size, crop, layouts):
    """The Editor's changes for faces of the given layouts. Region-wise (--region, --strength NAME=S): one
    (name, value, strength, region) per --set, a change without --region in its own DiffEdit mask, or with
    --no-mask the whole frame. Else one joint change towards y_target, in one DiffEdit mask (--no-mask: none)."""
    if not by_region:
        return [Change(y_target, strength, region=False if mask is False else None)]
    default = OWN_MASK if mask is not False else "all"
    specs = [(name, value, strengths.get(name, strength), regions.get(name, default))
             for name, value in targets.items()]
    return region_changes(specs, size, crop, layouts)


def _describe(targets, strength, strengths, regions, mask):
    """"Smiling in mouth at strength 2; Eyeglasses in diffedit at strength 1" for the summary line."""
    where = {k: v if isinstance(v, str) else "its mask image" for k, v in regions.items()}
    default = OWN_MASK if mask is not False else "all"
    return "; ".join(f"{k} in {where.get(k, default)} at strength {strengths.get(k, strength):g}" for k in targets)


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


def output_paths(paths, image, out, flag="--out", keep_names=False):
    """One output path per input; ValueError for an unknown format or a clash with an input or between outputs.

    A folder of inputs gives OUT/NAME.png per image (keep_names: OUT/NAME.EXT, the input's own name).
    """
    out = Path(out)
    if Path(image).is_file():
        if out.is_dir():
            raise ValueError(f"{flag} {out} is a folder; for one --image give an output file such as edited.png")
        targets = [out]
    else:
        if out.exists() and not out.is_dir():
            raise ValueError(f"{flag} {out} is a file; for a folder --image give an output folder")
        if out.resolve() == Path(image).resolve():
            raise ValueError(f"{flag} {out} is the input folder; choose another folder so inputs are not overwritten")
        targets = [out / (p.name if keep_names else p.stem + ".png") for p in paths]
    inputs = {p.resolve() for p in paths}
    seen = {}
    for p, t in zip(paths, targets):
        fmt = Image.registered_extensions().get(t.suffix.lower())
        if fmt is None or fmt not in Image.SAVE:
            raise ValueError(f"{flag} {t}: cannot tell the image format from {t.suffix!r}; "
                             "end the name in .png (lossless) or .jpg")
        if t.resolve() in inputs:
            raise ValueError(f"{flag} {t} would overwrite the input image; choose another name")
        if t in seen:
            raise ValueError(f"{seen[t].name} and {p.name} would both be written to {t}; rename one of them")
        seen[t] = p
    return targets


def _each_image(paths, look, verb, skip_bad=False):
    """`look(path)` for every image before anything is written: [(path, its result)] of the images it takes.

    A ValueError of one image (unreadable, no face, a face too small) does not stop the others being looked
    at: the refusals are raised together, one ValueError naming every refused image, or with `skip_bad` (and
    some image left to `verb`) listed in a note on stderr and left out."""
    taken, refused = [], []
    for path in paths:
        try:
            taken.append((path, look(path)))
        except ValueError as err:
            refused.append((path, err))
    if not refused:
        return taken
    # each message says what is wrong before its first ": " and how to fix it after: keep the what
    what = "; ".join(str(err).split(": ")[0] for _, err in refused)
    if skip_bad and taken:
        print(f"note: skipped {len(refused)} of {len(paths)} images ({what}); {verb}ed the other {len(taken)}",
              file=sys.stderr)
        return taken
    hint = f"; or pass --skip-bad to {verb} the other {len(taken)} images" if taken else ""
    if len(refused) == 1:
        raise ValueError(f"{refused[0][1]}{hint}")
    raise ValueError(f"{len(refused)} of {len(paths)} images cannot be {verb}ed ({what}): replace or remove them{hint}")


def _frames(path):
    """The number of frames of an image file: more than 1 for an animation (GIF, APNG, WebP) or a multi-page TIFF.

    An MPO (a camera's JPEG with a preview or a stereo pair) counts as 1: its first frame is the photo."""
    with Image.open(path) as im:
        return 1 if im.format == "MPO" else getattr(im, "n_frames", 1)


def _tell(notes, rest):
    """The first 3 notes on stderr, then how many more there were ("{n} more {rest}")."""
    for note in notes[:3]:
        print(f"note: {note}", file=sys.stderr)
    if len(notes) > 3:
        print(f"note: {len(notes) - 3} more {rest}", file=sys.stderr)


def _located(paths, config, args, rows):
    """Pass 1, before anything is written: every image read and its faces framed, [(path, [FaceCrop])].

    Raises ValueError naming every image that is unreadable, has no face or a face too small to edit; with
    --skip-bad they are left out instead (`_each_image`)."""
    notes, animated = [], []

    def look(path):
        photo = read_photo(path, name=path.name)
        aligned = args.aligned or data.is_celeba_frame(*photo.size) or rows.row(path) is not None
        crops, note = frame_faces(photo.rgb, config.image_size, config.crop, name=path.name, aligned=aligned,
                                  all_faces=args.all_faces)
        notes.extend([note] if note else [])
        frames = _frames(path)
        if frames > 1:  # read_photo reads the first frame; an edited animation would need every frame edited alike
            animated.append(f"{path.name} has {frames} frames: edited its first frame only, written as a still image")
        return crops

    located = _each_image(paths, look, "edit", args.skip_bad)
    _tell(notes, "images had several faces")
    _tell(animated, "images have several frames: edited their first frame only")
    return located


def _groups(located):
    """Consecutive images whose faces add up to about BATCH: [(first, last + 1)]."""
    groups, start, count = [], 0, 0
    for i, (_, crops) in enumerate(located):
        count += len(crops)
        if count >= BATCH or i == len(located) - 1:
            groups.append((start, i + 1))
            start, count = i + 1, 0
    return groups


def _face_strip(x0, reconstruction, edited):
    """(3, n S, 3 S) uint8: per face a row of the aligned source, the reconstruction and the edit."""
    rows = [torch.cat([x, data.to_uint8(r), data.to_uint8(e)], 2) for x, r, e in zip(x0, reconstruction, edited)]
    return torch.cat(rows, 1)


def run_edit(args):
    """The `edit` command; see the module docstring. Returns the paths written."""
    if not args.set:
        raise ValueError("nothing to edit: give at least one --set NAME=0|1, e.g. --set Smiling=1")
    checkpoint = resolve(args.checkpoint)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model, config, _ = load_model(checkpoint, device=device)
    if not 1 <= args.steps <= config.T:
        raise ValueError(f"--steps {args.steps}: give between 1 and {config.T} DDIM steps (the model's T), e.g. "
                         "--steps 50")
    names = list(config.attributes)
    targets = parse_pairs(args.set, "--set", names, checkpoint)
    given = parse_pairs(args.source, "--source", names, checkpoint)
    if args.method != "ddib" and args.mask:
        raise ValueError(f"a mask applies to DDIB only; leave out --mask with --method {args.method}")
    strength, strengths = parse_strengths(args.strength, targets, default_strength(checkpoint))
    regions = parse_regions(args.region, targets, config.image_size)
    by_region = bool(regions or strengths)
    if by_region and args.method != "ddib":
        raise ValueError(f"region-wise editing (--region, --strength NAME=S) is DDIB's; leave out --method "
                         f"{args.method}")

    paths = image_paths(args.image)
    outputs = output_paths(paths, args.image, args.out)
    strips = output_paths(paths, args.image, args.face_out, "--face-out") if args.face_out else None
    if strips and set(strips) & set(outputs):
        raise ValueError(f"--face-out {args.face_out} would overwrite the edited photos of --out {args.out}; "
                         "give it another name")
    rows = DatasetRows()
    located = _located(paths, config, args, rows)
    if len(located) < len(paths):  # --skip-bad left some out
        kept = {path for path, _ in located}
        outputs = [o for p, o in zip(paths, outputs) if p in kept]
        strips = strips and [s for p, s in zip(paths, strips) if p in kept]
        paths = [p for p in paths if p in kept]
    face_paths = [path for path, crops in located for _ in crops]
    layouts = [layout_of(*read_photo(path).size) if c.score is None else "celeba" for path, crops in located
               for c in crops]  # where named regions lie: detected faces are aligned to CelebA's template
    x0 = torch.stack([c.x0 for _, crops in located for c in crops])  # (N faces, 3, S, S) uint8
    y_source, origin = source_states(face_paths, x0, config, given, args.classifier or judge_for(checkpoint), rows)
    y_target = set_attributes(y_source, names, targets)
    unchanged = int((y_target == y_source).all(1).sum())
    if unchanged:
        print(f"warning: {unchanged} of {len(face_paths)} faces already have {', '.join(args.set)}: their output is "
              "the photo unchanged", file=sys.stderr)

    editor = Editor(model, NoiseSchedule.named(config.schedule, config.T), args.steps, args.precision,
                    attribute_names=names, seed=args.seed)
    for target in outputs[:1] + (strips or [])[:1]:
        target.parent.mkdir(parents=True, exist_ok=True)
    # disable=None: a bar on a terminal only, none in logs; none for a single image
    bar = tqdm(total=len(paths), desc="edit", unit="image", disable=True if len(paths) == 1 else None)
    face = 0
    for first, last in _groups(located):
        n = sum(len(crops) for _, crops in located[first:last])
        faces = slice(face, face + n)
        changes = _changes(targets, strength, strengths, regions, args.mask, by_region, y_target[faces].to(device),
                           config.image_size, config.crop, layouts[faces])
        result = editor.edit(data.to_model_range(x0[faces]).to(device), y_source[faces].to(device), changes,
                             args.method, reconstruct=True)
        k = 0
        for (path, crops), i in zip(located[first:last], range(first, last)):
            part = slice(k, k + len(crops))
            picked = result.select(part)
            write_photo(paste_faces(read_photo(path), crops, picked), outputs[i])
            if strips:
                strip = _face_strip(x0[faces][part], picked.reconstruction, picked.edited)
                write_photo(Photo(strip), strips[i])
            k += len(crops)
        face += n
        bar.update(last - first)
    bar.close()

    change = ", ".join(f"{k}={v}" for k, v in targets.items())
    how = _describe(targets, strength, strengths, regions, args.mask) if by_region else f"strength {strength:g}"
    if len(paths) == 1:
        boxes = "; ".join(f"face at {', '.join(str(round(v)) for v in c.box)}" for c in located[0][1]
                          if c.score is not None) or "aligned image, no detection"
        print(f"wrote {outputs[0]} ({change}; {boxes}; source attributes: {origin[0]}; {args.method}, {how}; "
              f"{describe_precision(args.precision, device)})")
    else:
        print(f"wrote {len(outputs)} images to {Path(args.out)} ({len(face_paths)} faces; {change}; {args.method}, "
              f"{how}; {describe_precision(args.precision, device)})")
    return outputs + (strips or [])


def run_align(args):
    """The `align` command: each image's largest face in CelebA's aligned 178x218 frame. Returns the paths written."""
    paths = image_paths(args.image)
    outputs = output_paths(paths, args.image, args.out, keep_names=True)

    def look(path):
        rgb = read_photo(path, name=path.name).rgb
        found = detect(rgb)
        if not found:
            raise ValueError(f"no face found in {path.name} ({rgb.shape[2]}x{rgb.shape[1]}): give a photo with a "
                             "frontal face")
        if len(found) > 1:
            print(f"note: {path.name} has {len(found)} faces: aligned the largest", file=sys.stderr)
        if (frames := _frames(path)) > 1:
            print(f"note: {path.name} has {frames} frames: aligned its first frame only", file=sys.stderr)
        return refine(rgb, found[0].landmarks)

    aligned = _each_image(paths, look, "align", args.skip_bad)  # every face found before anything is written
    kept = {path for path, _ in aligned}  # --skip-bad may leave some out
    outputs = [o for p, o in zip(paths, outputs) if p in kept]
    outputs[0].parent.mkdir(parents=True, exist_ok=True)
    for (path, landmarks), out in zip(aligned, outputs):
        face, _ = align(read_photo(path).rgb, landmarks)
        write_photo(Photo(face), out)
    print(f"wrote {outputs[0]}" if len(outputs) == 1 else f"wrote {len(outputs)} aligned faces to {Path(args.out)}")
    return outputs
