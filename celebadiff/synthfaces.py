"""The built-in face set: flat-shaded cartoon faces with exact counterfactuals, in CelebA's layout.

Why it exists: CelebA cannot be downloaded everywhere (Google Drive quotas, offline CI), and real
photos have no ground truth for an edit. Here every image is a pure function
`render(identity, attributes, size)`: all randomness lives in the identity (face shape, skin, eyes,
hair style, background, pose), never in the attributes, so re-rendering an identity with one
attribute flipped gives the exact image an ideal edit would produce, and edits can be scored by PSNR
against it. Images are smooth anti-aliased shapes (signed distances through a smoothstep,
composited back to front) with no noise or texture, so a small diffusion model learns them on a CPU.

Drawn attributes (`DRAWN`) and the only pixels each one changes:

    Smiling               mouth: a wide upturned crescent showing teeth, smile lines at its corners
    Mouth_Slightly_Open   mouth: dark interior with a row of upper teeth
    Wearing_Lipstick      lips only: bright red instead of the skin-derived lip colour
    Eyeglasses            eye band: dark frames, bridge, arms to the face edge, lightly tinted lenses
    Male                  hair (short cap instead of long hair to the shoulders), stubble shadow on
                          the jaw, thicker eyebrows
    Black/Blond/Brown_Hair  hair colour only (at most one; none = the identity's grey or auburn)
    Bangs                 a scalloped fringe over the forehead
    Wearing_Hat           top of the head: a crown over the hair top and a brim, in green to purple
    Pale_Skin             skin pixels (face, neck, lips without lipstick) become lighter and paler

`write_dataset` writes `img_align_celeba/*.png`, `list_attr_celeba.txt`, `list_eval_partition.txt`
(one identity per row, so splits are by identity) and `identities.npz`, from which any
counterfactual can be re-rendered (`load_identities`, `counterfactual`, `render`).
"""

import io
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from celebadiff.data import ATTR_FILE, CELEBA_ATTRIBUTES, IMAGE_DIR, PARTITION_FILE, resolve_attributes

DRAWN = ("Smiling", "Mouth_Slightly_Open", "Eyeglasses", "Male", "Black_Hair", "Blond_Hair",
         "Brown_Hair", "Bangs", "Wearing_Hat", "Wearing_Lipstick", "Pale_Skin")
HAIR_COLOURS = ("Black_Hair", "Blond_Hair", "Brown_Hair")

# Faces per internal batch: small (32, 64, 64) float32 grids stay in cache; ~1.8x faster than 512.
CHUNK = 32
# Geometry in "face units": the image spans [-1, 1] on both axes, y points down; the face frame is
# centred at (0, FACE_CY) before the identity's shift and tilt and magnified SCALE times.
SCALE = 1.1
FACE_CY, EYE_Y, BROW_Y, NOSE_Y, MOUTH_Y = 0.10, -0.06, -0.21, 0.16, 0.35

# name: (low, high) of a uniform draw; see sample_identities for the few that are not uniform.
_UNIFORM = {
    "face_width": (0.44, 0.52),      # half-width of the face ellipse
    "face_height": (0.58, 0.65),     # half-height
    "jaw_taper": (0.05, 0.22),       # how much narrower the chin is than the cheeks
    "skin_warmth": (-1.0, 1.0),      # small hue jitter of the skin
    "eye_spacing": (0.17, 0.21),     # half the distance between eye centres
    "eye_size": (0.075, 0.092),      # half-width of an eye
    "brow_thickness": (0.85, 1.2),   # scale of the eyebrow stroke (Male doubles it)
    "brow_dark": (0.0, 1.0),         # 0 dark brown, 1 near-black
    "nose_size": (0.8, 1.2),
    "mouth_width": (0.13, 0.16),     # half-width of the closed neutral mouth
    "lip_tint": (0.0, 1.0),          # pinkness of the natural lips
    "hair_length": (0.0, 1.0),       # long hair: how far below the chin it falls
    "hair_volume": (0.0, 1.0),       # how far the hair stands out from the head
    "hairline": (0.0, 1.0),          # 0 low, 1 high forehead
    "hair_shade": (-1.0, 1.0),       # lightness jitter of every hair colour
    "bg_hue": (0.0, 1.0),
    "bg_saturation": (0.1, 0.5),
    "bg_value": (0.45, 0.95),
    "bg_angle": (0.0, 2 * np.pi),    # direction of the background gradient
    "shirt_hue": (0.0, 1.0),
    "shirt_value": (0.25, 0.8),
    "hat_hue": (0.28, 0.85),         # green .. blue .. purple: never a hair or skin colour
    "hat_height": (0.0, 1.0),
    "glasses_round": (0.2, 1.0),     # corner radius of the lenses, relative to their height
    "lipstick_hue": (-1.0, 1.0),     # red .. crimson jitter
    "shift_x": (-0.025, 0.025),      # fraction of the image size (+-1.6 px at 64 px)
    "shift_y": (-0.025, 0.025),
    "tilt": (-4.0, 4.0),             # degrees
}
IDENTITY_KEYS = (*_UNIFORM, "skin_tone", "iris_colour", "other_hair", "bg_gradient", "glasses_colour")


