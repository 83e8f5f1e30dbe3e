"""Write-the-code exercises of notebook 04 (training): L_simple on a batch, the min-SNR weight,
attribute dropout, the v-prediction target, and the contrastive hinge.

Each `check_*` takes the student's function and returns True, False or None (`check_function`).
"""

from types import SimpleNamespace

import torch

from ..diffusion import contrastive_hinge, diffusion_loss
from ..train import drop_attributes
from . import check_function, random_states, toy_model
from .nb02_forward import random_schedule, random_steps


def _seeded_pair(g):
    """Two generators in the same state: one for the reference, one for the student."""
    seed = int(torch.randint(0, 2**31 - 1, (), generator=g))
    return torch.Generator().manual_seed(seed), torch.Generator().manual_seed(seed)


def _training_batch(g):
    schedule, A = random_schedule(g), 4
    model = toy_model(A, g, dtype=torch.float32)
    x0 = torch.rand(6, 3, 4, 4, generator=g) * 2 - 1
    y = random_states((6, A), g)
    mine, theirs = _seeded_pair(g)
    return (model, schedule, x0, y, mine), diffusion_loss(model, schedule, x0, y, generator=theirs)


def check_training_loss(fn, seed=None):
    """fn(model, schedule, x0, y, generator) -> the scalar L_simple of one batch.

    Draw t (B,) uniform in 0 .. T-1 first, then eps like x0, both from `generator`; x_t by the closed
    form; the mean over every pixel of every image of (eps - model(x_t, t, y))^2.
    """
    return check_function(fn, _training_batch, seed=seed, reference="celebadiff.diffusion.diffusion_loss", hint=(
        "torch.randint(0, schedule.T, (B,), generator=generator), then torch.randn(x0.shape, "
        "generator=generator), in that order; the network sees the noised x_t, never x0, and what it must "
        "predict is the noise that made x_t"))


def _snr_steps(g):
    schedule, gamma = random_schedule(g), float(torch.rand((), generator=g)) * 9 + 1
    t = random_steps(schedule, 6, g)
    t[1] = 0  # SNR far above gamma: turned down
    snr = schedule.snr[t]
    return (schedule, t, gamma), snr.clamp(max=gamma) / snr


def check_min_snr_weight(fn, seed=None):
    """fn(schedule, t, gamma) -> (B,): the min-SNR-gamma weight min(SNR_t, gamma) / SNR_t (Hang et al.
    2023) of each timestep, with SNR_t = alpha_bar_t / (1 - alpha_bar_t) (`schedule.snr`)."""
    return check_function(fn, _snr_steps, seed=seed, reference="min(SNR_t, gamma) / SNR_t", hint=(
        "the weight is 1 wherever SNR_t <= gamma and falls below 1 only where SNR_t > gamma; it is never "
        "above 1; Tensor.clamp(max=...) takes an elementwise minimum with a number"))


def _labels_to_drop(g):
    labels = torch.randint(0, 2, (64, 5), generator=g).float()
    p_drop, p_uncond = 0.2 + 0.3 * float(torch.rand((), generator=g)), 0.1 + 0.2 * float(torch.rand((), generator=g))
    mine, theirs = _seeded_pair(g)
    config = SimpleNamespace(p_drop_attribute=p_drop, p_uncond=p_uncond)
    return (labels, p_drop, p_uncond, mine), drop_attributes(labels, config, theirs)


def check_drop_attributes(fn, seed=None):
    """fn(labels, p_drop, p_uncond, generator) -> (B, A) long states, as training conditions on them.

    Draw a (B, A) uniform from `generator` (each attribute UNKNOWN where it is below p_drop), then a
    (B, 1) uniform (the whole row UNKNOWN where it is below p_uncond); the rest 0/1 labels -> ABSENT/PRESENT.
    """
    return check_function(fn, _labels_to_drop, seed=seed, reference="celebadiff.train.drop_attributes", hint=(
        "two draws, in order: torch.rand((B, A), generator=generator) for single attributes, then "
        "torch.rand((B, 1), generator=generator) for whole rows; a dropped attribute becomes UNKNOWN (2), "
        "not ABSENT; celebadiff.unet.attribute_states(labels, known) does the last step"))


def _v_case(g):
    schedule = random_schedule(g)
    x0 = torch.rand(4, 3, 4, 4, generator=g, dtype=torch.float64) * 2 - 1
    t, eps = random_steps(schedule, 4, g), torch.randn(x0.shape, generator=g, dtype=torch.float64)
    ab = schedule.at("alpha_bar", t, x0)
    return (schedule, x0, t, eps), ab.sqrt() * eps - (1 - ab).sqrt() * x0


def check_v_target(fn, seed=None):
    """fn(schedule, x0, t, eps) -> v = sqrt(alpha_bar_t) eps - sqrt(1 - alpha_bar_t) x0, the target of
    v-prediction (Salimans & Ho 2022): the velocity of x_t along the circle of the closed form."""
    return check_function(fn, _v_case, seed=seed, reference="v = sqrt(alpha_bar) eps - sqrt(1 - alpha_bar) x0", hint=(
        "write x_t = cos(phi) x0 + sin(phi) eps with cos(phi) = sqrt(alpha_bar_t); v is d x_t / d phi, so mind "
        "which term carries the minus sign; gather alpha_bar per image as (B, 1, 1, 1)"))


def _hinge_case(g):
    B = 8
    err = 0.01 + torch.rand(B, generator=g, dtype=torch.float64)
    err_flip = err * (0.8 + 0.6 * torch.rand(B, generator=g, dtype=torch.float64))  # some hinges active
    has_known = torch.rand(B, generator=g) < 0.6
    has_known[:2] = torch.tensor([True, False])
    margin = 0.05 + 0.25 * float(torch.rand((), generator=g))
    return (err, err_flip, has_known, margin), contrastive_hinge(err, err_flip, has_known, margin)


def check_contrastive_hinge(fn, seed=None):
    """fn(err, err_flip, has_known, margin) -> scalar: the mean over the images with has_known of
    max(0, (1 + m) err(y) - err(y')); err, err_flip (B,) float, has_known (B,) bool."""
    return check_function(fn, _hinge_case, seed=seed, reference="celebadiff.diffusion.contrastive_hinge", hint=(
        "the margin multiplies err(y) (a ratio, the same at every t), it is not added; clamp at 0 before "
        "averaging; average over the images where has_known is True only (sum / count), not over all B"))
