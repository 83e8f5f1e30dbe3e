"""The forward process: schedule identities, q_sample's moments, the x0 <-> eps identity, a
cross-check of the schedules against diffusers' DDPMScheduler (an independent implementation), and
the loss with its contrastive term."""

import pytest
import torch
import torch.nn.functional as F
from diffusers import DDPMScheduler

from celebadiff import diffusion, unet
from celebadiff.diffusion import (
    NoiseSchedule,
    contrastive_hinge,
    diffusion_loss,
    flip_one_attribute,
    predict_x0,
    q_posterior,
    q_sample,
    q_step,
)
from celebadiff.unet import ABSENT, PRESENT, UNKNOWN


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


# --- the loss and its contrastive term ----------------------------------------------------------------

def test_diffusion_copies_unets_attribute_states():
    assert (diffusion._ABSENT, diffusion._PRESENT, diffusion._UNKNOWN) == (unet.ABSENT, unet.PRESENT, unet.UNKNOWN)


def test_flip_one_attribute_flips_exactly_one_known_attribute_uniformly():
    y = torch.tensor([[PRESENT, UNKNOWN, ABSENT], [UNKNOWN, UNKNOWN, UNKNOWN], [UNKNOWN, ABSENT, UNKNOWN]])
    y = y.repeat(4000, 1)
    flipped, has_known = flip_one_attribute(y, torch.Generator().manual_seed(0))
    changed = flipped != y
    assert has_known.tolist() == [True, False, True] * 4000
    assert changed.sum(1).tolist() == [1, 0, 1] * 4000
    assert not (changed & (y == UNKNOWN)).any() and (flipped[changed] == 1 - y[changed]).all()
    assert (flipped[2::3, 1] == PRESENT).all()
    share = changed[0::3].float().mean(0)  # row 0: attributes 0 and 2 are known, each chosen half the time
    assert share[1] == 0 and abs(share[0] - 0.5) < 0.03
    again, _ = flip_one_attribute(y, torch.Generator().manual_seed(0))
    assert torch.equal(flipped, again)


def test_contrastive_hinge_values():
    err, err_flip = torch.tensor([1.0, 1.0, 1.0]), torch.tensor([2.0, 1.05, 0.5])
    # (1.1 - 2)+ = 0 and (1.1 - 1.05)+ = 0.05, the third image has no known attribute: mean of two
    value = contrastive_hinge(err, err_flip, torch.tensor([True, True, False]), margin=0.1)
    torch.testing.assert_close(value, torch.tensor(0.025))
    assert contrastive_hinge(err, err_flip, torch.zeros(3, dtype=torch.bool)) == 0


@pytest.mark.parametrize("gamma", [0.0, 5.0])
def test_contrastive_weight_zero_is_the_plain_loss_exactly(gamma):
    s, x0 = NoiseSchedule.linear(100), torch.rand(4, 3, 8, 8) * 2 - 1
    y = torch.tensor([[PRESENT, ABSENT]] * 4)
    model = lambda x_t, t, y: 0.3 * x_t + y[:, :1, None, None]
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    plain = diffusion_loss(model, s, x0, y, g1, gamma)
    assert torch.equal(diffusion_loss(model, s, x0, y, g2, gamma, contrastive_weight=0.0), plain)
    assert torch.equal(g1.get_state(), g2.get_state())  # no extra draw: resumed runs stay exact
    g = torch.Generator().manual_seed(3)  # and L_simple written out
    t, eps = torch.randint(0, 100, (4,), generator=g), torch.randn(x0.shape, generator=g)
    if not gamma:
        torch.testing.assert_close(plain, F.mse_loss(model(q_sample(s, x0, t, eps), t, y), eps))


