"""Editing your own photo: read it, find and align its faces, edit them, paste them back at full size.

    read_photo --> frame_faces (faces.detect, faces.align, data.frame) --> edit_faces (DDIB or SDEdit,
    plus the model's reconstruction) --> paste_faces (faces.paste_back) --> write_photo

`edit_faces` keeps each face's DDIM inversion and reconstruction in an `InversionCache`, so a
second edit of the same face (a slider moved in the editor) only runs the mask and the generation.
It is `editing.edit` taken apart at the seam between inversion and generation, and gives its
result to the bit. The CLI (`python -m celebadiff edit`), the editor and notebook 09 all call these.
"""

import hashlib
import os
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageOps, UnidentifiedImageError
from torchvision.transforms.v2 import functional as TF

from . import data, faces

# edit's own pieces (it recomputes the inversion on every call), so the result is edit's to the bit
from .editing import METHODS, check_mask, counting, edit, edit_direction, edit_mask, edit_plan, regenerate
from .sampling import ddim_invert, ddim_sample

JPEG_QUALITY = 95
DEEP = ("I;16", "I;16B", "I;16L", "I;16N", "I")  # PIL modes of 16-bit (grayscale) images


# --- reading and writing photos ----------------------------------------------------------------------

@dataclass
class Photo:
    """A photo, upright, at its own depth.

    pixels: (C, H, W), C = 3 (colour) or 1 (grayscale); uint8, or int32 in [0, 65535] for 16-bit images.
    peak: 255 or 65535. alpha: (H, W) like pixels, or None. icc: the colour profile to write back, or None.
    """

    pixels: torch.Tensor
    peak: int = 255
    alpha: torch.Tensor | None = None
    icc: bytes | None = None

    @property
    def rgb(self):
        """(3, H, W) uint8 RGB: what detection, alignment and the model see."""
        x = self.pixels if self.peak == 255 else (self.pixels.float() * (255 / self.peak)).round().to(torch.uint8)
        return x.expand(3, -1, -1).to(torch.uint8)

    @property
    def size(self):
        """(H, W)."""
        return tuple(self.pixels.shape[-2:])


def read_photo(path, name=None):
    """Read any image PIL reads as a `Photo`: EXIF orientation applied (phone photos), palette and bilevel
    images expanded, grayscale kept grayscale, alpha kept aside, 16-bit grayscale PNGs at 16 bits
    (PIL's own conversion to RGB would clip them to white).

    path: a file, or a binary file object (an upload) with `name` for messages. An unreadable file is a
    ValueError naming it.
    """
    try:
        with Image.open(path) as im:
            im = ImageOps.exif_transpose(im)
            icc = im.info.get("icc_profile")
            if im.mode in DEEP:
                array = np.asarray(im).astype(np.int32).clip(0, 65535)
                return Photo(torch.from_numpy(array)[None], 65535, None, icc)
            alpha = None
            if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
                im = im.convert("RGBA" if im.mode in ("RGBA", "P", "PA") else "LA")
                alpha = TF.pil_to_tensor(im.getchannel("A"))[0]
            gray = im.mode in ("1", "L", "LA", "F")
            pixels = TF.pil_to_tensor(im.convert("L" if gray else "RGB"))
            return Photo(pixels, 255, alpha, icc)
    except (UnidentifiedImageError, OSError, ValueError) as err:
        raise ValueError(f"cannot read image {name or path}: {err}; replace or remove the file") from err


def write_photo(photo, path, fmt=None):
    """Write a Photo through a temporary file and a rename (an interrupted write leaves nothing half-written).

    The mode follows the photo: grayscale stays grayscale (16-bit where the format is PNG), alpha is kept
    where the format has it; JPEGs are written at quality 95. fmt: PIL's format name (default: from the suffix).
    """
    path = Path(path)
    fmt = fmt or Image.registered_extensions().get(path.suffix.lower())
    if photo.peak != 255 and fmt == "PNG":
        picture = Image.fromarray(photo.pixels[0].cpu().numpy().astype(np.uint16))
    else:
        eight = photo.pixels if photo.peak == 255 else (photo.pixels.float() * (255 / photo.peak)).round()
        array = eight.to(torch.uint8).permute(1, 2, 0).cpu().numpy()
        picture = Image.fromarray(array[..., 0] if array.shape[-1] == 1 else array)
        if photo.alpha is not None and fmt in ("PNG", "WEBP", "TIFF"):
            picture.putalpha(Image.fromarray(photo.alpha.cpu().numpy().astype(np.uint8)))
    options = {"quality": JPEG_QUALITY} if fmt == "JPEG" else {}
    if photo.icc:
        options["icc_profile"] = photo.icc
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        picture.save(tmp, format=fmt, **options)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def draw_boxes(rgb, boxes, width=None, colour=(255, 220, 0)):
    """(3, H, W) uint8 with rectangle outlines at boxes [(x0, y0, x1, y1), ...], as a new tensor."""
    picture = Image.fromarray(rgb.permute(1, 2, 0).cpu().numpy())
    draw = ImageDraw.Draw(picture)
    width = width or max(2, round(max(picture.size) / 200))
    for box in boxes:
        draw.rectangle([round(v) for v in box], outline=colour, width=width)
    return TF.pil_to_tensor(picture)


