"""Write-the-code exercises of notebook 06 (editing): one DDIM inversion step, the DDIB loop, the edit's
noise prediction, DiffEdit's mask from noise differences, the masked blend, SDEdit's start, and
region-wise conditioning.

Where the library's version sits inside a larger function (the mask inside `edit_mask`, the blend inside
`ddim_sample`, SDEdit's start inside the Editor), the reference here is that part alone, written out.
Each `check_*` takes the student's function and returns True, False or None (`check_function`).
"""

import torch

from ..diffusion import q_sample
from ..sampling import ddim_invert, ddim_sample, ddim_timesteps, guided
from . import check_function, random_states, toy_model
from .nb02_forward import random_schedule


def _alpha_bar(schedule, t):
    return schedule.alpha_bar[t] if t >= 0 else torch.tensor(1.0, dtype=torch.float64)


def inversion_step(schedule, x_s, eps_hat, s, t):
    """DDIM's deterministic step run upwards, from s to t > s (s = -1: x_s is the clean image):
    x_t = sqrt(alpha_bar_t) x0_hat + sqrt(1 - alpha_bar_t) eps_hat, x0_hat from x_s at step s."""
    ab_s, ab_t = _alpha_bar(schedule, s), _alpha_bar(schedule, t)
    x0_hat = (x_s - (1 - ab_s).sqrt() * eps_hat) / ab_s.sqrt()
    return ab_t.sqrt() * x0_hat + (1 - ab_t).sqrt() * eps_hat


