"""The forward process of DDPM: noise schedule, q(x_t | x_0), the posterior, and the training loss.

| name        | symbol                      | where                                        |
|-------------|-----------------------------|----------------------------------------------|
| beta        | beta_t                      | Ho et al. 2020, eq. 2 (variance of step t)   |
| alpha       | alpha_t = 1 - beta_t        | Ho et al. 2020, sec. 2                       |
| alpha_bar   | prod_{s<=t} alpha_s         | Ho et al. 2020, eq. 4                        |
| x_t         | sqrt(alpha_bar) x0 + sqrt(1 - alpha_bar) eps    | eq. 4 (closed form)      |
| x0 from eps | (x_t - sqrt(1 - alpha_bar) eps) / sqrt(alpha_bar) | eq. 15 / Song et al. eq. 12 |
| posterior   | q(x_{t-1} | x_t, x0) = N(mean, beta_tilde)      | eq. 6-7                  |
| loss        | E || eps - eps_hat(x_t, t, y) ||^2                | eq. 14 (L_simple)        |
| contrastive | max(0, (1 + m) err(y) - err(y'))                  | `contrastive_hinge`      |

Timesteps are 0-based: t = 0 .. T-1, so `alpha_bar[0] = 1 - beta[0]` is the least noisy step.
"""

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True, eq=False)
class NoiseSchedule:
    """beta_t and the products derived from it, computed once in float64.

    Build with `NoiseSchedule.linear(T)` (Ho et al. 2020) or `NoiseSchedule.cosine(T)`
    (Nichol & Dhariwal 2021). All tensors are (T,) float64 on the CPU; `at` moves what it gathers.
    """

    beta: torch.Tensor

    @classmethod
    def linear(cls, T=1000, beta_start=1e-4, beta_end=0.02):
        """Linearly spaced beta_t; the 1e-4..0.02 range at T=1000 is Ho et al.'s, rescaled for other T."""
        scale = 1000 / T
        return cls(torch.linspace(beta_start * scale, beta_end * scale, T, dtype=torch.float64))

    @classmethod
    def cosine(cls, T=1000, s=0.008, max_beta=0.999):
        """alpha_bar(t) = cos^2(((t/T + s) / (1 + s)) pi/2), betas clipped at `max_beta` (Nichol & Dhariwal eq. 17)."""
        f = lambda t: math.cos((t / T + s) / (1 + s) * math.pi / 2) ** 2  # noqa: E731
        beta = [min(1 - f(t + 1) / f(t), max_beta) for t in range(T)]
        return cls(torch.tensor(beta, dtype=torch.float64))

    @classmethod
    def named(cls, name, T):
        if name not in ("linear", "cosine"):
            raise ValueError(f"unknown schedule {name!r}; choose 'linear' or 'cosine'")
        return getattr(cls, name)(T)

    @property
    def T(self):
        return len(self.beta)

    @property
    def alpha(self):
        return 1.0 - self.beta

    @property
    def alpha_bar(self):
        return torch.cumprod(self.alpha, dim=0)

    @property
    def alpha_bar_prev(self):
        return F.pad(self.alpha_bar[:-1], (1, 0), value=1.0)

    @property
    def snr(self):
        """Signal-to-noise ratio alpha_bar / (1 - alpha_bar) (Kingma et al. 2021)."""
        return self.alpha_bar / (1.0 - self.alpha_bar)

    def at(self, name, t, like):
        """Gather `name` (e.g. "alpha_bar") at timesteps t (B,) shaped (B, 1, 1, 1) like `like`."""
        values = getattr(self, name)[t.cpu() if torch.is_tensor(t) else t]
        values = torch.as_tensor(values, dtype=like.dtype).to(like.device)
        return values.reshape(-1, *([1] * (like.dim() - 1)))


def q_step(schedule, x_prev, t, eps):
    """One forward step q(x_t | x_{t-1}): sqrt(alpha_t) x_{t-1} + sqrt(1 - alpha_t) eps (Ho eq. 2)."""
    alpha = schedule.at("alpha", t, x_prev)
    return alpha.sqrt() * x_prev + (1 - alpha).sqrt() * eps


def q_sample(schedule, x0, t, eps):
    """Closed form q(x_t | x0): sqrt(alpha_bar_t) x0 + sqrt(1 - alpha_bar_t) eps (Ho eq. 4).

    Args:
        x0: (B, C, H, W) in [-1, 1]; t: (B,) long in [0, T); eps: like x0, standard normal.
    """
    alpha_bar = schedule.at("alpha_bar", t, x0)
    return alpha_bar.sqrt() * x0 + (1 - alpha_bar).sqrt() * eps


def predict_x0(schedule, x_t, t, eps):
    """Invert the closed form: x0 = (x_t - sqrt(1 - alpha_bar_t) eps) / sqrt(alpha_bar_t)."""
    alpha_bar = schedule.at("alpha_bar", t, x_t)
    return (x_t - (1 - alpha_bar).sqrt() * eps) / alpha_bar.sqrt()


def q_posterior(schedule, x0, x_t, t):
    """Mean and variance of q(x_{t-1} | x_t, x0) (Ho eq. 6-7).

    mean = sqrt(alpha_bar_{t-1}) beta_t / (1 - alpha_bar_t) x0
         + sqrt(alpha_t) (1 - alpha_bar_{t-1}) / (1 - alpha_bar_t) x_t
    var  = beta_tilde_t = (1 - alpha_bar_{t-1}) / (1 - alpha_bar_t) beta_t
    """
    beta, alpha = schedule.at("beta", t, x_t), schedule.at("alpha", t, x_t)
    alpha_bar, alpha_bar_prev = schedule.at("alpha_bar", t, x_t), schedule.at("alpha_bar_prev", t, x_t)
    mean = (alpha_bar_prev.sqrt() * beta * x0 + alpha.sqrt() * (1 - alpha_bar_prev) * x_t) / (1 - alpha_bar)
    return mean, (1 - alpha_bar_prev) / (1 - alpha_bar) * beta


