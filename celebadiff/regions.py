"""Regions for region-wise editing: named parts of the face and mask images.

A region is a (1, 1, S, S) map in [0, 1] over the face as the model sees it (the S x S model frame, the
first panel of `edit --face-out`): 1 where an attribute's change may act, 0 where the face is kept.

    named_region("mouth", S)   mouth, eyes, hair, face, all: fixed shapes placed from the landmark
                               template (`faces.TEMPLATE`), the same for every aligned face
    read_region("m.png", S)    a mask image: white = may change, black = keep (grey: in between), any
                               size, resized (antialiased) to S x S; colour is read as its luminance
    region_for(spec, S)        either of them from its text, or None for "diffedit": the change's own
                               DiffEdit mask; what `edit --region` and the editor's region menus give

The edit itself (`editing.Editor.generate`, module docstring of `celebadiff.editing`):

    eps_regions = eps(x_t | y_source) + sum_k s_k M_k (eps(x_t | y_k) - eps(x_t | y_source))
"""

from pathlib import Path

import torch
from PIL import Image, UnidentifiedImageError
from torchvision.transforms.v2 import functional as TF

from . import synth_drawing
from .data import CELEBA_HEIGHT, CELEBA_WIDTH, is_celeba_frame
from .faces import TEMPLATE, apply, frame_transform

REGIONS = ("mouth", "eyes", "hair", "face", "all")  # named regions; "diffedit": the change's own mask
OWN_MASK = "diffedit"
LAYOUTS = ("celeba", "builtin")


def _builtin_template():
    """The built-in faces' 5 landmarks ((x, y) as fractions of the image, left eye first, as in TEMPLATE),
    from the renderer's geometry: face units span [-1, 1], the face frame is centred at (0, FACE_CY) and
    magnified SCALE times; the mid-range eye spacing and mouth width."""
    eye_x, mouth_x = 0.19 * synth_drawing.SCALE, 0.145 * synth_drawing.SCALE
    y = lambda v: synth_drawing.FACE_CY + synth_drawing.SCALE * v
    points = ((-eye_x, y(synth_drawing.EYE_Y)), (eye_x, y(synth_drawing.EYE_Y)), (0.0, y(synth_drawing.NOSE_Y)),
              (-mouth_x, y(synth_drawing.MOUTH_Y)), (mouth_x, y(synth_drawing.MOUTH_Y)))
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


def region_for(spec, size, crop=140, layouts=("celeba",), flag="--region"):
    """The region a spec names, for faces of the given layouts (`layout_of`), one per face.

    spec: OWN_MASK ("diffedit"): None, the change's own DiffEdit mask; a REGIONS name: its `named_region` on
    each face, (len(layouts), 1, size, size); a tensor: itself (a mask read before); else a mask file
    (`read_region`, (1, 1, size, size)). FileNotFoundError / ValueError name `flag` and the file.
    """
    if isinstance(spec, torch.Tensor):
        return spec
    if spec == OWN_MASK:
        return None
    if spec in REGIONS:
        return torch.cat([named_region(spec, size, crop, layout) for layout in layouts])
    return read_region(spec, size, flag)


def region_changes(changes, size, crop=140, layouts=("celeba",)):
    """Changes (attribute, value, strength, spec) with each spec made its region (`region_for`): what
    `editing.Editor.generate` takes."""
    return [(name, value, strength, region_for(spec, size, crop, layouts)) for name, value, strength, spec in changes]
