"""`python -m celebadiff edit` and `align` end to end on a tiny untrained checkpoint: outputs, source
attributes, photos (detection, paste-back at full size), errors."""

import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import EDIT_NAMES, edit_checkpoint
from PIL import Image

from celebadiff import faces
from celebadiff.__main__ import main
from celebadiff.data import CELEBA_ATTRIBUTES
from celebadiff.editing import Editor, FaceEdit
from celebadiff.unet import PRESENT, UNKNOWN

NAMES = EDIT_NAMES
ASTRONAUT = Path(__file__).parents[1] / "notebooks" / "photos" / "astronaut.jpg"  # NASA, public domain


def _edit(ckpt, image, out, *extra):
    return main(["edit", "--checkpoint", str(ckpt), "--image", str(image), "--out", str(out), "--steps", "3", *extra])


def _recording_edit(monkeypatch):
    """Replace Editor.edit by one that records its inputs (y_source, the change's target, and its strength,
    steps and region as "mask") and changes nothing."""
    calls = []

    def fake(self, x0, y_source, changes, method="ddib", **kwargs):
        change, = changes
        calls.append((y_source.clone(), change.target.clone(),
                      {"strength": change.strength, "steps": self.steps, "mask": change.region}))
        return FaceEdit(x0, x0, None, False)
    monkeypatch.setattr(Editor, "edit", fake)
    return calls


def _pixels(path):
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB")).astype(int)


def test_an_aligned_celeba_image_is_written_whole_at_its_size(ckpt, celeba, tmp_path, capsys):
    out, face = tmp_path / "edited.png", tmp_path / "face.png"
    image = celeba / "img_align_celeba" / "000001.jpg"
    assert _edit(ckpt, image, out, "--set", "Smiling=1", "--face-out", str(face)) == 0  # its row: not smiling
    with Image.open(out) as im:
        assert (im.format, im.size, im.mode) == ("PNG", (178, 218), "RGB")
    with Image.open(face) as im:
        assert im.size == (3 * 16, 16)  # source, reconstruction, edit at the model's 16 px
    printed = capsys.readouterr().out
    assert f"wrote {out}" in printed and "aligned image, no detection" in printed
    changed = (_pixels(out) != _pixels(image)).any(2)
    rows, cols = changed.nonzero()  # the loader's frame: the centre 140 px (and its half-pixel feather)
    assert changed.any() and rows.min() >= 39 - 5 and rows.max() < 179 + 5 and cols.min() >= 19 - 5
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp file left


def test_a_folder_edit_writes_one_png_per_image_with_the_same_names(ckpt, celeba, tmp_path, capsys):
    out = tmp_path / "out"
    assert _edit(ckpt, celeba / "img_align_celeba", out, "--set", "Eyeglasses=1", "--method", "sdedit") == 0
    assert sorted(p.name for p in out.iterdir()) == [f"{i:06d}.png" for i in range(1, 7)]
    assert "wrote 6 images" in capsys.readouterr().out


def test_source_attributes_come_from_the_dataset_row(ckpt, celeba, tmp_path, monkeypatch):
    calls = _recording_edit(monkeypatch)
    assert _edit(ckpt, celeba / "img_align_celeba", tmp_path / "out", "--set", "Male=1", "--strength", "2") == 0
    (y_source, y_target, kwargs), = calls
    # conftest: attribute a of image i (0-based) is present iff (i + a) % 3 == 0
    columns = [CELEBA_ATTRIBUTES.index(n) for n in NAMES]
    expected = torch.tensor([[int((i + a) % 3 == 0) for a in columns] for i in range(6)])
    assert torch.equal(y_source, expected)
    assert torch.equal(y_target[:, 2], torch.full((6,), PRESENT)) and torch.equal(y_target[:, :2], expected[:, :2])
    assert kwargs["strength"] == 2.0 and kwargs["steps"] == 3


@pytest.mark.parametrize("flags, mask", [((), None), (("--no-mask",), False), (("--mask",), None)])
def test_the_mask_flag_reaches_edit(ckpt, celeba, tmp_path, monkeypatch, flags, mask):
    calls = _recording_edit(monkeypatch)
    assert _edit(ckpt, celeba / "img_align_celeba" / "000001.jpg", tmp_path / "o.png", "--set", "Male=1", *flags) == 0
    assert calls[0][2]["mask"] is mask  # None: the change's own DiffEdit mask (DDIB's default); False: none


