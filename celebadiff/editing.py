"""Editing a given face: DDIB (invert under its own attributes, regenerate under the target), by
default only inside DiffEdit's mask, and SDEdit.

DDIB (Su et al., "Dual Diffusion Implicit Bridges", ICLR 2023) with one conditional model:

    x_T   = DDIM-invert(x0 | y_source)                      deterministic, eta = 0
    x0'   = DDIM-sample(x_T | eps_edit)
    eps_edit = eps(x_t | y_source) + s (eps(x_t | y_target) - eps(x_t | y_source))
                                   + sum_a s_a (eps(x_t | y_source with a flipped) - eps(x_t | y_source))

The strength s = 1 regenerates exactly under the target attributes, more than 1 extrapolates past
them (classifier-free guidance, Ho & Salimans 2021), 0 gives back the DDIM reconstruction. The
optional signed per-attribute strengths s_a ("more smile, less glasses") add one term each. All of
it is `celebadiff.sampling.guided`.

DiffEdit (Couairon et al., "DiffEdit: Diffusion-based semantic image editing with mask guidance",
ICLR 2023), DDIB's default here, confines the regeneration to where the edit acts. The mask M
(`edit_mask`) is where the edit's noise prediction differs from the source's on noised copies of x0;
the generation then sets, after every DDIM step, x_s = M x_s + (1 - M) x_s_inv, with x_s_inv the
inversion's latent at the same step (x0 itself after the last step), so outside the mask the face is
given back exactly: the source's pixels, not its DDIM reconstruction. On 64 built-in test faces this
raised PSNR against the exact counterfactual from 26.3 to 30.0 dB at equal edit success.

Region-wise editing (`edit_regions`) changes several attributes at once, each with its own strength
s_k and only inside its own region M_k (its own DiffEdit mask, or one the user gives):

    eps_regions = eps(x_t | y_source) + sum_k s_k M_k (eps(x_t | y_k) - eps(x_t | y_source))

with y_k the source with change k alone applied; the generation is DDIB's, pasting the inversion's
latents outside the union of the regions as DiffEdit does, so a smile and glasses asked together
each stay in their own place.

SDEdit (Meng et al. 2022), the baseline: noise x0 to step t0 = t0_fraction * T, then DDIM down
from there with the same eps_edit.
"""

import torch
from tqdm.auto import tqdm

from .data import resolve_attributes
from .diffusion import q_sample
from .sampling import ddim_invert, ddim_sample, ddim_step, ddim_timesteps, guided
from .unet import ABSENT, PRESENT, UNKNOWN

METHODS = ("ddib", "sdedit")
HAIR_COLOURS = ("Black_Hair", "Blond_Hair", "Brown_Hair", "Gray_Hair")  # a face has one hair colour


def turned_off_by(name, attribute_names):
    """The attributes of `attribute_names` that setting `name` to 1 sets to 0: the other hair colours."""
    if name not in HAIR_COLOURS:
        return []
    return [h for h in HAIR_COLOURS if h in attribute_names and h != name]


def set_attributes(y, attribute_names, changes):
    """A copy of states y (B, A) with `changes` {name: 0 | 1} applied to every row.

    Setting a hair colour to 1 sets the other hair colours among `attribute_names` to ABSENT.
    Raises ValueError for an unknown name (with close matches), a value other than 0/1, or two hair
    colours set to 1.
    """
    y = y.clone()
    names = list(attribute_names)
    resolve_attributes(list(changes), valid=names)
    for name, value in changes.items():
        if value not in (0, 1, True, False):
            raise ValueError(f"attribute {name}: value must be 0 or 1, got {value!r}")
    hair = [name for name, value in changes.items() if value and name in HAIR_COLOURS]
    if len(hair) > 1:
        raise ValueError(f"{' and '.join(hair)} are set to 1, but a face has one hair colour; set only one to 1")
    for name, value in changes.items():
        for other in turned_off_by(name, names) if value else []:
            y[:, names.index(other)] = ABSENT
        y[:, names.index(name)] = PRESENT if value else ABSENT
    return y


