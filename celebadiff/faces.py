"""Faces in photos: find them, align them like CelebA, and paste an edit back into the photo.

    photo --detect--> box, score, 5 landmarks --align--> 178x218 aligned frame (CelebA's)
          --data.frame--> S x S model frame --edit--> change --paste_back--> the photo, edited

Geometry. A point is (x, y) in pixels, pixel i covering [i, i + 1) (its centre is at i + 0.5), the
convention of `grid_sample(align_corners=False)` and of antialiased resizing. A transform is a 3x3
matrix acting on [x, y, 1]. The similarity T(p) = s R p + t that brings the photo's landmarks p_i
closest to the template's q_i in least squares (Umeyama 1991, "Least-squares estimation of
transformation parameters between two point patterns", with rotation only, no reflection):

    mu_p, mu_q = the means;  var_p = mean |p_i - mu_p|^2
    Sigma = mean (q_i - mu_q)(p_i - mu_p)^T = U D V^T          (SVD)
    R = U E V^T,   E = diag(1, det(U V^T))
    s = tr(D E) / var_p,   t = mu_q - s R mu_p

The template is where MTCNN (Zhang et al. 2016; facenet-pytorch's port, whose weights ship in its
wheel) puts the 5 landmarks on CelebA's own aligned images, so a photo aligned here is framed as the
training images are. An edit goes back through the inverse of (alignment then the loader's crop and
resize): only the change the edit makes is upsampled and added to the photo, inside a feathered
mask, so the photo keeps its own resolution and detail and is untouched outside the mask.
"""

import functools
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torchvision.transforms.v2 import functional as TF

from .data import CELEBA_HEIGHT, CELEBA_WIDTH, crop_side

# Where MTCNN finds the 5 landmarks on aligned CelebA faces (178x218), mean of 1,000 images, measured by
#   python -c "from celebadiff.faces import measure_template as m; print(m('../shared/celeba-sample/img_align_celeba'))"
# (x, y): left eye, right eye, nose tip, left and right mouth corner, as seen in the image.
TEMPLATE = ((70.2, 112.2), (109.1, 112.2), (89.1, 136.6), (72.0, 153.6), (106.8, 153.5))
MIN_FACE = 48  # smallest face box side (px) edited: below it the 64 px model frame would be upsampled
DETECT_SIDE = 1024  # photos are searched at most this large (faster on phone photos; faces of 20+ px there)
MIN_SCORE = 0.95  # MTCNN's last-stage probability a detection needs to count as a face
LANDMARKS = ("left eye", "right eye", "nose", "left mouth corner", "right mouth corner")


@dataclass(frozen=True)
class Face:
    """One detected face: box (x0, y0, x1, y1) in photo pixels, MTCNN's score, landmarks (5, 2) (x, y)."""

    box: tuple
    score: float
    landmarks: torch.Tensor

    @property
    def size(self):
        """The shorter side of the box, in pixels."""
        return min(self.box[2] - self.box[0], self.box[3] - self.box[1])


# --- similarity transforms -----------------------------------------------------------------------

def similarity_transform(src, dst):
    """The least-squares similarity (Umeyama 1991, module docstring) taking points src to dst.

    Args:
        src, dst: (N, 2) points (x, y), N >= 2.
    Returns:
        (3, 3) float64 matrix T with dst ~ T [src; 1].
    """
    p, q = torch.as_tensor(src, dtype=torch.float64), torch.as_tensor(dst, dtype=torch.float64)
    mu_p, mu_q = p.mean(0), q.mean(0)
    pc, qc = p - mu_p, q - mu_q
    var_p = pc.square().sum(1).mean()
    if var_p <= 0:
        raise ValueError("the source points coincide: a similarity needs at least two distinct points")
    U, D, Vh = torch.linalg.svd(qc.T @ pc / len(p))
    E = torch.diag(torch.tensor([1.0, torch.sign(torch.linalg.det(U @ Vh)).item() or 1.0], dtype=torch.float64))
    R = U @ E @ Vh
    s = (D * E.diagonal()).sum() / var_p
    T = torch.eye(3, dtype=torch.float64)
    T[:2, :2], T[:2, 2] = s * R, mu_q - s * R @ mu_p
    return T


def apply(T, points):
    """Points (N, 2) through the 3x3 transform T."""
    points = torch.as_tensor(points, dtype=torch.float64)
    return points @ T[:2, :2].T + T[:2, 2]


