"""The U-Net: shapes at several sizes, sensitivity to y and to UNKNOWN, config errors, and the demo checkpoint."""

from pathlib import Path

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


@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])
def test_committed_demo_checkpoint_gives_its_recorded_predictions(memory_format):
    # Recorded from checkpoints/demo.safetensors as committed with its contrastive stage (6000 + 200 steps): a change
    # to the U-Net, e.g. for speed, must keep the state-dict names and shapes (load_state_dict is strict) and the
    # function it computes.
    from celebadiff.models import load_model
    model, config, _ = load_model(Path(__file__).parents[1] / "checkpoints" / "demo.safetensors")
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4, 3, 32, 32, generator=g)
    t = torch.tensor([0, 250, 500, 999])
    y = torch.randint(0, 3, (4, len(config.attributes)), generator=g)
    model = model.to(memory_format=memory_format)
    with torch.no_grad():
        eps_hat = model(x.contiguous(memory_format=memory_format), t, y)
    expected_mean = [0.018867850, 0.012216918, -0.002943239, -0.017470492]
    expected_std = [1.440372229, 1.139533281, 1.017322898, 1.003934145]
    expected_centre = [[-0.50639558, -2.48944759, 0.46717721], [-0.05294128, 0.95722842, 0.14905262],
                       [-0.45334172, -0.75618452, 0.50970852], [-0.16817269, 0.50406337, -0.61329305]]
    close = {"atol": 1e-4, "rtol": 0}
    torch.testing.assert_close(eps_hat.mean(dim=(1, 2, 3)), torch.tensor(expected_mean), **close)
    torch.testing.assert_close(eps_hat.std(dim=(1, 2, 3)), torch.tensor(expected_std), **close)
    torch.testing.assert_close(eps_hat[:, :, 16, 16], torch.tensor(expected_centre), **close)
