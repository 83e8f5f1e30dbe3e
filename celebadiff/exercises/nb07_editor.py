"""Write-the-code exercises of notebook 07 (the interactive editor): the noise prediction of the signed
sliders, which sliders change anything at all, and the editor's difference image.

Each `check_*` takes the student's function and returns True, False or None (`check_function`).
"""

import torch

from ..sampling import guided
from ..unet import ABSENT, PRESENT
from . import check_function, random_states, toy_model


def _sliders(g, B, A):
    """Signed slider values (B, A): some zero, some negative, some positive, at least one of each sign per row."""
    s = (0.5 + 2.5 * torch.rand(B, A, generator=g, dtype=torch.float64)) * torch.randint(-1, 2, (B, A), generator=g)
    s[:, 0], s[:, 1] = -s[:, 0].abs() - 0.5, s[:, 1].abs() + 0.5
    return s


def _slider_case(g):
    B, A = 3, 4
    model = toy_model(A, g)
    x_t = torch.randn(B, 3, 4, 4, generator=g, dtype=torch.float64)
    t, y = torch.randint(0, 1000, (B,), generator=g), random_states((B, A), g)
    strengths = _sliders(g, B, A)
    return (model, x_t, t, y, strengths), guided(model, attribute_w=strengths)(x_t, t, y)


def check_slider_eps(fn, seed=None):
    """fn(model, x_t, t, y, strengths) -> eps(y) + sum_a |s_a| (eps(y with a set to sign(s_a)) - eps(y)).

    strengths: (B, A) signed slider values s_a; s_a > 0 sets a PRESENT, s_a < 0 ABSENT, s_a = 0 adds no term.
    """
    return check_function(fn, _slider_case, seed=seed,
                          reference="celebadiff.sampling.guided(model, attribute_w=strengths)",
                          hint=("a negative slider must push towards ABSENT, so its direction lives in which state "
                                "y^(a) gets, and its size |s_a| in the weight; y^(a) changes attribute a alone and "
                                "keeps the others as y has them; loop over the attributes, each row its own s_a"))


def _terms_case(g):
    B, A = 6, 5
    y = random_states((B, A), g)
    strengths = _sliders(g, B, A)
    acts = ((strengths > 0) & (y != PRESENT)) | ((strengths < 0) & (y != ABSENT))
    return (y, strengths), acts


def check_acting_sliders(fn, seed=None):
    """fn(y, strengths) -> (B, A) bool: which sliders change the face at all, True where s_a pushes
    attribute a towards a state that y does not already hold (the term is zero where it does)."""
    return check_function(fn, _terms_case, seed=seed, reference="the nonzero terms of guided(attribute_w=...)", hint=(
        "a slider at 0 never acts; adding what the face already has (s_a > 0 where y is PRESENT) or removing "
        "what it lacks is a zero term; an UNKNOWN attribute moves in either direction"))


def difference_map(source, edited, gain=4.0):
    """d(p) = min(1, gain * mean_c |edited - source| / 2): (3, H, W) twice -> (H, W) in [0, 1]."""
    return ((edited - source).abs().mean(0) / 2 * gain).clamp(max=1.0)


def _difference_case(g):
    source = torch.rand(3, 8, 8, generator=g, dtype=torch.float64) * 2 - 1
    edited = (source + 0.3 * torch.randn(3, 8, 8, generator=g, dtype=torch.float64)).clamp(-1, 1)
    gain = float(torch.randint(2, 9, (), generator=g))
    return (source, edited, gain), difference_map(source, edited, gain)


def check_difference_map(fn, seed=None):
    """fn(source, edited, gain) -> (H, W) in [0, 1]: the editor's difference image before colouring,
    min(1, gain (1/3) sum_c |x'(p, c) - x(p, c)| / 2); source, edited (3, H, W) in [-1, 1]."""
    return check_function(fn, _difference_case, seed=seed,
                          reference="the editor's difference_heat, before its colour map",
                          hint=("average |x' - x| over the three colour channels (dim 0); the value range [-1, 1] "
                                "is 2 wide, so halve it before the gain; cap at 1 (white-hot)"))
