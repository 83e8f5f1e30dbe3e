"""Write-the-code exercises of notebook 02 (the forward process): alpha_bar from beta, the closed form
q(x_t | x0), and x0 back from x_t and the noise.

Each `check_*` takes the student's function and returns True, False or None (`check_function`).
"""

import torch

from ..diffusion import NoiseSchedule, predict_x0, q_sample
from . import check_function


def random_schedule(g):
    """A linear or cosine schedule with a random T in [50, 200)."""
    T = int(torch.randint(50, 200, (), generator=g))
    return NoiseSchedule.linear(T) if torch.rand((), generator=g) < 0.5 else NoiseSchedule.cosine(T)


def random_steps(schedule, B, g):
    """B random timesteps (B,) long, the first in the noisier half so that every case is a real test."""
    t = torch.randint(0, schedule.T, (B,), generator=g)
    t[0] = torch.randint(schedule.T // 2, schedule.T, (), generator=g)
    return t


def _betas(g):
    T = int(torch.randint(10, 60, (), generator=g))
    beta = torch.rand(T, generator=g, dtype=torch.float64) * 0.05 + 1e-4
    return (beta,), NoiseSchedule(beta).alpha_bar


def check_alpha_bar(fn, seed=None):
    """fn(beta) -> alpha_bar: beta (T,) float64 -> (T,), alpha_bar_t = prod_{s <= t} (1 - beta_s) (Ho eq. 4)."""
    return check_function(fn, _betas, seed=seed, reference="NoiseSchedule(beta).alpha_bar", hint=(
        "alpha_bar_t multiplies one factor per step s = 0 .. t, step t included; each factor is what a step "
        "keeps of the signal's variance, not what it adds; torch.cumprod runs a product along a dim"))


def _noising(g):
    schedule = random_schedule(g)
    x0 = torch.rand(4, 3, 4, 4, generator=g, dtype=torch.float64) * 2 - 1
    t, eps = random_steps(schedule, 4, g), torch.randn(x0.shape, generator=g, dtype=torch.float64)
    return (schedule, x0, t, eps), q_sample(schedule, x0, t, eps)


def check_q_sample(fn, seed=None):
    """fn(schedule, x0, t, eps) -> x_t, the closed form sqrt(alpha_bar_t) x0 + sqrt(1 - alpha_bar_t) eps.

    x0, eps: (B, 3, H, W) float64; t: (B,) long, one step per image.
    """
    return check_function(fn, _noising, seed=seed, reference="celebadiff.diffusion.q_sample", hint=(
        "the closed form jumps over all steps up to t at once, so it needs the product of the alphas, not "
        "the alpha of step t alone; gather one value per image (schedule.alpha_bar[t]) and reshape it to "
        "(B, 1, 1, 1) so that it multiplies a whole image"))


def _denoising(g):
    schedule = random_schedule(g)
    x_t = torch.randn(4, 3, 4, 4, generator=g, dtype=torch.float64)
    t, eps = random_steps(schedule, 4, g), torch.randn(x_t.shape, generator=g, dtype=torch.float64)
    return (schedule, x_t, t, eps), predict_x0(schedule, x_t, t, eps)


def check_predict_x0(fn, seed=None):
    """fn(schedule, x_t, t, eps) -> x0: the closed form solved for x0 (Ho eq. 15)."""
    return check_function(fn, _denoising, seed=seed, reference="celebadiff.diffusion.predict_x0", hint=(
        "write x_t = a x0 + b eps with a, b from alpha_bar_t, and solve for x0: take the noise term away "
        "first, then undo the scaling; check that q_sample of your x0 with the same eps gives x_t back"))
