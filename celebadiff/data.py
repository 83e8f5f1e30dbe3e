"""CelebA in its official on-disk layout, read without torchvision's integrity check.

A CelebA root folder needs exactly three things:

    img_align_celeba/000001.jpg ...   the aligned images (any subset of the release)
    list_attr_celeba.txt              line 1: row count, line 2: the 40 names, then `file  1 -1 ...`
    list_eval_partition.txt           `file  0|1|2` (train, valid, test)

torchvision's `CelebA` insists on all five files of the release with their MD5s and so refuses a
subset; here only these three are read. The built-in face set (`celebadiff.synthfaces`) is written
in the same layout, so one loader serves both.
"""

import difflib
import hashlib
import os
import warnings
from pathlib import Path

import torch
from PIL import Image, UnidentifiedImageError
from safetensors.torch import load_file, save_file
from torch.utils.data import Dataset
from torchvision.transforms.v2 import functional as TF

from .files import atomic_write

# The 40 attributes of CelebA, in the order of the official `list_attr_celeba.txt`.
CELEBA_ATTRIBUTES = (
    "5_o_Clock_Shadow", "Arched_Eyebrows", "Attractive", "Bags_Under_Eyes", "Bald", "Bangs",
    "Big_Lips", "Big_Nose", "Black_Hair", "Blond_Hair", "Blurry", "Brown_Hair", "Bushy_Eyebrows",
    "Chubby", "Double_Chin", "Eyeglasses", "Goatee", "Gray_Hair", "Heavy_Makeup", "High_Cheekbones",
    "Male", "Mouth_Slightly_Open", "Mustache", "Narrow_Eyes", "No_Beard", "Oval_Face", "Pale_Skin",
    "Pointy_Nose", "Receding_Hairline", "Rosy_Cheeks", "Sideburns", "Smiling", "Straight_Hair",
    "Wavy_Hair", "Wearing_Earrings", "Wearing_Hat", "Wearing_Lipstick", "Wearing_Necklace",
    "Wearing_Necktie", "Young",
)  # fmt: skip

# A face has one hair colour: setting one of these present sets the others absent, among the names a model
# or a data set has (the built-in faces draw the first three; `other_hair_colours`).
HAIR_COLOURS = ("Black_Hair", "Blond_Hair", "Brown_Hair", "Gray_Hair")

SPLITS = {"train": 0, "valid": 1, "test": 2}
IMAGE_DIR, ATTR_FILE, PARTITION_FILE = "img_align_celeba", "list_attr_celeba.txt", "list_eval_partition.txt"
HELP = "see the README's 'Getting CelebA' section"


def resolve_attributes(names, valid=CELEBA_ATTRIBUTES):
    """Check attribute names against `valid`; return them as a list (all of `valid` for None).

    Raises ValueError naming close matches and the valid names for any unknown name.
    """
    if names is None:
        return list(valid)
    names = [names] if isinstance(names, str) else list(names)
    for name in names:
        if name not in valid:
            close = difflib.get_close_matches(name, valid, n=3, cutoff=0.5)
            hint = f" did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
            raise ValueError(f"unknown attribute {name!r};{hint} valid names: {', '.join(valid)}")
    return names


def other_hair_colours(name, attribute_names):
    """The attributes of `attribute_names` that setting `name` present sets absent: the other hair colours
    (none for an attribute that is not a hair colour)."""
    if name not in HAIR_COLOURS:
        return []
    return [h for h in HAIR_COLOURS if h in attribute_names and h != name]


def _require(path):
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: a CelebA folder needs {IMAGE_DIR}/, {ATTR_FILE} "
                                f"and {PARTITION_FILE}; {HELP}")
    return path


def read_attribute_file(path):
    """Parse `list_attr_celeba.txt`.

    Returns:
        names: the attribute names of line 2, in file order.
        files: image file names, one per row.
        labels: (N, len(names)) int8 tensor of +1 / -1.
    """
    lines = _require(Path(path)).read_text().splitlines()
    if len(lines) < 2:
        raise ValueError(f"{path}: malformed attribute file: expected a count line and a names line")
    names = lines[1].split()
    files, rows = [], []
    for number, line in enumerate(lines[2:], start=3):
        fields = line.split()
        if not fields:
            continue
        values = fields[1:]
        if len(values) != len(names) or any(v not in ("1", "-1") for v in values):
            raise ValueError(f"{path}, line {number}: malformed attribute row {line.strip()[:80]!r}: "
                             f"expected a file name and {len(names)} values of 1 or -1")
        files.append(fields[0])
        rows.append([int(v) for v in values])
    return names, files, torch.tensor(rows, dtype=torch.int8).reshape(len(rows), len(names))