def sample_identities(n, seed):
    """Draw `n` independent identities: everything about a face that no attribute controls.

    Returns a dict of float32 arrays of length n, keyed by IDENTITY_KEYS. Ranges are listed in
    `_UNIFORM`; besides those, `skin_tone` in [0, 1] (0 lightest, skewed light as in CelebA),
    `iris_colour` in {0..4} (brown, dark brown, blue, green, grey), `other_hair` in {0, 1} (the shade
    used when no hair colour attribute is set: grey or auburn), `bg_gradient` (0 for a flat
    background in half the faces) and `glasses_colour` in {0, 1, 2} (black, brown, navy frames).
    Deterministic in `seed`; the stream differs from sample_attributes(n, seed)'s.
    """
    rng = np.random.default_rng((seed, 1))
    ids = {k: rng.uniform(lo, hi, n) for k, (lo, hi) in _UNIFORM.items()}
    ids["skin_tone"] = rng.beta(1.2, 3.0, n)
    ids["iris_colour"] = rng.integers(0, 5, n)
    ids["other_hair"] = rng.integers(0, 2, n)
    ids["bg_gradient"] = rng.uniform(-0.25, 0.25, n) * (rng.random(n) < 0.5)
    ids["glasses_colour"] = rng.integers(0, 3, n)
    return {k: np.asarray(ids[k], dtype=np.float32) for k in IDENTITY_KEYS}


def sample_attributes(n, seed, independent=False):
    """Draw drawn-attribute labels for `n` faces.

    Default: CelebA-like marginals and correlations (P(Male)=.42, P(Smiling)=.48, mouth open in 75%
    of smiles and 15% of other faces, lipstick on 70% of women and 2% of men, hair black/blond/brown/
    other ~30/20/30/20 with blond rarer in men; glasses .15, hat .10 and pale skin .10 are raised
    above CelebA's rates so a model sees enough of them). `independent=True`: every attribute a
    fair coin and the hair colour uniform over the four options, e.g. to train a classifier that is
    not fooled by unusual combinations.
    Returns a dict of bool arrays of length n keyed by DRAWN.
    """
    rng = np.random.default_rng((seed, 2))
    u = rng.random((n, 9))
    hair = u[:, 8]
    if independent:
        coins = [name for name in DRAWN if name not in HAIR_COLOURS]
        a = {name: u[:, i] < 0.5 for i, name in enumerate(coins)}
        cut = np.array([0.25, 0.5, 0.75])
    else:
        male = u[:, 0] < 0.42
        smiling = u[:, 1] < 0.48
        a = {"Male": male, "Smiling": smiling,
             "Mouth_Slightly_Open": u[:, 2] < np.where(smiling, 0.75, 0.15),
             "Eyeglasses": u[:, 3] < np.where(male, 0.20, 0.11),
             "Wearing_Lipstick": u[:, 4] < np.where(male, 0.02, 0.70),
             "Bangs": u[:, 5] < np.where(male, 0.08, 0.20),
             "Wearing_Hat": u[:, 6] < 0.10,
             "Pale_Skin": u[:, 7] < np.where(male, 0.06, 0.13)}
        # cumulative P(black), P(black or blond), P(black, blond or brown) per sex
        cut = np.where(male[:, None], [0.34, 0.43, 0.73], [0.27, 0.55, 0.85])
    a["Black_Hair"] = hair < cut[..., 0]
    a["Blond_Hair"] = (hair >= cut[..., 0]) & (hair < cut[..., 1])
    a["Brown_Hair"] = (hair >= cut[..., 1]) & (hair < cut[..., 2])
    return {name: a[name] for name in DRAWN}


