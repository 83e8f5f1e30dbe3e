"""Editing on a tiny model: shapes, determinism, strength 0 = reconstruction, multi-attribute and signed strengths;
region-wise edits on the tiny model and on an analytic one; the Editor's caches and counts; bf16 on the demo model."""

import pytest
import torch

from celebadiff.changes import Change, edit_mask, set_attributes
from celebadiff.diffusion import NoiseSchedule
from celebadiff.editing import Editor, edit
from celebadiff.sampling import ddim_invert, ddim_sample, ddim_timesteps
from celebadiff.unet import ABSENT, PRESENT, UNKNOWN

NAMES = ("Smiling", "Eyeglasses", "Male")


@pytest.fixture(scope="module")
def setup(tiny_unet):
    return tiny_unet


def edit_regions(model, schedule, x0, y, changes, attribute_names=None, steps=10, callback=None, **kwargs):
    """Several changes, each in its own region: one `Editor.edit`."""
    editor = Editor(model, schedule, steps, attribute_names=attribute_names, **kwargs)
    return editor.edit(x0, y, changes, callback=callback).edited


def test_strength_zero_is_exactly_the_ddim_reconstruction(setup):
    model, s, x0, y = setup
    target = set_attributes(y, NAMES, {"Smiling": 1})
    recon = ddim_sample(model, s, ddim_invert(model, s, x0, y, steps=10), y, steps=10)
    out = edit(model, s, x0, y, target, strength=0.0, steps=10)
    assert out.shape == x0.shape
    torch.testing.assert_close(out, recon)


def test_mask_is_ddibs_default(setup):
    model, s, x0, y = setup
    target = set_attributes(y, NAMES, {"Eyeglasses": 1})
    assert torch.equal(edit(model, s, x0, y, target, steps=4), edit(model, s, x0, y, target, steps=4, mask=True))
    assert not torch.equal(edit(model, s, x0, y, target, steps=4), edit(model, s, x0, y, target, steps=4, mask=False))
    a = edit(model, s, x0, y, target, method="sdedit", steps=4)
    assert torch.equal(a, edit(model, s, x0, y, target, method="sdedit", steps=4, mask=False))


def test_ddib_is_deterministic_and_sdedit_is_seeded(setup):
    model, s, x0, y = setup
    target = set_attributes(y, NAMES, {"Eyeglasses": 1})
    assert torch.equal(edit(model, s, x0, y, target, steps=10), edit(model, s, x0, y, target, steps=10))
    a = edit(model, s, x0, y, target, method="sdedit", steps=10, seed=1)
    assert torch.equal(a, edit(model, s, x0, y, target, method="sdedit", steps=10, seed=1))
    assert not torch.equal(a, edit(model, s, x0, y, target, method="sdedit", steps=10, seed=2))


def test_edit_changes_the_image_and_more_strength_changes_it_more(setup):
    model, s, x0, y = setup
    target = set_attributes(y, NAMES, {"Eyeglasses": 1, "Male": 0})  # two attributes at once
    recon = edit(model, s, x0, y, target, strength=0.0, steps=10)
    change = [(edit(model, s, x0, y, target, strength=k, steps=10) - recon).abs().mean() for k in (1.0, 3.0)]
    assert 0 < change[0] < change[1]


def test_signed_attribute_strength_equals_the_same_edit_through_targets(setup):
    model, s, x0, y = setup
    target = set_attributes(y, NAMES, {"Eyeglasses": 1})
    via_target = edit(model, s, x0, y, target, strength=2.0, steps=10)
    via_signed = edit(model, s, x0, y, attribute_strength=torch.tensor([0.0, 2.0, 0.0]), steps=10)
    torch.testing.assert_close(via_target, via_signed)


def test_unknown_target_entries_keep_the_source_value(setup):
    model, s, x0, y = setup
    target = torch.full_like(y, UNKNOWN)
    torch.testing.assert_close(edit(model, s, x0, y, target, steps=10), edit(model, s, x0, y, y, steps=10))