# unet.py's attribute states. diffusion comes before unet in the data flow, so it cannot import them;
# tests/test_diffusion.py checks that the two agree.
_ABSENT, _PRESENT, _UNKNOWN = 0, 1, 2


def _snr_weight(schedule, t, gamma, like):
    """min(SNR_t, gamma) / SNR_t per image, (B,) like `like`'s device (see `diffusion_loss`)."""
    snr = schedule.snr[t.cpu()].to(like.device)
    return snr.clamp(max=gamma) / snr


def diffusion_loss(model, schedule, x0, y, generator=None, min_snr_gamma=0.0, contrastive_weight=0.0,
                   contrastive_margin=0.1):
    """L_simple (Ho eq. 14): MSE between the true noise and the model's prediction at a random t.

    Args:
        model: callable (x_t, t, y) -> eps_hat. x0: (B, 3, H, W) in [-1, 1]. y: attribute states.
        min_snr_gamma: if > 0, weight each image's error by min(SNR_t, gamma) / SNR_t (Hang et al.
            2023, "min-SNR-gamma", written for eps prediction): the near-noiseless steps, whose
            x0 error is tiny but whose eps error dominates L_simple, stop crowding out the rest.
        contrastive_weight: if > 0, add this times `contrastive_hinge` with `contrastive_margin`,
            y' = `flip_one_attribute(y, generator)` and both errors weighted as above. It costs one
            model call on a 2B batch instead of B, and draws from `generator` after t and eps, so
            t and eps are those of the plain loss.
    Returns:
        the scalar loss, float32.
    """
    t = torch.randint(0, schedule.T, (x0.shape[0],), device=x0.device, generator=generator)
    eps = torch.randn(x0.shape, device=x0.device, dtype=x0.dtype, generator=generator)
    x_t = q_sample(schedule, x0, t, eps)
    if contrastive_weight:
        y_flip, has_known = flip_one_attribute(y, generator)
        eps_hat, eps_flip = model(torch.cat([x_t, x_t]), torch.cat([t, t]), torch.cat([y, y_flip])).chunk(2)
        weight = _snr_weight(schedule, t, min_snr_gamma, x0).float() if min_snr_gamma else 1.0
        err = weight * (eps_hat.float() - eps.float()).pow(2).mean((1, 2, 3))
        err_flip = weight * (eps_flip.float() - eps.float()).pow(2).mean((1, 2, 3))
        return err.mean() + contrastive_weight * contrastive_hinge(err, err_flip, has_known, contrastive_margin)
    eps_hat = model(x_t, t, y)
    if not min_snr_gamma:
        return F.mse_loss(eps_hat.float(), eps.float())
    weight = _snr_weight(schedule, t, min_snr_gamma, x0)
    return (weight.float() * (eps_hat.float() - eps.float()).pow(2).mean((1, 2, 3))).mean()


def flip_one_attribute(y, generator=None):
    """y with one known attribute per row flipped, PRESENT <-> ABSENT, chosen uniformly among the known.

    Args:
        y: (B, A) long states; UNKNOWN entries are never chosen.
        generator: the only randomness, one (B, A) uniform draw on y's device.
    Returns:
        (y_flip (B, A) long, has_known (B,) bool). A row with no known attribute comes back unchanged,
        with has_known False.
    """
    known = y != _UNKNOWN
    score = torch.rand(y.shape, generator=generator, device=y.device).masked_fill(~known, -1.0)
    a = score.argmax(1, keepdim=True)  # the largest of iid uniforms: each known attribute equally likely
    has_known = known.any(1)
    picked = y.gather(1, a)
    flipped = torch.where(picked == _PRESENT, _ABSENT, _PRESENT)
    return y.scatter(1, a, torch.where(has_known[:, None], flipped, picked)), has_known


def contrastive_hinge(err, err_flip, has_known, margin=0.1):
    """The contrastive term: the true attributes must explain the noise better than flipped ones.

        err(y)  = || eps - eps_hat(x_t, t, y) ||^2 / D           per image, same x_t, t, eps
        term    = mean over images with a known attribute of  max(0, (1 + m) err(y) - err(y'))

    with y' = y with one known attribute flipped. A model that ignores y pays m err(y); the exact
    denoiser of data determined by y pays 0 at every t, since err(y) = 0 there.

    Why a hinge on a ratio: under the exact denoiser both errors scale with SNR_t (the eps error is
    SNR_t times the x0 error), so "err(y') at least (1 + m) err(y)" means the same at every t, where
    a fixed gap (err(y') - err(y) > m, or InfoNCE over the logits -err / tau, which is
    softplus((err(y) - err(y')) / tau) for two candidates) is out of reach at high noise and free
    at low noise. On demo-base (no term) and 128 built-in faces, err(y') - err(y) averages 2e-3 at
    t = 50 and 8e-6 at t = 950, while the median of err(y') / err(y) stays in 1.02 .. 1.16. And the
    hinge stops at the margin: InfoNCE would push eps_hat(y') away from the truth without end, yet
    editing evaluates eps_hat under flipped attributes.

    Args:
        err, err_flip: (B,) float, the per-image errors under y and y' (weighted alike, if at all).
        has_known: (B,) bool, the images where y' differs from y. margin: m >= 0.
    Returns:
        a scalar; 0 when no image has a known attribute.
    """
    hinge = ((1 + margin) * err - err_flip).clamp(min=0)
    return (hinge * has_known).sum() / has_known.sum().clamp(min=1)