def edit_plan(y_source, y_target, strength=1.0, attribute_strength=None):
    """What an edit asks for: (target states (B, A) or None, attribute strengths as a tensor or None,
    (B,) bool: the faces it changes at all). eps_edit (module docstring) is then
    `guided(model, attribute_w=..., target=..., target_w=strength)`."""
    changed = torch.zeros(len(y_source), dtype=torch.bool, device=y_source.device)
    target = None
    if y_target is not None:  # attributes the target leaves UNKNOWN keep their source value
        target = torch.where(y_target == UNKNOWN, y_source, y_target)
        changed |= (target != y_source).any(1) & (torch.as_tensor(strength, device=y_source.device) != 0)
    if attribute_strength is not None:
        attribute_strength = torch.as_tensor(attribute_strength, dtype=torch.float32, device=y_source.device)
        aw = attribute_strength.expand(len(y_source), -1)  # a term moves y only where y is not already there
        changed |= (((aw > 0) & (y_source != PRESENT)) | ((aw < 0) & (y_source != ABSENT))).any(1)
    return target, attribute_strength, changed


def edit_direction(y_source, y_target, strength=1.0, attribute_strength=None):
    """An edit scaled to unit size: (target, target_w (B,), attribute_w (B, A) or None, changed (B,)).

    eps_edit - eps(y) is linear in (strength, attribute_strength), so scaling both by one factor per
    face changes the size of the edit, not where it acts: DiffEdit's map D / max(D) is the same.
    The unit edit has target_w 1 (or, without a target, largest |attribute_w| 1), where `guided`
    skips eps(y); equal directions give equal tensors, so a moved strength slider can reuse a mask.
    """
    target, attribute_w, changed = edit_plan(y_source, y_target, strength, attribute_strength)
    B, device = len(y_source), y_source.device
    s = torch.as_tensor(strength, dtype=torch.float32, device=device).expand(B)
    if target is None:
        s = torch.zeros(B, device=device)
    aw = None if attribute_w is None else attribute_w.expand(B, -1)
    size = s if target is not None else aw.abs().amax(1) if aw is not None else s
    size = torch.where(size != 0, size, 1.0)
    return target, (s != 0).float(), None if aw is None else aw / size[:, None], changed


@torch.no_grad()
def edit_mask(model, schedule, x0, y_source, y_target=None, strength=1.0, attribute_strength=None, mask_t=0.5,
              threshold=0.1, draws=4, seed=0):
    """DiffEdit's mask: where the edit's noise prediction differs from the source's.

        x_t^k = q_sample(x0, t = mask_t T, eps^k)                   k = 1 .. draws, seeded
        D     = mean_k mean_channels |eps_edit(x_t^k) - eps(x_t^k | y_source)|
        M     = D / max(D) > threshold                              per face

    Args:
        model, schedule, x0 (B, 3, H, W) in [-1, 1], y_source, y_target, strength, attribute_strength: as for `edit`.
        mask_t: the noise level, as a fraction of T, in (0, 1].
        threshold: in [0, 1); None returns the rescaled map D / max(D) itself. The default 0.1 scored
            best on the built-in faces (benchmarks/bench_edit.py --mask-threshold); DiffEdit's 0.5 keeps
            only the peaks of these 32 px maps and misses about two thirds of the pixels an edit changes.
        draws: noise draws averaged (at least 1); seed: their seed.
    Returns:
        (B, 1, H, W) float: 1 where the edit regenerates, 0 where it keeps the face (threshold=None: the
        map, in [0, 1]). A face whose edit changes nothing (target == source, or strength 0) gets all zeros.
    """
    if not 0 < mask_t <= 1:
        raise ValueError(f"mask_t={mask_t}: give the noise level as a fraction of T in (0, 1], e.g. 0.5")
    if threshold is not None and not 0 <= threshold < 1:
        raise ValueError(f"threshold={threshold}: give a value in [0, 1), e.g. 0.1 (or None for the map itself)")
    if draws < 1:
        raise ValueError(f"draws={draws}: average at least 1 noise draw, e.g. 4")
    target, target_w, attribute_w, changed = edit_direction(y_source, y_target, strength, attribute_strength)
    editor = guided(model, attribute_w=attribute_w, target=target, target_w=target_w)
    t = torch.full((len(x0),), min(round(mask_t * schedule.T), schedule.T - 1), device=x0.device)
    g = torch.Generator(x0.device).manual_seed(seed)
    diff = torch.zeros_like(x0[:, :1])
    for _ in range(draws):
        x_t = q_sample(schedule, x0, t, torch.randn(x0.shape, generator=g, device=x0.device))
        diff += (editor(x_t, t, y_source) - model(x_t, t, y_source)).abs().mean(1, keepdim=True) / draws
    peak = diff.amax((1, 2, 3), keepdim=True)
    rescale = changed[:, None, None, None] & (peak > 0)  # no change asked: an empty mask, not rescaled noise
    scaled = torch.where(rescale, diff / peak.clamp(min=torch.finfo(diff.dtype).tiny), 0.0)
    return scaled if threshold is None else (scaled > threshold).to(x0.dtype)