# --- finding and framing faces ------------------------------------------------------------------------

@dataclass
class FaceCrop:
    """A face framed for the model: box (x0, y0, x1, y1) and score in the photo (score None: not
    detected, the image was taken as aligned), to_model (3, 3) photo pixels -> model frame, x0 (3, S, S) uint8."""

    box: tuple
    score: float | None
    to_model: torch.Tensor
    x0: torch.Tensor


def is_celeba_frame(height, width, min_width=32):
    """True for CelebA's aligned aspect (178x218) at any scale from min_width up, e.g. 89x109 (a 1x1 image
    has that aspect too, to the pixel, but holds no face)."""
    return width >= min_width and abs(height * data.CELEBA_WIDTH - width * data.CELEBA_HEIGHT) <= data.CELEBA_WIDTH


def frame_faces(rgb, size, crop=140, name="the image", aligned=False, all_faces=False, min_face=faces.MIN_FACE):
    """The faces of a photo, framed for the model, and a note for the user (or None).

    Args:
        rgb: (3, H, W) uint8 photo. size, crop: the model's image_size and crop.
        aligned: the image is already framed like the training data (aligned CelebA at any scale, or a
            built-in face): frame it exactly as the loader does, without detection.
        all_faces: every face of at least min_face px, largest first; else the largest face only.
    Raises:
        ValueError naming `name` when there is no face, or when the largest face is under min_face px.
    """
    H, W = rgb.shape[-2:]
    if aligned:
        side = data.crop_side(H, W, crop)
        left, top = (W - side) / 2, (H - side) / 2
        return [FaceCrop((left, top, left + side, top + side), None, faces.frame_transform(H, W, size, crop),
                         data.frame(rgb, size, crop))], None
    found = faces.detect(rgb)
    if not found:
        raise ValueError(f"no face found in {name} ({W}x{H}): give a photo with a face, frontal and at least "
                         f"{min_face} px wide (an aligned CelebA image of 178x218 needs no detection)")
    if found[0].size < min_face:
        raise ValueError(f"the face in {name} is too small to edit: {found[0].size:.0f} px, the minimum is "
                         f"{min_face} px; use a larger photo or one taken closer")
    big = [f for f in found if f.size >= min_face]
    chosen = big if all_faces else big[:1]
    note = None
    if len(found) > 1 and not all_faces:
        note = f"{name} has {len(found)} faces: edited the largest; pass --all-faces to edit all of them"
    elif len(big) < len(found):
        note = f"{name}: {len(found) - len(big)} of {len(found)} faces are under {min_face} px; left as they are"
    to_frame = faces.frame_transform(data.CELEBA_HEIGHT, data.CELEBA_WIDTH, size, crop)
    crops = []
    for face in chosen:
        aligned_face, T = faces.align(rgb, faces.refine(rgb, face.landmarks))
        crops.append(FaceCrop(face.box, face.score, to_frame @ T, data.frame(aligned_face, size, crop)))
    return crops, note


# --- editing, with the inversion kept ----------------------------------------------------------------------

class InversionCache:
    """DDIM inversions (trajectories) and reconstructions of the last `size` face batches, keyed on the
    model, the faces' pixels, their source attributes and the steps."""

    def __init__(self, size=4):
        self.size, self.entries = size, OrderedDict()

    @staticmethod
    def key(model, x0, y_source, steps):
        digest = hashlib.sha1(x0.detach().cpu().contiguous().numpy().tobytes())
        digest.update(y_source.cpu().contiguous().numpy().tobytes())
        return id(model), steps, tuple(x0.shape), digest.hexdigest()

    def get(self, key):
        if key in self.entries:
            self.entries.move_to_end(key)
            return self.entries[key]
        return {}

    def put(self, key, entry):
        self.entries[key] = entry
        self.entries.move_to_end(key)
        while len(self.entries) > self.size:
            self.entries.popitem(last=False)


