"""Write-the-code exercises of notebook 09 (your own photo): Umeyama's similarity transform, the loader's
framing as a matrix, and pasting an edit's change back into the photo.

Each `check_*` takes the student's function and returns True, False or None (`check_function`).
"""

import math

import torch

from ..faces import TEMPLATE, frame_transform, similarity_transform
from . import check_function


def _rotation(angle):
    c, s = math.cos(angle), math.sin(angle)
    return torch.tensor([[c, -s], [s, c]], dtype=torch.float64)


def _landmark_case(g, kind):
    """Landmarks src of a face turned, scaled and moved, with detector noise, and the template dst.
    kind "mirrored": src is a mirror image (left and right swapped), where the best fit with a
    reflection allowed is a reflection, but an alignment must stay a rotation."""
    dst = torch.tensor(TEMPLATE, dtype=torch.float64)
    angle, scale = float(torch.randn((), generator=g)) * 0.4, 0.5 + 2 * float(torch.rand((), generator=g))
    src = (dst - dst.mean(0)) @ _rotation(angle).T * scale + 300 * torch.rand(2, generator=g, dtype=torch.float64)
    if kind == "mirrored":
        src[:, 0] = -src[:, 0] + 2 * src[:, 0].mean()
    src += 2.0 * torch.randn(src.shape, generator=g, dtype=torch.float64)  # a detector is off by pixels
    return (src, dst), similarity_transform(src, dst)


def check_similarity_transform(fn, seed=None):
    """fn(src, dst) -> (3, 3) float64: the least-squares similarity T(p) = s R p + t (R a rotation, no
    reflection) taking points src (N, 2) to dst (N, 2), Umeyama 1991 (`celebadiff.faces` docstring)."""
    kinds = iter(("turned", "mirrored", "turned"))
    return check_function(fn, lambda g: _landmark_case(g, next(kinds)), seed=seed,
                          reference="celebadiff.faces.similarity_transform", hint=(
        "centre both point sets; the SVD of Sigma = mean (q_i - mu_q)(p_i - mu_p)^T gives U D V^T; R = U V^T "
        "is a reflection when det(U V^T) = -1, which a face's alignment must never be: flip the sign of the "
        "last singular direction there, in R and in the scale's trace alike; t moves mu_p onto mu_q"))


def _frame_case(g, kind):
    if kind == "half":
        height, width = 109, 89  # a half-size aligned CelebA image: the crop starts between pixels
    elif kind == "celeba":
        k = int(torch.randint(1, 4, (), generator=g))
        height, width = 218 * k, 178 * k
    else:
        height, width = (int(v) for v in torch.randint(40, 120, (2,), generator=g))
    size = 32 * int(torch.randint(1, 3, (), generator=g))
    return (height, width, size, 140), frame_transform(height, width, size, 140)


def check_frame_transform(fn, seed=None):
    """fn(height, width, size, crop) -> (3, 3): the map from an image's pixels to the model frame that
    `data.frame` makes, the centre square of side c = data.crop_side(height, width, crop) scaled to `size`:
    q = k (p - (left, top)), k = size / c, left = (W - c) / 2, top = (H - c) / 2, unrounded."""
    kinds = iter(("half", "celeba", "other"))
    return check_function(fn, lambda g: _frame_case(g, next(kinds)), seed=seed,
                          reference="celebadiff.faces.frame_transform",
                          hint=("a matrix acting on [x, y, 1]: the first row gives x, the second y; the "
                                "scale maps the crop's c pixels onto `size` pixels; the corner may fall between "
                                "pixels (19.5 rows down on a 109 px image): do not round it; use float64"))


def _paste_case(g):
    H, W = 10, 12
    photo = torch.randint(0, 256, (3, H, W), generator=g, dtype=torch.uint8)
    photo[:, :2] = 250  # bright rows, where a positive change overflows 255
    source = torch.rand(3, H, W, generator=g, dtype=torch.float64) * 2 - 1
    edit = (source + 0.4 * torch.randn(3, H, W, generator=g, dtype=torch.float64)).clamp(-1, 1)
    edit[:, :2] = source[:, :2] + 0.5
    weight = torch.rand(H, W, generator=g, dtype=torch.float64) * (torch.rand(H, W, generator=g) < 0.7)
    out = (photo.double() + weight * (edit - source) * 127.5).round().clamp(0, 255).to(torch.uint8)
    return (photo, source, edit, weight), out


def check_paste(fn, seed=None):
    """fn(photo, source, edit, weight) -> (3, H, W) uint8: the photo plus the edit's CHANGE, weighted,
    out = photo + w (edit - source) 255 / 2, rounded and kept in [0, 255] (faces.paste_back, in the photo's
    pixels already); photo (3, H, W) uint8, source and edit (3, H, W) in [-1, 1], weight (H, W) in [0, 1]."""
    return check_function(fn, _paste_case, seed=seed, reference="the sum of celebadiff.faces.paste_back", hint=(
        "add the change edit - source, not the edit itself, so that the photo's own detail survives; a change "
        "in [-1, 1] units is 255 / 2 pixel values per unit; do the sum in float, then round and clamp before "
        "uint8, which would wrap 256 to 0; where w = 0 the photo comes back bit for bit"))
