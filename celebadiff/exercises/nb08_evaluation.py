"""Write-the-code exercises of notebook 08 (evaluation): PSNR, edit success and preservation from the
judge's probabilities, the Frechet distance, and the unbiased kernel MMD^2 of KID.

The references are written out here (the scorecard's versions live in `celebadiff.metrics`).
Each `check_*` takes the student's function and returns True, False or None (`check_function`).
"""

import torch

from . import check_function

PSNR_CAP = 100.0  # dB, for identical images, as the scorecard's psnr


def psnr(a, b):
    """Per-image PSNR in dB for images in [-1, 1] (range 2): 10 log10(2^2 / MSE), capped at PSNR_CAP."""
    mse = (a - b).square().mean((1, 2, 3))
    return (10 * torch.log10(4 / mse)).clamp(max=PSNR_CAP)


def _psnr_case(g):
    a = torch.rand(4, 3, 8, 8, generator=g, dtype=torch.float64) * 2 - 1
    noise = torch.randn(4, 1, 1, 1, generator=g, dtype=torch.float64).abs() * 0.2  # a different error per image
    b = (a + noise * torch.randn(a.shape, generator=g, dtype=torch.float64)).clamp(-1, 1)
    b[0] = a[0]  # identical images: the cap, not inf
    return (a, b), psnr(a, b)


def check_psnr(fn, seed=None):
    """fn(a, b) -> (B,): PSNR per image, 10 log10(2^2 / MSE) dB, for a, b (B, 3, H, W) in [-1, 1],
    PSNR_CAP (100 dB) for identical images instead of inf."""
    return check_function(fn, _psnr_case, seed=seed, reference="10 log10(4 / MSE), capped at 100", hint=(
        "the peak is the width of the value range, squared; one MSE per image (a mean over channels, rows and "
        "columns, not over the batch); identical images have MSE = 0, and their PSNR must be the cap, not inf"))


def _rates_case(g):
    B, A = 12, 5
    probs = torch.rand(B, A, generator=g, dtype=torch.float64)
    labels = torch.randint(0, 2, (B, A), generator=g)
    attribute = torch.randint(0, A, (B,), generator=g)
    value = 1 - labels[torch.arange(B), attribute]  # each edit flips its attribute
    keep = torch.ones(B, A, dtype=torch.bool)
    keep[torch.arange(B), attribute] = False
    keep[:, -1] &= torch.rand(B, generator=g) < 0.5  # sometimes a second attribute moves with the edit
    read = probs > 0.5
    success = (read[torch.arange(B), attribute] == value.bool()).double()
    preservation = ((read == labels.bool()) & keep).double().sum(1) / keep.double().sum(1)
    return (probs, attribute, value, labels, keep), (success, preservation)


def check_edit_rates(fn, seed=None):
    """fn(probs, attribute, value, labels, keep) -> (success (B,), preservation (B,)) as floats.

    probs (B, A): the judge's J_a(x'); attribute (B,) long: the edited attribute; value (B,): its target 0/1;
    labels (B, A) 0/1: the source's true attributes; keep (B, A) bool: the attributes the edit must leave.
    success = [(J_a > 1/2) = v]; preservation = mean over b in keep of [(J_b > 1/2) = y_b].
    """
    return check_function(fn, _rates_case, seed=seed, reference="notebook 08's success and preservation", hint=(
        "success reads the one edited attribute of each row (index with torch.arange(B), attribute) and "
        "compares it with the TARGET value; preservation averages only over the attributes keep marks "
        "(a sum over keep divided by its count), since the edited one is meant to change"))


def frechet_distance(a, b):
    """|mu_a - mu_b|^2 + Tr(S_a + S_b - 2 (S_a S_b)^(1/2)), S the sample covariances (N - 1)."""
    cov_a, cov_b = torch.cov(a.T), torch.cov(b.T)
    w, v = torch.linalg.eigh(cov_a)
    root_a = v @ torch.diag(w.clamp(min=0).sqrt()) @ v.T
    trace_root = torch.linalg.eigvalsh(root_a @ cov_b @ root_a).clamp(min=0).sqrt().sum()
    return (a.mean(0) - b.mean(0)).square().sum() + cov_a.trace() + cov_b.trace() - 2 * trace_root


def _correlated(g, n, F):
    mix = torch.randn(F, F, generator=g, dtype=torch.float64)  # correlated features: covariances not diagonal
    return torch.randn(n, F, generator=g, dtype=torch.float64) @ mix + torch.randn(F, generator=g, dtype=torch.float64)


def _frechet_case(g):
    a, b = _correlated(g, 60, 4), _correlated(g, 50, 4)
    return (a, b), frechet_distance(a, b)


def check_frechet_distance(fn, seed=None):
    """fn(a, b) -> the squared Frechet distance (a number) between Gaussians fitted to features a (N, F)
    and b (M, F): |mu_a - mu_b|^2 + Tr(S_a + S_b - 2 (S_a S_b)^(1/2)), S the sample covariance (torch.cov)."""
    return check_function(fn, _frechet_case, seed=seed, reference="the Frechet distance, by eigendecompositions", hint=(
        "the matrix square root is of the product S_a S_b, not of its entries (that holds only for diagonal "
        "covariances); Tr((S_a S_b)^(1/2)) is the sum of the square roots of the eigenvalues of S_a S_b, which "
        "are real and >= 0 (torch.linalg.eigvals, then .real); torch.cov wants the features as rows: a.T"))


def mmd2_unbiased(x, y):
    """Unbiased MMD^2 of two equal-size sets (m, F) with the cubic kernel k(f, g) = (f.g / F + 1)^3."""
    m, F = x.shape
    k_xx, k_yy, k_xy = ((u @ v.T / F + 1) ** 3 for u, v in ((x, x), (y, y), (x, y)))
    same = (k_xx.sum() - k_xx.diagonal().sum() + k_yy.sum() - k_yy.diagonal().sum()) / (m * (m - 1))
    return same - 2 * k_xy.mean()


def _mmd_case(g):
    x = torch.randn(20, 6, generator=g, dtype=torch.float64)
    y = 1.2 * torch.randn(20, 6, generator=g, dtype=torch.float64) + 0.3
    return (x, y), mmd2_unbiased(x, y)


def check_mmd2(fn, seed=None):
    """fn(x, y) -> a number: the unbiased MMD^2 estimate of KID for two equal-size feature sets (m, F),
    mean of k over pairs within x and within y (i != j), minus twice the mean over all pairs across,
    with k(f, g) = (f . g / F + 1)^3 (Binkowski et al. 2018)."""
    return check_function(fn, _mmd_case, seed=seed, reference="KID's unbiased MMD^2", hint=(
        "unbiased: a point's kernel with itself, k(x_i, x_i), is left out of the within-set means, so divide "
        "their sums minus the diagonals by m (m - 1); the cross term keeps every pair (m^2)"))
