"""The interactive editor, driven from Python: a tiny untrained model at 16 px, 20 rendered faces and a photo."""

import io
import threading
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from celebadiff import photo, synthfaces
from celebadiff import widgets as editor_module
from celebadiff.config import preset
from celebadiff.data import CelebADataset
from celebadiff.diffusion import NoiseSchedule
from celebadiff.editing import FaceEdit
from celebadiff.models import build_model
from celebadiff.unet import UNKNOWN
from celebadiff.widgets import AttributeEditor

STEPS = 10  # the smallest the steps slider allows
ASTRONAUT = Path(__file__).parents[1] / "notebooks" / "photos" / "astronaut.jpg"  # NASA, public domain


@pytest.fixture(scope="module")
def faces(tmp_path_factory):
    return synthfaces.write_dataset(tmp_path_factory.mktemp("faces"), n=20, size=32, progress=False)


@pytest.fixture(scope="module")
def parts(faces):
    torch.manual_seed(0)
    config = preset("smoke")
    model = build_model(config).eval()
    # random weights everywhere (a fresh U-Net's blocks start as identities, which would hide y's effect)
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.05)
    torch.nn.init.normal_(model.attr_emb.weight, std=1.0)
    dataset = CelebADataset(faces, "test", attributes=list(config.attributes), size=config.image_size)
    return model, NoiseSchedule.named(config.schedule, config.T), config, dataset


@pytest.fixture
def editor(parts):
    editor = AttributeEditor(*parts, steps=STEPS)
    editor.steps.value = STEPS
    return editor


def png_bytes(array):
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def upload(editor, content, name="face.png"):
    editor.upload.value = ({"name": name, "type": "image/png", "size": len(content), "content": memoryview(content),
                            "last_modified": datetime.now(timezone.utc)},)


def test_editor_shows_the_chosen_test_face(editor, parts):
    dataset = parts[3]
    assert list(editor.sliders) == list(parts[2].attributes)
    assert all((s.min, s.max, s.value) == (-3.0, 3.0, 0.0) for s in editor.sliders.values())
    shown = np.asarray(Image.open(io.BytesIO(editor.images["source"].value)))
    assert shown.shape == (16 * editor_module.SCALE, 16 * editor_module.SCALE, 3)
    # nearest upscaling: every SCALE-th pixel is the dataset pixel
    expected = dataset.image_uint8(0).permute(1, 2, 0).numpy()
    np.testing.assert_array_equal(shown[::editor_module.SCALE, ::editor_module.SCALE], expected)
    editor.picks[1].click()
    assert editor.index.value == 1
    assert [p.button_style for p in editor.picks[:3]] == ["", "info", ""]  # the chosen thumbnail is marked
    shown = np.asarray(Image.open(io.BytesIO(editor.images["source"].value)))
    np.testing.assert_array_equal(shown[::editor_module.SCALE, ::editor_module.SCALE],
                                  dataset.image_uint8(1).permute(1, 2, 0).numpy())


def test_slider_edit_changes_the_face(editor):
    reconstruction = editor.run_edit()
    assert "no slider moved" in editor.status.value
    assert editor.progress.value == editor.progress.max == 2 * STEPS  # inversion, generation (no mask: no change)
    editor.sliders["Smiling"].value = 2.0
    edited = editor.run_edit()
    source = editor.session.x0
    assert edited.shape == source.shape == (1, 3, 16, 16)
    assert editor.result is edited and not editor.busy and not editor.edit_button.disabled
    assert (edited - source).abs().mean() > 0.05
    assert (edited - reconstruction).abs().mean() > 1e-3  # the slider, not just the round trip, changed it
    assert editor.progress.value == editor.progress.max == STEPS + 8  # inversion reused: generation, 4 mask draws x 2
    assert "edited in" in editor.status.value and "Smiling +2.00" in editor.status.value
    assert "inversion reused" in editor.status.value
    assert editor.images["edited"].value != editor.images["source"].value
    heat = np.asarray(Image.open(io.BytesIO(editor.images["difference"].value)))
    assert heat.shape == (64, 64, 3) and heat.std() > 0


def test_sdedit_and_its_seed(editor):
    editor.method.value = "sdedit"
    editor.sliders["Eyeglasses"].value = 1.0
    a = editor.run_edit()
    b = editor.run_edit()
    editor.seed.value = 1
    c = editor.run_edit()
    torch.testing.assert_close(a, b)
    assert (a - c).abs().max() > 1e-3
    assert editor.progress.value == editor.progress.max < 2 * STEPS  # only the steps below t0


