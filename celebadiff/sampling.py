"""Reverse processes: DDPM ancestral sampling, DDIM (any steps, any eta), DDIM inversion, guidance.

Every sampler takes any callable `model(x_t, t, y) -> eps_hat`, so tests can pass an analytic model.

DDIM step from t to s < t (Song et al. 2021, eq. 12), with alpha_bar_{-1} = 1:

    x0_hat  = (x_t - sqrt(1 - alpha_bar_t) eps_hat) / sqrt(alpha_bar_t)                 (1)
    sigma   = eta sqrt((1 - alpha_bar_s) / (1 - alpha_bar_t)) sqrt(1 - alpha_bar_t / alpha_bar_s)   (2)
    x_s     = sqrt(alpha_bar_s) x0_hat + sqrt(1 - alpha_bar_s - sigma^2) eps_hat + sigma z      (3)

With eta = 0 the map is deterministic and, run from s up to t with the same eps_hat, invertible:
that is DDIM inversion, the first half of DDIB editing: the same `ddim_step`, from s to t > s.
"""

import torch
from tqdm.auto import tqdm

from .diffusion import predict_x0, q_posterior
from .unet import ABSENT, PRESENT, UNKNOWN


def ddim_timesteps(T, steps):
    """`steps` timesteps, evenly spaced, ascending: 0, T//steps, 2 T//steps, ... (diffusers' "leading")."""
    if not 1 <= steps <= T:
        raise ValueError(f"steps must be between 1 and T={T}, got {steps}")
    return [i * (T // steps) for i in range(steps)]


def _alpha_bar(schedule, t, like):
    """alpha_bar at a scalar step t, with alpha_bar_{-1} = 1 (the clean image)."""
    return schedule.at("alpha_bar", torch.tensor([t]), like) if t >= 0 else torch.ones_like(like[:1, :1, :1, :1])


def ddim_step(schedule, x_t, eps_hat, t, s, eta=0.0, z=None, clip=False):
    """Equations (1)-(3): move x_t at step t to step s (s = -1 is the clean image).

    Down (s < t) it samples; with eta = 0 it also runs up (s > t, t = -1 the clean image): that is
    DDIM inversion's step, the same two lines with the roles of t and s swapped.
    clip=True clamps x0_hat to [-1, 1] and re-derives eps_hat from it (diffusers'
    `clip_sample` with `use_clipped_model_output`): steadier samples from noise with an imperfect
    model, at the price of exact invertibility, so editing leaves it off.
    """
    if eta > 0 and s > t:
        raise ValueError(f"ddim_step from {t} up to {s} with eta={eta}: only the deterministic step (eta=0) runs up")
    ab_t, ab_s = _alpha_bar(schedule, t, x_t), _alpha_bar(schedule, s, x_t)
    x0_hat = (x_t - (1 - ab_t).sqrt() * eps_hat) / ab_t.sqrt()
    if clip:
        x0_hat = x0_hat.clamp(-1, 1)
        eps_hat = (x_t - ab_t.sqrt() * x0_hat) / (1 - ab_t).sqrt()
    sigma = eta * ((1 - ab_s) / (1 - ab_t) * (1 - ab_t / ab_s)).sqrt() if eta > 0 else 0.0
    x_s = ab_s.sqrt() * x0_hat + (1 - ab_s - sigma**2).clamp(min=0).sqrt() * eps_hat
    return x_s + sigma * z if eta > 0 else x_s


def _full(t, x):
    return torch.full((x.shape[0],), t, device=x.device, dtype=torch.long)


@torch.no_grad()
def ddim_sample(model, schedule, x_T, y, steps=50, eta=0.0, generator=None, progress=False, t_start=None,
                clip=False, keep=None):
    """Generate from noise x_T (B, 3, H, W) under attribute states y by DDIM. Returns x0 in about [-1, 1].

    With `t_start`, x_T is taken to be at step t_start and only the DDIM timesteps <= t_start run
    (SDEdit starts there). `clip`: see `ddim_step`; use it when sampling from pure noise.
    keep: DiffEdit's blend, (trajectory, M): the latents [x0, ..., x_T] of a `ddim_invert(...,
    return_trajectory=True)` of the same steps, and a mask (B or 1, 1, H, W) in [0, 1]. After every
    step x = M x + (1 - M) (the inversion's latent at the same step), so where M = 0 the trajectory
    comes back down to x0 itself.
    """
    ts = [t for t in ddim_timesteps(schedule.T, steps) if t_start is None or t <= t_start]
    x = x_T
    for i in tqdm(reversed(range(len(ts))), total=len(ts), disable=not progress, desc="DDIM"):
        eps_hat = model(x, _full(ts[i], x), y)
        z = torch.randn(x.shape, generator=generator, device=x.device) if eta > 0 else None
        x = ddim_step(schedule, x, eps_hat, ts[i], ts[i - 1] if i > 0 else -1, eta, z, clip)
        if keep is not None:
            trajectory, mask = keep
            x = mask * x + (1 - mask) * trajectory[i]  # trajectory[i] is at ts[i - 1]; trajectory[0] is x0
    return x


@torch.no_grad()
def ddim_invert(model, schedule, x0, y, steps=50, progress=False, return_trajectory=False):
    """Deterministic DDIM inversion: `ddim_step` with eta = 0 run upwards, from x0 to x_T.

    Each step from s to t uses eps_hat = model(x_s, t, y), the usual approximation of the
    eps_hat that the reverse step from t will see (Dhariwal & Nichol 2021, app. F).

    Returns x_T, like x0; with return_trajectory=True the list of steps + 1 latents instead:
    trajectory[0] = x0 and trajectory[i] is at DDIM timestep ddim_timesteps(T, steps)[i - 1], so
    trajectory[-1] = x_T (DiffEdit's masked generation follows it outside the mask: `ddim_sample`'s keep).
    """
    ts = ddim_timesteps(schedule.T, steps)
    x, trajectory = x0, [x0]
    for i in tqdm(range(len(ts)), disable=not progress, desc="DDIM inversion"):
        x = ddim_step(schedule, x, model(x, _full(ts[i], x), y), ts[i - 1] if i > 0 else -1, ts[i])
        if return_trajectory:
            trajectory.append(x)
    return trajectory if return_trajectory else x


@torch.no_grad()
def ddpm_sample(model, schedule, x_T, y, generator=None, progress=False):
    """Ancestral sampling (Ho et al. 2020, Algorithm 2), all T steps, posterior variance beta_tilde."""
    x = x_T
    for t in tqdm(reversed(range(schedule.T)), total=schedule.T, disable=not progress, desc="DDPM"):
        tt = _full(t, x)
        x0_hat = predict_x0(schedule, x, tt, model(x, tt, y)).clamp(-1, 1)
        mean, var = q_posterior(schedule, x0_hat, x, tt)
        z = torch.randn(x.shape, generator=generator, device=x.device) if t > 0 else torch.zeros_like(x)
        x = mean + var.sqrt() * z
    return x


def guided(model, w=0.0, attribute_w=None, target=None, target_w=1.0):
    """Wrap `model` with classifier-free guidance (Ho & Salimans 2021); the result is a model too.

        eps = eps(y) + w (eps(y) - eps(all unknown))
                     + sum_a |w_a| (eps(y with a set to PRESENT if w_a > 0 else ABSENT) - eps(y))
                     + target_w (eps(target) - eps(y))

    One convention for every weight (w, w_a, target_w): it multiplies a difference of two predictions
    that is added to eps(y). Since eps = -sqrt(1 - alpha_bar) grad log p(x_t), Bayes' rule makes each
    weight the power of an implicit classifier on p(x_t | y) (Ho & Salimans eq. 6; notebook 05):

        p(x_t | y) p(y | x_t)^w prod_a p(a | x_t, y)^|w_a|        (a UNKNOWN in y)

    A weight of 0 switches its term off. w = 1 applies the classifier of y once more than
    conditioning does (p(x_t) p(y | x_t)^2 in all; w = -1 is the unconditional model; diffusers'
    `guidance_scale` is 1 + w). |w_a| = 1 is exactly conditioning on a where y leaves a UNKNOWN,
    and switches a where y holds the opposite value; target_w = 1, alone, gives eps(target).

    Args:
        w: global guidance weight (0: plain conditional model; 1: eps(y) + (eps(y) - eps(unknown))).
        attribute_w: signed per-attribute weights, (A,) or (B, A): +2 pushes an attribute towards
            present with weight 2, -1 towards absent, 0 leaves it as y has it. Where y holds an
            attribute UNKNOWN this is per-attribute guidance; where y holds the opposite value it
            moves from y to the flipped condition.
        target, target_w: states (B, A) to move towards jointly, with weight target_w (scalar or
            (B,)): editing uses it, so that exclusive attributes (one hair colour on, another off)
            change together rather than as two separate pushes. Several targets: a list of states
            and a list of weights, one each; a weight may also be a map (B, 1, H, W), a weight per
            pixel (region-wise editing: each target acts only inside its own region).
    All terms are evaluated in one batched call of the model; eps(y) is left out of it where its
    coefficient, 1 - sum target_w - sum |w_a| + w, is 0 for every row (an edit at strength 1).
    """
    targets = [] if target is None else list(target) if isinstance(target, (list, tuple)) else [target]
    target_ws = list(target_w) if isinstance(target_w, (list, tuple)) else [target_w] * len(targets)
    if len(target_ws) != len(targets):
        raise ValueError(f"{len(targets)} targets but {len(target_ws)} target weights; give one weight per target")

    def eps(x_t, t, y):
        B, variants, weights = x_t.shape[0], [y], []
        if w:
            variants.append(torch.full_like(y, UNKNOWN))
            weights.append(torch.full((B,), -float(w), device=x_t.device))
        for states, weight in zip(targets, target_ws):
            variants.append(states)
            weight = torch.as_tensor(weight, dtype=torch.float32, device=x_t.device)
            weights.append(weight if weight.dim() == 4 else weight.expand(B))
        if attribute_w is not None:
            aw = torch.as_tensor(attribute_w, dtype=torch.float32, device=x_t.device).expand(B, -1)
            # row b's k-th nonzero weight gets variant k; rows with fewer nonzeros get weight 0
            order = aw.abs().argsort(dim=1, descending=True)
            for k in range(int((aw != 0).sum(1).max())):
                a, wk = order[:, k], aw.gather(1, order[:, k:k + 1])[:, 0]
                flipped = y.clone()
                flipped[torch.arange(B), a] = torch.where(wk > 0, PRESENT, ABSENT)
                variants.append(flipped)
                weights.append(wk.abs())
        if len(variants) == 1:
            return model(x_t, t, y)
        # expanding the formula: eps(y) carries 1 - sum(coefficients of the other variants)
        weights = [u.reshape(B, 1, 1, 1) if u.dim() == 1 else u for u in weights]  # (B, 1, 1 or H, 1 or W)
        coefs = torch.stack(torch.broadcast_tensors(*weights))  # (V - 1, B, 1, 1 or H, 1 or W)
        if (coefs.sum(0) == 1).all():  # e.g. an edit at strength 1: eps(y) has weight 0, skip evaluating it
            variants = variants[1:]
        V = len(variants)
        out = model(x_t.repeat(V, 1, 1, 1), t.repeat(V), torch.cat(variants)).reshape(V, *x_t.shape)
        coefs = coefs.to(out.dtype)
        mix = (coefs * out[-len(coefs):]).sum(0)
        return mix if V == len(coefs) else out[0] * (1 - coefs.sum(0)) + mix
    return eps