def test_progress_callback_counts_every_model_call(setup):
    model, s, x0, y = setup
    calls = []
    edit(model, s, x0, y, y, steps=10, callback=lambda done, total: calls.append((done, total)))
    assert calls[-1] == (20, 20) and len(calls) == 20
    calls.clear()
    edit(model, s, x0, y, y, method="sdedit", t0_fraction=0.5, steps=10, callback=lambda d, t: calls.append((d, t)))
    assert calls[-1] == (6, 6)  # DDIM timesteps 0, 10, ..., 50


def test_bad_input_errors():
    y = torch.tensor([[ABSENT, ABSENT, ABSENT]])
    with pytest.raises(ValueError, match="did you mean 'Smiling'"):
        set_attributes(y, NAMES, {"Smile": 1})
    with pytest.raises(ValueError, match="must be 0 or 1"):
        set_attributes(y, NAMES, {"Smiling": 2})
    with pytest.raises(ValueError, match="unknown method"):
        edit(None, NoiseSchedule.linear(10), torch.zeros(1, 3, 8, 8), y, method="magic")


def test_hair_colours_are_exclusive():
    names = ("Black_Hair", "Blond_Hair", "Brown_Hair", "Smiling")
    y = torch.tensor([[PRESENT, ABSENT, UNKNOWN, ABSENT], [ABSENT, ABSENT, PRESENT, PRESENT]])
    out = set_attributes(y, names, {"Blond_Hair": 1})
    assert out.tolist() == [[ABSENT, PRESENT, ABSENT, ABSENT], [ABSENT, PRESENT, ABSENT, PRESENT]]
    # turning a hair colour off leaves the others alone; names the model lacks (Gray_Hair) are skipped
    assert set_attributes(y, names, {"Black_Hair": 0}).tolist() == [[ABSENT, ABSENT, UNKNOWN, ABSENT], y[1].tolist()]
    brown = set_attributes(y, names, {"Brown_Hair": 1, "Black_Hair": 0})
    assert brown[:, :3].tolist() == [[ABSENT, ABSENT, PRESENT]] * 2
    with pytest.raises(ValueError, match="one hair colour"):
        set_attributes(y, names, {"Blond_Hair": 1, "Brown_Hair": 1})


def test_mask_shape_range_and_thresholding(setup):
    model, s, x0, y = setup
    target = set_attributes(y, NAMES, {"Eyeglasses": 1})
    soft = edit_mask(model, s, x0, y, target, threshold=None)
    assert soft.shape == (2, 1, 16, 16) and soft.min() >= 0
    torch.testing.assert_close(soft.amax((1, 2, 3)), torch.ones(2))  # each face rescaled by its max
    hard = edit_mask(model, s, x0, y, target, threshold=0.5)
    assert torch.equal(hard, (soft > 0.5).float()) and 0 < hard.mean() < 1
    assert torch.equal(edit_mask(model, s, x0, y, target, seed=3), edit_mask(model, s, x0, y, target, seed=3))
    # signed per-attribute strengths count as changes too, but not a push to a value the face already has
    signed = edit_mask(model, s, x0, y, attribute_strength=torch.tensor([0.0, 2.0, 0.0]), threshold=None)
    assert (signed.amax((1, 2, 3)) == 1).all()
    already = edit_mask(model, s, x0, y, attribute_strength=torch.tensor([0.0, -2.0, 0.0]), threshold=None)
    assert (already == 0).all()


def test_no_change_gives_an_empty_mask_and_exactly_the_reconstruction(setup):
    model, s, x0, y = setup
    target = set_attributes(y, NAMES, {"Smiling": 1})  # row 1 already smiles: no change there
    assert (edit_mask(model, s, x0, y, target)[1] == 0).all() and edit_mask(model, s, x0, y, target)[0].any()
    assert (edit_mask(model, s, x0, y, target, strength=0.0) == 0).all()
    plain = edit(model, s, x0, y, y, steps=10, mask=False)
    assert torch.equal(edit(model, s, x0, y, y, steps=10, mask=True), plain)
    recon = edit(model, s, x0, y, target, strength=0.0, steps=10, mask=False)
    assert torch.equal(edit(model, s, x0, y, target, strength=0.0, steps=10, mask=True), recon)
    masked = edit(model, s, x0, y, target, steps=10, mask=True)  # row 0 is edited inside its mask, row 1 is not
    torch.testing.assert_close(masked[1], recon[1])
    assert not torch.allclose(masked[0], recon[0])


