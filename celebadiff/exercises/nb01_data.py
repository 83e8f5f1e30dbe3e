"""Write-the-code exercises of notebook 01 (the data): a row of CelebA's attribute file, the way back
from the model's range to 8-bit pixels, and the region an attribute flip changes.

Each `check_*` takes the student's function and returns True, False or None (`check_function`).
"""

import torch

from ..data import CELEBA_ATTRIBUTES, to_model_range, to_uint8
from . import check_function


def _attribute_row(g):
    """A random line of list_attr_celeba.txt, laid out as the file is, and what it holds."""
    A = int(torch.randint(6, 15, (), generator=g))
    names = [CELEBA_ATTRIBUTES[i] for i in torch.randperm(len(CELEBA_ATTRIBUTES), generator=g)[:A]]
    signs = torch.randint(0, 2, (A,), generator=g) * 2 - 1  # +1 / -1
    file = f"{int(torch.randint(1, 202_600, (), generator=g)):06d}.jpg"
    line = f"{file} " + " ".join(f"{int(s):>2}" for s in signs)  # " 1" and "-1": columns line up
    wanted_at = torch.randperm(A, generator=g)[:max(2, A // 2)].tolist()  # a subset, in another order
    labels = torch.tensor([float(signs[i] > 0) for i in wanted_at])
    return (line, names, [names[i] for i in wanted_at]), (file, labels)


def check_parse_attribute_row(fn, seed=None):
    """fn(line, names, wanted) -> (file name, labels (len(wanted),) float 0/1 in the order of `wanted`).

    `line` is one row of list_attr_celeba.txt ("000001.jpg -1  1 ..."), `names` the file's attribute
    names (its line 2), `wanted` the attributes to keep. y = 1 where the sign is +1.
    """
    return check_function(fn, _attribute_row, seed=seed, reference="the signs the row was written from", hint=(
        "the columns are separated by runs of spaces (a '1' is written ' 1'); the k-th sign belongs to "
        "names[k], so look each wanted name up in names; CelebA writes +1 / -1 where the model wants 1 / 0"))


def _model_range_images(g):
    """Images in about [-1, 1] as a model outputs them: a little past both ends, and exact 8-bit values."""
    x = torch.rand(2, 3, 8, 8, generator=g) * 2.2 - 1.1  # overshoots by up to 0.1 either way
    x[1] = to_model_range(torch.randint(0, 256, (3, 8, 8), generator=g, dtype=torch.uint8))
    return (x,), to_uint8(x)


def check_to_uint8(fn, seed=None):
    """fn(x) -> uint8: x (B, 3, H, W) float in about [-1, 1] back to 8-bit pixels, the inverse of
    u / 127.5 - 1, to the nearest integer, values outside [-1, 1] saturating at 0 and 255."""
    return check_function(fn, _model_range_images, seed=seed, reference="celebadiff.data.to_uint8", hint=(
        "invert x = u / 127.5 - 1; `.to(torch.uint8)` truncates and wraps around (256 becomes 0), "
        "so round and keep the values inside [0, 255] before converting"))


def _flipped_render(g):
    """A random uint8 image and a copy with a patch changed, some pixels in one colour channel only."""
    H, W = (int(v) for v in torch.randint(12, 24, (2,), generator=g))
    before = torch.randint(0, 256, (H, W, 3), generator=g, dtype=torch.uint8)
    after = before.clone()
    top, left = (int(v) for v in torch.randint(0, 6, (2,), generator=g))
    patch = after[top:top + 6, left:left + 8]
    patch[..., 0] = 255 - patch[..., 0]  # every patch pixel changes in red ...
    patch[::2, :, 1:] = 255 - patch[::2, :, 1:]  # ... every other row in all three (255 - v != v)
    return (before, after), (before != after).any(-1)


def check_changed_region(fn, seed=None):
    """fn(before, after) -> (H, W) bool: the pixels of two (H, W, 3) uint8 renders that differ in any
    colour channel (the region an attribute flip owns, notebook 01 section 6)."""
    return check_function(fn, _flipped_render, seed=seed, reference="the pixels the check changed", hint=(
        "a pixel has changed when at least one of its three channels has; reduce over the last dim "
        "(colour) with the right one of any / all, and return one bool per pixel, (H, W)"))
