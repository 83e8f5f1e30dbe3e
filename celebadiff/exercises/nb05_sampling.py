"""Write-the-code exercises of notebook 05 (sampling): the posterior q(x_{t-1} | x_t, x0), the reverse
mean in terms of eps_hat, one DDIM step at any eta, and classifier-free guidance.

Each `check_*` takes the student's function and returns True, False or None (`check_function`).
"""

import torch

from ..diffusion import predict_x0, q_posterior
from ..sampling import ddim_step, guided
from . import check_function, random_states, toy_model
from .nb02_forward import random_schedule, random_steps


def _images(g, n=2, B=4):
    return torch.randn(n, B, 3, 4, 4, generator=g, dtype=torch.float64)


def _posterior_case(g):
    schedule = random_schedule(g)
    x0, x_t = _images(g)
    t = random_steps(schedule, 4, g).clamp(min=1)
    return (schedule, x0, x_t, t), q_posterior(schedule, x0, x_t, t)


def check_posterior(fn, seed=None):
    """fn(schedule, x0, x_t, t) -> (mean, var) of q(x_{t-1} | x_t, x0) (Ho eq. 6-7), t >= 1.

    mean: like x0; var: beta_tilde_t, shaped (B, 1, 1, 1).
    """
    return check_function(fn, _posterior_case, seed=seed, reference="celebadiff.diffusion.q_posterior", hint=(
        "x0's coefficient holds sqrt(alpha_bar) of the step you land on (schedule.alpha_bar_prev), x_t's holds "
        "sqrt(alpha_t) of the step you leave; the variance is beta_t shrunk by (1 - alpha_bar_{t-1}) / "
        "(1 - alpha_bar_t); gather each per image with schedule.at(name, t, x0)"))


def _reverse_case(g):
    schedule = random_schedule(g)
    x_t, eps_hat = _images(g)
    t = random_steps(schedule, 4, g)
    return (schedule, x_t, t, eps_hat), q_posterior(schedule, predict_x0(schedule, x_t, t, eps_hat), x_t, t)[0]


def check_reverse_mean(fn, seed=None):
    """fn(schedule, x_t, t, eps_hat) -> mu_theta = (x_t - beta_t / sqrt(1 - alpha_bar_t) eps_hat) / sqrt(alpha_t)
    (Ho eq. 11): the posterior mean at x0_hat, written in the predicted noise."""
    return check_function(fn, _reverse_case, seed=seed, reference="q_posterior's mean at predict_x0's x0_hat", hint=(
        "one step back divides by sqrt(alpha_t) of that step alone, not by sqrt(alpha_bar_t); the noise is "
        "weighted by beta_t over sqrt(1 - alpha_bar_t)"))


def _ddim_case(g, kind):
    """kind: "clean" (down to s = -1, eta > 0), "noisy" (to some s >= 0, eta > 0) or "deterministic" (eta 0)."""
    schedule = random_schedule(g)
    x_t, eps_hat, z = _images(g, 3)
    t = int(torch.randint(2, schedule.T, (), generator=g))
    s = -1 if kind == "clean" else int(torch.randint(0, t, (), generator=g))
    eta = 0.0 if kind == "deterministic" else 0.3 + 0.7 * float(torch.rand((), generator=g))
    return (schedule, x_t, eps_hat, t, s, eta, z), ddim_step(schedule, x_t, eps_hat, t, s, eta, z)


def check_ddim_step(fn, seed=None):
    """fn(schedule, x_t, eps_hat, t, s, eta, z) -> x_s, DDIM from step t down to s < t (s = -1: the clean
    image, alpha_bar_{-1} = 1), eq. (1)-(3) of `celebadiff.sampling`, z the fresh noise (used if eta > 0)."""
    kinds = iter(("clean", "noisy", "deterministic"))
    return check_function(fn, lambda g: _ddim_case(g, next(kinds)), seed=seed,
                          reference="celebadiff.sampling.ddim_step", hint=(
        "s = -1 is no index: schedule.alpha_bar[-1] is the LAST step, the noisiest, while the clean image has "
        "alpha_bar = 1; sigma's noise takes its share from the eps_hat term, so that term's coefficient is "
        "sqrt(1 - alpha_bar_s - sigma^2)"))


def _guidance_case(g):
    A = 4
    model = toy_model(A, g)
    x_t = torch.randn(3, 3, 4, 4, generator=g, dtype=torch.float64)
    t, y = torch.randint(0, 1000, (3,), generator=g), random_states((3, A), g, unknown=False)
    w = 0.5 + 4 * float(torch.rand((), generator=g))
    return (model, x_t, t, y, w), guided(model, w=w)(x_t, t, y)


def check_guidance(fn, seed=None):
    """fn(model, x_t, t, y, w) -> eps(y) + w (eps(y) - eps(all UNKNOWN)): classifier-free guidance
    (Ho & Salimans 2021) with the course's w (0: the conditional model; diffusers' scale is 1 + w)."""
    return check_function(fn, _guidance_case, seed=seed, reference="celebadiff.sampling.guided(model, w=w)", hint=(
        "the unconditional prediction is the model given every attribute UNKNOWN (torch.full_like(y, "
        "UNKNOWN)), not ABSENT; guidance moves away from it: the difference points from the unconditional "
        "prediction to the conditional one"))
