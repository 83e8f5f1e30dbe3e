"""The forward process: schedule identities, q_sample's moments, the x0 <-> eps identity, and a
cross-check of the schedules against diffusers' DDPMScheduler (an independent implementation)."""

import pytest
import torch
from diffusers import DDPMScheduler

from celebadiff.diffusion import NoiseSchedule, predict_x0, q_posterior, q_sample, q_step


@pytest.mark.parametrize("name", ["linear", "cosine"])
def test_alpha_bar_is_cumprod_of_one_minus_beta(name):
    s = NoiseSchedule.named(name, 1000)
    assert s.beta.dtype == torch.float64
    torch.testing.assert_close(s.alpha_bar, torch.cumprod(1 - s.beta, 0))
    assert (s.alpha_bar[1:] < s.alpha_bar[:-1]).all() and s.alpha_bar[-1] < 1e-3


@pytest.mark.parametrize(("name", "diffusers_name"), [("linear", "linear"), ("cosine", "squaredcos_cap_v2")])
def test_alpha_bar_matches_diffusers(name, diffusers_name):
    ours = NoiseSchedule.named(name, 1000).alpha_bar.float()
    theirs = DDPMScheduler(num_train_timesteps=1000, beta_schedule=diffusers_name).alphas_cumprod
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)


def test_q_sample_moments_match_theory():
    s = NoiseSchedule.linear(1000)
    x0 = torch.full((20000, 1, 1, 1), 0.7)
    for t in (10, 300, 900):
        tt = torch.full((20000,), t)
        x_t = q_sample(s, x0, tt, torch.randn(x0.shape, generator=torch.Generator().manual_seed(t)))
        ab = s.alpha_bar[t].item()
        assert abs(x_t.mean().item() - 0.7 * ab**0.5) < 0.02
        assert abs(x_t.var().item() - (1 - ab)) < 0.03


def test_closed_form_equals_iterating_one_step_form_in_distribution():
    s = NoiseSchedule.linear(100)
    g = torch.Generator().manual_seed(0)
    x = torch.full((20000, 1, 1, 1), -0.5)
    for t in range(50):
        x = q_step(s, x, torch.full((20000,), t), torch.randn(x.shape, generator=g))
    ab = s.alpha_bar[49].item()
    assert abs(x.mean().item() + 0.5 * ab**0.5) < 0.02
    assert abs(x.var().item() - (1 - ab)) < 0.03


def test_true_eps_recovers_x0_exactly():
    s = NoiseSchedule.cosine(1000)
    x0, eps = torch.rand(4, 3, 8, 8) * 2 - 1, torch.randn(4, 3, 8, 8)
    t = torch.tensor([0, 100, 500, 990])
    torch.testing.assert_close(predict_x0(s, q_sample(s, x0, t, eps), t, eps), x0, atol=1e-4, rtol=0)


def test_posterior_matches_diffusers_ddpm_step():
    s = NoiseSchedule.linear(1000)
    # with prediction_type="sample" diffusers' step is: posterior mean + sqrt(beta_tilde) * noise
    ref = DDPMScheduler(num_train_timesteps=1000, variance_type="fixed_small", clip_sample=False,
                        prediction_type="sample")
    x0, x_t = torch.rand(2, 3, 4, 4) * 2 - 1, torch.randn(2, 3, 4, 4)
    for t in (5, 500, 999):
        mean, var = q_posterior(s, x0, x_t, torch.full((2,), t))
        expected = ref.step(x0, t, x_t, generator=torch.Generator().manual_seed(1)).prev_sample
        noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(1))
        torch.testing.assert_close(mean + var.sqrt() * noise, expected, atol=1e-4, rtol=1e-4)
        ab, ab_prev = s.alpha_bar[t], s.alpha_bar[t - 1]
        torch.testing.assert_close(var.flatten()[0].item(), ((1 - ab_prev) / (1 - ab) * s.beta[t]).item())


def test_unknown_schedule_is_a_clear_error():
    with pytest.raises(ValueError, match="'linear' or 'cosine'"):
        NoiseSchedule.named("quadratic", 10)
