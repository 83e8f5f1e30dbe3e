"""Identity: is an edited face still the same person? A face-recognition distance between two face crops.

dlib's face recognition ResNet (King 2017, a ResNet-34 trained with a metric loss on about 3 million
faces) maps a face to a 128-D descriptor; two photos of one person lie closer than 0.6 (Euclidean),
its authors' threshold, on 99.38% of the LFW benchmark's pairs. The network and its 5-point shape
predictor ship in the `face-recognition-models` package (`dlib-bin` runs them); nothing is downloaded.

For each crop: resize it to CelebA's aligned scale, place dlib's face box where dlib's own detector
puts it on aligned CelebA faces (DLIB_BOX), find dlib's 5 landmarks in it, cut dlib's 150x150 chip
and compute the descriptor. A fixed box, not a detection, so every crop of a pair is read the same way
and an edit that fools a detector still gets a distance.
"""

import functools
import importlib.util
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .data import CELEBA_HEIGHT, CELEBA_WIDTH, crop_side, is_celeba_frame, to_uint8

THRESHOLD = 0.6  # dlib's same-person threshold
# dlib's frontal face detector's box (left, top, right, bottom) on aligned CelebA (178x218), mean of 200 images:
#   python -c "from celebadiff.identity import measure_box as m; print(m('../shared/celeba-sample/img_align_celeba'))"
DLIB_BOX = (42.2, 83.4, 135.8, 177.6)


@functools.cache
def _models():
    """(shape predictor, recognition network), from the face_recognition_models package's files."""
    import dlib

    # importing face_recognition_models itself needs pkg_resources (setuptools); only its files are needed
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None:
        raise ModuleNotFoundError("face_recognition_models is not installed: pip install face-recognition-models "
                                  "dlib-bin (the project's dependencies)")
    models = Path(next(iter(spec.submodule_search_locations))) / "models"
    return (dlib.shape_predictor(str(models / "shape_predictor_5_face_landmarks.dat")),
            dlib.face_recognition_model_v1(str(models / "dlib_face_recognition_resnet_model_v1.dat")))


def _as_aligned(image, crop):
    """One crop (3, H, W) -> (an (h, w, 3) uint8 array at CelebA's aligned scale, dlib's box in it).

    A crop of CelebA's aspect is the whole aligned frame; any other (square) crop is the loader's framing,
    the centre `crop_side` pixels of the aligned frame (crop in 178-px units, as `data.frame` takes it).
    """
    image = image if image.dtype == torch.uint8 else to_uint8(image.float())
    H, W = image.shape[-2:]
    box = np.array(DLIB_BOX)
    if is_celeba_frame(H, W):
        size = (CELEBA_WIDTH, CELEBA_HEIGHT)
    else:
        side = crop_side(CELEBA_HEIGHT, CELEBA_WIDTH, crop)
        left, top = (CELEBA_WIDTH - side) / 2, (CELEBA_HEIGHT - side) / 2
        size, box = (round(side), round(side)), (box - [left, top, left, top]) * round(side) / side
    picture = Image.fromarray(image.permute(1, 2, 0).cpu().numpy())
    if picture.size != size:
        picture = picture.resize(size, Image.BICUBIC)
    return np.ascontiguousarray(np.asarray(picture)), box


def descriptors(images, crop=140):
    """dlib face descriptors (B, 128) float32 of aligned face crops.

    Args:
        images: (B, 3, H, W), uint8 or float in [-1, 1]; CelebA's aligned frame (178x218 at any scale) or
            the loader's square framing of it (`data.frame(..., crop)`, e.g. the model's 64x64 faces).
        crop: the loader's crop, in pixels of the 178-wide frame, for square crops.
    """
    import dlib

    predictor, network = _models()
    arrays, shapes = [], []
    for image in images:
        array, box = _as_aligned(image, crop)
        shape = predictor(array, dlib.rectangle(*[int(round(v)) for v in box]))
        arrays.append(array)
        shapes.append(dlib.full_object_detections([shape]))
    if not arrays:
        return torch.zeros(0, 128)
    out = network.compute_face_descriptor(arrays, shapes)
    return torch.tensor(np.array([np.array(faces[0]) for faces in out]), dtype=torch.float32)


def identity_distance(images_a, images_b, crop=140):
    """Face-recognition distance between pairs of aligned face crops: (B,) float, 0 for identical images.

    ||d(a_i) - d(b_i)|| with d = `descriptors` (dlib's 128-D face descriptor); below THRESHOLD (0.6)
    dlib takes two faces for one person. images_a, images_b: (B, 3, H, W) as `descriptors` takes them.
    """
    if len(images_a) != len(images_b):
        raise ValueError(f"identity_distance compares pairs: got {len(images_a)} and {len(images_b)} images; "
                         "pass two batches of the same length")
    return (descriptors(images_a, crop) - descriptors(images_b, crop)).norm(dim=1)


def measure_box(folder, n=200):
    """The mean box (left, top, right, bottom) of dlib's frontal face detector over the first n aligned CelebA
    images of a folder (sorted names; images without a detection are skipped). How DLIB_BOX was measured."""
    import dlib

    detector = dlib.get_frontal_face_detector()
    boxes = []
    for path in sorted(Path(folder).glob("*.jpg"))[:n]:
        with Image.open(path) as im:
            found = detector(np.asarray(im.convert("RGB")), 1)
        if len(found):
            r = found[0]
            boxes.append([r.left(), r.top(), r.right(), r.bottom()])
    if not boxes:
        raise ValueError(f"dlib found no face in the first {n} .jpg images of {folder}; pass img_align_celeba")
    return torch.tensor(boxes, dtype=torch.float64).mean(0)
