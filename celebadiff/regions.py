"""Regions for region-wise editing: named parts of the face, mask images, and the edit behind the CLI and editor.

A region is a (1, 1, S, S) map in [0, 1] over the face as the model sees it (the S x S model frame, the
first panel of `edit --face-out`): 1 where an attribute's change may act, 0 where the face is kept.

    named_region("mouth", S)   mouth, eyes, hair, face, all: fixed shapes placed from the landmark
                               template (`faces.TEMPLATE`), the same for every aligned face
    read_region("m.png", S)    a mask image: white = may change, black = keep (grey: in between), any
                               size, resized (antialiased) to S x S; colour is read as its luminance
    region_edit_faces(...)     `editing.edit_regions` with every region made explicit (a change without
                               one gets its own DiffEdit mask), plus the reconstruction for paste-back

The edit itself (module docstring of `celebadiff.editing`):

    eps_regions = eps(x_t | y_source) + sum_k s_k M_k (eps(x_t | y_k) - eps(x_t | y_source))
"""

from pathlib import Path

import torch
from PIL import Image, UnidentifiedImageError
from torchvision.transforms.v2 import functional as TF

from . import synthfaces
from .data import CELEBA_HEIGHT, CELEBA_WIDTH
from .editing import counting, edit_regions, masks_to_measure
from .faces import TEMPLATE, apply, frame_transform
from .photo import FaceEdit, is_celeba_frame
from .sampling import ddim_invert, ddim_sample

REGIONS = ("mouth", "eyes", "hair", "face", "all")  # named regions; "diffedit": the change's own mask
OWN_MASK = "diffedit"
LAYOUTS = ("celeba", "builtin")


def _builtin_template():
    """The built-in faces' 5 landmarks ((x, y) as fractions of the image, left eye first, as in TEMPLATE),
    from the renderer's geometry: face units span [-1, 1], the face frame is centred at (0, FACE_CY) and
    magnified SCALE times; the mid-range eye spacing and mouth width."""
    eye_x, mouth_x = 0.19 * synthfaces.SCALE, 0.145 * synthfaces.SCALE
    y = lambda v: synthfaces.FACE_CY + synthfaces.SCALE * v
    points = ((-eye_x, y(synthfaces.EYE_Y)), (eye_x, y(synthfaces.EYE_Y)), (0.0, y(synthfaces.NOSE_Y)),
              (-mouth_x, y(synthfaces.MOUTH_Y)), (mouth_x, y(synthfaces.MOUTH_Y)))
    return torch.tensor(points).add(1).div(2)


def layout_of(height, width):
    """The face layout of an image framed as the loader frames it: "celeba" for CelebA's aligned aspect at
    any scale (and for photos, which are aligned to it), "builtin" for any other (the built-in square faces,
    framed whole)."""
    return "celeba" if is_celeba_frame(height, width) else "builtin"


def _template(size, crop, layout):
    """The 5 landmarks in the model frame (5, 2) and the distance between the eyes."""
    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}; choose one of {', '.join(LAYOUTS)}")
    if layout == "celeba":
        q = apply(frame_transform(CELEBA_HEIGHT, CELEBA_WIDTH, size, crop), TEMPLATE).float()
    else:
        q = _builtin_template() * size
    return q, (q[1] - q[0]).norm()


def _ellipse(size, centre, half_width, half_height):
    ys, xs = torch.meshgrid(torch.arange(size) + 0.5, torch.arange(size) + 0.5, indexing="ij")
    return ((((xs - centre[0]) / half_width) ** 2 + ((ys - centre[1]) / half_height) ** 2) <= 1).float()