def test_outside_the_mask_the_face_is_kept_and_inside_it_is_edited(setup):
    model, s, x0, y = setup
    target = set_attributes(y, NAMES, {"Eyeglasses": 1, "Male": 0})
    mask = edit_mask(model, s, x0, y, target, threshold=0.5)
    out = edit(model, s, x0, y, target, steps=10, mask=True, mask_threshold=0.5)
    keep = (mask == 0).expand_as(x0)
    assert keep.any() and torch.equal(out[keep], x0[keep])  # DiffEdit follows the inversion down to x0 itself
    plain = edit(model, s, x0, y, target, steps=10, mask=False)
    assert not torch.allclose(out[~keep], x0[~keep]) and not torch.equal(out, plain)


def test_a_given_mask_is_used(setup):
    model, s, x0, y = setup
    target = set_attributes(y, NAMES, {"Eyeglasses": 1})
    left = torch.zeros(1, 1, 16, 16)
    left[..., :8] = 1  # one mask for every face: only the left half may change
    out = edit(model, s, x0, y, target, steps=10, mask=left)
    assert torch.equal(out[..., 8:], x0[..., 8:]) and not torch.allclose(out[..., :8], x0[..., :8])
    # a full mask is plain DDIB
    torch.testing.assert_close(edit(model, s, x0, y, target, steps=10, mask=torch.ones(2, 1, 16, 16)),
                               edit(model, s, x0, y, target, steps=10, mask=False))


def test_mask_progress_counts_the_mask_draws(setup):
    model, s, x0, y = setup
    calls = []
    target = set_attributes(y, NAMES, {"Eyeglasses": 1})
    edit(model, s, x0, y, target, steps=10, mask=True, mask_draws=3, callback=lambda d, t: calls.append((d, t)))
    assert calls[-1] == (26, 26) and len(calls) == 26  # 3 draws x (edit, source) + 10 inversion + 10 generation
    calls.clear()
    edit(model, s, x0, y, target, steps=10, mask=torch.ones(1, 1, 16, 16), callback=lambda d, t: calls.append((d, t)))
    assert calls[-1] == (20, 20)


def test_bad_mask_errors(setup):
    model, s, x0, y = setup
    with pytest.raises(ValueError, match=r"give one of shape \(2, 1, 16, 16\)"):
        edit(model, s, x0, y, y, steps=2, mask=torch.ones(2, 3, 16, 16))
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        edit(model, s, x0, y, y, steps=2, mask=torch.full((2, 1, 16, 16), 2.0))
    with pytest.raises(ValueError, match="mask must be True, False, None or a"):
        edit(model, s, x0, y, y, steps=2, mask="yes")
    with pytest.raises(ValueError, match="DDIB only; pass mask=False"):
        edit(model, s, x0, y, y, method="sdedit", steps=2, mask=True)
    for kwargs, needle in (({"mask_t": 0}, "mask_t=0"), ({"threshold": 1.0}, "threshold=1.0"),
                           ({"draws": 0}, "draws=0")):
        with pytest.raises(ValueError, match=needle):
            edit_mask(model, s, x0, y, y, **kwargs)


# --- region-wise edits --------------------------------------------------------------------------------

def test_one_change_in_its_own_diffedit_mask_is_the_masked_edit(setup):
    model, s, x0, y = setup
    target = set_attributes(y, NAMES, {"Eyeglasses": 1})
    masked = edit(model, s, x0, y, target, strength=1.5, steps=10, mask=True)
    torch.testing.assert_close(edit_regions(model, s, x0, y, [("Eyeglasses", 1, 1.5)], NAMES, steps=10), masked)
    mask = edit_mask(model, s, x0, y, target, strength=1.5)
    torch.testing.assert_close(edit_regions(model, s, x0, y, [(1, 1, 1.5, mask)], steps=10), masked)


