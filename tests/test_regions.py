"""Region-wise editing: named regions and mask images, the Editor's region edits, `edit --region` and the editor's
regions."""

import numpy as np
import pytest
import torch
from PIL import Image
from test_edit_command import NAMES, _edit, _pixels
from test_widgets import STEPS, faces, parts  # noqa: F401 (fixtures)

from celebadiff import synthfaces
from celebadiff.changes import edit_mask, set_attributes
from celebadiff.diffusion import NoiseSchedule
from celebadiff.editing import Editor, FaceEdit
from celebadiff.faces import TEMPLATE, apply, frame_transform
from celebadiff.regions import layout_of, named_region, read_region, region_changes, region_for
from celebadiff.sampling import ddim_invert, ddim_sample
from celebadiff.unet import ABSENT, PRESENT
from celebadiff.widgets import AttributeEditor


def edit_regions(model, schedule, x0, y, changes, names, steps=10):
    return Editor(model, schedule, steps, attribute_names=names).edit(x0, y, changes).edited

# --- named regions and mask images ---------------------------------------------------------------------


def test_named_regions_cover_their_landmarks_and_not_the_others():
    size = 64
    q = apply(frame_transform(218, 178, size, 140), TEMPLATE)  # the template in the 64 px model frame
    at = lambda region, point: region[0, 0, int(point[1]), int(point[0])].item()
    mouth, eyes = named_region("mouth", size), named_region("eyes", size)
    mouth_centre, eyes_centre = (q[3] + q[4]) / 2, (q[0] + q[1]) / 2
    assert at(mouth, mouth_centre) == 1 and at(mouth, eyes_centre) == 0
    assert at(eyes, q[0]) == 1 and at(eyes, q[1]) == 1 and at(eyes, mouth_centre) == 0
    face, hair = named_region("face", size), named_region("hair", size)
    assert torch.equal(face + hair, torch.ones_like(face)) and at(face, q[2]) == 1
    assert named_region("all", size).sum() == size * size
    assert set(torch.unique(mouth).tolist()) == {0.0, 1.0}


def test_builtin_faces_have_their_own_layout():
    # a built-in face rendered with and without a smile: the change lies inside the builtin mouth region
    ids = synthfaces.sample_identities(1, seed=3)
    plain = {n: np.zeros(1, bool) for n in synthfaces.DRAWN}
    smiling = dict(plain, Smiling=np.ones(1, bool))
    a, b = (torch.from_numpy(synthfaces.render(ids, attrs, 64)[0]).float() for attrs in (plain, smiling))
    changed = (a - b).abs().amax(-1) > 10  # (64, 64): where the smile is drawn
    mouth = named_region("mouth", 64, layout="builtin")[0, 0] > 0
    assert changed.any() and (changed & mouth).sum() >= 0.9 * changed.sum()
    assert layout_of(64, 64) == "builtin" and layout_of(218, 178) == "celeba" and layout_of(109, 89) == "celeba"
    with pytest.raises(ValueError, match="unknown region 'nose'; choose one of mouth"):
        named_region("nose", 64)


def test_a_region_spec_is_a_name_a_mask_file_or_the_changes_own_mask(tmp_path):
    assert region_for("diffedit", 16) is None
    both = region_for("mouth", 64, layouts=["celeba", "builtin"])  # one per face, each on its own layout
    assert torch.equal(both, torch.cat([named_region("mouth", 64), named_region("mouth", 64, layout="builtin")]))
    Image.fromarray(np.full((8, 8), 255, np.uint8)).save(tmp_path / "white.png")
    assert torch.equal(region_for(tmp_path / "white.png", 16), torch.ones(1, 1, 16, 16))
    given = torch.zeros(1, 1, 16, 16)
    assert region_for(given, 16) is given
    changes = region_changes([("Smiling", 1, 2.0, "eyes"), ("Male", 0, 1.0, "diffedit")], 16)
    assert changes[0][:3] == ("Smiling", 1, 2.0) and torch.equal(changes[0][3], named_region("eyes", 16))
    assert changes[1] == ("Male", 0, 1.0, None)
    with pytest.raises(FileNotFoundError, match="--region Smiling: mask image .*nose not found"):
        region_for("nose", 16, flag="--region Smiling")