def test_sdedit_with_a_mask_is_a_one_line_error(ckpt, celeba, tmp_path, capsys):
    out = tmp_path / "o.png"
    assert _edit(ckpt, celeba / "img_align_celeba" / "000001.jpg", out, "--set", "Male=1", "--method", "sdedit",
                 "--mask") == 2
    assert "a mask applies to DDIB only" in capsys.readouterr().err and not out.exists()


def test_photos_take_source_pairs_then_a_classifier_else_unknown(ckpt, tmp_path, monkeypatch):
    calls = _recording_edit(monkeypatch)
    assert _edit(ckpt, ASTRONAUT, tmp_path / "a.png", "--set", "Smiling=1", "--source", "Male=0") == 0
    assert calls[-1][0].tolist() == [[UNKNOWN, UNKNOWN, 0]]
    with Image.open(tmp_path / "a.png") as im:
        assert im.size == (512, 512)

    fake = types.ModuleType("celebadiff.classifier")  # a stand-in knowing two of the model's attributes
    fake.load_classifier = lambda run: types.SimpleNamespace(attribute_names=["Eyeglasses", "Male", "Bangs"])
    fake.predict = lambda clf, x: torch.tensor([[0.9, 0.8, 0.1]]).expand(len(x), -1)
    monkeypatch.setitem(sys.modules, "celebadiff.classifier", fake)
    assert _edit(ckpt, ASTRONAUT, tmp_path / "b.png", "--set", "Smiling=1", "--source", "Male=0", "--classifier",
                 "c") == 0
    assert calls[-1][0].tolist() == [[UNKNOWN, PRESENT, 0]]  # --source wins over the classifier


def test_a_photo_is_written_whole_at_its_size_with_only_its_face_changed(ckpt, tmp_path, capsys):
    out, face = tmp_path / "smiling.jpg", tmp_path / "face.png"
    assert _edit(ckpt, ASTRONAUT, out, "--set", "Smiling=0", "--face-out", str(face)) == 0
    printed = capsys.readouterr().out
    assert "face at 180, 60, 269, 173" in printed
    with Image.open(out) as im:
        assert (im.format, im.size) == ("JPEG", (512, 512))
    with Image.open(face) as im:
        assert im.size == (48, 16)
    png = tmp_path / "smiling.png"
    assert _edit(ckpt, ASTRONAUT, png, "--set", "Smiling=0") == 0
    changed = (_pixels(png) != _pixels(ASTRONAUT)).any(2)
    rows, cols = changed.nonzero()
    assert changed.sum() > 500 and 120 < cols.min() and cols.max() < 330 and 10 < rows.min() and rows.max() < 240


def test_an_exif_rotated_photo_comes_out_upright(ckpt, tmp_path):
    upright = Image.open(ASTRONAUT).crop((0, 0, 512, 400))
    exif = Image.Exif()
    exif[0x0112] = 6  # the camera stored the pixels turned; viewers rotate them 90 degrees clockwise
    phone = tmp_path / "phone.jpg"
    upright.transpose(Image.Transpose.ROTATE_90).save(phone, exif=exif, quality=98)
    out = tmp_path / "out.png"
    assert _edit(ckpt, phone, out, "--set", "Smiling=0") == 0
    with Image.open(out) as im:
        assert im.size == (512, 400) and im.getexif().get(0x0112) is None  # upright pixels, no turn left to do
    same = (np.abs(_pixels(out) - np.asarray(upright).astype(int)) < 12).all(2)  # JPEG noise aside
    assert same[:, :150].mean() > 0.99 and same[:, 330:].mean() > 0.99  # away from her face: the photo itself


def test_aligned_skips_detection_for_a_face_framed_like_the_training_data(ckpt, tmp_path, capsys):
    image = tmp_path / "thumb.png"
    Image.fromarray(np.full((30, 40, 3), 128, np.uint8)).save(image)  # no face a detector could find
    _fails(capsys, _edit(ckpt, image, tmp_path / "a.png", "--set", "Smiling=1"), "no face found in thumb.png")
    assert _edit(ckpt, image, tmp_path / "a.png", "--set", "Smiling=1", "--aligned") == 0
    with Image.open(tmp_path / "a.png") as im:
        assert im.size == (40, 30)