def edit(model, schedule, x0, y_source, y_target=None, method="ddib", strength=1.0, attribute_strength=None,
         steps=50, t0_fraction=0.5, seed=0, mask=None, mask_t=0.5, mask_threshold=0.1, mask_draws=4,
         callback=None, progress=False):
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
        seed: SDEdit's noise and the mask's noise draws; DDIB itself is deterministic.
        mask: DDIB only. True: DiffEdit, with the mask that `edit_mask(..., mask_t, mask_threshold,
            mask_draws, seed=seed)` computes. False: regenerate the whole face. Or a given mask,
            (B or 1, 1, H, W) in [0, 1], 1 where the face may change. None (default): True for DDIB,
            False for SDEdit. A face whose mask is all zero (nothing to change) gets the plain DDIB
            edit: at strength 0, or with a target equal to the source, the reconstruction.
        callback: called as callback(done, total) after every model evaluation (progress bars).
    Returns:
        (B, 3, H, W) edited faces, float, about [-1, 1].
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    if mask is None:
        mask = method == "ddib"
    if not isinstance(mask, (bool, torch.Tensor)):
        raise ValueError(f"mask must be True, False, None or a (B, 1, H, W) tensor, got {type(mask).__name__}")
    if method != "ddib" and mask is not False:
        raise ValueError(f"a mask applies to DDIB only; pass mask=False with method={method!r}")
    if isinstance(mask, torch.Tensor):
        mask = check_mask(mask, x0)
    target, attribute_w, changed = edit_plan(y_source, y_target, strength, attribute_strength)
    if mask is True and not changed.any():
        mask = False  # nothing to change: the plain DDIB edit (the reconstruction), without the mask's cost
    # SDEdit starts on the DDIM timestep nearest below t0 so that no step is skipped or repeated
    below = [t for t in ddim_timesteps(schedule.T, steps) if t <= t0_fraction * schedule.T]
    t_start = below[-1] if below else 0
    total = (2 * steps + (2 * mask_draws if mask is True else 0)) if method == "ddib" else len(below)
    model = counting(model, callback, total) if callback else model
    with torch.no_grad():
        if method == "sdedit":
            editor = guided(model, attribute_w=attribute_w, target=target, target_w=strength)
            g = torch.Generator(x0.device).manual_seed(seed)
            eps = torch.randn(x0.shape, generator=g, device=x0.device)
            x_t = q_sample(schedule, x0, torch.full((x0.shape[0],), t_start, device=x0.device), eps)
            return ddim_sample(editor, schedule, x_t, y_source, steps=steps, progress=progress, t_start=t_start)
        if mask is True:
            mask = edit_mask(model, schedule, x0, y_source, y_target, strength, attribute_strength, mask_t=mask_t,
                             threshold=mask_threshold, draws=mask_draws, seed=seed)
        trajectory = ddim_invert(model, schedule, x0, y_source, steps=steps, progress=progress, return_trajectory=True)
        return regenerate(model, schedule, trajectory, y_source, y_target, strength, attribute_strength, mask, steps,
                          progress)


@torch.no_grad()
def regenerate(model, schedule, trajectory, y_source, y_target=None, strength=1.0, attribute_strength=None,
               mask=False, steps=50, progress=False):
    """DDIB's second half: DDIM down from an inversion's x_T under eps_edit (module docstring).

    `edit` is `ddim_invert(..., return_trajectory=True)` followed by this; keeping the trajectory lets
    an editor regenerate the same face under other targets or strengths without inverting it again.

    Args:
        trajectory: `ddim_invert(model, schedule, x0, y_source, steps, return_trajectory=True)`, the
            latents [x0, ..., x_T] of the same `steps`.
        y_source, y_target, strength, attribute_strength: as for `edit`.
        mask: False regenerates the whole face; a mask (B or 1, 1, H, W) in [0, 1] (e.g. `edit_mask`'s)
            keeps the inversion's latents outside it after every step (DiffEdit), so there x0 comes back.
    Returns:
        (B, 3, H, W) edited faces, float, about [-1, 1].
    """
    target, attribute_w, _ = edit_plan(y_source, y_target, strength, attribute_strength)
    editor = guided(model, attribute_w=attribute_w, target=target, target_w=strength)
    if mask is False:
        return ddim_sample(editor, schedule, trajectory[-1], y_source, steps=steps, progress=progress)
    return _masked_ddim(editor, schedule, trajectory, check_mask(mask, trajectory[0]), y_source, steps, progress)