def _inversion_case(g, kind):
    schedule = random_schedule(g)
    x_s, eps_hat = torch.randn(2, 3, 3, 4, 4, generator=g, dtype=torch.float64)
    t = int(torch.randint(schedule.T // 2, schedule.T, (), generator=g))
    s = -1 if kind == "clean" else int(torch.randint(0, t, (), generator=g))
    return (schedule, x_s, eps_hat, s, t), inversion_step(schedule, x_s, eps_hat, s, t)


def check_inversion_step(fn, seed=None):
    """fn(schedule, x_s, eps_hat, s, t) -> x_t: one step of DDIM inversion, from s up to t > s (s = -1: the
    clean image, alpha_bar_{-1} = 1), eps_hat the noise predicted at x_s. DDIM down from t to s with the
    same eps_hat (`ddim_step`, eta 0) must give x_s back."""
    kinds = iter(("clean", "noisy", "noisy"))
    return check_function(fn, lambda g: _inversion_case(g, next(kinds)), seed=seed,
                          reference="DDIM's step run upwards", hint=(
        "x0_hat comes from the point you have, x_s, so it uses alpha_bar of step s; then rebuild at step t; "
        "s = -1 means alpha_bar = 1 (the clean image), not schedule.alpha_bar[-1]"))


def _ddib_case(g):
    schedule, A = random_schedule(g), 3
    model = toy_model(A, g)
    x0 = torch.rand(2, 3, 4, 4, generator=g, dtype=torch.float64) * 2 - 1
    y_source = random_states((2, A), g, unknown=False)
    y_target = y_source.clone()
    y_target[:, 0] = 1 - y_target[:, 0]  # one attribute flipped
    steps = int(torch.randint(3, 7, (), generator=g))
    x_T = ddim_invert(model, schedule, x0, y_source, steps=steps)
    return (model, schedule, x0, y_source, y_target, steps), ddim_sample(model, schedule, x_T, y_target, steps=steps)


def check_ddib(fn, seed=None):
    """fn(model, schedule, x0, y_source, y_target, steps) -> the DDIB edit at strength 1, no mask:
    DDIM-invert x0 to x_T under the face's own attributes, then DDIM down (eta 0) under the target."""
    return check_function(fn, _ddib_case, seed=seed, reference="ddim_sample(ddim_invert(...))", hint=(
        "the inversion must find the x_T from which the model, told the face's OWN attributes, draws this "
        "face; only the regeneration is told the target; use the same number of steps both ways "
        "(ddim_invert and ddim_sample of celebadiff.sampling)"))


def _edit_eps_case(g):
    A = 4
    model = toy_model(A, g)
    x_t = torch.randn(3, 3, 4, 4, generator=g, dtype=torch.float64)
    t = torch.randint(0, 1000, (3,), generator=g)
    y_source, y_target = random_states((2, 3, A), g, unknown=False)
    s = 0.5 + 2.5 * float(torch.rand((), generator=g))
    return (model, x_t, t, y_source, y_target, s), guided(model, target=y_target, target_w=s)(x_t, t, y_source)


def check_edit_eps(fn, seed=None):
    """fn(model, x_t, t, y_source, y_target, strength) -> eps_edit = eps(y) + s (eps(y') - eps(y)):
    the noise prediction of a DDIB edit at strength s (notebook 06's DDIB formula)."""
    return check_function(fn, _edit_eps_case, seed=seed,
                          reference="guided(model, target=y_target, target_w=strength)", hint=(
        "the base is the source's prediction; the strength scales only the difference the target makes, so "
        "s = 0 gives eps(y) and s = 1 gives eps(y') exactly"))


def diffedit_mask(eps_edit, eps_source, threshold):
    """DiffEdit's mask from K noise draws: D = mean over draws and channels of |eps_edit - eps_source|,
    then D / max(D) per face > threshold. (K, B, 3, H, W) twice -> (B, 1, H, W) float 0/1."""
    D = (eps_edit - eps_source).abs().mean(2, keepdim=True).mean(0)  # (B, 1, H, W)
    return (D / D.amax((1, 2, 3), keepdim=True) > threshold).float()


def _mask_case(g):
    K, B, S = 3, 3, 8
    eps_source = torch.randn(K, B, 3, S, S, generator=g, dtype=torch.float64)
    ys, xs = torch.meshgrid(torch.arange(S), torch.arange(S), indexing="ij")
    centre = torch.randint(2, S - 2, (B, 2), generator=g)
    blob = torch.exp(-((ys - centre[:, :1, None]) ** 2 + (xs - centre[:, 1:, None]) ** 2) / 4.0)  # (B, S, S)
    scale = 10.0 ** torch.arange(B, dtype=torch.float64)  # faces whose edits differ in size
    signs = torch.randn(K, B, 3, S, S, generator=g, dtype=torch.float64).sign()
    eps_edit = eps_source + signs * (scale[:, None, None] * (blob + 0.05))[None, :, None]
    threshold = 0.1 + 0.4 * float(torch.rand((), generator=g))
    return (eps_edit, eps_source, threshold), diffedit_mask(eps_edit, eps_source, threshold)


def check_diffedit_mask(fn, seed=None):
    """fn(eps_edit, eps_source, threshold) -> (B, 1, H, W) float 0/1, DiffEdit's mask (`diffedit_mask`):
    eps_edit, eps_source (K, B, 3, H, W) the two predictions on K noised copies of each face."""
    return check_function(fn, _mask_case, seed=seed,
                          reference="edit_mask's rule, on given predictions", hint=(
        "the size of a difference, not its sign, marks where the edit acts (predictions of opposite sign "
        "must not cancel); each face is rescaled by its OWN peak, so a face whose edit is small still gets "
        "a mask; keep dim 1 so the result is (B, 1, H, W)"))


def _blend_case(g):
    x, x_inv = torch.randn(2, 2, 3, 6, 6, generator=g, dtype=torch.float64)
    mask = torch.rand(2, 1, 6, 6, generator=g, dtype=torch.float64)  # a soft mask: both weights count
    return (x, x_inv, mask), mask * x + (1 - mask) * x_inv


def check_masked_blend(fn, seed=None):
    """fn(x, x_inv, mask) -> the latent after DiffEdit's blend: the regenerated x where mask = 1, the
    inversion's latent x_inv where mask = 0, and in between a weighted mean; mask (B, 1, H, W) in [0, 1]."""
    return check_function(fn, _blend_case, seed=seed, reference="the blend of ddim_sample's keep", hint=(
        "1 in the mask means 'the edit may change this pixel', so the regenerated latent gets weight M there; "
        "the two weights add up to 1 at every pixel"))


def _sdedit_case(g):
    schedule = random_schedule(g)
    steps, fraction = int(torch.randint(4, 11, (), generator=g)), 0.3 + 0.5 * float(torch.rand((), generator=g))
    x0, eps = torch.randn(2, 2, 3, 4, 4, generator=g, dtype=torch.float64)
    below = [t for t in ddim_timesteps(schedule.T, steps) if t <= fraction * schedule.T]
    t_start = below[-1] if below else 0
    x_t = q_sample(schedule, x0, torch.full((2,), t_start), eps)
    return (schedule, x0, fraction, steps, eps), (t_start, x_t)


def check_sdedit_start(fn, seed=None):
    """fn(schedule, x0, t0_fraction, steps, eps) -> (t_start, x_t): SDEdit's first DDIM timestep, the
    largest of `ddim_timesteps(T, steps)` at or below t0_fraction T (an int), and x0 noised to it with eps."""
    return check_function(fn, _sdedit_case, seed=seed, reference="the Editor's SDEdit start", hint=(
        "DDIM only visits the timesteps of its grid, so round t0 down to one of ddim_timesteps(schedule.T, "
        "steps), not to the nearest integer; then the closed form, with one t per image"))


def region_eps(model, x_t, t, y, targets, strengths, masks):
    """eps(y) + sum_k s_k M_k (eps(y_k) - eps(y)): each change acting inside its own region."""
    base = model(x_t, t, y)
    return base + sum(s * m * (model(x_t, t, y_k) - base) for y_k, s, m in zip(targets, strengths, masks))


def _region_case(g):
    A, B, S = 4, 2, 6
    model = toy_model(A, g)
    x_t = torch.randn(B, 3, S, S, generator=g, dtype=torch.float64)
    t, y = torch.randint(0, 1000, (B,), generator=g), random_states((B, A), g, unknown=False)
    targets = list(random_states((2, B, A), g, unknown=False))
    strengths = [0.5 + 2 * float(v) for v in torch.rand(2, generator=g)]
    masks = list((torch.rand(2, B, 1, S, S, generator=g) < 0.4).double())
    return (model, x_t, t, y, targets, strengths, masks), region_eps(model, x_t, t, y, targets, strengths, masks)


def check_region_eps(fn, seed=None):
    """fn(model, x_t, t, y, targets, strengths, masks) -> eps_regions = eps(y) + sum_k s_k M_k (eps(y_k) - eps(y)).

    targets: list of (B, A) states y_k; strengths: list of floats s_k; masks: list of (B, 1, H, W) 0/1 M_k.
    """
    return check_function(fn, _region_case, seed=seed, reference="eps(y) + sum_k s_k M_k (eps(y_k) - eps(y))", hint=(
        "each change k adds its own term, its strength times its own mask times the difference its target "
        "makes to the source's prediction; outside every mask the result is eps(y) exactly"))