def test_a_mask_image_is_white_may_change_at_any_size(tmp_path):
    array = np.zeros((60, 100, 3), np.uint8)
    array[30:] = 255  # the bottom half white, drawn at 100 x 60 in colour
    Image.fromarray(array).save(tmp_path / "bottom.png")
    region = read_region(tmp_path / "bottom.png", 16)
    assert region.shape == (1, 1, 16, 16)
    assert torch.equal(region[..., :7, :], torch.zeros(1, 1, 7, 16))
    assert torch.equal(region[..., 9:, :], torch.ones(1, 1, 7, 16))
    with pytest.raises(FileNotFoundError, match="mask image .*missing.png not found; give a mask image"):
        read_region(tmp_path / "missing.png", 16)
    (tmp_path / "broken.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match="cannot read mask image .*broken.png"):
        read_region(tmp_path / "broken.png", 16)


# --- the edit ------------------------------------------------------------------------------------------


def _pixelwise_model():
    """eps(x_t, t, y) = 0.3 x_t + a pattern per PRESENT attribute: no pixel sees another, so a change confined
    to a region cannot reach the pixels outside it through the network either."""
    g = torch.Generator().manual_seed(1)
    patterns = torch.randn(3, 3, 16, 16, generator=g) * 0.3
    return lambda x_t, t, y: 0.3 * x_t + torch.einsum("ba,achw->bchw", (y == PRESENT).to(x_t.dtype), patterns)


def test_pixels_outside_an_attributes_region_are_unchanged_by_its_edit():
    model, s = _pixelwise_model(), NoiseSchedule.linear(100)
    x0 = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0)) * 2 - 1
    y = torch.tensor([[ABSENT, ABSENT, PRESENT], [ABSENT, ABSENT, ABSENT]])
    mouth, eyes = torch.zeros(1, 1, 16, 16), torch.zeros(1, 1, 16, 16)
    mouth[..., 10:, 3:13], eyes[..., 3:7, :] = 1, 1
    both = edit_regions(model, s, x0, y, [("Smiling", 1, 2.0, mouth), ("Eyeglasses", 1, 1.0, eyes)], NAMES, steps=10)
    glasses = edit_regions(model, s, x0, y, [("Eyeglasses", 1, 1.0, eyes)], NAMES, steps=10)
    smile = edit_regions(model, s, x0, y, [("Smiling", 1, 2.0, mouth)], NAMES, steps=10)
    outside_mouth, outside_eyes = mouth[0, 0] == 0, eyes[0, 0] == 0
    torch.testing.assert_close(both[..., outside_mouth], glasses[..., outside_mouth])  # the smile acted nowhere else
    torch.testing.assert_close(both[..., outside_eyes], smile[..., outside_eyes])  # nor the glasses
    assert (both - glasses)[..., ~outside_mouth].abs().amin() > 1e-3  # and the smile did act in its region
    assert torch.equal(both[..., outside_mouth & outside_eyes], x0[..., outside_mouth & outside_eyes])


