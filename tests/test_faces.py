"""Faces in photos: the similarity fit, detection, alignment, paste-back, photo files, the cached edit, identity."""

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.transforms.v2 import functional as TF

from celebadiff import data, faces, photo
from celebadiff.changes import Change, set_attributes
from celebadiff.config import preset
from celebadiff.diffusion import NoiseSchedule
from celebadiff.editing import Editor, edit
from celebadiff.models import build_model
from celebadiff.unet import PRESENT, UNKNOWN

ASTRONAUT = Path(__file__).parents[1] / "notebooks" / "photos" / "astronaut.jpg"  # NASA, public domain
NAMES = ("Smiling", "Eyeglasses", "Male")


def similarity(angle_deg, scale, shift):
    a = math.radians(angle_deg)
    return torch.tensor([[scale * math.cos(a), -scale * math.sin(a), shift[0]],
                         [scale * math.sin(a), scale * math.cos(a), shift[1]], [0, 0, 1]], dtype=torch.float64)


def psnr(a, b):
    mse = (a.float() - b.float()).square().mean()
    return (10 * torch.log10(255**2 / mse)).item()


@pytest.fixture(scope="module")
def astronaut():
    return photo.read_photo(ASTRONAUT)


@pytest.fixture(scope="module")
def smoke():
    """A tiny 16 px model with random weights (a fresh U-Net's blocks are identities) and its schedule."""
    torch.manual_seed(0)
    config = preset("smoke", attributes=NAMES)
    model = build_model(config).eval()
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.05)
    torch.nn.init.normal_(model.attr_emb.weight, std=1.0)
    return model, NoiseSchedule.named(config.schedule, config.T), config


# --- geometry ----------------------------------------------------------------------------------------

def test_umeyama_recovers_an_exact_similarity_and_never_reflects():
    T = similarity(-33, 2.5, (40, -12))
    src = torch.tensor(faces.TEMPLATE, dtype=torch.float64)
    torch.testing.assert_close(faces.similarity_transform(src, faces.apply(T, src)), T)
    mirrored = src * torch.tensor([-1.0, 1.0])  # a reflection is not a similarity: the fit stays a rotation
    assert torch.linalg.det(faces.similarity_transform(src, mirrored)[:2, :2]) > 0


def test_umeyama_is_the_linear_least_squares_fit():
    # a similarity is linear in (a, b, tx, ty): x' = a x - b y + tx, y' = b x + a y + ty
    g = torch.Generator().manual_seed(0)
    src = torch.rand(5, 2, generator=g, dtype=torch.float64) * 100
    dst = faces.apply(similarity(12, 0.7, (3, 9)), src) + torch.randn(5, 2, generator=g, dtype=torch.float64)
    x, y = src.T
    one, zero = torch.ones(5, dtype=torch.float64), torch.zeros(5, dtype=torch.float64)
    A = torch.cat([torch.stack([x, -y, one, zero], 1), torch.stack([y, x, zero, one], 1)])
    a, b, tx, ty = torch.linalg.lstsq(A, torch.cat([dst[:, 0], dst[:, 1]])).solution
    expected = torch.tensor([[a, -b, tx], [b, a, ty], [0, 0, 1]], dtype=torch.float64)
    torch.testing.assert_close(faces.similarity_transform(src, dst), expected)


@pytest.mark.parametrize("size", [(218, 178), (109, 89), (32, 32)])
def test_frame_transform_is_the_loaders_framing(size):
    g = torch.Generator().manual_seed(0)
    image = torch.randint(0, 256, (3, *size), generator=g, dtype=torch.uint8)
    side = round(data.crop_side(*size, 140))  # at the crop's own scale: the loader's crop, pixel for pixel
    warped = faces.warp(image, faces.frame_transform(*size, side, 140), (side, side))
    assert (warped.int() - data.frame(image, side, 140).int()).abs().max() <= 1  # (rounding of half-pixel means)
    smooth = TF.resize(image[:, ::8, ::8], list(size), antialias=True)
    warped = faces.warp(smooth, faces.frame_transform(*size, 16, 140), (16, 16))
    assert psnr(warped, data.frame(smooth, 16, 140)) > 30  # and shrunk, the same image up to resampling


# --- detection, template, alignment ---------------------------------------------------------------------