def _two_faces(tmp_path):
    """The astronaut's photo beside a smaller copy of itself: two faces, the left one larger."""
    big = Image.open(ASTRONAUT)
    canvas = Image.new("RGB", (512 + 384, 512), (128, 128, 128))
    canvas.paste(big, (0, 0))
    canvas.paste(big.resize((384, 384), Image.LANCZOS), (512, 64))
    path = tmp_path / "two.png"
    canvas.save(path)
    return path


def test_several_faces_edit_the_largest_and_say_so_or_all(ckpt, tmp_path, capsys):
    photo = _two_faces(tmp_path)
    assert _edit(ckpt, photo, tmp_path / "one.png", "--set", "Smiling=0") == 0
    err = capsys.readouterr().err
    assert "two.png has 2 faces: edited the largest" in err and "--all-faces" in err
    changed = (_pixels(tmp_path / "one.png") != _pixels(photo)).any(2)
    assert changed[:, :512].any() and not changed[:, 512:].any()
    assert _edit(ckpt, photo, tmp_path / "all.png", "--set", "Smiling=0", "--all-faces") == 0
    changed = (_pixels(tmp_path / "all.png") != _pixels(photo)).any(2)
    assert changed[:, :512].any() and changed[:, 512:].any()


def _fails(capsys, code, *needles):
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1, err
    for needle in needles:
        assert needle in err, err


@pytest.mark.parametrize("flags, needles", [
    (["--set", "Smile=1"], ["unknown attribute 'Smile'", "did you mean 'Smiling'"]),
    (["--set", "Smiling=2"], ["--set Smiling=2", "must be 0 or 1"]),
    (["--set", "Smiling"], ["expected NAME=0 or NAME=1"]),
    (["--set", "Bangs=1"], ["trained without Bangs", "Smiling, Eyeglasses, Male"]),  # another model's attribute
    (["--set", "Smiling=1", "--source", "Male=yes"], ["--source Male=yes", "must be 0 or 1"]),
    ([], ["at least one --set"]),
])
def test_bad_attributes_fail_with_one_line_and_write_nothing(ckpt, celeba, tmp_path, capsys, flags, needles):
    out = tmp_path / "out"
    _fails(capsys, _edit(ckpt, celeba / "img_align_celeba", out, *flags), *needles)
    assert not out.exists()


def test_an_unreadable_image_in_a_folder_fails_before_anything_is_written(ckpt, celeba, tmp_path, capsys):
    (celeba / "img_align_celeba" / "000004.jpg").write_bytes(b"not a jpeg at all")
    out = tmp_path / "out"
    code = _edit(ckpt, celeba / "img_align_celeba", out, "--set", "Smiling=1")
    _fails(capsys, code, "cannot read image", "000004.jpg")
    assert not out.exists()


def test_a_missing_checkpoint_fails_and_writes_nothing(celeba, tmp_path, capsys):
    out = tmp_path / "e.png"
    code = _edit(tmp_path / "nowhere", celeba / "img_align_celeba" / "000001.jpg", out, "--set", "Smiling=1")
    _fails(capsys, code, "no model", "nowhere")
    assert not out.exists()


def test_a_checkpoint_of_another_model_rejects_attributes_it_was_not_trained_with(celeba, tmp_path, capsys):
    other = edit_checkpoint(tmp_path / "run" / "checkpoints" / "last.safetensors", attributes=("Bangs", "Wearing_Hat"))
    image = celeba / "img_align_celeba" / "000001.jpg"
    _fails(capsys, _edit(tmp_path / "run", image, tmp_path / "e.png", "--set", "Smiling=1"),
           "trained without Smiling", "it can edit only Bangs, Wearing_Hat")
    assert _edit(tmp_path / "run", image, tmp_path / "e.png", "--set", "Bangs=1") == 0  # a run folder works
    assert other.exists() and (tmp_path / "e.png").exists()


