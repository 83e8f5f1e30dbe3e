"""Editing a given face: DDIB (invert under its own attributes, regenerate under the target) and SDEdit.

DDIB (Su et al., "Dual Diffusion Implicit Bridges", ICLR 2023) with one conditional model:

    x_T   = DDIM-invert(x0 | y_source)                      deterministic, eta = 0
    x0'   = DDIM-sample(x_T | eps_edit)
    eps_edit = eps(x_t | y_source) + s (eps(x_t | y_target) - eps(x_t | y_source))
                                   + sum_a s_a (eps(x_t | y_source with a flipped) - eps(x_t | y_source))

The strength s = 1 regenerates exactly under the target attributes, more than 1 extrapolates past
them (classifier-free guidance, Ho & Salimans 2021), 0 gives back the DDIM reconstruction. The
optional signed per-attribute strengths s_a ("more smile, less glasses") add one term each. All of
it is `celebadiff.sampling.guided`.

SDEdit (Meng et al. 2022), the baseline: noise x0 to step t0 = t0_fraction * T, then DDIM down
from there with the same eps_edit.
"""

import torch

from .data import resolve_attributes
from .diffusion import q_sample
from .sampling import ddim_invert, ddim_sample, ddim_timesteps, guided
from .unet import ABSENT, PRESENT, UNKNOWN

METHODS = ("ddib", "sdedit")


def set_attributes(y, attribute_names, changes):
    """A copy of states y (B, A) with `changes` {name: 0 | 1} applied to every row.

    Raises ValueError for an unknown name (with close matches) or a value other than 0/1.
    """
    y = y.clone()
    resolve_attributes(list(changes), valid=list(attribute_names))
    for name, value in changes.items():
        if value not in (0, 1, True, False):
            raise ValueError(f"attribute {name}: value must be 0 or 1, got {value!r}")
        y[:, list(attribute_names).index(name)] = PRESENT if value else ABSENT
    return y


def edit(model, schedule, x0, y_source, y_target=None, method="ddib", strength=1.0, attribute_strength=None,
         steps=50, t0_fraction=0.5, seed=0, callback=None, progress=False):
    """Edit a batch of faces towards target attributes.

    Args:
        model: callable (x_t, t, y) -> eps_hat (an EMA UNet in eval mode).
        x0: (B, 3, H, W) in [-1, 1], the faces.
        y_source: (B, A) long states of the faces (UNKNOWN where not known).
        y_target: (B, A) long states wanted; attributes equal to the source are kept.
        strength: global strength of the change (0: reconstruction, 1: the target, >1: stronger).
        attribute_strength: optional signed strengths (A,) or (B, A), added to those from y_target:
            +2 means "more of this attribute", -1 "less of it".
        steps: DDIM steps for inversion and for generation each (SDEdit runs the ones below t0).
        t0_fraction: SDEdit's starting noise level, as a fraction of T.
        seed: SDEdit's noise; DDIB is deterministic.
        callback: called as callback(done, total) after every model evaluation (progress bars).
    Returns:
        (B, 3, H, W) edited faces, float, about [-1, 1].
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    target = None
    if y_target is not None:  # attributes the target leaves UNKNOWN keep their source value
        target = torch.where(y_target == UNKNOWN, y_source, y_target)
    if attribute_strength is not None:
        attribute_strength = torch.as_tensor(attribute_strength, dtype=torch.float32, device=x0.device)
    # SDEdit starts on the DDIM timestep nearest below t0 so that no step is skipped or repeated
    below = [t for t in ddim_timesteps(schedule.T, steps) if t <= t0_fraction * schedule.T]
    t_start = below[-1] if below else 0
    total = 2 * steps if method == "ddib" else len(below)
    model = _counting(model, callback, total) if callback else model
    editor = guided(model, attribute_w=attribute_strength, target=target, target_w=strength)
    with torch.no_grad():
        if method == "ddib":
            x_T = ddim_invert(model, schedule, x0, y_source, steps=steps, progress=progress)
            return ddim_sample(editor, schedule, x_T, y_source, steps=steps, progress=progress)
        g = torch.Generator(x0.device).manual_seed(seed)
        eps = torch.randn(x0.shape, generator=g, device=x0.device)
        x_t = q_sample(schedule, x0, torch.full((x0.shape[0],), t_start, device=x0.device), eps)
        return ddim_sample(editor, schedule, x_t, y_source, steps=steps, progress=progress, t_start=t_start)


def _counting(model, callback, total):
    done = 0

    def counted(x_t, t, y):
        nonlocal done
        out = model(x_t, t, y)
        done += 1
        callback(done, total)
        return out
    return counted