@torch.no_grad()
def edit_regions(model, schedule, x0, y_source, changes, attribute_names=None, steps=50, mask_t=0.5,
                 mask_threshold=0.1, mask_draws=4, seed=0, callback=None, progress=False, trajectory=None,
                 return_union=False):
    """Edit several attributes at once, each only inside its own region and with its own strength (DDIB).

    Inverts x0 once under y_source, then runs DDIM down under eps_regions (module docstring) and after
    every step sets x = M x + (1 - M) (the inversion's latent there), M = max_k M_k, as `edit` does with
    one mask. Where regions overlap their terms add up, as signed strengths do in `guided`. With one
    change whose region is its DiffEdit mask this is `edit(..., mask=True)`; a face whose regions are all
    empty gets the DDIM reconstruction.

    Args:
        model, schedule, x0 (B, 3, H, W) in [-1, 1], y_source (B, A) long states: as for `edit`.
        changes: a list of (attribute, value, strength, region) tuples. attribute: a name from
            `attribute_names` or an index into y; value: 0 or 1 (a hair colour set to 1 turns the other
            hair colours off, as in `set_attributes`); strength: as `edit`'s, a float or (B,), default 1.0;
            region: (B or 1, 1, H, W) in [0, 1], 1 where this change may act, or None (default) for the
            DiffEdit mask of this change alone (`edit_mask(..., mask_t, mask_threshold, mask_draws, seed)`).
            strength and region may be left off.
        attribute_names: the names y is made of (config.attributes); needed to name attributes.
        steps: DDIM steps for inversion and for generation each.
        callback: called as callback(done, total) after every model evaluation.
        trajectory: a kept `ddim_invert(..., steps, return_trajectory=True)` of x0 under y_source, as for
            `regenerate` (its steps are then not counted or run again); None inverts here.
        return_union: also return M (B, 1, H, W), the union of the regions that act (a change of
            strength 0 or with an empty region is left out): where the edit may have changed the face.
    Returns:
        (B, 3, H, W) edited faces, float, about [-1, 1]; outside every region exactly x0 (a face with no
        region at all: its DDIM reconstruction, as `edit` gives a face with nothing to change).
        With return_union, (edited, M).
    """
    if not changes:
        raise ValueError("changes is empty; give at least one, e.g. [('Smiling', 1, 1.0, None)]")
    plan = [_region_change(change, y_source, attribute_names, x0) for change in changes]
    total = (steps if trajectory is None else 0) + steps + 2 * mask_draws * masks_to_measure(changes)
    model = counting(model, callback, total) if callback else model
    targets, regions, coefs = [], [], []
    for target, strength, region in plan:
        if not _acts(strength):  # a zero term: no mask, no evaluations
            continue
        if region is None:
            region = edit_mask(model, schedule, x0, y_source, target, strength, mask_t=mask_t,
                               threshold=mask_threshold, draws=mask_draws, seed=seed)
        if region.any():  # an empty region: no evaluations either
            targets.append(target)
            regions.append(region.expand(len(x0), -1, -1, -1))
            coefs.append(torch.as_tensor(strength, dtype=x0.dtype, device=x0.device).reshape(-1, 1, 1, 1) * regions[-1])
    union = torch.stack(regions).amax(0) if regions else torch.zeros_like(x0[:, :1])
    if trajectory is None:
        trajectory = ddim_invert(model, schedule, x0, y_source, steps=steps, progress=progress, return_trajectory=True)
    edited = _masked_ddim(_region_guided(model, targets, coefs), schedule, trajectory, union, y_source, steps, progress)
    return (edited, union) if return_union else edited


def masks_to_measure(changes):
    """How many of `edit_regions`' changes get their own DiffEdit mask (2 * mask_draws evaluations each):
    those with no region and a strength that is not all 0."""
    return sum(region is None and _acts(strength) for _, _, strength, region in map(_full_change, changes))