def test_a_region_edit_gives_the_union_and_the_reconstruction(tiny_unet):
    model, s, x0, y = tiny_unet
    top = torch.zeros(1, 1, 16, 16)
    top[..., :6, :] = 1
    changes = [("Eyeglasses", 1, 1.5, top), ("Male", 0, 2.0)]  # Male: its own DiffEdit mask
    calls = []
    out = Editor(model, s, 5, attribute_names=NAMES).edit(x0, y, changes, reconstruct=True,
                                                          callback=lambda d, t: calls.append((d, t)))
    torch.testing.assert_close(out.edited, edit_regions(model, s, x0, y, changes, NAMES, steps=5))
    male_mask = edit_mask(model, s, x0, y, set_attributes(y, NAMES, {"Male": 0}), 2.0)
    torch.testing.assert_close(out.mask, torch.maximum(top.expand(2, -1, -1, -1), male_mask))
    torch.testing.assert_close(out.reconstruction, ddim_sample(model, s, ddim_invert(model, s, x0, y, steps=5), y,
                                                               steps=5))
    assert calls[-1] == (23, 23) and len(calls) == 23  # Male's 8 mask draws; inversion, edit, recon: 5 each


def test_a_change_of_strength_zero_is_left_out_of_the_union(tiny_unet):
    model, s, x0, y = tiny_unet
    top, bottom = torch.zeros(1, 1, 16, 16), torch.zeros(1, 1, 16, 16)
    top[..., :6, :], bottom[..., 10:, :] = 1, 1
    changes = [("Eyeglasses", 1, 1.5, top), ("Male", 0, 0.0, bottom)]
    out = Editor(model, s, 5, attribute_names=NAMES).edit(x0, y, changes)
    assert torch.equal(out.mask, top.expand(2, -1, -1, -1))  # the paste-back never touches the bottom rows


def test_a_change_of_strength_zero_costs_no_mask_and_no_evaluations(tiny_unet):
    model, s, x0, y = tiny_unet
    calls = []
    out = Editor(model, s, 5, attribute_names=NAMES).edit(x0, y, [("Smiling", 1, 0.0), ("Male", 0, 2.0)],
                                                          reconstruct=True, callback=lambda d, t: calls.append((d, t)))
    assert calls[-1] == (23, 23) and len(calls) == 23  # Male's 8 mask draws only; inversion, edit, recon: 5 each
    torch.testing.assert_close(out.edited, edit_regions(model, s, x0, y, [("Male", 0, 2.0)], NAMES, steps=5))


# --- the command ---------------------------------------------------------------------------------------


def test_edit_with_regions_writes_an_image_changed_only_inside_them(ckpt, celeba, tmp_path, capsys):
    mask = np.zeros((40, 40), np.uint8)
    mask[:20, :20] = 255  # the top-left quarter of the aligned face, drawn at 40 px
    Image.fromarray(mask).save(tmp_path / "corner.png")
    image, out = celeba / "img_align_celeba" / "000002.jpg", tmp_path / "edited.png"  # row 2: no smile, no glasses
    assert _edit(ckpt, image, out, "--set", "Smiling=1", "--region", f"Smiling={tmp_path / 'corner.png'}",
                 "--strength", "Smiling=3") == 0
    assert "Smiling in its mask image at strength 3" in capsys.readouterr().out
    with Image.open(out) as im:
        assert im.size == (178, 218)
    rows, cols = (_pixels(out) != _pixels(image)).any(2).nonzero()
    # the frame is the centre 140 px at (19, 39), 8.75 photo px per model px; the quarter is model px 0..7,
    # the antialiased mask and the paste's bilinear warp reach one model pixel beyond it, and no further
    px = 140 / 16
    assert len(rows) > 1000 and cols.min() >= 19 - px and rows.min() >= 39 - px
    assert cols.max() <= 19 + 9 * px and rows.max() <= 39 + 9 * px