def test_the_input_is_never_overwritten(ckpt, tmp_path, capsys):
    image = tmp_path / "face.png"
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(image)
    before = image.read_bytes()
    _fails(capsys, _edit(ckpt, image, image, "--set", "Smiling=1"), "would overwrite the input")
    _fails(capsys, _edit(ckpt, tmp_path, tmp_path, "--set", "Smiling=1"), "is the input folder")
    _fails(capsys, main(["align", "--image", str(image), "--out", str(image)]), "would overwrite the input")
    assert image.read_bytes() == before


@pytest.mark.parametrize("kind", ["1x1", "flat", "noise"])
def test_an_image_without_a_face_is_named_and_nothing_is_written(ckpt, tmp_path, capsys, kind):
    rng = np.random.default_rng(0)
    pixels = {"1x1": np.full((1, 1, 3), 128, np.uint8), "flat": np.full((300, 400, 3), 128, np.uint8),
              "noise": rng.integers(0, 256, (300, 400, 3), dtype=np.uint8)}[kind]
    image = tmp_path / f"{kind}.png"
    Image.fromarray(pixels).save(image)
    out = tmp_path / "out.png"
    _fails(capsys, _edit(ckpt, image, out, "--set", "Smiling=1"), f"no face found in {kind}.png")
    _fails(capsys, main(["align", "--image", str(image), "--out", str(out)]), f"no face found in {kind}.png")
    assert not out.exists()


def test_a_face_too_small_to_edit_names_the_minimum(ckpt, tmp_path, capsys):
    small = tmp_path / "small.png"
    Image.open(ASTRONAUT).resize((200, 200), Image.LANCZOS).save(small)  # her face: about 35 px
    out = tmp_path / "out.png"
    _fails(capsys, _edit(ckpt, small, out, "--set", "Smiling=1"), "small.png is too small to edit",
           f"the minimum is {faces.MIN_FACE} px")
    assert not out.exists()


def test_an_unreadable_photo_fails_and_writes_nothing(ckpt, tmp_path, capsys):
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "a.jpg").write_bytes(ASTRONAUT.read_bytes())
    (folder / "b.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    _fails(capsys, _edit(ckpt, folder, tmp_path / "out", "--set", "Smiling=1"), "cannot read image", "b.jpg")
    assert not (tmp_path / "out").exists()


def test_align_writes_celeba_aligned_faces_for_a_file_and_a_folder(celeba_sample, tmp_path, capsys):
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "astronaut.jpg").write_bytes(ASTRONAUT.read_bytes())
    turned = Image.open(celeba_sample / "img_align_celeba" / "000002.jpg").rotate(15, expand=True, fillcolor=0)
    turned.resize((turned.width * 2, turned.height * 2)).save(folder / "tilted.png")
    assert main(["align", "--image", str(folder), "--out", str(tmp_path / "aligned")]) == 0
    assert "wrote 2 aligned faces" in capsys.readouterr().out
    written = sorted(p.name for p in (tmp_path / "aligned").iterdir())
    assert written == ["astronaut.jpg", "tilted.png"]
    for name in written:
        with Image.open(tmp_path / "aligned" / name) as im:
            assert im.size == (178, 218)
    with Image.open(tmp_path / "aligned" / "tilted.png") as im:
        found = faces.detect(torch.from_numpy(np.asarray(im.convert("RGB")).copy()).permute(2, 0, 1))
    eyes = found[0].landmarks[:2]
    assert abs(eyes[0, 1] - eyes[1, 1]) < 3  # level again
    assert (found[0].landmarks - torch.tensor(faces.TEMPLATE, dtype=torch.float64)).norm(dim=1).mean() < 5
    assert main(["align", "--image", str(folder / "astronaut.jpg"), "--out", str(tmp_path / "one.png")]) == 0


def test_the_real_face_model_edits_at_its_own_default_strength(celeba, tmp_path, monkeypatch):
    calls = _recording_edit(monkeypatch)
    image = celeba / "img_align_celeba" / "000001.jpg"
    assert _edit("celeba64", image, tmp_path / "out.png", "--set", "Smiling=1") == 0
    assert _edit("celeba64", image, tmp_path / "out1.png", "--set", "Smiling=1", "--strength", "1") == 0
    assert [kwargs["strength"] for _, _, kwargs in calls] == [1.5, 1.0]  # stored in the committed file