def _acts(strength):
    """Whether a change's strength (a float or (B,)) is nonzero for some face."""
    return bool(torch.as_tensor(strength).ne(0).any())


def _full_change(change):
    """A change as (attribute, value, strength, region), strength 1.0 and region None where left off."""
    if not isinstance(change, (tuple, list)) or not 2 <= len(change) <= 4:
        raise ValueError(f"a change is (attribute, value, strength, region), strength and region optional, e.g. "
                         f"('Smiling', 1, 1.5, None); got {change!r}")
    return (*change, *(1.0, None)[len(change) - 2:])


def _region_change(change, y_source, attribute_names, x0):
    """One `edit_regions` change as (target states (B, A), strength, region or None)."""
    attribute, value, strength, region = _full_change(change)
    A = y_source.shape[1]
    names = [str(a) for a in range(A)] if attribute_names is None else list(attribute_names)
    if len(names) != A:
        raise ValueError(f"attribute_names has {len(names)} names but y_source has {A} attributes; "
                         "pass the model's own config.attributes")
    if isinstance(attribute, str) and attribute_names is None:
        raise ValueError(f"change {attribute!r}: pass attribute_names (the model's config.attributes) to name "
                         "attributes, or give the attribute's index in y")
    if not isinstance(attribute, str):
        if not 0 <= int(attribute) < A:
            raise ValueError(f"attribute index {attribute} is out of range: y has {A} attributes, 0 .. {A - 1}")
        attribute = names[int(attribute)]
    target = set_attributes(y_source, names, {attribute: value})
    return target, strength, None if region is None else check_mask(region, x0)


def _region_guided(model, targets, coefs):
    """eps(y) + sum_k c_k (eps(targets[k]) - eps(y)) in one batched call: `guided`'s target term, with a
    weight c_k (B, 1, H, W) per pixel. No targets: `model` itself."""
    if not targets:
        return model

    def eps(x_t, t, y):
        V = 1 + len(targets)
        out = model(x_t.repeat(V, 1, 1, 1), t.repeat(V), torch.cat([y, *targets])).reshape(V, *x_t.shape)
        c = torch.stack(coefs).to(out.dtype)  # (V - 1, B, 1, H, W)
        return out[0] * (1 - c.sum(0)) + (c * out[1:]).sum(0)
    return eps


def check_mask(mask, x0):
    """A given mask as x0's dtype, after checking its shape (B or 1, 1, H, W) and range [0, 1]."""
    B, _, H, W = x0.shape
    if mask.dim() != 4 or mask.shape[0] not in (1, B) or tuple(mask.shape[1:]) != (1, H, W):
        raise ValueError(f"mask has shape {tuple(mask.shape)}; give one of shape ({B}, 1, {H}, {W}) for these "
                         "faces, e.g. from edit_mask(...)")
    mask = mask.to(device=x0.device, dtype=x0.dtype)
    if not ((mask >= 0) & (mask <= 1)).all():
        raise ValueError("mask values must lie in [0, 1] (1: may change, 0: keep); clamp or threshold it first")
    return mask


def _masked_ddim(editor, schedule, trajectory, mask, y, steps, progress):
    """DDIM from trajectory[-1] under `editor`; after each step x = M x + (1 - M) (the inversion's latent there).

    trajectory: `ddim_invert(..., return_trajectory=True)`; mask M: (B or 1, 1, H, W) in [0, 1]. A face
    whose mask is all zero is regenerated whole instead (the plain DDIB edit).
    """
    mask = torch.where(mask.flatten(1).any(1)[:, None, None, None], mask, torch.ones_like(mask))
    ts = ddim_timesteps(schedule.T, steps)
    x = trajectory[-1]
    for i in tqdm(reversed(range(len(ts))), total=len(ts), disable=not progress, desc="DDIM (masked)"):
        t = torch.full((x.shape[0],), ts[i], device=x.device, dtype=torch.long)
        x = ddim_step(schedule, x, editor(x, t, y), ts[i], ts[i - 1] if i > 0 else -1)
        x = mask * x + (1 - mask) * trajectory[i]  # trajectory[i] is at ts[i - 1]; trajectory[0] is x0
    return x


def counting(model, callback, total):
    """`model`, calling callback(done, total) after each of its evaluations (progress bars, benchmarks)."""
    done = 0

    def counted(x_t, t, y):
        nonlocal done
        out = model(x_t, t, y)
        done += 1
        callback(done, total)
        return out
    return counted
