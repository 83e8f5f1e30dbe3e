"""Samplers against diffusers' DDIMScheduler, DDIM inversion round trips, and guidance arithmetic."""

import pytest
import torch
from diffusers import DDIMScheduler

from celebadiff.diffusion import NoiseSchedule
from celebadiff.sampling import ddim_invert, ddim_sample, ddim_step, ddim_timesteps, ddpm_sample, guided
from celebadiff.unet import ABSENT, PRESENT, UNKNOWN


@pytest.mark.parametrize("eta", [0.0, 0.5])
@pytest.mark.parametrize("name", ["linear", "cosine"])
def test_ddim_step_matches_diffusers(name, eta):
    T, steps = 1000, 50
    s = NoiseSchedule.named(name, T)
    ref = DDIMScheduler(num_train_timesteps=T, beta_schedule={"linear": "linear", "cosine": "squaredcos_cap_v2"}[name],
                        clip_sample=False, set_alpha_to_one=True, timestep_spacing="leading")
    ref.set_timesteps(steps)
    assert sorted(ref.timesteps.tolist()) == ddim_timesteps(T, steps)
    x_t, eps = torch.randn(2, 3, 8, 8), torch.randn(2, 3, 8, 8)
    for t in (980, 500, 0):
        z = torch.randn(x_t.shape, generator=torch.Generator().manual_seed(t))
        ours = ddim_step(s, x_t, eps, t, t - T // steps, eta, z)
        theirs = ref.step(eps, t, x_t, eta=eta, generator=torch.Generator().manual_seed(t)).prev_sample
        torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)


def test_ddim_eta0_is_deterministic_and_inversion_round_trips_with_constant_eps():
    s = NoiseSchedule.linear(1000)
    c = torch.randn(2, 3, 8, 8)
    model = lambda x, t, y: c.expand_as(x)  # eps independent of x_t: the DDIM map is exactly invertible
    x0 = torch.rand(2, 3, 8, 8) * 2 - 1
    x_T = ddim_invert(model, s, x0, None, steps=50)
    assert torch.equal(ddim_sample(model, s, x_T, None, 50), ddim_sample(model, s, x_T, None, 50))
    torch.testing.assert_close(ddim_sample(model, s, x_T, None, 50), x0, atol=2e-4, rtol=0)


def gaussian_model(schedule, mu, var):
    """The exact eps-prediction for data ~ N(mu, var I): E[eps | x_t]."""
    def eps(x, t, y):
        ab = schedule.at("alpha_bar", t, x)
        return (1 - ab).sqrt() * (x - ab.sqrt() * mu) / (ab * var + 1 - ab)
    return eps