def test_per_attribute_strengths_and_regions_reach_the_region_edit(ckpt, celeba, tmp_path, monkeypatch):
    calls = []

    def fake(self, x0, y_source, changes, method="ddib", **kwargs):
        calls.append(changes)
        return FaceEdit(x0, x0, torch.zeros_like(x0[:, :1]), False)
    monkeypatch.setattr(Editor, "edit", fake)
    image = celeba / "img_align_celeba" / "000002.jpg"
    assert _edit(ckpt, image, tmp_path / "o.png", "--set", "Smiling=1", "--set", "Male=1", "--strength", "0.5",
                 "--strength", "Smiling=2", "--region", "Male=mouth") == 0
    (smile, male), = calls
    assert smile[:3] == ("Smiling", 1, 2.0) and smile[3] is None  # no --region: its own DiffEdit mask
    assert male[:3] == ("Male", 1, 0.5) and torch.equal(male[3], named_region("mouth", 16))  # the global strength
    calls.clear()
    assert _edit(ckpt, image, tmp_path / "o.png", "--set", "Smiling=1", "--region", "Smiling=diffedit",
                 "--no-mask") == 0
    assert calls[0][0][3] is None
    calls.clear()
    assert _edit(ckpt, image, tmp_path / "o.png", "--set", "Smiling=1", "--strength", "Smiling=2", "--no-mask") == 0
    assert torch.equal(calls[0][0][3], torch.ones(1, 1, 16, 16))  # --no-mask: no --region is the whole face


@pytest.mark.parametrize("flags, needle", [
    (["--region", "Smiling=missing.png"], "--region Smiling: mask image missing.png not found; give a mask image"),
    (["--region", "Smiling=broken.png"], "--region Smiling: cannot read mask image broken.png"),
    (["--region", "Male=mouth"], "--region Male=mouth: Male is not a --set attribute (Smiling)"),
    (["--region", "Smile=mouth"], "--region Smile=mouth: Smile is not a --set attribute"),
    (["--region", "Smiling"], "--region 'Smiling': expected NAME=MASK"),
    (["--region", "Smiling=mouth", "--region", "Smiling=eyes"], "Smiling already has a region"),
    (["--strength", "Male=2"], "--strength Male=2: Male is not a --set attribute"),
    (["--strength", "Smiling=lots"], "--strength Smiling=lots: expected a number or NAME=number"),
    (["--strength", "2", "--strength", "3"], "the global strength is already 2"),
    (["--region", "Smiling=mouth", "--method", "sdedit"], "region-wise editing (--region, --strength NAME=S)"),
])
def test_bad_regions_fail_with_one_line_and_write_nothing(ckpt, celeba, tmp_path, capsys, monkeypatch, flags, needle):
    (tmp_path / "broken.png").write_bytes(b"not a png")
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "out" / "edited.png"
    assert _edit(ckpt, celeba / "img_align_celeba" / "000002.jpg", out, "--set", "Smiling=1", *flags) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and needle in err and err.count("\n") == 1
    assert not out.parent.exists()


# --- the editor ----------------------------------------------------------------------------------------


def test_the_editors_region_confines_a_slider_and_joint_keeps_the_joint_edit(parts):  # noqa: F811
    editor = AttributeEditor(*parts, steps=STEPS)
    editor.steps.value = STEPS
    editor.sliders["Smiling"].value = 2.0
    joint = editor.run_edit()
    assert joint is not None and "in " not in editor.status.value.split("(")[1]  # the joint edit, as before
    editor.regions["Smiling"].value = "mouth"
    editor.sliders["Eyeglasses"].value = 1.0  # left joint: in a region edit its own DiffEdit mask
    edited = editor.run_edit()
    assert edited is not None and "Smiling +2.00 in mouth, Eyeglasses +1.00 in joint" in editor.status.value
    region = named_region("mouth", editor.config.image_size, editor.config.crop, "builtin")
    assert torch.equal(editor.mask, torch.maximum(region, editor.mask))  # the union holds the mouth
    outside = editor.mask[0, 0] == 0
    assert outside.any() and torch.equal(edited[0][:, outside], editor.session.x0[0][:, outside])
    editor.method.value = "sdedit"
    assert editor.run_edit() is None and "regions are DDIB&#x27;s" in editor.status.value
    editor.reset_sliders()
    assert all(r.value == "joint" for r in editor.regions.values())