def test_second_click_while_busy_starts_no_second_edit(editor, monkeypatch):
    started, release, calls = threading.Event(), threading.Event(), []

    def slow_edit(x0, *args, **kwargs):
        calls.append(1)
        started.set()
        release.wait(10)
        return FaceEdit(x0 + 0.5, None, None, False)

    monkeypatch.setattr(editor.session.editor, "edit", slow_edit)
    editor.edit_button.click()
    assert started.wait(10)
    assert editor.busy and editor.edit_button.disabled
    editor.edit_button.click()
    assert editor.run_edit() is None
    assert "already running" in editor.status.value
    release.set()
    editor.wait(10)
    assert len(calls) == 1
    assert not editor.busy and not editor.edit_button.disabled
    torch.testing.assert_close(editor.result, editor.session.x0 + 0.5)


def test_failing_edit_is_reported_in_the_status_line(editor, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("out of memory")

    monkeypatch.setattr(editor.session.editor, "edit", broken)
    assert editor.run_edit() is None
    assert "edit failed: RuntimeError: out of memory" in editor.status.value
    assert not editor.busy and not editor.edit_button.disabled


def test_corrupt_upload_shows_an_error(editor):
    before = editor.images["source"].value
    upload(editor, b"this is not a picture", name="broken.png")
    assert "broken.png" in editor.status.value and "cannot read" in editor.status.value
    assert editor.images["source"].value == before


def test_an_uploaded_photo_is_found_edited_and_pasted_back(editor):
    upload(editor, ASTRONAUT.read_bytes(), name="astronaut.jpg")
    assert "upload astronaut.jpg" in editor.source_info.value
    assert editor.session.x0.shape == (1, 3, 16, 16)
    assert (editor.session.y_source == UNKNOWN).all()  # no classifier: nothing is known
    before = np.asarray(Image.open(io.BytesIO(editor.photos["photo"].value)))
    assert before.shape == (editor_module.PHOTO_SIDE, editor_module.PHOTO_SIDE, 3)
    x0, y0, x1, y1 = (round(v * editor_module.PHOTO_SIDE / 512) for v in editor.session.crop.box)
    assert (before[y0 + 1:y1, x0] > [200, 180, -1]).all(1).mean() > 0.8  # the yellow box's left edge
    editor.sliders["Smiling"].value = -1.0
    first = editor.run_edit()
    assert editor.progress.max == 3 * STEPS + 8  # inversion, reconstruction, generation, mask
    assert editor.pasted.size == (512, 512) and editor.photos["photo_edited"].value
    changed = (editor.pasted.pixels != photo.read_photo(ASTRONAUT).pixels).any(0)
    assert changed.any() and not changed[:, :130].any() and not changed[260:].any()  # her face's frame only
    editor.sliders["Smiling"].value = -2.0  # a slider moved: the same face's inversion serves again
    second = editor.run_edit()
    assert editor.progress.max == STEPS and "inversion reused" in editor.status.value  # and the mask: same direction
    assert (second - first).abs().max() > 0
    editor.index.value = 1  # back to a test image: the photo row goes away
    assert editor.photo_row.layout.display == "none"


def test_an_upload_without_a_face_shows_an_error(editor):
    before = editor.images["source"].value
    upload(editor, png_bytes(np.full((80, 120, 3), 128, np.uint8)), name="grey.png")
    assert "no face found in grey.png" in editor.status.value
    assert editor.images["source"].value == before


def test_an_uploaded_aligned_face_is_framed_like_the_data(editor, faces):
    face = np.asarray(Image.open(faces / "img_align_celeba" / "000001.png"))  # 32 px, not a real photo
    aligned = np.asarray(Image.fromarray(face).resize((178, 218)))  # CelebA's aspect: no detection
    upload(editor, png_bytes(aligned))
    assert editor.session.x0.shape == (1, 3, 16, 16) and editor.session.crop.score is None
    editor.sliders["Smiling"].value = 1.0
    assert editor.run_edit() is not None and editor.pasted.size == (218, 178)


def test_classifier_reads_the_result(parts, faces):
    classifier_module = pytest.importorskip("celebadiff.classifier")
    torch.manual_seed(0)
    classifier = classifier_module.AttributeClassifier(parts[2].attributes, image_size=16, widths=(8, 16)).eval()
    editor = AttributeEditor(*parts, classifier=classifier, steps=STEPS)
    editor.sliders["Smiling"].value = 1.5
    edited = editor.run_edit()
    table = editor.reading.value
    assert "<table" in table and "Smiling" in table and "+1.50" in table and "Male" not in table
    p = classifier_module.predict(classifier, edited.clamp(-1, 1))[0, list(parts[2].attributes).index("Smiling")].item()
    assert f"{p:.2f}" in table
    upload(editor, ASTRONAUT.read_bytes(), name="astronaut.jpg")
    assert (editor.session.y_source != UNKNOWN).all()  # the classifier labelled the upload


def test_dataset_must_match_the_model(parts, faces):
    model, schedule, config, _ = parts
    wrong = CelebADataset(faces, "test", attributes=["Smiling"], size=config.image_size)
    with pytest.raises(ValueError, match="attributes=list"):
        AttributeEditor(model, schedule, config, wrong)
    with pytest.raises(ValueError, match="from 10 to 100"):
        AttributeEditor(*parts, steps=5)