def test_detect_finds_the_astronauts_face_and_landmarks(astronaut):
    found = faces.detect(astronaut.rgb)
    assert len(found) == 1 and found[0].score > 0.99
    x0, y0, x1, y1 = found[0].box
    assert 170 < x0 < 190 and 50 < y0 < 70 and 260 < x1 < 280 and 165 < y1 < 185  # her face, by eye
    eye_l, eye_r, nose, mouth_l, mouth_r = found[0].landmarks.tolist()
    assert eye_l[0] < nose[0] < eye_r[0] and mouth_l[0] < mouth_r[0] and eye_l[1] < nose[1] < mouth_l[1]


@pytest.mark.parametrize("kind", ["1x1", "flat", "noise", "smooth noise"])
def test_no_face_in_images_without_one(kind):
    g = torch.Generator().manual_seed(0)
    image = {"1x1": torch.full((3, 1, 1), 128, dtype=torch.uint8),
             "flat": torch.full((3, 300, 400), 128, dtype=torch.uint8),
             "noise": torch.randint(0, 256, (3, 300, 400), generator=g, dtype=torch.uint8),
             "smooth noise": TF.resize(torch.randint(0, 256, (3, 30, 40), generator=g, dtype=torch.uint8), [300, 400],
                                       antialias=True)}[kind]
    assert faces.detect(image) == []


def test_template_re_measured_agrees(celeba_sample):
    measured = faces.measure_template(celeba_sample / "img_align_celeba", n=60)
    assert (measured - torch.tensor(faces.TEMPLATE, dtype=torch.float64)).abs().max() < 1.0


def test_alignment_undoes_a_known_rotation_scale_and_shift(celeba_sample):
    folder = celeba_sample / "img_align_celeba"
    known = similarity(20, 1.4, (170, 40))  # aligned -> canvas
    errors = []
    for name in sorted(p.name for p in folder.glob("*.jpg"))[:5]:
        original = photo.read_photo(folder / name).rgb  # (3, 218, 178)
        canvas = faces.warp(original, known, (480, 440), padding="zeros")
        fit = lambda image: faces.align(image, faces.refine(image, faces.detect(image)[0].landmarks))
        back, T = fit(canvas)
        # the face's own fit in its aligned image is near, not at, the identity (the template is a mean face)
        _, T0 = fit(original)
        R = (T @ known)[:2, :2] @ torch.linalg.inv(T0[:2, :2])  # 1 if the known transform was undone
        errors.append([abs(faces.scale_of(R) - 1), abs(math.degrees(math.atan2(R[1, 0], R[0, 0])))])
        target = data.frame(original, 64)
        aligned_psnr, centre_psnr = psnr(data.frame(back, 64), target), psnr(data.frame(canvas, 64, crop=None), target)
        assert aligned_psnr > centre_psnr + 8, (name, aligned_psnr, centre_psnr)
    scale_error, angle_error = torch.tensor(errors).median(0).values.tolist()
    assert scale_error < 0.04 and angle_error < 2, errors


def test_a_large_photo_is_aligned_without_aliasing(astronaut):
    face = faces.detect(astronaut.rgb)[0]
    big = TF.resize(astronaut.rgb, [2048, 2048], antialias=True)  # the face ~4x the aligned frame
    small, _ = faces.align(astronaut.rgb, face.landmarks)
    large, _ = faces.align(big, face.landmarks * 4)
    assert psnr(large, small) > 30  # antialiased: the same aligned face (plain bilinear sampling gives ~24 dB)


# --- paste-back --------------------------------------------------------------------------------------------

def _frame(astronaut, size=16):
    crops, _ = photo.frame_faces(astronaut.rgb, size, 140, "astronaut")
    return crops[0]


def test_paste_back_of_a_zero_change_is_the_photo_byte_for_byte(astronaut):
    crop = _frame(astronaut)
    face = torch.rand(3, 16, 16) * 2 - 1
    out = faces.paste_back(astronaut.pixels, face, face.clone(), crop.to_model, torch.ones(1, 16, 16))
    assert out.dtype == torch.uint8 and torch.equal(out, astronaut.pixels)
    deep = astronaut.pixels[:1].int() * 257  # a 16-bit grayscale photo
    assert torch.equal(faces.paste_back(deep, face, face, crop.to_model, None, peak=65535), deep)


