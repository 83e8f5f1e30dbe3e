"""What a model draws: attribute_samples' rows share the noise and differ by one attribute each."""

import pytest
import torch

from celebadiff.figures_diffusion import attribute_samples
from celebadiff.sampling import ddim_sample
from celebadiff.unet import PRESENT, UNKNOWN


def test_rows_share_the_noise_and_switch_on_one_attribute_each(tiny_unet):
    model, schedule, _, _ = tiny_unet
    names = ("Smiling", "Male", "Eyeglasses")
    rows = attribute_samples(model, schedule, names, 16, switched=("Male", "Eyeglasses"), n=2, steps=5, seed=3)
    assert list(rows) == ["(none)", "Male", "Eyeglasses"]
    x_T = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(3))
    y = torch.full((2, 3), UNKNOWN)
    torch.testing.assert_close(rows["(none)"], ddim_sample(model, schedule, x_T, y, 5, clip=True))
    y[:, 1] = PRESENT
    torch.testing.assert_close(rows["Male"], ddim_sample(model, schedule, x_T, y, 5, clip=True))
    assert (rows["Eyeglasses"] - rows["(none)"]).abs().mean() > 1e-3  # the attribute changes the sample


def test_an_attribute_the_model_lacks_is_named(tiny_unet):
    model, schedule, _, _ = tiny_unet
    with pytest.raises(ValueError, match="no attributes \\['Blond_Hair'\\]"):
        attribute_samples(model, schedule, ("Smiling", "Male", "Eyeglasses"), 16, switched=("Blond_Hair",))
