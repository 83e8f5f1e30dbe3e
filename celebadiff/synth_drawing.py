"""Drawing the built-in faces (`celebadiff.synthfaces`): smooth anti-aliased shapes, painted back to front.

Every shape is a signed distance d (< 0 inside) turned into coverage by a smoothstep over one pixel
(`_cover`) and composited over what is painted below it (`_paint`). A face is painted in its own frame,
"face units": the image spans [-1, 1] on both axes, y points down; the face frame is centred at
(0, FACE_CY) before the identity's shift and tilt and magnified SCALE times. Attributes pick shapes
(`_mouth`, `_glasses`, ...) and colours (`_colours`), never randomness: that lives in the identity.
"""

import numpy as np

from .data import HAIR_COLOURS

SCALE = 1.1
FACE_CY, EYE_Y, BROW_Y, NOSE_Y, MOUTH_Y = 0.10, -0.06, -0.21, 0.16, 0.35


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
    drawn = [h for h in HAIR_COLOURS if h in a]  # black, blond, brown: the first three rows of _HAIR
    hair_index = np.select([a[h] for h in drawn], list(range(len(drawn))), 3 + ids["other_hair"].astype(int))
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


def draw(ids, attrs, size):
    """Faces (N, size, size, 3) uint8 of identities {IDENTITY_KEYS: (N,) float32} and attributes {DRAWN: (N,)
    bool}, at most one hair colour each (`synthfaces.render` checks them and draws in chunks)."""
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
