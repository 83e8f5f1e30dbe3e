"""Editing your own photo: read it, find and align its faces, paste the edited faces back at full size.

    read_photo --> frame_faces (faces.detect, faces.align, data.frame) --> editing.Editor.edit (DDIB or
    SDEdit, plus the model's reconstruction) --> paste_faces (faces.paste_back) --> write_photo

The edit in the middle is the `Editor`'s, which keeps each face's DDIM inversion, so a second edit of
the same face (a slider moved in the editor) only runs the generation. The CLI (`python -m celebadiff
edit`), the editor and notebook 09 all call these.
"""

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageOps, UnidentifiedImageError
from torchvision.transforms.v2 import functional as TF

from . import data, faces
from .files import atomic_write

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
    with atomic_write(path) as tmp:
        picture.save(tmp, format=fmt, **options)


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


def frame_faces(rgb, size, crop=140, name="the image", aligned=False, all_faces=False, min_face=faces.MIN_FACE):
    """The faces of a photo, framed for the model, and a note for the user (or None).

    Args:
        rgb: (3, H, W) uint8 photo. size, crop: the model's image_size and crop.
        aligned: the image is already framed like the training data (aligned CelebA at any scale,
            `data.is_celeba_frame`, or a built-in face): frame it exactly as the loader does, without detection.
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


# --- pasting edits back ---------------------------------------------------------------------------------

def paste_faces(photo, crops, result):
    """The photo with every face's change (`result.edited - result.reconstruction`) pasted back (`faces.paste_back`).

    result: the `editing.FaceEdit` of the crops' faces, in their order, with its reconstruction."""
    pixels = photo.pixels
    for i, crop in enumerate(crops):
        mask = None if result.mask is None else result.mask[i].cpu()
        pixels = faces.paste_back(pixels, result.reconstruction[i].cpu(), result.edited[i].cpu(), crop.to_model, mask,
                                  peak=photo.peak)
    return Photo(pixels, photo.peak, photo.alpha, photo.icc)