def scale_of(T):
    """The scale factor of a similarity (or the geometric mean scale of an affine map)."""
    return torch.linalg.det(T[:2, :2]).abs().sqrt().item()


def frame_transform(height, width, size, crop=140):
    """The 3x3 map from an image's pixels to the model frame that `data.frame(image, size, crop)` makes:
    the centre square of `crop_side(height, width, crop)` pixels (at its sub-pixel place), resized to size."""
    side = crop_side(height, width, crop)
    left, top = (width - side) / 2, (height - side) / 2
    k = size / side
    return torch.tensor([[k, 0, -k * left], [0, k, -k * top], [0, 0, 1]], dtype=torch.float64)


# --- warping ---------------------------------------------------------------------------------------

def warp(image, T, size, padding="reflection", mode="bilinear"):
    """Resample image (C, H, W) into a (C, h, w) frame: out(q) = image(T^-1 q), for size = (h, w).

    Shrinking (scale of T below 1) first resizes the needed part of the image with an antialiased
    resize, so a large photo does not alias. `padding`: grid_sample's mode for points outside the image
    ("reflection": mirror the photo's border; "zeros"). uint8 in, uint8 out; float in, float out.
    """
    h, w = size
    T = torch.as_tensor(T, dtype=torch.float64)
    src = image.float()
    s = scale_of(T)
    if s < 1:
        src, T = _shrunk(src, T, (h, w), s)
    H, W = src.shape[-2:]
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float64) + 0.5, torch.arange(w, dtype=torch.float64) + 0.5,
                            indexing="ij")
    pts = apply(torch.linalg.inv(T), torch.stack([xs.flatten(), ys.flatten()], 1))  # (h w, 2) in image pixels
    grid = (pts / torch.tensor([W, H], dtype=torch.float64) * 2 - 1).reshape(1, h, w, 2).float()
    out = F.grid_sample(src[None], grid, mode=mode, padding_mode=padding, align_corners=False)[0]
    return out.round().clamp(0, 255).to(torch.uint8) if image.dtype == torch.uint8 else out


def _shrunk(image, T, size, s):
    """(the part of image (C, H, W) that the output frame needs, resized by about s; T adjusted to it)."""
    h, w = size
    H, W = image.shape[-2:]
    corners = apply(torch.linalg.inv(T), [[0, 0], [w, 0], [0, h], [w, h]])
    x0, y0 = (corners.amin(0) - 2 / s).floor().clamp(min=0).long().tolist()
    x1, y1 = (corners.amax(0) + 2 / s).ceil().long().tolist()
    x1, y1 = min(max(x1, x0 + 1), W), min(max(y1, y0 + 1), H)
    if x0 >= W or y0 >= H:  # the frame lies off the image: reflection of the whole image, unshrunk
        return image, T
    part = image[:, y0:y1, x0:x1]
    nh, nw = max(1, round(part.shape[1] * s)), max(1, round(part.shape[2] * s))
    part = TF.resize(part, [nh, nw], antialias=True)
    sx, sy = part.shape[2] / (x1 - x0), part.shape[1] / (y1 - y0)
    undo = torch.tensor([[1 / sx, 0, x0], [0, 1 / sy, y0], [0, 0, 1]], dtype=torch.float64)  # part -> image
    return part, T @ undo


# --- detection ---------------------------------------------------------------------------------------

@functools.cache
def _mtcnn():
    from facenet_pytorch import MTCNN  # its three small nets load from files inside the installed wheel

    return MTCNN(keep_all=True, min_face_size=20, select_largest=True, device=torch.device("cpu")).eval()


def detect(image, min_score=MIN_SCORE):
    """Faces in an image, largest box first.

    Args:
        image: (3, H, W) uint8 RGB.
        min_score: MTCNN's probability (last stage) a detection needs.
    Returns:
        a list of `Face` (box, score, landmarks in `LANDMARKS` order), empty when there is none. Faces
        under 20 px (MTCNN's smallest) are not found; photos larger than DETECT_SIDE are searched
        downscaled, so there faces need 20 px at that scale.
    """
    if image.dim() != 3 or image.shape[0] != 3 or image.dtype != torch.uint8:
        raise ValueError(f"detect wants a (3, H, W) uint8 RGB image, got {tuple(image.shape)} {image.dtype}")
    H, W = image.shape[-2:]
    k = min(1.0, DETECT_SIDE / max(H, W))
    small = TF.resize(image, [max(1, round(H * k)), max(1, round(W * k))], antialias=True) if k < 1 else image
    if min(small.shape[-2:]) < 20:  # below MTCNN's smallest face (its image pyramid would be empty)
        return []
    with torch.no_grad():
        boxes, scores, points = _mtcnn().detect(small.permute(1, 2, 0), landmarks=True)
    if boxes is None:
        return []
    faces = [Face(tuple(float(v) / k for v in box), float(score), torch.tensor(pts.astype(float)) / k)
             for box, score, pts in zip(boxes, scores, points) if score >= min_score]
    return sorted(faces, key=lambda f: -(f.box[2] - f.box[0]) * (f.box[3] - f.box[1]))


