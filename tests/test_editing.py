"""Editing on a tiny model: shapes, determinism, strength 0 = reconstruction, multi-attribute and signed strengths."""

import pytest
import torch

from celebadiff.diffusion import NoiseSchedule
from celebadiff.editing import edit, set_attributes
from celebadiff.sampling import ddim_invert, ddim_sample
from celebadiff.unet import ABSENT, PRESENT, UNKNOWN, UNet

NAMES = ("Smiling", "Eyeglasses", "Male")


@pytest.fixture(scope="module")
def setup():
    torch.manual_seed(0)
    model = UNet(channels=(8, 16), attention=(False, False), n_attributes=3).eval()
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.05)
    torch.nn.init.normal_(model.attr_emb.weight, std=1.0)
    x0 = torch.rand(2, 3, 16, 16) * 2 - 1
    y = torch.tensor([[ABSENT, ABSENT, PRESENT], [PRESENT, ABSENT, ABSENT]])
    return model, NoiseSchedule.linear(100), x0, y


def test_strength_zero_is_exactly_the_ddim_reconstruction(setup):
    model, s, x0, y = setup
    target = set_attributes(y, NAMES, {"Smiling": 1})
    recon = ddim_sample(model, s, ddim_invert(model, s, x0, y, steps=10), y, steps=10)
    out = edit(model, s, x0, y, target, strength=0.0, steps=10)
    assert out.shape == x0.shape
    torch.testing.assert_close(out, recon)


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