@dataclass
class FaceEdit:
    """What `edit_faces` returns: edited, reconstruction (B, 3, S, S) about [-1, 1] (None when not asked
    for), mask (B, 1, S, S) where the edit acted or None (no mask: the whole face), inversion_cached."""

    edited: torch.Tensor
    reconstruction: torch.Tensor | None
    mask: torch.Tensor | None
    inversion_cached: bool

    def select(self, index):
        """The edits of faces[index] (a slice), on the CPU."""
        pick = lambda x: None if x is None else x[index].cpu()
        return FaceEdit(pick(self.edited), pick(self.reconstruction), pick(self.mask), self.inversion_cached)


@torch.no_grad()
def edit_faces(model, schedule, x0, y_source, y_target=None, method="ddib", strength=1.0, attribute_strength=None,
               steps=50, seed=0, mask=None, mask_t=0.5, mask_threshold=0.1, mask_draws=4, reconstruct=True,
               cache=None, callback=None):
    """`editing.edit`, plus the model's reconstruction of the faces, reusing a cached DDIM inversion.

    Args are `editing.edit`'s; x0 (B, 3, S, S) in [-1, 1]. reconstruct: also return the reconstruction
    (DDIB: DDIM from x_T under y_source; SDEdit: SDEdit under y_source with the same seed), the base the
    change `edited - reconstruction` is measured from. cache: an InversionCache, or None.
    callback(done, total) counts model evaluations.
    Returns:
        a FaceEdit; `edited` equals `editing.edit(...)` with the same arguments.
    """
    if method == "sdedit":  # nothing to cache: SDEdit has no inversion
        kwargs = dict(method="sdedit", steps=steps, seed=seed, mask=False if mask is None else mask, callback=callback)
        edited = edit(model, schedule, x0, y_source, y_target, strength=strength, attribute_strength=attribute_strength,
                      **kwargs)
        reconstruction = edit(model, schedule, x0, y_source, None, **kwargs) if reconstruct else None
        return FaceEdit(edited, reconstruction, None, False)
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    if isinstance(mask, torch.Tensor):
        mask = check_mask(mask, x0)
    elif mask is None:
        mask = True
    target, attribute_w, changed = edit_plan(y_source, y_target, strength, attribute_strength)
    acted = None  # where the edit acted, when not where the mask says
    if mask is True and not changed.any():
        mask = False  # as edit: nothing to change, the plain DDIB edit (the reconstruction)
        acted = torch.zeros_like(x0[:, :1])
    key = InversionCache.key(model, x0, y_source, steps) if cache is not None else None
    entry = dict(cache.get(key)) if cache is not None else {}
    cached = "trajectory" in entry
    # the mask depends on the direction of the edit, not on its strength (edit_mask): a moved slider reuses it
    mask_key = (_digest(*edit_direction(y_source, y_target, strength, attribute_strength)[:3]), mask_t,
                mask_threshold, mask_draws, seed)
    masks = dict(entry.get("masks", {}))
    total = (0 if cached else steps) + (steps if reconstruct and "reconstruction" not in entry else 0) \
        + (2 * mask_draws if mask is True and mask_key not in masks else 0) + steps
    counted = counting(model, callback, total) if callback else model
    if not cached:
        entry["trajectory"] = ddim_invert(counted, schedule, x0, y_source, steps=steps, return_trajectory=True)
    trajectory = entry["trajectory"]
    if reconstruct and "reconstruction" not in entry:
        entry["reconstruction"] = ddim_sample(counted, schedule, trajectory[-1], y_source, steps=steps)
    if mask is True:
        if mask_key not in masks:
            masks[mask_key] = edit_mask(counted, schedule, x0, y_source, y_target, strength, attribute_strength,
                                        mask_t=mask_t, threshold=mask_threshold, draws=mask_draws, seed=seed)
        mask = masks[mask_key]
    entry["masks"] = masks
    if cache is not None:
        cache.put(key, entry)
    edited = regenerate(counted, schedule, trajectory, y_source, y_target, strength, attribute_strength, mask, steps)
    if acted is None:
        acted = None if mask is False else mask
    return FaceEdit(edited, entry.get("reconstruction"), acted, cached)


def _digest(*tensors):
    """A hashable digest of tensors' values (None allowed), for cache keys."""
    h = hashlib.sha1()
    for x in tensors:
        h.update(b"-" if x is None else x.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def paste_faces(photo, crops, result):
    """The photo with every face's change (`result.edited - result.reconstruction`) pasted back (`faces.paste_back`)."""
    pixels = photo.pixels
    for i, crop in enumerate(crops):
        mask = None if result.mask is None else result.mask[i].cpu()
        pixels = faces.paste_back(pixels, result.reconstruction[i].cpu(), result.edited[i].cpu(), crop.to_model, mask,
                                  peak=photo.peak)
    return Photo(pixels, photo.peak, photo.alpha, photo.icc)