def test_the_feathered_weight_ramps_down_to_the_masks_edge_and_the_frames():
    mask = torch.zeros(1, 12, 12)
    mask[:, 2:10, 0:8] = 1  # touches the frame's left edge
    weight = faces.feathered(mask, 3)[0]
    assert weight[6, 4] == 1 and weight[6, 8] == 0  # deep inside; outside
    torch.testing.assert_close(weight[6, :4], torch.tensor([1 / 3, 2 / 3, 1.0, 1.0]))  # fades at the frame's edge
    torch.testing.assert_close(weight[6, 4:8], torch.tensor([1.0, 1.0, 2 / 3, 1 / 3]))  # and at the mask's


def test_paste_back_adds_the_upsampled_change_inside_the_mask_only(astronaut):
    crop = _frame(astronaut)
    mask = torch.zeros(1, 16, 16)
    mask[:, 9:14, 4:12] = 1  # the mouth's part of the frame
    source = torch.zeros(3, 16, 16)
    out = faces.paste_back(astronaut.pixels, source, source + 0.2, crop.to_model, mask)
    weight = faces.paste_weight(mask, crop.to_model, astronaut.size)
    moved = (out.int() - astronaut.pixels.int()).abs().amax(0)
    assert torch.equal(out[:, weight == 0], astronaut.pixels[:, weight == 0])
    assert (moved[weight == 0] == 0).all() and (moved[weight > 0.999] > 0).all()
    deep_inside = (weight > 0.999) & (astronaut.pixels.amax(0) < 200)  # unclipped: + 0.2 * 255 / 2 = 25.5
    assert moved[deep_inside].float().mean().sub(25.5).abs() < 0.6
    ys, xs = (weight > 0).nonzero().T.float()  # the mouth: below the eyes, inside the face box
    x0, y0, x1, y1 = crop.box
    assert x0 < xs.mean() < x1 and 110 < ys.mean() < y1  # her eyes are at y = 102


def test_a_real_edit_changes_the_photo_only_inside_its_mask(astronaut, smoke):
    model, schedule, config = smoke
    crops, _ = photo.frame_faces(astronaut.rgb, config.image_size, config.crop, "astronaut")
    y = torch.full((1, 3), UNKNOWN)
    result = Editor(model, schedule, 4).edit(data.to_model_range(crops[0].x0)[None], y,
                                             Change(set_attributes(y, NAMES, {"Smiling": 0})), reconstruct=True)
    assert result.mask is not None and 0 < result.mask.mean() < 1
    out = photo.paste_faces(astronaut, crops, result)
    weight = faces.paste_weight(result.mask[0], crops[0].to_model, astronaut.size)
    changed = (out.pixels != astronaut.pixels).any(0)
    assert changed.sum() > 100 and not changed[weight == 0].any()
    assert out.pixels.shape == astronaut.pixels.shape


# --- the cached edit ---------------------------------------------------------------------------------------

def test_the_editor_on_a_photo_is_edit_and_reuses_the_inversion(astronaut, smoke):
    model, schedule, _ = smoke
    x0 = data.to_model_range(_frame(astronaut).x0)[None]
    y = torch.full((1, 3), UNKNOWN)
    editor, counts, calls = Editor(model, schedule, 5), [], []
    for strength in (1.0, 2.0):  # a slider moved: the same face, another edit
        calls.clear()
        result = editor.edit(x0, y, Change(attribute_strength=torch.tensor([[strength, 0, 0]])), reconstruct=True,
                             callback=lambda done, total: calls.append(total))
        direct = edit(model, schedule, x0, y, attribute_strength=torch.tensor([[strength, 0, 0]]), steps=5)
        assert torch.equal(result.edited, direct)  # edit's own result, to the bit
        counts.append((len(calls), calls[-1], result.inversion_cached))
    # first: inversion 5 + reconstruction 5 + mask 8 + generation 5; then generation only (the mask is
    # the same at any size of the same edit, Change.direction)
    assert counts == [(23, 23, False), (5, 5, True)]
    # a target edit's mask does not depend on the strength: a moved strength slider regenerates only
    target = y.clone()
    target[0, 0] = PRESENT
    for strength, evaluations in ((1.0, 13), (2.5, 5), (-1.0, 5)):
        calls.clear()
        result = editor.edit(x0, y, Change(target, strength), reconstruct=True,
                             callback=lambda done, total: calls.append(total))
        assert len(calls) == calls[-1] == evaluations
        assert torch.equal(result.edited, edit(model, schedule, x0, y, target, strength=strength, steps=5))
    sdedit = editor.edit(x0, y, Change(attribute_strength=torch.tensor([[1.0, 0, 0]]), region=False), "sdedit",
                         reconstruct=True)
    assert torch.equal(sdedit.edited, edit(model, schedule, x0, y, attribute_strength=torch.tensor([[1.0, 0, 0]]),
                                           method="sdedit", steps=5))