@pytest.mark.parametrize("gamma", [0.0, 5.0])
def test_a_model_that_ignores_y_pays_the_margin_times_its_error(gamma):
    # err(y) = err(y') for every image, so the hinge is m err(y) and the loss (1 + w m) L
    torch.manual_seed(0)
    net = torch.nn.Conv2d(3, 3, 3, padding=1)
    model = lambda x_t, t, y: net(x_t)
    s, x0 = NoiseSchedule.linear(100), torch.rand(4, 3, 8, 8) * 2 - 1
    y = torch.tensor([[PRESENT, UNKNOWN], [UNKNOWN, ABSENT]] * 2)
    plain = diffusion_loss(model, s, x0, y, torch.Generator().manual_seed(1), gamma)
    grad_plain = torch.autograd.grad(plain, net.weight)[0]
    loss = diffusion_loss(model, s, x0, y, torch.Generator().manual_seed(1), gamma, contrastive_weight=2.0,
                          contrastive_margin=0.25)
    torch.testing.assert_close(loss, plain * 1.5)
    torch.testing.assert_close(torch.autograd.grad(loss, net.weight)[0], grad_plain * 1.5)
    unconditional = torch.full_like(y, UNKNOWN)  # nothing to flip: no term at all
    torch.testing.assert_close(diffusion_loss(model, s, x0, unconditional, torch.Generator().manual_seed(1), gamma,
                                              contrastive_weight=2.0),
                               diffusion_loss(model, s, x0, unconditional, torch.Generator().manual_seed(1), gamma))


def test_the_exact_denoiser_of_data_set_by_y_pays_no_contrastive_term():
    # data x0 = render(y); the model that knows it recovers eps exactly under the true y, and is off
    # by sqrt(SNR_t) (render(y) - render(y')) under a flipped y: the term is 0 at every t
    s = NoiseSchedule.linear(1000)
    patterns = torch.randn(3, 3, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    render = lambda y: torch.einsum("ba,achw->bchw", (y == PRESENT).double(), patterns) - 0.5
    y = torch.tensor([[PRESENT, ABSENT, UNKNOWN], [ABSENT, ABSENT, PRESENT]]).repeat(32, 1)

    def denoiser(x_t, t, y, ignore=None):
        ab = s.at("alpha_bar", t, x_t)
        x0 = render(y if ignore is None else torch.where(torch.arange(3) == ignore, ABSENT, y))
        return (x_t - ab.sqrt() * x0) / (1 - ab).sqrt()

    plain = diffusion_loss(denoiser, s, render(y), y, torch.Generator().manual_seed(0))
    loss = diffusion_loss(denoiser, s, render(y), y, torch.Generator().manual_seed(0), contrastive_weight=10.0)
    assert plain < 1e-12 and loss == plain
    # one that cannot see attribute 0 pays wherever the flip hits it
    blind = lambda x_t, t, y: denoiser(x_t, t, y, ignore=0)
    g = torch.Generator().manual_seed(0)
    assert diffusion_loss(blind, s, render(y), y, g, contrastive_weight=10.0) > diffusion_loss(
        blind, s, render(y), y, torch.Generator().manual_seed(0))


def test_min_snr_weighting_matches_its_formula_and_diffusers_snr():
    # Hang et al. 2023 for eps prediction: each image's squared error times min(SNR_t, gamma) / SNR_t
    from diffusers.training_utils import compute_snr
    s, x0 = NoiseSchedule.linear(1000), torch.rand(6, 3, 8, 8) * 2 - 1
    y = torch.zeros(6, 2, dtype=torch.long)
    model = lambda x_t, t, y: 0.5 * x_t
    loss = diffusion_loss(model, s, x0, y, torch.Generator().manual_seed(1), min_snr_gamma=5.0)
    g = torch.Generator().manual_seed(1)
    t, eps = torch.randint(0, 1000, (6,), generator=g), torch.randn(x0.shape, generator=g)
    snr = compute_snr(DDPMScheduler(num_train_timesteps=1000), t).double()
    torch.testing.assert_close(snr, s.snr[t], rtol=1e-4, atol=0)
    err = (model(q_sample(s, x0, t, eps), t, y) - eps).pow(2).mean((1, 2, 3))
    torch.testing.assert_close(loss, (err * (snr.clamp(max=5.0) / snr).float()).mean())