def test_empty_regions_give_exactly_the_reconstruction(setup):
    model, s, x0, y = setup
    recon = ddim_sample(model, s, ddim_invert(model, s, x0, y, steps=10), y, steps=10)
    empty = torch.zeros(1, 1, 16, 16)
    calls = []
    out = edit_regions(model, s, x0, y, [("Eyeglasses", 1, 2.0, empty), ("Male", 0, 1.0, empty)], NAMES, steps=10,
                       callback=lambda done, total: calls.append((done, total)))
    assert torch.equal(out, recon) and calls[-1] == (20, 20)  # no mask draws: the regions were given
    # one change in an empty region is no change either (a mask image painted black)
    torch.testing.assert_close(edit_regions(model, s, x0, y, [("Eyeglasses", 1, 2.0, empty)], NAMES), recon)
    # a change of strength 0 is no change, wherever its region lies
    full = torch.ones(1, 1, 16, 16)
    torch.testing.assert_close(edit_regions(model, s, x0, y, [("Eyeglasses", 1, 0.0, full)], NAMES, steps=10), recon)


def test_outside_every_region_the_face_is_kept(setup):
    model, s, x0, y = setup
    left, right = torch.zeros(1, 1, 16, 16), torch.zeros(1, 1, 16, 16)
    left[..., :5], right[..., 11:] = 1, 1
    out = edit_regions(model, s, x0, y, [("Eyeglasses", 1, 2.0, left), ("Male", 0, 2.0, right)], NAMES, steps=10)
    assert torch.equal(out[..., 5:11], x0[..., 5:11])  # DiffEdit's rule: the inversion's latents down to x0
    assert not torch.allclose(out[..., :5], x0[..., :5]) and not torch.allclose(out[..., 11:], x0[..., 11:])


def _analytic_model():
    """eps(x_t, t, y) = sum over PRESENT attributes of a fixed pattern: smiling acts on the bottom rows
    only, eyeglasses on the top rows, male everywhere."""
    patterns = torch.zeros(3, 3, 16, 16)
    patterns[0, :, 10:] = torch.tensor([0.3, -0.2, 0.1])[:, None, None]
    patterns[1, :, :5] = -0.4
    patterns[2] = 0.2
    return lambda x_t, t, y: torch.einsum("ba,achw->bchw", (y == PRESENT).to(x_t.dtype), patterns)


