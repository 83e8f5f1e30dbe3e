"""Image metrics and distances between feature sets, for the edit scorecard (`celebadiff.scorecard`).

Image metrics, per image, for images in [-1, 1] (range 2):

    psnr(a, b)              10 log10(2^2 / MSE) dB; identical images give PSNR_CAP (100 dB), not inf
    ssim(a, b)              Wang et al. 2004, Gaussian window 11, sigma 1.5 (torchmetrics)

Distances between two clouds of features, Gaussian fit and kernel two-sample test:

    frechet_distance        |mu_a - mu_b|^2 + Tr(S_a + S_b - 2 (S_a S_b)^(1/2))    Heusel et al. 2017 (FID)
    kernel_distance         unbiased MMD^2 with k(x, y) = (x.y / F + 1)^3           Binkowski et al. 2018 (KID)

Here the features are the judge classifier's (`classifier_features`), not Inception's, which cannot be
downloaded here: the numbers are "classifier FID/KID", comparable only between runs judged by the same
classifier. On real faces an edit should also keep the person: `identity_scores` (dlib's distance).
"""

import torch
from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure
from torchvision.transforms.v2 import functional as TF

PSNR_CAP = 100.0  # dB; what psnr() returns for identical images (MSE 0 would give inf)
DISTANCE_NOTE = "classifier-feature distances, not Inception FID"


def psnr(a, b):
    """Per-image PSNR in dB. a, b: (B, 3, H, W) in [-1, 1] -> (B,), capped at PSNR_CAP."""
    value = peak_signal_noise_ratio(a.float(), b.float(), data_range=2.0, reduction="none", dim=(1, 2, 3))
    return value.clamp(max=PSNR_CAP)


def ssim(a, b):
    """Per-image SSIM. a, b: (B, 3, H, W) in [-1, 1] -> (B,) in [-1, 1], 1 for identical images."""
    return structural_similarity_index_measure(a.float(), b.float(), data_range=2.0, reduction="none")


def _check_sets(feats_a, feats_b):
    if feats_a.ndim != 2 or feats_b.ndim != 2 or feats_a.shape[1] != feats_b.shape[1]:
        raise ValueError(f"features must be (N, F) and (M, F), got {tuple(feats_a.shape)} and {tuple(feats_b.shape)}")
    if min(len(feats_a), len(feats_b)) < 2:
        raise ValueError("each feature set needs at least 2 rows; evaluate more images")


def frechet_distance(feats_a, feats_b):
    """Frechet distance between Gaussians fitted to two feature sets (N, F) and (M, F).

    d^2 = |mu_a - mu_b|^2 + Tr(S_a + S_b - 2 (S_a S_b)^(1/2)). The trace of the matrix root is taken as
    Tr (S_a^(1/2) S_b S_a^(1/2))^(1/2): the same eigenvalues, but of a symmetric PSD matrix, so a
    symmetric eigendecomposition (float64) gives it without scipy's sqrtm.
    """
    _check_sets(feats_a, feats_b)
    a, b = feats_a.double(), feats_b.double()
    cov_a, cov_b = torch.atleast_2d(torch.cov(a.T)), torch.atleast_2d(torch.cov(b.T))
    w, v = torch.linalg.eigh(cov_a)
    root_a = v @ torch.diag(w.clamp(min=0).sqrt()) @ v.T
    inner = root_a @ cov_b @ root_a
    trace_root = torch.linalg.eigvalsh((inner + inner.T) / 2).clamp(min=0).sqrt().sum()
    d2 = (a.mean(0) - b.mean(0)).square().sum() + cov_a.trace() + cov_b.trace() - 2 * trace_root
    return float(d2)


def _poly_mmd2(x, y):
    """Unbiased MMD^2 of two equal-size sets with the cubic kernel (x.y / F + 1)^3."""
    m, dim = x.shape
    k_xx, k_yy, k_xy = [(u @ v.T / dim + 1) ** 3 for u, v in ((x, x), (y, y), (x, y))]
    same = (k_xx.sum() - k_xx.diagonal().sum() + k_yy.sum() - k_yy.diagonal().sum()) / (m * (m - 1))
    return same - 2 * k_xy.mean()


def kernel_distance(feats_a, feats_b, subset_size=1000, n_subsets=100, seed=0):
    """Kernel (inception-style) distance: the mean of the unbiased MMD^2 over random subsets.

    feats_a (N, F), feats_b (M, F); each of `n_subsets` draws takes min(subset_size, N, M) rows of
    each set without replacement (seeded), as torchmetrics' KernelInceptionDistance. About 0 for two
    samples of one distribution (it can be slightly negative: the estimate is unbiased).
    """
    _check_sets(feats_a, feats_b)
    a, b = feats_a.double(), feats_b.double()
    m = min(subset_size, len(a), len(b))
    g = torch.Generator().manual_seed(seed)
    values = [_poly_mmd2(a[torch.randperm(len(a), generator=g)[:m]], b[torch.randperm(len(b), generator=g)[:m]])
              for _ in range(n_subsets)]
    return float(torch.stack(values).mean())


@torch.no_grad()
def classifier_features(classifier, x, batch_size=256):
    """(B, 3, H, W) in [-1, 1] -> (B, F) features, resized to the classifier's side first."""
    device = next(classifier.parameters()).device
    out = []
    for chunk in x.split(batch_size):
        chunk = chunk.float().to(device)
        if chunk.shape[-1] != classifier.image_size:
            chunk = TF.resize(chunk, [classifier.image_size] * 2, antialias=True)
        out.append(classifier.features(chunk).cpu())
    return torch.cat(out)


def identity_scores(edited, source, crop):
    """Is an edit still the same person: dlib's face-recognition distance to the source (real faces).

    Returns {"identity_distance": mean distance, "identity_same": fraction under identity.THRESHOLD (0.6)}.
    """
    from .identity import THRESHOLD, identity_distance  # dlib: only real faces are scored this way

    distance = identity_distance(edited.cpu(), source.cpu(), crop)
    return {"identity_distance": float(distance.mean()), "identity_same": float((distance < THRESHOLD).float().mean())}