def read_partition_file(path):
    """Parse `list_eval_partition.txt` into {file name: 0 (train) | 1 (valid) | 2 (test)}."""
    partition = {}
    for number, line in enumerate(_require(Path(path)).read_text().splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 2 or fields[1] not in ("0", "1", "2"):
            raise ValueError(f"{path}, line {number}: malformed partition row {line.strip()[:80]!r}: "
                             "expected a file name and 0, 1 or 2")
        partition[fields[0]] = int(fields[1])
    return partition


def default_cache_dir():
    """Where decoded splits are cached: $CELEBADIFF_CACHE, else ~/.cache/celebadiff."""
    return Path(os.environ.get("CELEBADIFF_CACHE", Path.home() / ".cache" / "celebadiff"))


def load_image(path, size, crop=140):
    """Read one image and frame it as the DDPM/DDIM papers frame aligned CelebA (see `frame`).

    Returns a (3, size, size) uint8 tensor. A corrupt file raises ValueError naming it.
    """
    try:
        with Image.open(path) as im:
            image = TF.pil_to_tensor(im.convert("RGB"))
    except (UnidentifiedImageError, OSError) as err:
        raise ValueError(f"cannot read image {path}: {err}; replace the file or pass "
                         "skip_bad_images=True to leave its row out") from err
    return frame(image, size, crop)


CELEBA_WIDTH, CELEBA_HEIGHT = 178, 218  # CelebA's aligned frame


def is_celeba_frame(height, width, min_width=32):
    """True for CelebA's aligned aspect (178x218) at any scale, to the pixel (e.g. 89x109), from `min_width` up.

    The loader (`crop_side`), the editors (an aligned image is framed without face detection), the named
    regions (`regions.layout_of`) and the identity score (`identity.descriptors`) all tell aligned frames
    apart with this one test. A 1x1 image has the aspect too, to the pixel, but holds no face.
    """
    return width >= min_width and abs(height * CELEBA_WIDTH - width * CELEBA_HEIGHT) <= CELEBA_WIDTH


def crop_side(height, width, crop=140):
    """Side of the centre crop that frames an image, in its own pixels (a float where it scales).

    `crop` is given in pixels of a 178-pixel-wide aligned CelebA image, so on an image of CelebA's
    aspect (178:218, `is_celeba_frame`) it scales with the width: 140 of 178 px is 70 of 89 px. Other
    images (the built-in square faces) take `crop` pixels, at most their shorter side; None: whole.
    """
    if crop is None:
        return min(height, width)
    if is_celeba_frame(height, width) and width != CELEBA_WIDTH:
        crop = crop * width / CELEBA_WIDTH
    return min(crop, height, width)


def frame(image, size, crop=140):
    """Centre crop (`crop_side`) and antialiased resize of (3, H, W) or (N, 3, H, W) uint8 to side `size`.

    Where the crop's corner falls between pixels (the 70 px centre of a 109 px high image starts at
    row 19.5), the box is resampled at its exact sub-pixel place (PIL's resize with a box), so a
    half-size CelebA image frames like its original instead of half a pixel off.
    """
    H, W = image.shape[-2:]
    side = crop_side(H, W, crop)
    top, left = (H - side) / 2, (W - side) / 2
    if side == int(side) and top == int(top) and left == int(left):
        image = TF.center_crop(image, [int(side), int(side)])
        return TF.resize(image, [size, size], antialias=True)
    box = (left, top, left + side, top + side)
    resize = lambda im: TF.pil_to_tensor(TF.to_pil_image(im).resize((size, size), Image.BILINEAR, box=box))
    return resize(image) if image.dim() == 3 else torch.stack([resize(im) for im in image])


def to_model_range(images):
    """uint8 [0, 255] -> float [-1, 1]."""
    return images.float().div(127.5).sub(1.0)


def to_uint8(x):
    """float [-1, 1] -> uint8 [0, 255] (clamped)."""
    return x.add(1.0).mul(127.5).round().clamp(0, 255).to(torch.uint8)


class CelebADataset(Dataset):
    """Aligned CelebA (or any folder in its layout) as (image, labels) pairs.

    Args:
        root: folder holding img_align_celeba/, list_attr_celeba.txt, list_eval_partition.txt, or a
            list of such folders read as one data set (each row keeps its own folder; the attribute
            names must be the same in all).
        split: "train", "valid", "test" or "all".
        attributes: names to return, in this order (default: all 40, file order).
        size: output side in pixels; crop: centre-crop side before resizing, in pixels of a
            178-wide aligned CelebA image (140 is the standard framing; see `crop_side`).
        cache_dir: if set, the preprocessed split is stored there once as a uint8 safetensors file
            and later epochs (and later runs) skip JPEG decoding.
        skip_bad_images: leave out rows whose image is missing or unreadable, with a warning,
            instead of raising.

    Items: image (3, size, size) float in [-1, 1]; labels (A,) float 0/1.
    """

    def __init__(self, root, split="train", attributes=None, size=64, crop=140, cache_dir=None,
                 skip_bad_images=False):
        roots = [Path(r) for r in ([root] if isinstance(root, (str, os.PathLike)) else root)]
        if not roots:
            raise ValueError("no CelebA folder given; pass a folder or a list of folders")
        if split not in (*SPLITS, "all"):
            raise ValueError(f"unknown split {split!r}; choose one of train, valid, test, all")
        self.roots, self.root = roots, roots[0]
        self.size, self.crop, self.split = size, crop, split
        self.files, self.paths, rows = [], [], []
        for r in roots:
            names, files, labels = self._read_root(r, split)
            if rows and names != self.names:
                raise ValueError(f"{r / ATTR_FILE} names other attributes than {roots[0] / ATTR_FILE}; "
                                 "folders read together need the same attribute columns")
            self.names = names
            self.files += files
            self.paths += [r / IMAGE_DIR / f for f in files]
            rows.append(labels)
        if not self.files:
            where = " and ".join(str(r) for r in roots)
            raise ValueError(f"the {split!r} split of {where} is empty: {PARTITION_FILE} assigns no image to it "
                             f"(0 = train, 1 = valid, 2 = test); choose a split it has")
        self.attribute_names = resolve_attributes(attributes, valid=self.names)
        columns = [self.names.index(a) for a in self.attribute_names]
        self.labels = (torch.cat(rows)[:, columns] > 0).float()
        self._check_images(skip_bad_images)
        self.images = self._load_cache(cache_dir) if cache_dir else None

    @staticmethod
    def _read_root(root, split):
        """(attribute names, files of the split, (N, 40) +-1 labels) of one folder."""
        if not root.is_dir():
            raise FileNotFoundError(f"CelebA folder {root} not found; {HELP}")
        names, files, labels = read_attribute_file(root / ATTR_FILE)
        partition = read_partition_file(root / PARTITION_FILE)
        _require(root / IMAGE_DIR)
        keep = [i for i, f in enumerate(files) if split == "all" or partition.get(f) == SPLITS[split]]
        return names, [files[i] for i in keep], labels[keep]

    def _check_images(self, skip_bad_images):
        bad = [i for i, p in enumerate(self.paths) if not p.is_file()]
        if skip_bad_images:
            bad += [i for i, p in enumerate(self.paths) if p.is_file() and not _readable(p)]
        if not bad:
            return
        named = ", ".join(str(self.paths[i]) for i in bad[:5]) + (" ..." if len(bad) > 5 else "")
        if not skip_bad_images:
            raise FileNotFoundError(f"{len(bad)} attribute rows have no image: {named}; restore the "
                                    "files or pass skip_bad_images=True to leave those rows out")
        warnings.warn(f"skipping {len(bad)} rows whose image is missing or unreadable: {named}", stacklevel=3)
        keep = sorted(set(range(len(self.paths))) - set(bad))
        self.files = [self.files[i] for i in keep]
        self.paths = [self.paths[i] for i in keep]
        self.labels = self.labels[keep]

    def _load_cache(self, cache_dir):
        # the key changes when any file is replaced (size, mtime), so a stale cache is never read
        stats = [f"{p.name}:{st.st_size}:{st.st_mtime_ns}" for p in self.paths for st in [p.stat()]]
        roots = [str(r.resolve()) for r in self.roots]
        key = hashlib.sha1("\n".join([*stats, *roots]).encode()).hexdigest()[:12]
        # v2: sub-pixel framing of half-size images (`frame`); caches made before it are not read
        path = Path(cache_dir) / f"{self.split}_{self.size}px_crop{self.crop}_v2_{key}.safetensors"
        if path.exists():
            return load_file(path)["images"]
        images = torch.stack([load_image(p, self.size, self.crop) for p in self.paths])
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_write(path) as tmp:  # several processes (torchrun) may build it at once
            save_file({"images": images}, tmp)
        return images

    def __len__(self):
        return len(self.files)

    def image_uint8(self, index):
        """(3, size, size) uint8 image of row `index`."""
        if self.images is not None:
            return self.images[index]
        return load_image(self.paths[index], self.size, self.crop)

    def __getitem__(self, index):
        return to_model_range(self.image_uint8(index)), self.labels[index]


def _readable(path):
    try:
        with Image.open(path) as im:
            im.convert("RGB")
        return True
    except (UnidentifiedImageError, OSError):
        return False