def test_each_change_acts_only_in_its_own_region_with_its_own_strength():
    # with an eps that does not depend on x_t, DDIM keeps x0_hat fixed: inverting under eps_s and
    # regenerating under eps_e gives x0 + sqrt((1 - alpha_bar) / alpha_bar) (eps_s - eps_e), alpha_bar at
    # the top DDIM step, wherever the region is 1 (and x0 itself elsewhere)
    model, s, steps = _analytic_model(), NoiseSchedule.linear(100), 10
    x0 = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0)) * 2 - 1
    y = torch.tensor([[ABSENT, ABSENT, PRESENT], [ABSENT, PRESENT, ABSENT]])  # face 1 already wears glasses
    ab = s.alpha_bar[ddim_timesteps(s.T, steps)[-1]].float()
    shift = lambda y_edit, strength: -strength * ((1 - ab) / ab).sqrt() * (model(x0, None, y_edit) - model(x0, None, y))
    smile, glasses = set_attributes(y, NAMES, {"Smiling": 1}), set_attributes(y, NAMES, {"Eyeglasses": 1})
    expected = x0.clone()
    expected[..., 10:, :] += shift(smile, 2.0)[..., 10:, :]
    expected[0, :, :5] += shift(glasses, 0.5)[0, :, :5]
    # their own DiffEdit masks: the rows each pattern covers (none for face 1's glasses)
    out = edit_regions(model, s, x0, y, [("Smiling", 1, 2.0), ("Eyeglasses", 1, 0.5)], NAMES, steps=steps)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-6)  # values reach about 50: float32 rounding
    # given regions, swapped: now each change may act only where its pattern does not reach, so nothing changes
    bottom, top = torch.zeros(1, 1, 16, 16), torch.zeros(1, 1, 16, 16)
    bottom[..., 10:, :], top[..., :5, :] = 1, 1
    swapped = edit_regions(model, s, x0, y, [("Smiling", 1, 2.0, top), ("Eyeglasses", 1, 0.5, bottom)], NAMES,
                           steps=steps)
    torch.testing.assert_close(swapped, x0, atol=1e-5, rtol=1e-6)
    # a change that acts everywhere (Male) but is given the top rows changes the top rows only
    male = edit_regions(model, s, x0, y, [("Male", 0, 1.0, top), ("Smiling", 1, 2.0, bottom)], NAMES, steps=steps)
    expected = x0.clone()
    expected[..., 10:, :] += shift(smile, 2.0)[..., 10:, :]
    expected[..., :5, :] += shift(set_attributes(y, NAMES, {"Male": 0}), 1.0)[..., :5, :]
    torch.testing.assert_close(male, expected, atol=1e-5, rtol=1e-6)


def test_region_edit_counts_the_mask_draws(setup):
    model, s, x0, y = setup
    calls = []
    edit_regions(model, s, x0, y, [("Smiling", 1), ("Eyeglasses", 1, 1.0, torch.ones(1, 1, 16, 16))], NAMES,
                 steps=10, mask_draws=3, callback=lambda d, t: calls.append((d, t)))
    assert calls[-1] == (26, 26) and len(calls) == 26  # 3 draws x 2 for Smiling's mask + 10 + 10


def test_bad_region_edit_errors(setup):
    model, s, x0, y = setup
    for changes, kwargs, needle in (
            ([], {}, "changes is empty"),
            ([("Smiling", 1)], {}, "pass attribute_names"),
            ([("Smile", 1)], {"attribute_names": NAMES}, "did you mean 'Smiling'"),
            ([(3, 1)], {}, "index 3 is out of range"),
            ([("Smiling",)], {"attribute_names": NAMES}, "a change is"),
            ([(0, 2)], {}, "must be 0 or 1"),
            ([(0, 1)], {"attribute_names": NAMES[:2]}, "has 2 names but y_source has 3"),
            ([(0, 1, 1.0, torch.ones(2, 1, 8, 8))], {}, r"give one of shape \(2, 1, 16, 16\)"),
            ([(0, 1), Change(attribute_strength=torch.tensor([0.0, 1.0, 0.0]))], {}, "give each attribute its own")):
        with pytest.raises(ValueError, match=needle):
            edit_regions(model, s, x0, y, changes, steps=2, **kwargs)


# --- the Editor: one inversion per face, cached masks, counted evaluations --------------------------------

def test_a_kept_inversion_regenerates_exactly_what_edit_gives(setup):
    model, s, x0, y = setup
    target = set_attributes(y, NAMES, {"Eyeglasses": 1})
    editor = Editor(model, s, steps=8)
    face = editor.invert(x0, y)
    assert len(face.trajectory) == 9 and torch.equal(face.trajectory[-1], ddim_invert(model, s, x0, y, steps=8))
    for strength in (1.0, 2.5):
        for region, mask in ((None, True), (False, False)):
            again, _ = editor.generate(face, Change(target, strength, region=region))
            assert torch.equal(again, edit(model, s, x0, y, target, strength=strength, steps=8, mask=mask))
    assert editor.invert(x0, y) is face and len(face.masks) == 1  # one direction: one mask for both strengths