def named_region(name, size, crop=140, layout="celeba"):
    """A named region of the model frame, (1, 1, size, size) 0/1.

    layout: where the landmarks lie: "celeba" (`faces.TEMPLATE`: aligned CelebA and aligned photos) or
    "builtin" (the renderer's geometry); `layout_of` tells them apart. In eye distances d from them:
    mouth, an ellipse 0.8 d by 0.5 d (half axes) round the mouth corners' midpoint, a little below it
    (an open mouth and the smile lines); eyes, 1.05 d by 0.42 d round the eyes' midpoint (lenses, frames,
    brows); face, `faces.face_region`'s ellipse (1.3 d by 1.7 d); hair, everything outside the face
    ellipse (hair, hat and background: there is no hair landmark); all, the whole frame.
    """
    if name not in REGIONS:
        raise ValueError(f"unknown region {name!r}; choose one of {', '.join(REGIONS)}")
    q, d = _template(size, crop, layout)
    face = _ellipse(size, q.mean(0) + torch.tensor([0.0, 0.1]) * d, 1.3 * d, 1.7 * d)  # as faces.face_region
    if name == "mouth":
        region = _ellipse(size, (q[3] + q[4]) / 2 + torch.tensor([0.0, 0.15]) * d, 0.8 * d, 0.5 * d)
    elif name == "eyes":
        region = _ellipse(size, (q[0] + q[1]) / 2 - torch.tensor([0.0, 0.08]) * d, 1.05 * d, 0.42 * d)
    elif name == "face":
        region = face
    elif name == "hair":
        region = 1 - face
    else:
        region = torch.ones(size, size)
    return region[None, None]


def read_region(path, size, flag="--region"):
    """A mask image as a region (1, 1, size, size) in [0, 1]: white = may change, black = keep.

    Any size (resized, antialiased, to size x size; a non-square image is stretched), any mode PIL reads
    (colour: its luminance; an alpha channel is ignored). FileNotFoundError / ValueError name the file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{flag}: mask image {path} not found; give a mask image (white = may change, black = "
                                f"keep), or one of the regions {', '.join(REGIONS)}, {OWN_MASK}")
    try:
        with Image.open(path) as im:
            gray = TF.pil_to_tensor(im.convert("L"))  # (1, h, w) uint8
    except (UnidentifiedImageError, OSError, ValueError) as err:
        raise ValueError(f"{flag}: cannot read mask image {path} ({err}); give a PNG, white = may change") from err
    # resized as 8-bit, so that pure white stays exactly 1 and pure black exactly 0
    return TF.resize(gray[None], [size, size], antialias=True).float() / 255


def region_of(spec, size, crop=140, layout="celeba", flag="--region"):
    """A region from its text: a REGIONS name, OWN_MASK (None: the change's own DiffEdit mask), or a mask file."""
    if spec == OWN_MASK:
        return None
    if spec in REGIONS:
        return named_region(spec, size, crop, layout)
    return read_region(spec, size, flag)


@torch.no_grad()
def region_edit_faces(model, schedule, x0, y_source, changes, attribute_names, steps=50, seed=0, mask_t=0.5,
                      mask_threshold=0.1, mask_draws=4, reconstruct=True, callback=None):
    """`editing.edit_regions` on faces, as a `photo.FaceEdit` that `photo.paste_faces` can paste back.

    Args:
        x0: (B, 3, S, S) in [-1, 1]; y_source: (B, A) states; changes: `edit_regions`' (attribute, value,
            strength, region) tuples; a region None is the change's own DiffEdit mask (`edit_mask` with
            mask_t, mask_threshold, mask_draws, seed).
        reconstruct: also return the DDIM reconstruction (the base of the pasted change).
        callback(done, total): counts every model evaluation.
    Returns:
        FaceEdit: edited (equal to `edit_regions(...)` with the same changes), reconstruction or None,
        mask = the union of the regions that act (B, 1, S, S), where the edit may have changed the face.
    """
    # one inversion serves the edit and the reconstruction
    total = steps * (3 if reconstruct else 2) + 2 * mask_draws * masks_to_measure(changes)
    counted = counting(model, callback, total) if callback else model
    trajectory = ddim_invert(counted, schedule, x0, y_source, steps=steps, return_trajectory=True)
    edited, union = edit_regions(counted, schedule, x0, y_source, changes, attribute_names, steps=steps, mask_t=mask_t,
                                 mask_threshold=mask_threshold, mask_draws=mask_draws, seed=seed,
                                 trajectory=trajectory, return_union=True)
    reconstruction = ddim_sample(counted, schedule, trajectory[-1], y_source, steps=steps) if reconstruct else None
    return FaceEdit(edited, reconstruction, union, False)