# --- photo files ---------------------------------------------------------------------------------------------

def _saved(picture, tmp_path, name, **options):
    path = tmp_path / name
    picture.save(path, **options)
    return path


def test_exif_orientation_is_applied(astronaut, tmp_path):
    upright = Image.open(ASTRONAUT).crop((0, 0, 512, 400))  # not square, so a turn shows in the size
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display": the camera stored the pixels turned the other way
    path = _saved(upright.transpose(Image.Transpose.ROTATE_90), tmp_path, "phone.jpg", exif=exif, quality=98)
    read = photo.read_photo(path)
    assert read.size == (400, 512)
    assert psnr(read.rgb, TF.pil_to_tensor(upright)) > 35


@pytest.mark.parametrize("mode", ["L", "P", "RGBA", "LA", "I;16"])
def test_photo_modes_are_read_right_and_written_back_in_kind(astronaut, tmp_path, mode):
    rgb = Image.open(ASTRONAUT)
    if mode == "I;16":  # a 16-bit grayscale PNG: PIL's own convert("RGB") would clip it to white
        picture = Image.fromarray(np.asarray(rgb.convert("L")).astype(np.uint16) * 257)
    elif mode in ("RGBA", "LA"):
        picture = rgb.convert(mode)
        picture.putalpha(Image.linear_gradient("L").resize(rgb.size))
    else:
        picture = rgb.convert(mode)
    path = _saved(picture, tmp_path, "in.png")
    read = photo.read_photo(path)
    if mode == "I;16":
        assert read.peak == 65535 and read.pixels.shape == (1, 512, 512)
        assert torch.equal(read.rgb[0], TF.pil_to_tensor(rgb.convert("L"))[0])  # 257 v / 257: every value kept
    else:
        assert torch.equal(read.rgb, TF.pil_to_tensor(picture.convert("RGB")))
    out = tmp_path / "out.png"
    photo.write_photo(read, out)
    with Image.open(out) as back:
        assert back.mode == {"L": "L", "P": "RGB", "RGBA": "RGBA", "LA": "LA", "I;16": "I;16"}[mode]
        assert np.array_equal(np.asarray(back), np.asarray(picture.convert(back.mode) if mode != "I;16" else picture))


def test_an_unreadable_file_names_itself(tmp_path):
    path = tmp_path / "broken.jpg"
    path.write_bytes(b"not a jpeg")
    with pytest.raises(ValueError, match="cannot read image .*broken.jpg"):
        photo.read_photo(path)


def test_draw_boxes_outlines_the_box():
    image = photo.draw_boxes(torch.zeros(3, 50, 60, dtype=torch.uint8), [(10, 10, 40, 30)], width=2)
    assert image[:, 10, 20].tolist() == [255, 220, 0] and image[:, 20, 20].sum() == 0


# --- identity --------------------------------------------------------------------------------------------------

def test_identity_distance(celeba_sample):
    identity = pytest.importorskip("celebadiff.identity")
    partition = data.read_partition_file(celeba_sample / data.PARTITION_FILE)
    # CelebA's splits are by identity: a train and a valid face are two people
    train = [f for f, s in sorted(partition.items()) if s == 0][:2]
    valid = [f for f, s in sorted(partition.items()) if s == 1][:2]
    load = lambda files: torch.stack([data.load_image(celeba_sample / data.IMAGE_DIR / f, 64) for f in files])
    a, b = load(train), load(valid)
    blurred = TF.gaussian_blur(a, [5, 5], [0.8, 0.8])
    assert identity.identity_distance(a, a).tolist() == [0.0, 0.0]
    same, other = identity.identity_distance(a, blurred), identity.identity_distance(a, b)
    assert (same < identity.THRESHOLD).all() and (other > same).all(), (same, other)
    full = torch.stack([photo.read_photo(celeba_sample / data.IMAGE_DIR / f).rgb for f in train])  # 178x218
    assert (identity.identity_distance(full, a) < identity.THRESHOLD).all()  # either framing reads the same face
    with pytest.raises(ValueError, match="same length"):
        identity.identity_distance(a, b[:1])