def measure_template(folder, n=1000):
    """The mean MTCNN landmarks (5, 2) over the first n aligned CelebA images of a folder (sorted names).

    Images where MTCNN finds no face are skipped. This is how TEMPLATE was measured.
    """
    files = sorted(Path(folder).glob("*.jpg"))[:n]
    if not files:
        raise FileNotFoundError(f"no .jpg images in {folder}: pass CelebA's img_align_celeba folder")
    found = []
    for path in files:
        faces = detect(_read_rgb(path))
        if faces:
            found.append(faces[0].landmarks)
    if not found:
        raise ValueError(f"MTCNN found no face in the {len(files)} images of {folder}; are they aligned faces?")
    return torch.stack(found).mean(0)


def _read_rgb(path):
    from PIL import Image

    with Image.open(path) as im:
        return TF.pil_to_tensor(im.convert("RGB"))


# --- alignment and paste-back ---------------------------------------------------------------------------

def align(image, landmarks, size=(CELEBA_HEIGHT, CELEBA_WIDTH)):
    """Warp a photo's face into CelebA's aligned frame.

    Args:
        image: (3, H, W) uint8 photo; landmarks: (5, 2) its face's landmarks (`detect`).
        size: (h, w) of the frame, CelebA's 218x178 by default (TEMPLATE scales with it).
    Returns:
        aligned (3, h, w) uint8 (the border mirrored where the frame leaves the photo), and T (3, 3)
        float64, the similarity from photo pixels to aligned pixels.
    """
    h, w = size
    template = torch.tensor(TEMPLATE, dtype=torch.float64) * torch.tensor([w / CELEBA_WIDTH, h / CELEBA_HEIGHT])
    T = similarity_transform(landmarks, template)
    return warp(image, T, size), T


def refine(image, landmarks):
    """The landmarks found again where the template was measured: in the face's own aligned frame (upright,
    at CelebA's scale), mapped back to the photo's pixels. MTCNN's landmarks move with a face's tilt and
    size; a second look in the aligned frame steadies the fit (five CelebA faces turned 20 degrees and
    scaled 1.4x: median angle error 0.8 -> 0.2 degrees, scale error 3.5% -> 2.4%).

    Args: image (3, H, W) uint8; landmarks (5, 2) from `detect`. Returns (5, 2), as given if none is found.
    """
    aligned, T = align(image, landmarks)
    template = torch.tensor(TEMPLATE, dtype=torch.float64)
    found = detect(aligned)  # the mirrored border may hold parts of faces: take the one at the template
    if not found:
        return landmarks
    best = min(found, key=lambda f: (f.landmarks - template).norm(dim=1).mean().item())
    return apply(torch.linalg.inv(T), best.landmarks)


def feathered(mask, radius):
    """A mask's blend weight: 1 deep inside, ramping down over `radius` pixels to 1/radius at its edge, 0 outside.

    mask: (1, h, w) in [0, 1]. Weight = mask * mean_{k < radius} erode^k(mask > 0), where beyond the frame
    counts as outside, so a mask that reaches the frame's edge fades there too instead of ending in a seam.
    """
    inside = (mask > 0).float()[None]
    ramp, eroded = torch.zeros_like(inside), inside
    for _ in range(radius):
        ramp += eroded / radius
        eroded = -F.max_pool2d(-F.pad(eroded, (1, 1, 1, 1), value=0.0), 3, stride=1)
    return mask * ramp[0]


def face_region(size, crop=140):
    """The face's ellipse in the model frame (1, size, size), 1 inside: the mask of an edit without one.

    Centred between the template's eyes and mouth, 1.3 eye distances wide and 1.7 high (half axes),
    from the eyebrows to the chin, in the frame that `data.frame(aligned, size, crop)` makes.
    """
    q = apply(frame_transform(CELEBA_HEIGHT, CELEBA_WIDTH, size, crop), TEMPLATE)
    eyes = (q[1] - q[0]).norm()
    centre = q.mean(0) + torch.tensor([0.0, 0.1]) * eyes
    ys, xs = torch.meshgrid(torch.arange(size) + 0.5, torch.arange(size) + 0.5, indexing="ij")
    r = ((xs - centre[0]) / (1.3 * eyes)) ** 2 + ((ys - centre[1]) / (1.7 * eyes)) ** 2
    return (r <= 1).float()[None]


