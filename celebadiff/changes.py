"""What an edit asks for: target attribute states, strengths, and where each change may act (DiffEdit's mask).

A change is one term of the editing equation (module docstring of `celebadiff.editing`): move faces
from their source states y towards target states y_k with strength s_k, inside a region M_k:

    Change(target=y_k (B, A), strength=s_k, attribute_strength=s_a (A,) or (B, A), region=M_k)

The command line's `--set`, the editor's sliders and the scorecard's flips all become `Change`s; a
change given as a tuple (attribute, value, strength, region) names one attribute (`as_change`).
Setting attributes follows one rule for hair colours, `data.other_hair_colours`: a face has one.
A change given no region acts inside its own DiffEdit mask, `edit_mask`.
"""

from dataclasses import dataclass

import torch

from .data import HAIR_COLOURS, other_hair_colours, resolve_attributes
from .diffusion import q_sample
from .sampling import guided
from .unet import ABSENT, PRESENT, UNKNOWN


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
        for other in other_hair_colours(name, names) if value else []:
            y[:, names.index(other)] = ABSENT
        y[:, names.index(name)] = PRESENT if value else ABSENT
    return y


@dataclass(frozen=True)
class Change:
    """One change of an edit.

    target: (B, A) states wanted, or None; attributes it leaves UNKNOWN keep the source's value.
    strength: s, a float or (B,): 0 gives the reconstruction, 1 the target, more extrapolates.
    attribute_strength: signed s_a, (A,) or (B, A), or None: +2 "more of a", -1 "less of a".
    region: where it may act: None, its own DiffEdit mask (`editing.edit_mask`); False, the whole face;
        or a map (B or 1, 1, H, W) in [0, 1], 1 where the face may change.
    """

    target: torch.Tensor | None = None
    strength: float | torch.Tensor = 1.0
    attribute_strength: torch.Tensor | None = None
    region: torch.Tensor | bool | None = None

    def terms(self, y_source):
        """The terms of eps_edit: (target (B, A) or None, attribute strengths as a tensor or None,
        (B,) bool: the faces it changes at all). eps_edit is then `guided(model, attribute_w=...,
        target=..., target_w=strength)`."""
        changed = torch.zeros(len(y_source), dtype=torch.bool, device=y_source.device)
        target, attribute_w = None, None
        if self.target is not None:  # attributes the target leaves UNKNOWN keep their source value
            target = torch.where(self.target == UNKNOWN, y_source, self.target)
            changed |= (target != y_source).any(1) & (torch.as_tensor(self.strength, device=y_source.device) != 0)
        if self.attribute_strength is not None:
            attribute_w = torch.as_tensor(self.attribute_strength, dtype=torch.float32, device=y_source.device)
            aw = attribute_w.expand(len(y_source), -1)  # a term moves y only where y is not already there
            changed |= (((aw > 0) & (y_source != PRESENT)) | ((aw < 0) & (y_source != ABSENT))).any(1)
        return target, attribute_w, changed

    def direction(self, y_source):
        """The change scaled to unit size: (target, target_w (B,), attribute_w (B, A) or None, changed (B,)).

        eps_edit - eps(y) is linear in (strength, attribute_strength), so scaling both by one factor per
        face changes the size of the edit, not where it acts: DiffEdit's map D / max(D) is the same.
        The unit edit has target_w 1 (or, without a target, largest |attribute_w| 1), where `guided`
        skips eps(y); equal directions give equal tensors, so a moved strength slider can reuse a mask.
        """
        target, attribute_w, changed = self.terms(y_source)
        B, device = len(y_source), y_source.device
        s = torch.as_tensor(self.strength, dtype=torch.float32, device=device).expand(B)
        if target is None:
            s = torch.zeros(B, device=device)
        aw = None if attribute_w is None else attribute_w.expand(B, -1)
        size = s if target is not None else aw.abs().amax(1) if aw is not None else s
        size = torch.where(size != 0, size, 1.0)
        return target, (s != 0).float(), None if aw is None else aw / size[:, None], changed


def as_change(change, y_source, attribute_names=None, like=None):
    """A Change from itself or from a tuple (attribute, value, strength=1.0, region=None), checked.

    attribute: a name of `attribute_names` (the model's config.attributes) or an index into y; value: 0
    or 1 (a hair colour set to 1 turns the others off, `set_attributes`). like: the faces (B, 3, H, W)
    a given region must fit (`check_mask`). ValueError names what is wrong.
    """
    if isinstance(change, Change):
        region = change.region
        if isinstance(region, torch.Tensor) and like is not None:
            change = Change(change.target, change.strength, change.attribute_strength, check_mask(region, like))
        return change
    if not isinstance(change, (tuple, list)) or not 2 <= len(change) <= 4:
        raise ValueError(f"a change is (attribute, value, strength, region), strength and region optional, e.g. "
                         f"('Smiling', 1, 1.5, None); got {change!r}")
    attribute, value, strength, region = (*change, *(1.0, None)[len(change) - 2:])
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
    if isinstance(region, torch.Tensor) and like is not None:
        region = check_mask(region, like)
    return Change(target, strength, None, region)


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


@torch.no_grad()
def edit_mask(model, schedule, x0, y_source, y_target=None, strength=1.0, attribute_strength=None, mask_t=0.5,
              threshold=0.1, draws=4, seed=0):
    """DiffEdit's mask: where the edit's noise prediction differs from the source's.

        x_t^k = q_sample(x0, t = mask_t T, eps^k)                   k = 1 .. draws, seeded
        D     = mean_k mean_channels |eps_edit(x_t^k) - eps(x_t^k | y_source)|
        M     = D / max(D) > threshold                              per face

    Args:
        model, schedule, x0 (B, 3, H, W) in [-1, 1], y_source, y_target, strength, attribute_strength: as for
            `editing.edit`.
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
    target, target_w, attribute_w, changed = Change(y_target, strength, attribute_strength).direction(y_source)
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