def counterfactual(attributes, name, value):
    """A copy of `attributes` (dict of bool arrays) with `name` set to `value` (bool or bool array).

    Setting a hair colour True clears the other two hair colours for those faces. Raises ValueError
    for a name not in DRAWN.
    """
    resolve_attributes(name, valid=DRAWN)
    out = {k: np.array(v, dtype=bool) for k, v in attributes.items()}
    n = len(next(iter(out.values()))) if out else np.size(value)
    out[name] = np.broadcast_to(np.asarray(value, dtype=bool), (n,)).copy()
    if name in HAIR_COLOURS:
        for other in HAIR_COLOURS:
            if other != name:
                out[other] = out.get(other, np.zeros(n, bool)) & ~out[name]
    return out


# ----------------------------------------------------------------------------- drawing primitives
def _cover(d, px):
    """Anti-aliased coverage in [0, 1] of a shape with signed distance `d` (<0 inside), 1 px ramp."""
    t = np.clip(0.5 - d * (1.0 / px), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def _ellipse(x, y, cx, cy, rx, ry):
    """Approximate signed distance to an ellipse: (k - 1) / |grad k| with k its implicit radius."""
    dx, dy = (x - cx) / rx, (y - cy) / ry
    k = np.sqrt(dx * dx + dy * dy) + 1e-6
    return (k - 1.0) * k / (np.sqrt((dx / rx) ** 2 + (dy / ry) ** 2) + 1e-6)


def _box(x, y, cx, cy, hx, hy, r):
    """Exact signed distance to a box of half-sizes (hx, hy) with corner radius r."""
    qx, qy = np.abs(x - cx) - hx + r, np.abs(y - cy) - hy + r
    outside = np.sqrt(np.maximum(qx, 0.0) ** 2 + np.maximum(qy, 0.0) ** 2)
    return outside + np.minimum(np.maximum(qx, qy), 0.0) - r


def _hsv(h, s, v):
    """Vectorised HSV -> RGB; h, s, v arrays of shape (N,), returns (N, 3) in [0, 1]."""
    k = (np.array([5.0, 3.0, 1.0]) + 6.0 * np.asarray(h)[:, None]) % 6.0
    return v[:, None] - v[:, None] * s[:, None] * np.clip(np.minimum(k, 4.0 - k), 0.0, 1.0)


def _rgb(*c):
    return np.array(c, dtype=np.float32)


class _Canvas:
    """The image being painted, (N, S, S, 3) float in [0, 1], and each pixel's face-frame x, y."""

    def __init__(self, p, size):
        self.px = 2.0 / size / SCALE  # one pixel in face units
        g = ((np.arange(size) + 0.5) * (2.0 / size) - 1.0).astype(np.float32)
        cx, cy = 2.0 * p["shift_x"], FACE_CY + 2.0 * p["shift_y"]
        th = np.deg2rad(p["tilt"])
        c, s = np.cos(th), np.sin(th)
        gx, gy = g[None, None, :] - cx, g[None, :, None] - cy
        # (N, S, S): rotate into the face frame
        self.x, self.y = (c * gx + s * gy) / SCALE, (c * gy - s * gx) / SCALE
        self.img = np.empty((len(th), size, size, 3), np.float32)
        # how far (image units) a face-frame row can land from its unshifted, untilted position
        self.margin = float(np.max(np.abs(cy - FACE_CY)) + 1.5 * np.max(np.abs(s)) + 4.0 / size)
        self.size = size

    def band(self, y0, y1):
        """(x, y, img) views of the rows that can hold face-frame y in [y0, y1] for any face.

        Parts are painted on their band only, for speed. Every shape of a part lies inside its band
        (tests check that a face renders the same alone and in a batch), so bands cut nothing.
        """
        r0 = int(np.floor((FACE_CY + SCALE * y0 - self.margin + 1.0) * self.size / 2))
        r1 = int(np.ceil((FACE_CY + SCALE * y1 + self.margin + 1.0) * self.size / 2))
        rows = slice(max(r0, 0), min(max(r1, 0), self.size))
        return self.x[:, rows], self.y[:, rows], self.img[:, rows]


def _paint(img, cover, colour):
    """Composite `colour` ((N, 3) or per pixel (N, h, w, 3)) over `img` with coverage (N, h, w)."""
    colour = colour[:, None, None, :] if colour.ndim == 2 else colour
    img += cover[..., None] * (colour - img)


# ----------------------------------------------------------------------------- colours
_HAIR = _rgb([0.09, 0.075, 0.07], [0.95, 0.80, 0.38], [0.46, 0.27, 0.12],  # black, blond, brown
             [0.68, 0.68, 0.70], [0.62, 0.22, 0.09])                           # other: grey, auburn
_IRIS = _rgb([0.45, 0.28, 0.12], [0.22, 0.13, 0.07], [0.25, 0.47, 0.75], [0.30, 0.52, 0.30],
             [0.47, 0.52, 0.58])
_FRAMES = _rgb([0.05, 0.05, 0.05], [0.26, 0.13, 0.05], [0.07, 0.09, 0.28])
_SKIN = _rgb([0.97, 0.82, 0.71], [0.80, 0.60, 0.45], [0.42, 0.28, 0.20])  # light, medium, dark
_PALE = _rgb(1.0, 0.95, 0.93)
_WHITE, _TEETH, _DARK = _rgb(0.97, 0.97, 0.97), _rgb(0.97, 0.96, 0.90), _rgb(0.30, 0.05, 0.08)


def _colours(ids, a):
    """Per-face colours, each (N, 3) in [0, 1]: the only place attributes pick a colour."""
    t = np.clip(ids["skin_tone"], 0, 1)[:, None] * 2
    skin = np.where(t < 1, _SKIN[0] + t * (_SKIN[1] - _SKIN[0]), _SKIN[1] + (t - 1) * (_SKIN[2] - _SKIN[1]))
    skin = skin + 0.03 * ids["skin_warmth"][:, None] * _rgb(1, 0, -1)
    skin = np.where(a["Pale_Skin"][:, None], 0.3 * skin + 0.7 * _PALE, skin)
    hair_index = np.select([a[h] for h in HAIR_COLOURS], [0, 1, 2], 3 + ids["other_hair"].astype(int))
    hair = _HAIR[hair_index] * (1 + 0.12 * ids["hair_shade"][:, None])
    natural_lips = skin * _rgb(0.86, 0.60, 0.60) + ids["lip_tint"][:, None] * _rgb(0.06, -0.04, 0.0)
    one = np.ones_like(ids["skin_tone"])
    lipstick = _hsv(0.975 + 0.02 * ids["lipstick_hue"], 0.9 * one, 0.8 * one)
    brow_dark = ids["brow_dark"][:, None]
    colours = {
        "skin": skin, "hair": np.clip(hair, 0, 1), "hat": _hsv(ids["hat_hue"], 0.75 * one, 0.72 * one),
        "lips": np.where(a["Wearing_Lipstick"][:, None], lipstick, natural_lips),
        "brow": (1 - brow_dark) * _rgb(0.30, 0.20, 0.14) + brow_dark * _rgb(0.08, 0.07, 0.07),
        "iris": _IRIS[ids["iris_colour"].astype(int) % 5],
        "frame": _FRAMES[ids["glasses_colour"].astype(int) % 3],
        "bg": _hsv(ids["bg_hue"], ids["bg_saturation"], ids["bg_value"]),
        "shirt": _hsv(ids["shirt_hue"], 0.45 * one, ids["shirt_value"]),
    }
    return {k: v.astype(np.float32) for k, v in colours.items()}


# ----------------------------------------------------------------------------- face parts
# Each part paints its band of the canvas. p: identity values as (N, 1, 1); a: attributes as
# (N, 1, 1) bool; col: _colours. Back to front: background, hair behind the head, neck, shirt,
# face, stubble, eyes, brows, nose, mouth, hair over the forehead, bangs, glasses, hat.
def _background(c, p, col):
    ramp = p["bg_gradient"] * (c.x * np.cos(p["bg_angle"]) + c.y * np.sin(p["bg_angle"]))
    c.img[:] = np.clip(col["bg"][:, None, None, :] + ramp[..., None], 0, 1)


def _skull(x, y, p, male):
    """Signed distance to the hair mass around the top of the head (tighter for short hair)."""
    vol = p["hair_volume"]
    rx = p["face_width"] + np.where(male, 0.03 + 0.02 * vol, 0.05 + 0.09 * vol)
    ry = 0.85 * p["face_height"] + np.where(male, 0.04 + 0.03 * vol, 0.06 + 0.08 * vol)
    return _ellipse(x, y, 0.0, -0.14, rx, ry)


def _hair_back(c, p, a, col):
    x, y, img = c.band(-1.2, 1.3)
    skull = _skull(x, y, p, a["Male"])
    short = np.maximum(skull, y + 0.02)  # sideburns stop at eye level
    top, bottom = -0.25, p["face_height"] + 0.05 + 0.35 * p["hair_length"]
    curtain = _box(x, y, 0.0, (top + bottom) / 2, p["face_width"] + 0.06 + 0.1 * p["hair_volume"],
                   (bottom - top) / 2, 0.12)
    _paint(img, _cover(np.where(a["Male"], short, np.minimum(skull, curtain)), c.px), col["hair"])


def _neck_and_shirt(c, p, col):
    x, y, img = c.band(0.2, 1.6)
    _paint(img, _cover(_box(x, y, 0.0, 0.75, 0.16, 0.5, 0.02), c.px), 0.82 * col["skin"])
    _paint(img, _cover(_ellipse(x, y, 0.0, p["face_height"] + 0.62, 0.95, 0.42), c.px), col["shirt"])


def _face_distance(x, y, p):
    """Signed distance to the face: an ellipse narrowing towards the chin."""
    below = np.clip(y / p["face_height"], 0.0, 1.0)
    rx = p["face_width"] * (1.0 - p["jaw_taper"] * below * below)
    return _ellipse(x, y, 0.0, 0.0, rx, p["face_height"])


def _face(c, p, a, col):
    x, y, img = c.band(-0.8, 0.8)
    face = _cover(_face_distance(x, y, p), c.px)
    _paint(img, face, col["skin"])
    # stubble: a smooth shadow on the jaw and upper lip, outside an ellipse over eyes and cheeks
    fade = np.clip(_ellipse(x, y, 0.0, -0.06, 0.9 * p["face_width"], 0.26) / 0.1, 0.0, 1.0)
    _paint(img, face * (0.45 * fade * a["Male"]), col["skin"] * _rgb(0.55, 0.55, 0.62))


def _eyes(c, p, col):
    x, y, img = c.band(EYE_Y - 0.08, EYE_Y + 0.08)
    xa, r = np.abs(x), p["eye_size"]  # both eyes at once: the face is symmetric
    white = _ellipse(xa, y, p["eye_spacing"], EYE_Y, r, 0.6 * r)
    inside = _cover(white, c.px)
    _paint(img, inside, _WHITE)
    iris = _ellipse(xa, y, p["eye_spacing"], EYE_Y, 0.55 * r, 0.55 * r)
    _paint(img, np.minimum(inside, _cover(iris, c.px)), col["iris"])
    _paint(img, np.minimum(inside, _cover(iris + 0.3 * r, c.px)), _rgb(0.03, 0.03, 0.03))
    lid = np.maximum(np.abs(white) - 0.014, y - EYE_Y)  # dark upper lid line
    _paint(img, _cover(lid, c.px), _rgb(0.10, 0.06, 0.05))


def _brows(c, p, a, col):
    x, y, img = c.band(BROW_Y - 0.1, BROW_Y + 0.06)
    half = 0.09
    u = (np.abs(x) - p["eye_spacing"] - 0.01) / half
    arc = BROW_Y - 0.03 * (1 - u * u) + 0.01 * u
    thick = (0.03 + np.float32(0.028) * a["Male"]) * p["brow_thickness"] * (1 - 0.3 * np.clip(u, 0, 1))
    d = np.maximum(np.abs(y - arc) - thick / 2, (np.abs(u) - 1) * half)
    _paint(img, _cover(d, c.px), col["brow"])


def _nose(c, p, col):
    x, y, img = c.band(EYE_Y, NOSE_Y + 0.06)
    s = p["nose_size"]
    _paint(img, 0.6 * _cover(_box(x, y, 0.03 * s, NOSE_Y - 0.07, 0.008, 0.07 * s, 0.008), c.px),
           0.75 * col["skin"])
    _paint(img, 0.85 * _cover(_ellipse(x, y, 0.0, NOSE_Y + 0.015, 0.05 * s, 0.022 * s), c.px),
           0.7 * col["skin"])


def _crescent(x, y, top, width, thick, pad):
    """Signed distance (approx.) to the smile: between `top` and `top + thick * (1 - u^2)`, u = x/width."""
    bottom = top + thick * (1 - (x / width) ** 2)
    return np.maximum(np.maximum(top - pad - y, y - bottom - pad), np.abs(x) - width - pad)


def _mouth(c, p, a, col):
    x, y, img = c.band(MOUTH_Y - 0.2, MOUTH_Y + 0.2)
    y = y - MOUTH_Y  # mouth-centred from here on
    w, smile, open_ = p["mouth_width"], a["Smiling"], a["Mouth_Slightly_Open"]
    # neutral: closed lips, or a small open oval; smiling: a wide crescent whose corners turn up
    wide = 1.35 * w
    top = -0.03 - 0.08 * (x / wide) ** 2
    thick = np.where(open_, np.float32(0.16), np.float32(0.10))
    lips = np.where(smile, _crescent(x, y, top, wide, thick, 0.03),
                    np.where(open_, _ellipse(x, y, 0.0, 0.01, 0.9 * w, 0.095),
                             _ellipse(x, y, 0.0, 0.0, w, 0.05)))
    inner = np.where(smile, _crescent(x, y, top, wide, thick, 0.0),
                     np.where(open_, _ellipse(x, y, 0.0, 0.01, 0.65 * w, 0.063), 1.0))
    teeth = np.where(open_, np.maximum(inner, y - np.where(smile, top + 0.045, -0.015)), inner)
    seam = np.maximum(np.abs(y) - 0.011, np.abs(x) - 0.92 * w)  # where closed neutral lips meet
    _paint(img, _cover(lips, c.px), col["lips"])
    _paint(img, _cover(inner, c.px), np.broadcast_to(_DARK, col["lips"].shape))
    _paint(img, _cover(teeth, c.px), np.broadcast_to(_TEETH, col["lips"].shape))
    _paint(img, _cover(seam, c.px) * ~(open_ | smile), 0.45 * col["lips"])
    # smile lines: short arcs just beyond the corners (the cheeks lifting), inside the mouth band
    xa, yc = np.abs(x), y + 0.04
    line = np.maximum(np.abs(xa - wide - 0.07 + 4.0 * yc * yc) - 0.013, np.abs(yc) - 0.055)
    _paint(img, 0.6 * _cover(line, c.px) * smile, 0.72 * col["skin"])


def _hairline(x, p):
    return -(0.46 + 0.06 * p["hairline"]) + 0.34 * (x / p["face_width"]) ** 2


def _hair_front(c, p, a, col):
    x, y, img = c.band(-1.0, 0.0)
    # the hairline rises again beyond the face; stop at eye level as the short hair does
    d = np.maximum(np.maximum(_skull(x, y, p, a["Male"]), y - _hairline(x, p)), y + 0.02)
    _paint(img, _cover(d, c.px), col["hair"])


def _bangs(c, p, a, col):
    x, y, img = c.band(-1.0, BROW_Y)
    fringe = BROW_Y - 0.045 - 0.035 * np.abs(np.sin(x * (np.pi / 0.11)))  # scalloped lower edge
    # from just above the hairline (not the whole skull, whose anti-aliased rim would change too)
    d = np.maximum(np.maximum(_skull(x, y, p, a["Male"]), y - fringe), _hairline(x, p) - 0.04 - y)
    _paint(img, _cover(d, c.px) * a["Bangs"], col["hair"])


def _glasses(c, p, a, col):
    x, y, img = c.band(EYE_Y - 0.2, EYE_Y + 0.16)
    xa, es, half_w, half_h = np.abs(x), p["eye_spacing"], 0.125, 0.095
    lens = _box(xa, y, es, EYE_Y + 0.005, half_w, half_h, p["glasses_round"] * half_h)
    on = a["Eyeglasses"]
    _paint(img, 0.22 * _cover(lens, c.px) * on, _rgb(0.55, 0.72, 0.88))
    frame = np.abs(lens) - 0.045
    bridge = _box(xa, y, 0.0, EYE_Y - 0.015, es - half_w + 0.01, 0.022, 0.0)
    arm_from, arm_to = es + half_w, p["face_width"] + 0.04
    arm = _box(xa, y, (arm_from + arm_to) / 2, EYE_Y - 0.03, (arm_to - arm_from) / 2, 0.022, 0.0)
    _paint(img, _cover(np.minimum(frame, np.minimum(bridge, arm)), c.px) * on, col["frame"])


def _hat(c, p, a, col):
    x, y, img = c.band(-1.3, -0.3)
    brim_y, on = -0.5, a["Wearing_Hat"]
    rx = p["face_width"] + 0.1
    crown = np.maximum(_ellipse(x, y, 0.0, brim_y, rx, 0.38 + 0.1 * p["hat_height"]), y - brim_y)
    _paint(img, _cover(crown, c.px) * on, col["hat"])
    _paint(img, _cover(np.maximum(crown, brim_y - 0.08 - y), c.px) * on, 0.55 * col["hat"])
    _paint(img, _cover(_ellipse(x, y, 0.0, brim_y + 0.01, rx + 0.1, 0.06), c.px) * on, 0.8 * col["hat"])


def _render_chunk(ids, attrs, size):
    col = _colours(ids, attrs)
    p = {k: v[:, None, None] for k, v in ids.items()}
    a = {k: v[:, None, None] for k, v in attrs.items()}  # bool: `np.float32(x) * a[...]` stays float32
    c = _Canvas(p, size)
    _background(c, p, col)
    _hair_back(c, p, a, col)
    _neck_and_shirt(c, p, col)
    _face(c, p, a, col)
    _eyes(c, p, col)
    _brows(c, p, a, col)
    _nose(c, p, col)
    _mouth(c, p, a, col)
    _hair_front(c, p, a, col)
    _bangs(c, p, a, col)
    _glasses(c, p, a, col)
    _hat(c, p, a, col)
    return np.clip(c.img * 255.0 + 0.5, 0, 255).astype(np.uint8)


def render(identity, attributes, size):
    """Render faces: a pure function of (identity, attributes, size).

    Args:
        identity: dict of IDENTITY_KEYS -> (N,) arrays, as from sample_identities.
        attributes: dict of DRAWN names -> (N,) bool arrays; a missing name is False, an undrawn
            CelebA name is ignored. At most one of HAIR_COLOURS may be True per face.
        size: side in pixels (32 and 64 are the sizes it is tuned for).
    Returns:
        (N, size, size, 3) uint8 RGB.
    """
    missing = [k for k in IDENTITY_KEYS if k not in identity]
    if missing:
        raise ValueError(f"identity lacks {', '.join(missing)}; build it with sample_identities or "
                         "load_identities")
    ids = {k: np.asarray(identity[k], dtype=np.float32).reshape(-1) for k in IDENTITY_KEYS}
    n = len(ids["tilt"])
    resolve_attributes(list(attributes), valid=CELEBA_ATTRIBUTES)
    attrs = {k: np.broadcast_to(np.asarray(attributes.get(k, False), dtype=bool), (n,)) for k in DRAWN}
    clash = np.flatnonzero(sum(attrs[h].astype(int) for h in HAIR_COLOURS) > 1)
    if clash.size:
        raise ValueError(f"faces {clash[:5].tolist()} have more than one of {', '.join(HAIR_COLOURS)}; "
                         "set hair colours with counterfactual(), which clears the others")
    out = np.empty((n, size, size, 3), np.uint8)
    for s in range(0, n, CHUNK):
        part = slice(s, s + CHUNK)
        out[part] = _render_chunk({k: v[part] for k, v in ids.items()},
                                  {k: v[part] for k, v in attrs.items()}, size)
    return out


# ----------------------------------------------------------------------------- on disk
IDENTITY_FILE = "identities.npz"


def _save_npz(path, arrays):
    """np.savez, but byte-identical across runs: numpy stamps each member with the current time."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for key, value in arrays.items():
            buffer = io.BytesIO()
            np.lib.format.write_array(buffer, np.asarray(value), allow_pickle=False)
            info = zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, buffer.getvalue())


def _split_sizes(n, fractions):
    if len(fractions) != 3 or min(fractions) < 0 or abs(sum(fractions) - 1) > 1e-6:
        raise ValueError(f"fractions={fractions!r}: give three non-negative numbers (train, valid, test) "
                         "that sum to 1, e.g. (0.8, 0.1, 0.1)")
    n_train, n_valid = round(n * fractions[0]), round(n * fractions[1])
    return n_train, n_valid, n - n_train - n_valid


def write_dataset(out, n=30000, size=64, seed=0, fractions=(0.8, 0.1, 0.1), progress=True):
    """Render `n` faces into `out` in CelebA's layout; same (n, size, seed) -> byte-identical files.

    Writes img_align_celeba/000001.png ... (lossless PNG, since edits are scored by PSNR against
    re-renders), list_attr_celeba.txt (the 40 CELEBA_ATTRIBUTES; undrawn ones are -1),
    list_eval_partition.txt (first fractions[0] of rows train, then valid, then test; one identity
    per row, so splits are by identity), identities.npz (see load_identities) and README.md.
    Files of an earlier, larger set in `out` are left alone but are no longer listed.
    Returns `out` as a Path.
    """
    out = Path(out)
    splits = _split_sizes(n, fractions)
    (out / IMAGE_DIR).mkdir(parents=True, exist_ok=True)
    identity, attributes = sample_identities(n, seed), sample_attributes(n, seed)
    files = [f"{i + 1:06d}.png" for i in range(n)]
    step = 16 * CHUNK
    with tqdm(total=n, unit="face", desc=f"rendering {out}", disable=not progress) as bar:
        for s in range(0, n, step):
            part = slice(s, s + step)
            images = render({k: v[part] for k, v in identity.items()},
                            {k: v[part] for k, v in attributes.items()}, size)
            for name, image in zip(files[part], images):
                # level 3: as fast as 1 and ~8% smaller. Encoding runs ~5x faster than rendering, so a
                # process pool would gain little on 2 cores
                Image.fromarray(image).save(out / IMAGE_DIR / name, format="PNG", compress_level=3)
            bar.update(len(images))
    rows = [f"{n}", " ".join(CELEBA_ATTRIBUTES)]
    undrawn = np.full(n, "-1")
    signs = [np.where(attributes[a], "1", "-1") if a in DRAWN else undrawn for a in CELEBA_ATTRIBUTES]
    rows += [" ".join([name, *column]) for name, *column in zip(files, *signs)]
    (out / ATTR_FILE).write_text("\n".join(rows) + "\n")
    split_of = np.repeat([0, 1, 2], splits)
    (out / PARTITION_FILE).write_text("".join(f"{f} {s}\n" for f, s in zip(files, split_of)))
    _save_npz(out / IDENTITY_FILE, {**{f"identity/{k}": v for k, v in identity.items()},
                                     **{f"attribute/{k}": v for k, v in attributes.items()},
                                     "seed": np.int64(seed), "size": np.int64(size)})
    (out / "README.md").write_text(
        f"# Synthetic faces\n\n{n} procedurally drawn cartoon faces of {size}x{size} px, one random identity "
        f"per image, made by `python -m celebadiff synth --out FOLDER --n {n} --size {size} --seed {seed}` "
        f"(`celebadiff.synthfaces.write_dataset`). The layout is aligned CelebA's (`{IMAGE_DIR}/`, "
        f"`{ATTR_FILE}`, `{PARTITION_FILE}`; splits {splits[0]}/{splits[1]}/{splits[2]}), so "
        f"`celebadiff.data.CelebADataset` reads it unchanged; only {', '.join(DRAWN)} are drawn and every "
        f"other attribute is -1. `{IDENTITY_FILE}` holds each row's identity parameters and drawn "
        "attributes, so `render(identity, counterfactual(attributes, name, value), size)` re-creates the "
        "exact image an edit of that attribute should produce.\n")
    return out


def load_identities(root):
    """Read `root/identities.npz` back: (identity dict, attribute dict), row i = image file i + 1."""
    path = Path(root) / IDENTITY_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: only folders written by "
                                "celebadiff.synthfaces.write_dataset have one; rewrite the set with it")
    with np.load(path) as z:
        identity = {k.split("/", 1)[1]: z[k] for k in z.files if k.startswith("identity/")}
        attributes = {k.split("/", 1)[1]: z[k] for k in z.files if k.startswith("attribute/")}
    return identity, attributes


PROJECT = Path(__file__).resolve().parents[1]


def builtin_dataset(smoke=False):
    """The folder of the built-in face set that notebooks and benchmarks use.

    Default: data/synthfaces (30,000 faces at 64 px, rendered by `make data` / `make figures`).
    smoke=True: a 400-face set in build/synthfaces-smoke, rendered here on first use (a second), for CI.
    """
    if smoke:
        root = PROJECT / "build" / "synthfaces-smoke"
        if not (root / ATTR_FILE).exists():
            write_dataset(root, n=400, size=64, seed=0, progress=False)
        return root
    root = PROJECT / "data" / "synthfaces"
    if not (root / ATTR_FILE).exists():
        raise FileNotFoundError(f"the built-in face set is not rendered yet at {root}; run `make data` "
                                "(or python -m celebadiff synth --out data/synthfaces)")
    return root