def paste_weight(mask, transform, photo_size, radius=None):
    """The mask's blend weight in the photo, (H, W) in [0, 1]: `feathered` in the model frame, then
    bilinearly through the inverse of `transform` (photo -> model frame); 0 off the frame.

    radius: the feather in model pixels (None: size / 16, at least 1)."""
    S = mask.shape[-1]
    weight = feathered(mask.float(), radius or max(1, S // 16))
    return _to_photo(weight, transform, photo_size, "bilinear")[0]


def paste_back(photo, aligned_source, aligned_edit, transform, mask=None, peak=255):
    """The photo with an edit of its face added, at the photo's own resolution.

        out = photo + w * up(aligned_edit - aligned_source) * peak / 2

    with up() the bicubic inverse warp into the photo and w the feathered mask (`paste_weight`);
    where w = 0 the output is the photo itself, bit for bit.

    Args:
        photo: (C, H, W) integer tensor in [0, peak] (uint8 RGB; int32 for 16-bit photos).
        aligned_source: (3, S, S) in [-1, 1], the model's reconstruction of the face (so the change
            carries the edit, not the model's loss of detail); aligned_edit: (3, S, S), the edit.
        transform: (3, 3) photo pixels -> model frame (`align`'s T composed with `frame_transform`).
        mask: (1, S, S) in [0, 1], where the edit may act (DiffEdit's); None: `face_region`.
    Returns:
        the edited photo, like `photo`.
    """
    S = aligned_edit.shape[-1]
    mask = face_region(S) if mask is None else mask.reshape(1, S, S).cpu()
    H, W = photo.shape[-2:]
    box = _footprint(transform, S, H, W)
    if box is None:
        return photo.clone()
    x0, y0, x1, y1 = box
    shift = torch.tensor([[1, 0, x0], [0, 1, y0], [0, 0, 1]], dtype=torch.float64)  # part pixels -> photo pixels
    T = torch.as_tensor(transform, dtype=torch.float64) @ shift
    weight = paste_weight(mask, T, (y1 - y0, x1 - x0))
    change = _to_photo((aligned_edit - aligned_source).float().cpu(), T, (y1 - y0, x1 - x0), "bicubic")
    out = photo.clone()
    part = out[:, y0:y1, x0:x1].float()
    if photo.shape[0] == 1:  # a grayscale photo takes the change's luminance (ITU-R 601, as PIL's "L")
        change = (change * torch.tensor([0.299, 0.587, 0.114])[:, None, None]).sum(0, keepdim=True)
    added = weight * change
    part = (part + added * (peak / 2)).round().clamp(0, peak)
    out[:, y0:y1, x0:x1] = torch.where(weight > 0, part.to(photo.dtype), out[:, y0:y1, x0:x1])
    return out


def _to_photo(x, transform, photo_size, mode):
    """Model-frame (C, S, S) values sampled at every photo pixel of photo_size through transform; 0 off the frame."""
    H, W = photo_size
    S = x.shape[-1]
    ys, xs = torch.meshgrid(torch.arange(H, dtype=torch.float64) + 0.5, torch.arange(W, dtype=torch.float64) + 0.5,
                            indexing="ij")
    q = apply(transform, torch.stack([xs.flatten(), ys.flatten()], 1))  # (H W, 2) in model pixels
    grid = (q / S * 2 - 1).reshape(1, H, W, 2).float()
    return F.grid_sample(x[None], grid, mode=mode, padding_mode="zeros", align_corners=False)[0]


def _footprint(transform, S, H, W):
    """The photo pixels (x0, y0, x1, y1) that the model frame covers (1 px margin), or None when off the photo."""
    corners = apply(torch.linalg.inv(torch.as_tensor(transform, dtype=torch.float64)), [[0, 0], [S, 0], [0, S], [S, S]])
    x0, y0 = (corners.amin(0).floor() - 1).clamp(min=0).long().tolist()
    x1, y1 = (corners.amax(0).ceil() + 1).long().tolist()
    x1, y1 = min(x1, W), min(y1, H)
    return (x0, y0, x1, y1) if x1 > x0 and y1 > y0 else None
