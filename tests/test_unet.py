"""The U-Net: shapes at several sizes, sensitivity to y and to UNKNOWN, and config errors."""

import pytest
import torch

from celebadiff.unet import ABSENT, PRESENT, UNKNOWN, UNet, attribute_states


def tiny(**kw):
    torch.manual_seed(0)
    model = UNet(channels=(8, 16, 16), n_blocks=1, attention=(False, False, True), n_attributes=5, **kw)
    for p in model.parameters():  # zero-initialised output layers would hide the dependence on y
        torch.nn.init.normal_(p, std=0.05)
    torch.nn.init.normal_(model.attr_emb.weight, std=1.0)  # as a trained model's, not init's 0.02
    return model.eval()


@pytest.mark.parametrize("size", [32, 64, 128])
def test_output_shape_matches_input(size):
    x = torch.randn(2, 3, size, size)
    assert tiny()(x, torch.tensor([0, 999]), torch.full((2, 5), UNKNOWN)).shape == x.shape


def test_prediction_depends_on_y_and_on_unknown():
    model, x, t = tiny(), torch.randn(1, 3, 32, 32), torch.tensor([500])
    y_on = torch.tensor([[PRESENT, ABSENT, ABSENT, ABSENT, ABSENT]])
    y_off = torch.tensor([[ABSENT] * 5])
    y_unknown = torch.tensor([[UNKNOWN, ABSENT, ABSENT, ABSENT, ABSENT]])
    with torch.no_grad():
        outs = [model(x, t, y) for y in (y_on, y_off, y_unknown)]
    for a, b in ((0, 1), (0, 2), (1, 2)):
        assert (outs[a] - outs[b]).abs().mean() > 0.01 * outs[a].abs().mean()
    assert torch.equal(outs[0], model(x, t, y_on))  # and is a deterministic function


def test_attention_flags_must_match_levels():
    with pytest.raises(ValueError, match="one flag per level"):
        UNet(channels=(8, 16), attention=(False,), n_attributes=2)


def test_attribute_states_marks_unknown():
    labels = torch.tensor([[1.0, 0.0, 1.0]])
    known = torch.tensor([[True, True, False]])
    assert attribute_states(labels, known).tolist() == [[PRESENT, ABSENT, UNKNOWN]]
