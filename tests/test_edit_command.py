"""`python -m celebadiff edit` end to end on a tiny untrained checkpoint: outputs, source attributes, errors."""

import copy
import sys
import types

import numpy as np
import pytest
import torch
from conftest import write_celeba
from PIL import Image

from celebadiff import edit_command
from celebadiff.__main__ import main
from celebadiff.config import preset
from celebadiff.data import CELEBA_ATTRIBUTES
from celebadiff.models import build_model
from celebadiff.train import save_checkpoint
from celebadiff.unet import PRESENT, UNKNOWN

NAMES = ("Smiling", "Eyeglasses", "Male")


def _checkpoint(path, attributes=NAMES):
    config = preset("smoke", attributes=attributes, image_size=16)
    torch.manual_seed(0)
    model = build_model(config)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint(path, config, 0, model, copy.deepcopy(model))
    return path


@pytest.fixture
def ckpt(tmp_path):
    return _checkpoint(tmp_path / "model.safetensors")


@pytest.fixture
def celeba(tmp_path):
    return write_celeba(tmp_path / "celeba", n=6, partition=[0, 0, 1, 1, 2, 2])


def _edit(ckpt, image, out, *extra):
    return main(["edit", "--checkpoint", str(ckpt), "--image", str(image), "--out", str(out), "--steps", "3", *extra])


def _recording_edit(monkeypatch):
    """Replace editing.edit (as the command sees it) by one that records its inputs and returns x0."""
    calls = []

    def fake(model, schedule, x0, y_source, y_target, **kwargs):
        calls.append((y_source.clone(), y_target.clone(), kwargs))
        return x0
    monkeypatch.setattr(edit_command, "edit", fake)
    return calls


def test_a_file_edit_writes_a_png_at_the_model_size(ckpt, celeba, tmp_path, capsys):
    out = tmp_path / "edited.png"
    assert _edit(ckpt, celeba / "img_align_celeba" / "000001.jpg", out, "--set", "Smiling=0") == 0
    with Image.open(out) as im:
        assert (im.format, im.size, im.mode) == ("PNG", (16, 16), "RGB")
    assert f"wrote {out}" in capsys.readouterr().out
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


@pytest.mark.parametrize("flags, mask", [((), None), (("--no-mask",), False), (("--mask",), True)])
def test_the_mask_flag_reaches_edit(ckpt, celeba, tmp_path, monkeypatch, flags, mask):
    calls = _recording_edit(monkeypatch)
    assert _edit(ckpt, celeba / "img_align_celeba" / "000001.jpg", tmp_path / "o.png", "--set", "Male=1", *flags) == 0
    assert calls[0][2]["mask"] is mask  # None: edit's default (the mask for DDIB)


def test_sdedit_with_a_mask_is_a_one_line_error(ckpt, celeba, tmp_path, capsys):
    out = tmp_path / "o.png"
    assert _edit(ckpt, celeba / "img_align_celeba" / "000001.jpg", out, "--set", "Male=1", "--method", "sdedit",
                 "--mask") == 2
    assert "a mask applies to DDIB only" in capsys.readouterr().err and not out.exists()


def test_other_images_take_source_pairs_then_a_classifier_else_unknown(ckpt, tmp_path, monkeypatch, capsys):
    calls = _recording_edit(monkeypatch)
    image = tmp_path / "face.png"
    Image.fromarray(np.full((30, 40, 3), 128, np.uint8)).save(image)  # 40x30: not CelebA, not square
    assert _edit(ckpt, image, tmp_path / "a.png", "--set", "Smiling=1", "--source", "Male=0") == 0
    assert calls[-1][0].tolist() == [[UNKNOWN, UNKNOWN, 0]]
    err = capsys.readouterr().err
    assert "face.png is 40x30, not an aligned CelebA image" in err and "resized to 16x16" in err
    with Image.open(tmp_path / "a.png") as im:
        assert im.size == (16, 16)

    fake = types.ModuleType("celebadiff.classifier")  # a stand-in knowing two of the model's attributes
    fake.load_classifier = lambda run: types.SimpleNamespace(attribute_names=["Eyeglasses", "Male", "Bangs"])
    fake.predict = lambda clf, x: torch.tensor([[0.9, 0.8, 0.1]]).expand(len(x), -1)
    monkeypatch.setitem(sys.modules, "celebadiff.classifier", fake)
    assert _edit(ckpt, image, tmp_path / "b.png", "--set", "Smiling=1", "--source", "Male=0", "--classifier", "c") == 0
    assert calls[-1][0].tolist() == [[UNKNOWN, PRESENT, 0]]  # --source wins over the classifier


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
    _fails(capsys, code, "no checkpoint at", "nowhere")
    assert not out.exists()


def test_a_checkpoint_of_another_model_rejects_attributes_it_was_not_trained_with(celeba, tmp_path, capsys):
    other = _checkpoint(tmp_path / "run" / "checkpoints" / "last.safetensors", attributes=("Bangs", "Wearing_Hat"))
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
    assert image.read_bytes() == before