def test_ddim_inversion_with_exact_gaussian_model_converges_with_steps():
    s = NoiseSchedule.linear(1000)
    model = gaussian_model(s, mu=0.3, var=0.04)
    x0 = 0.3 + 0.2 * torch.randn(4, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    errors = [(ddim_sample(model, s, ddim_invert(model, s, x0, None, n), None, n) - x0).abs().max().item()
              for n in (10, 100, 500)]
    assert errors[2] < errors[1] / 3 < errors[0] / 9 and errors[2] < 0.02, errors


def test_ddpm_and_ddim_sample_the_gaussian_data_distribution():
    s = NoiseSchedule.linear(200)
    model = gaussian_model(s, mu=0.5, var=0.01)
    g = torch.Generator().manual_seed(0)
    for x in (ddpm_sample(model, s, torch.randn(4000, 1, 1, 1, generator=g), None, generator=g),
              ddim_sample(model, s, torch.randn(4000, 1, 1, 1, generator=g), None, steps=50)):
        assert abs(x.mean().item() - 0.5) < 0.02 and abs(x.std().item() - 0.1) < 0.02


def test_ddim_steps_out_of_range_is_a_clear_error():
    with pytest.raises(ValueError, match="steps must be between 1 and T"):
        ddim_timesteps(100, 0)


def linear_model(x, t, y):
    """eps = mean of the states, so every guidance term can be computed by hand."""
    return y.float().mean(1)[:, None, None, None] * torch.ones_like(x)


def test_global_and_signed_per_attribute_guidance_in_one_call():
    y = torch.tensor([[ABSENT, ABSENT, PRESENT], [UNKNOWN, UNKNOWN, UNKNOWN]])
    x, t = torch.zeros(2, 1, 1, 1), torch.zeros(2, dtype=torch.long)
    out = guided(linear_model, w=2.0, attribute_w=torch.tensor([0.0, 1.5, -1.0]))(x, t, y).flatten()
    m = lambda *states: sum(states) / 3
    row0 = m(0, 0, 1) + 2 * (m(0, 0, 1) - m(2, 2, 2)) + 1.5 * (m(0, 1, 1) - m(0, 0, 1)) + 1 * (m(0, 0, 0) - m(0, 0, 1))
    row1 = m(2, 2, 2) + 0 + 1.5 * (m(2, 1, 2) - m(2, 2, 2)) + 1 * (m(2, 2, 0) - m(2, 2, 2))
    torch.testing.assert_close(out, torch.tensor([row0, row1]))


def test_per_row_attribute_weights_and_zero_weights_give_the_plain_model():
    y = torch.tensor([[ABSENT, ABSENT], [PRESENT, ABSENT]])
    x, t = torch.zeros(2, 1, 1, 1), torch.zeros(2, dtype=torch.long)
    plain = linear_model(x, t, y)
    torch.testing.assert_close(guided(linear_model, attribute_w=torch.zeros(2))(x, t, y), plain)
    out = guided(linear_model, attribute_w=torch.tensor([[1.0, 0.0], [0.0, 2.0]]))(x, t, y).flatten()
    torch.testing.assert_close(out, torch.tensor([0.5, 0.5 + 2 * (1.0 - 0.5)]))


def test_clipped_ddim_step_matches_diffusers_clip_sample_with_clipped_model_output():
    s = NoiseSchedule.linear(1000)
    ref = DDIMScheduler(num_train_timesteps=1000, clip_sample=True, set_alpha_to_one=True)
    ref.set_timesteps(50)
    x_t, eps = 3 * torch.randn(2, 3, 8, 8), torch.randn(2, 3, 8, 8)  # x0_hat far outside [-1, 1]
    ours = ddim_step(s, x_t, eps, 500, 480, clip=True)
    theirs = ref.step(eps, 500, x_t, use_clipped_model_output=True).prev_sample
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(ours, ddim_step(s, x_t, eps, 500, 480))


def test_joint_target_term_moves_from_y_to_the_target():
    y = torch.tensor([[ABSENT, PRESENT, ABSENT]])
    target = torch.tensor([[PRESENT, ABSENT, ABSENT]])
    x, t = torch.zeros(1, 1, 1, 1), torch.zeros(1, dtype=torch.long)
    out = guided(linear_model, target=target, target_w=2.5)(x, t, y).flatten()
    torch.testing.assert_close(out, torch.tensor([1 / 3 + 2.5 * (1 / 3 - 1 / 3)]))
    out = guided(linear_model, target=torch.tensor([[PRESENT, PRESENT, ABSENT]]), target_w=2.0)(x, t, y)
    torch.testing.assert_close(out.flatten(), torch.tensor([1 / 3 + 2.0 * (2 / 3 - 1 / 3)]))


def test_inversion_trajectory_holds_every_latent_at_its_timestep():
    s = NoiseSchedule.linear(1000)
    c = torch.randn(2, 3, 8, 8)
    model = lambda x, t, y: c.expand_as(x)  # constant eps: each DDIM step exactly undoes an inversion step
    x0 = torch.rand(2, 3, 8, 8) * 2 - 1
    trajectory = ddim_invert(model, s, x0, None, steps=10, return_trajectory=True)
    assert len(trajectory) == 11 and trajectory[0] is x0
    assert torch.equal(trajectory[-1], ddim_invert(model, s, x0, None, steps=10))  # the default: x_T only
    ts = ddim_timesteps(1000, 10)
    for i in range(1, 11):  # trajectory[i] is at ts[i - 1]: one DDIM step down lands on trajectory[i - 1]
        down = ddim_step(s, trajectory[i], c, ts[i - 1], ts[i - 2] if i > 1 else -1)
        torch.testing.assert_close(down, trajectory[i - 1], atol=1e-5, rtol=0)


def test_at_strength_one_the_source_condition_is_not_evaluated():
    y = torch.tensor([[ABSENT, PRESENT, ABSENT], [PRESENT, PRESENT, ABSENT]])
    target = torch.tensor([[PRESENT, ABSENT, ABSENT], [PRESENT, ABSENT, PRESENT]])
    x, t = torch.zeros(2, 1, 1, 1), torch.zeros(2, dtype=torch.long)
    batches = []

    def recorded(x_t, t, y):
        batches.append(len(x_t))
        return linear_model(x_t, t, y)
    torch.testing.assert_close(guided(recorded, target=target)(x, t, y), linear_model(x, t, target))
    # strength 1 evaluates the target alone (one batch of 2); 2.5 needs eps(y) as well (2 x 2)
    guided(recorded, target=target, target_w=2.5)(x, t, y)
    assert batches == [2, 4]


def test_the_inversion_step_is_ddim_step_run_upwards_and_the_stochastic_step_runs_down_only():
    s = NoiseSchedule.linear(1000)
    x, eps = torch.randn(2, 3, 4, 4), torch.randn(2, 3, 4, 4)
    up = ddim_step(s, x, eps, 200, 400)  # x at step 200 to step 400: eq. (1) at 200, eq. (3) at 400
    ab_s, ab_t = s.alpha_bar[200].float(), s.alpha_bar[400].float()
    expected = ab_t.sqrt() * (x - (1 - ab_s).sqrt() * eps) / ab_s.sqrt() + (1 - ab_t).sqrt() * eps
    torch.testing.assert_close(up, expected)
    torch.testing.assert_close(ddim_step(s, up, eps, 400, 200), x, atol=1e-5, rtol=0)  # and back down
    with pytest.raises(ValueError, match="only the deterministic step"):
        ddim_step(s, x, eps, 200, 400, eta=1.0, z=torch.zeros_like(x))


def test_diffedits_keep_follows_the_inversion_outside_the_mask():
    s = NoiseSchedule.linear(1000)
    model = lambda x, t, y: 0.1 * x + 0.2  # any model: the blend alone decides what comes back outside
    x0 = torch.rand(1, 3, 8, 8) * 2 - 1
    trajectory = ddim_invert(model, s, x0, None, steps=5, return_trajectory=True)
    mask = torch.zeros(1, 1, 8, 8)
    mask[..., :4] = 1
    out = ddim_sample(lambda x, t, y: model(x, t, y) + 0.5, s, trajectory[-1], None, steps=5, keep=(trajectory, mask))
    assert torch.equal(out[..., 4:], x0[..., 4:]) and (out[..., :4] - x0[..., :4]).abs().min() > 1e-3


def test_several_targets_with_per_pixel_weights_in_one_call():
    y = torch.tensor([[ABSENT, ABSENT, ABSENT]])
    targets = [torch.tensor([[PRESENT, ABSENT, ABSENT]]), torch.tensor([[ABSENT, PRESENT, PRESENT]])]
    x, t = torch.zeros(1, 1, 2, 2), torch.zeros(1, dtype=torch.long)
    left, right = torch.tensor([[[[1.0, 0.0], [1.0, 0.0]]]]), torch.tensor([[[[0.0, 1.0], [0.0, 1.0]]]])
    out = guided(linear_model, target=targets, target_w=[2.0 * left, 0.5 * right])(x, t, y)
    eps = lambda states: linear_model(x, t, states)  # eps(y) = 0, eps(targets[0]) = 1/3, eps(targets[1]) = 2/3
    expected = eps(y) + 2.0 * left * (eps(targets[0]) - eps(y)) + 0.5 * right * (eps(targets[1]) - eps(y))
    torch.testing.assert_close(out, expected)
    with pytest.raises(ValueError, match="one weight per target"):
        guided(linear_model, target=targets, target_w=[1.0])