def test_a_moved_slider_costs_only_the_generation_and_the_counts_are_right(setup):
    model, s, x0, y = setup
    editor, calls = Editor(model, s, steps=6, mask_draws=2), []
    record = lambda done, total: calls.append((done, total))
    smile = Change(set_attributes(y, NAMES, {"Smiling": 1}), 1.0)
    assert editor.cost(x0, y, smile, reconstruct=True) == 6 + 6 + 2 * 2 + 6
    first = editor.edit(x0, y, smile, reconstruct=True, callback=record)
    assert calls[-1] == (22, 22) and len(calls) == 22 and editor.evaluations == 22 and not first.inversion_cached
    calls.clear()
    stronger = Change(smile.target, 3.0)  # the same direction: its mask is reused
    second = editor.edit(x0, y, stronger, reconstruct=True, callback=record)
    assert calls[-1] == (6, 6) and len(calls) == 6 and second.inversion_cached
    assert torch.equal(second.reconstruction, first.reconstruction) and torch.equal(second.mask, first.mask)
    assert torch.equal(second.edited, edit(model, s, x0, y, smile.target, strength=3.0, steps=6, mask_draws=2))
    calls.clear()
    editor.attribute_names = list(NAMES)
    assert editor.cost(x0, y, [("Smiling", 1, 2.0)]) == 6  # Smiling alone is the same direction: its mask is kept
    both = [("Male", 0, 2.0), ("Eyeglasses", 1, 1.0, torch.ones(1, 1, 16, 16))]  # a new mask for Male
    assert editor.cost(x0, y, both) == 2 * 2 + 6
    editor.edit(x0, y, both, callback=record)
    assert calls[-1] == (10, 10) and len(calls) == 10
    editor.steps = 4  # other steps: another inversion
    assert editor.cost(x0, y, both) == 4 + 2 * 2 + 4 and not editor.cached(x0, y)


def test_the_cache_keeps_the_last_faces(setup):
    model, s, x0, y = setup
    editor = Editor(model, s, steps=2, cache_size=1)
    editor.invert(x0, y)
    editor.invert(x0[:1], y[:1])
    assert editor.cached(x0[:1], y[:1]) and not editor.cached(x0, y)
    assert Editor(model, s, steps=2, cache_size=0).invert(x0, y) is not None


def test_bf16_inversion_and_reconstruction_stay_within_half_a_db_of_fp32():
    from celebadiff.data import CelebADataset
    from celebadiff.metrics import psnr
    from celebadiff.models import load_model
    from celebadiff.synthfaces import builtin_dataset
    from celebadiff.unet import attribute_states

    model, config, _ = load_model("demo")
    schedule = NoiseSchedule.named(config.schedule, config.T)
    faces = CelebADataset(builtin_dataset(smoke=True), "test", attributes=list(config.attributes),
                          size=config.image_size, crop=config.crop)
    x0, y = torch.stack([faces[i][0] for i in range(4)]), attribute_states(faces.labels[:4])
    scores = {}
    for precision in ("fp32", "bf16"):
        editor = Editor(model, schedule, steps=20, precision=precision)
        assert editor.precision == precision
        scores[precision] = psnr(editor.reconstruct(editor.invert(x0, y)).clamp(-1, 1), x0)
    assert (scores["fp32"] > 20).all()  # a real reconstruction, not noise
    assert ((scores["bf16"] - scores["fp32"]).abs() < 0.5).all(), scores


def test_the_mask_depends_on_the_direction_of_the_edit_not_on_its_strength(setup):
    model, s, x0, y = setup
    target = set_attributes(y, NAMES, {"Smiling": 1, "Male": 0})
    maps = [edit_mask(model, s, x0, y, target, strength=k, threshold=None) for k in (1.0, 3.0, -0.5)]
    assert maps[0].sum() > 0
    for other in maps[1:]:
        torch.testing.assert_close(other, maps[0])
    # with attribute terms the ratio to the strength is what counts
    aw = torch.tensor([0.0, 2.0, 0.0])
    torch.testing.assert_close(edit_mask(model, s, x0, y, target, 2.0, 2 * aw, threshold=None),
                               edit_mask(model, s, x0, y, target, 1.0, aw, threshold=None))
