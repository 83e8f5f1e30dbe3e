"""The built-in face set: flat-shaded cartoon faces with exact counterfactuals, in CelebA's layout.

Why it exists: CelebA cannot be downloaded everywhere (Google Drive quotas, offline CI), and real
photos have no ground truth for an edit. Here every image is a pure function
`render(identity, attributes, size)`: all randomness lives in the identity (face shape, skin, eyes,
hair style, background, pose), never in the attributes, so re-rendering an identity with one
attribute flipped gives the exact image an ideal edit would produce, and edits can be scored by PSNR
against it. Images are smooth anti-aliased shapes (signed distances through a smoothstep,
composited back to front; `celebadiff.synth_drawing`) with no noise or texture, so a small diffusion
model learns them on a CPU.

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

from celebadiff import data
from celebadiff.data import ATTR_FILE, CELEBA_ATTRIBUTES, IMAGE_DIR, PARTITION_FILE, resolve_attributes
from celebadiff.synth_drawing import draw

DRAWN = ("Smiling", "Mouth_Slightly_Open", "Eyeglasses", "Male", "Black_Hair", "Blond_Hair",
         "Brown_Hair", "Bangs", "Wearing_Hat", "Wearing_Lipstick", "Pale_Skin")
HAIR_COLOURS = tuple(h for h in data.HAIR_COLOURS if h in DRAWN)  # the ones drawn: black, blond, brown

# Faces per internal batch: small (32, 64, 64) float32 grids stay in cache; ~1.8x faster than 512.
CHUNK = 32

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
    for other in data.other_hair_colours(name, DRAWN):
        out[other] = out.get(other, np.zeros(n, bool)) & ~out[name]
    return out


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
        out[part] = draw({k: v[part] for k, v in ids.items()}, {k: v[part] for k, v in attrs.items()}, size)
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
