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

# Faces per internal batch: (64, 64, 64) float32 grids stay in cache, which is ~3x faster than 500.
CHUNK = 64
# Geometry in "face units": the image spans [-1, 1] on both axes, y points down; the face frame is
# centred at (0, FACE_CY) before the identity's shift and tilt.
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
    u = rng.random((n, 10))
    hair = u[:, 9]
    if independent:
        a = {name: u[:, i] < 0.5 for i, name in enumerate(("Smiling", "Mouth_Slightly_Open", "Eyeglasses",
                                                             "Male", "Bangs", "Wearing_Hat",
                                                             "Wearing_Lipstick", "Pale_Skin"))}
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
        self.px = 2.0 / size
        g = ((np.arange(size) + 0.5) * self.px - 1.0).astype(np.float32)
        cx, cy = 2.0 * p["shift_x"], FACE_CY + 2.0 * p["shift_y"]
        th = np.deg2rad(p["tilt"])
        c, s = np.cos(th), np.sin(th)
        gx, gy = g[None, None, :] - cx, g[None, :, None] - cy
        self.x, self.y = c * gx + s * gy, c * gy - s * gx  # (N, S, S): rotate into the face frame
        self.img = np.empty((len(th), size, size, 3), np.float32)
        # how far (image units) a face-frame row can land from its unshifted, untilted position
        self.margin = float(np.max(np.abs(cy - FACE_CY)) + 1.5 * np.max(np.abs(s)) + 2 * self.px)
        self.size = size

    def band(self, y0, y1):
        """(x, y, img) views of the rows that can hold face-frame y in [y0, y1] for any face.

        Parts are painted on their band only, for speed; bands depend on the identity only, so
        they never change which pixels an attribute can reach.
        """
        r0 = int(np.floor((FACE_CY + y0 - self.margin + 1.0) / self.px))
        r1 = int(np.ceil((FACE_CY + y1 + self.margin + 1.0) / self.px))
        rows = slice(max(r0, 0), min(max(r1, 0), self.size))
        return self.x[:, rows], self.y[:, rows], self.img[:, rows]


def _paint(img, cover, colour):
    """Composite `colour` ((N, 3) or per pixel (N, h, w, 3)) over `img` with coverage (N, h, w)."""
    colour = colour[:, None, None, :] if colour.ndim == 2 else colour
    img += cover[..., None] * (colour - img)
