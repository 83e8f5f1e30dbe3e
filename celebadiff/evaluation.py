"""The edit scorecard: does an edit change the attribute asked for, keep the others, and look real?

Image metrics, per image, for images in [-1, 1] (range 2):

    psnr(a, b)              10 log10(2^2 / MSE) dB; identical images give PSNR_CAP (100 dB), not inf
    ssim(a, b)              Wang et al. 2004, Gaussian window 11, sigma 1.5 (torchmetrics)

Distances between two clouds of features, Gaussian fit and kernel two-sample test:

    frechet_distance        |mu_a - mu_b|^2 + Tr(S_a + S_b - 2 (S_a S_b)^(1/2))    Heusel et al. 2017 (FID)
    kernel_distance         unbiased MMD^2 with k(x, y) = (x.y / F + 1)^3           Binkowski et al. 2018 (KID)

Here the features are the judge classifier's (`classifier.AttributeClassifier.features`), not
Inception's, which cannot be downloaded here: the numbers are "classifier FID/KID", comparable only
between runs judged by the same classifier.

`edit_scorecard` edits test faces one attribute at a time (EDITED, both directions, evenly) and asks a
judge classifier (the oracle, on the built-in faces) whether the edited attribute reads as the target
and whether the other attributes still read as the source's labels. On the built-in faces every edit
also has an exact answer, the renderer's counterfactual (`synthfaces.counterfactual`), so edits are
scored by PSNR/SSIM against it too.
"""

import json
import time
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch
from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure
from torchvision.transforms.v2 import functional as TF
from tqdm.auto import tqdm

from . import synthfaces
from .classifier import accuracy_report, load_classifier, predict, train_oracle
from .data import CelebADataset, default_cache_dir, frame, to_model_range
from .diffusion import NoiseSchedule
from .editing import edit, turned_off_by
from .models import CHECKPOINTS, default_strength, judge_for, load_model
from .unet import attribute_states

EDITED = ("Smiling", "Eyeglasses", "Male", "Blond_Hair", "Wearing_Hat")  # the built-in faces' scorecard
REAL_EDITED = ("Smiling", "Mouth_Slightly_Open", "Eyeglasses", "Male", "Blond_Hair")  # real faces' scorecard
PSNR_CAP = 100.0  # dB; what psnr() returns for identical images (MSE 0 would give inf)
ORACLE_DIR = synthfaces.PROJECT / "runs" / "oracle"
DISTANCE_NOTE = "classifier-feature distances, not Inception FID"
# the editors compared, as `edit` arguments, and as written in tables and legends
METHODS = {"ddib": {"method": "ddib", "mask": False}, "ddib-mask": {"method": "ddib", "mask": True},
           "sdedit": {"method": "sdedit"}}
METHOD_NAMES = {"ddib": "DDIB", "ddib-mask": "DDIB + DiffEdit mask", "sdedit": "SDEdit"}
# the demo model's goals, printed next to the numbers (never asserted): (key, ">=" or "<", value)
TARGETS = {"edit_success": (">=", 0.85), "preservation": (">=", 0.95), "psnr_counterfactual": (">=", 26.0),
           "psnr_reconstruction": (">=", 28.0), "seconds_per_64_edits": ("<", 90.0)}
# the real-face model's goals (the real-faces issue); preservation: at most 0.02 below the unchanged photos'
REAL_TARGETS = {"edit_success": (">=", 0.85), "psnr_reconstruction": (">=", 30.0),
                "ssim_reconstruction": (">=", 0.93)}
REAL_PRESERVATION_SLACK = 0.02


# --- metrics ----------------------------------------------------------------------------------------

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


# --- the faces to edit ------------------------------------------------------------------------------

def choose_edits(labels, names, attributes, n, seed=0):
    """Spread n one-attribute edits evenly over `attributes` and both directions.

    labels: (N, A) 0/1 of a split, columns `names`. Cell (a, on) takes faces where a is absent, cell
    (a, off) faces where it is present, in one seeded random order, preferring faces that no earlier
    cell took; a cell with fewer candidates than its share takes all it has (so the result can hold
    fewer than n edits). Returns (rows (M,) int64, attribute names (M,), target values (M,) int64),
    grouped by cell.
    """
    labels = np.asarray(labels) > 0.5
    cells = [(a, v) for a in attributes for v in (1, 0)]
    order = np.random.default_rng(seed).permutation(len(labels))
    used = np.zeros(len(labels), bool)
    rows, attrs, values = [], [], []
    for i, (name, value) in enumerate(cells):
        share = n // len(cells) + (i < n % len(cells))
        candidates = order[labels[order, names.index(name)] != bool(value)]
        pick = np.concatenate([candidates[~used[candidates]], candidates[used[candidates]]])[:share]
        used[pick] = True
        rows += pick.tolist()
        attrs += [name] * len(pick)
        values += [value] * len(pick)
    return np.array(rows, dtype=np.int64), attrs, np.array(values, dtype=np.int64)


def target_labels(labels, names, attrs, values):
    """Source labels (M, A) with row i's attribute attrs[i] set to values[i]; turning a hair colour on
    turns the other hair colours off (`editing.turned_off_by`), as `synthfaces.counterfactual` does.
    Returns a new (M, A) tensor."""
    target = labels.clone()
    for i, (name, value) in enumerate(zip(attrs, values)):
        if value:
            target[i, [names.index(h) for h in turned_off_by(name, names)]] = 0.0
        target[i, names.index(name)] = float(value)
    return target


def counterfactual_images(root, files, attrs, values, size, crop=140):
    """The renderer's exact edits of built-in faces, framed to `size` as the loader frames them.

    files: image file names of `root` (row i of identities.npz is file i + 1); attrs, values: the edit
    of each. Returns (M, 3, size, size) uint8 (with values equal to the labels, the images themselves).
    """
    identity, attributes = synthfaces.load_identities(root)
    with np.load(Path(root) / synthfaces.IDENTITY_FILE) as z:
        rendered_size = int(z["size"])
    rows = np.array([int(Path(f).stem) - 1 for f in files])
    identity = {k: v[rows] for k, v in identity.items()}
    attributes = {k: v[rows] for k, v in attributes.items()}
    for name in dict.fromkeys(attrs):
        mask = np.array([a == name for a in attrs])
        edited = synthfaces.counterfactual(attributes, name, np.asarray(values, dtype=bool))
        attributes = {k: np.where(mask, edited[k], attributes[k]) for k in attributes}
    images = torch.from_numpy(synthfaces.render(identity, attributes, rendered_size)).permute(0, 3, 1, 2)
    return frame(images, size, crop)


def is_builtin(root):
    """Whether a data root (a folder or a list of them) is the built-in face set, which has counterfactuals."""
    roots = [root] if isinstance(root, (str, Path)) else list(root)
    return len(roots) == 1 and (Path(roots[0]) / synthfaces.IDENTITY_FILE).is_file()


def _prepare(config, root, split, n, oracle, seed):
    """Everything both the scorecard and the strength curve need about the faces to edit."""
    model_names = list(config.attributes)
    names = list(dict.fromkeys([*model_names, *oracle.attribute_names]))
    data = CelebADataset(root, split, attributes=names, size=config.image_size, crop=config.crop,
                         cache_dir=default_cache_dir())
    wanted = EDITED if is_builtin(root) else REAL_EDITED
    edited = [a for a in wanted if a in model_names and a in oracle.attribute_names]
    if not edited:
        raise ValueError(f"the model and the judge share none of {', '.join(wanted)}; train them with those")
    rows, attrs, values = choose_edits(data.labels, names, edited, n, seed)
    source = data.labels[torch.from_numpy(rows)]
    target = target_labels(source, names, attrs, values)
    model_cols = [names.index(a) for a in model_names]
    return {"data": data, "names": names, "edited": edited, "rows": rows, "attrs": attrs, "values": values,
            "images": to_model_range(data.images[torch.from_numpy(rows)]), "source": source, "target": target,
            "y_source": attribute_states(source[:, model_cols]), "y_target": attribute_states(target[:, model_cols]),
            "judged": [names.index(a) for a in oracle.attribute_names]}


# --- running and judging edits ----------------------------------------------------------------------

def run_edits(model, schedule, x0, y_source, y_target, method="ddib", strength=1.0, steps=50, t0_fraction=0.5,
              seed=0, batch_size=64, progress=True, **options):
    """`editing.edit` over a set in batches.

    x0: (M, 3, H, W) in [-1, 1]; y_source, y_target: (M, A) states. method: a key of METHODS;
    options: further `edit` arguments (mask_t, mask_threshold, ...). Returns (edits (M, 3, H, W)
    clamped to [-1, 1] on the CPU, seconds the first batch took scaled to 64 images).
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    device = next(model.parameters()).device
    out, seconds = [], None
    for s in tqdm(range(0, len(x0), batch_size), desc=f"{method} s={strength:g}", disable=not progress, leave=False):
        part = slice(s, s + batch_size)
        start = time.perf_counter()
        x = edit(model, schedule, x0[part].to(device), y_source[part].to(device), y_target[part].to(device),
                 strength=strength, steps=steps, t0_fraction=t0_fraction, seed=seed + s, **METHODS[method], **options)
        out.append(x.clamp(-1, 1).cpu())
        if seconds is None:
            seconds = (time.perf_counter() - start) * 64 / len(out[0])
    return torch.cat(out), seconds


def judge(oracle, images, prep):
    """Per-edit (success (M,), preservation (M,)) as read by the judge classifier.

    success: the judge reads the edited attribute at its target value. preservation: the fraction of
    the judge's other attributes (those the target leaves unchanged) that it reads at the source's
    true label.
    """
    read = predict(oracle, images) > 0.5  # (M, A_judge)
    source, target = prep["source"][:, prep["judged"]] > 0.5, prep["target"][:, prep["judged"]] > 0.5
    column = [prep["names"][j] for j in prep["judged"]]
    idx = torch.tensor([column.index(a) for a in prep["attrs"]])
    success = read.gather(1, idx[:, None])[:, 0] == torch.from_numpy(prep["values"] == 1)
    kept = source == target
    preservation = ((read == source) & kept).sum(1) / kept.sum(1).clamp(min=1)
    return success.float(), preservation.float()


def _by_cell(prep, values):
    """{attribute: {"on": mean, "off": mean}} of a per-edit (M,) tensor (None for an empty cell)."""
    attrs, targets = np.array(prep["attrs"]), prep["values"]
    out = {}
    for name in prep["edited"]:
        out[name] = {}
        for direction, value in (("on", 1), ("off", 0)):
            mask = torch.from_numpy((attrs == name) & (targets == value))
            out[name][direction] = float(values[mask].mean()) if mask.any() else None
    return out


def _macro(cells):
    """Mean over the non-empty cells of a _by_cell dict."""
    values = [v for d in cells.values() for v in d.values() if v is not None]
    return float(np.mean(values)) if values else None


def identity_scores(edited, source, crop):
    """Is an edit still the same person: dlib's face-recognition distance to the source (real faces).

    Returns {"identity_distance": mean distance, "identity_same": fraction under identity.THRESHOLD (0.6)}.
    """
    from .identity import THRESHOLD, identity_distance  # dlib: only real faces are scored this way

    distance = identity_distance(edited.cpu(), source.cpu(), crop)
    return {"identity_distance": float(distance.mean()), "identity_same": float((distance < THRESHOLD).float().mean())}


def score(oracle, edited, prep, counterfactual=None, reference=None, crop=None):
    """The metrics of one set of edits (M, 3, H, W) in [-1, 1]: judged, and against the counterfactual.

    Returns a dict: edit_success and preservation (means over attribute x direction cells),
    success_by_attribute ({attribute: {"on", "off"}}), and when given the counterfactual (M, 3, H, W):
    psnr_counterfactual, ssim_counterfactual, change_outside_edit (mean |edit - source| over the pixels
    the counterfactual leaves unchanged); with reference real features (K, F): the Frechet and kernel
    distances of the edits' judge features to them; with `crop` (the loader's crop of real faces):
    `identity_scores` against the source.
    """
    success, preservation = judge(oracle, edited, prep)
    cells = _by_cell(prep, success)
    out = {"edit_success": _macro(cells), "preservation": _macro(_by_cell(prep, preservation)),
           "success_by_attribute": cells}
    if counterfactual is not None:
        outside = (counterfactual == prep["images"]).all(1)  # (M, H, W)
        change = ((edited - prep["images"]).abs().mean(1) * outside).sum((1, 2)) / outside.sum((1, 2))
        out.update(psnr_counterfactual=float(psnr(edited, counterfactual).mean()),
                   ssim_counterfactual=float(ssim(edited, counterfactual).mean()),
                   change_outside_edit=float(change[outside.any((1, 2))].mean()))
    if reference is not None:
        feats = classifier_features(oracle, edited)
        out.update(frechet_classifier_distance=frechet_distance(feats, reference),
                   kernel_classifier_distance=kernel_distance(feats, reference))
    if crop is not None:
        out.update(identity_scores(edited, prep["images"], crop))
    return out


def _reference_rows(prep, seed):
    """Rows of the split showing each edit's target value, as many per cell as there are edits."""
    labels, names = prep["data"].labels, prep["names"]
    rng = np.random.default_rng(seed + 1)
    rows = []
    for name in prep["edited"]:
        for value in (1, 0):
            k = sum(1 for a, v in zip(prep["attrs"], prep["values"]) if a == name and v == value)
            candidates = np.flatnonzero((labels[:, names.index(name)].numpy() > 0.5) == bool(value))
            rows += rng.permutation(candidates)[:k].tolist()
    return rows


# --- the scorecard ----------------------------------------------------------------------------------

def default_oracle(root=None, progress=True):
    """The judge of the built-in faces: the committed `demo-judge` (`make demo-judge`).

    Without it (a checkout that deleted it), `classifier.train_oracle` trains one into runs/oracle
    (minutes, once). Raises ValueError for a `root` that is not the built-in set: real faces need a
    classifier trained on them (the committed `celeba64-judge`).
    """
    if root is not None and not is_builtin(root):
        raise ValueError(f"{root} is not the built-in face set, so there is no oracle for it; train a judge "
                         f"with `python -m celebadiff classify train --data {root} --out runs/classifier` and "
                         "pass it with --classifier runs/classifier (for real CelebA: --classifier celeba64-judge)")
    if (CHECKPOINTS / "demo-judge.safetensors").is_file():
        return load_classifier(CHECKPOINTS / "demo-judge.safetensors")
    if (ORACLE_DIR / "classifier.safetensors").is_file():
        return load_classifier(ORACLE_DIR)
    return train_oracle(ORACLE_DIR, progress=progress)


def edit_scorecard(model, schedule, config, dataset_root, split="test", n=512, methods=("ddib-mask", "ddib", "sdedit"),
                   strength=1.0, steps=50, oracle=None, seed=0, batch_size=64, t0_fraction=0.5, progress=True,
                   edit_options=None):
    """Edit n faces of a split one attribute at a time and score the edits.

    Each face gets one flip of an attribute of EDITED (those the model and the judge both know), spread
    evenly over attributes and over both directions (`choose_edits`). The judge is `oracle` (default:
    `default_oracle`, for the built-in faces). Per method (keys of METHODS: "ddib-mask" is DDIB with
    DiffEdit's mask, `edit`'s default; "ddib" without it; "sdedit"), with `edit_options` (further `edit`
    arguments, e.g. {"mask_threshold": 0.2}), and for the trivial baseline of returning the source
    unchanged ("baseline"):
        edit_success      the judge reads the edited attribute at its target value (mean over the
                          attribute x direction cells; per cell in success_by_attribute)
        preservation      for each other attribute (those the target does not change), the judge's reading
                          of the edit equals the source's true label; the fraction, averaged like success
        psnr_counterfactual, ssim_counterfactual   against the renderer's exact edit (built-in faces only)
        change_outside_edit   mean |edit - source| (range [-1, 1]) where the counterfactual equals the source
        frechet_classifier_distance, kernel_classifier_distance   judge features of the edits against real
                          faces of the split that show the target values (DISTANCE_NOTE)
        seconds_per_64_edits   wall time of the first batch, scaled to 64 faces
    Also reconstruction (DDIB at strength 0 against the source: psnr, ssim) and the judge's own accuracy
    on the split's faces (which it never trained on) and on the exact counterfactuals.
    Returns a dict whose top-level keys repeat the numbers of methods[0] (named in "method"; see the keys
    of `TARGETS`).
    """
    if oracle is None:
        oracle = default_oracle(dataset_root, progress)
    prep = _prepare(config, dataset_root, split, n, oracle, seed)
    data, x0 = prep["data"], prep["images"]
    counterfactual = None
    if is_builtin(dataset_root):
        dataset_root = dataset_root if isinstance(dataset_root, (str, Path)) else dataset_root[0]
        files = [data.files[r] for r in prep["rows"]]
        counterfactual = to_model_range(counterfactual_images(dataset_root, files, prep["attrs"], prep["values"],
                                                              config.image_size, config.crop))
    reference = classifier_features(oracle, to_model_range(data.images[_reference_rows(prep, seed)]))
    crop = None if counterfactual is not None else config.crop  # identity distances: real faces only
    out = {"methods": {}}
    for method in methods:
        edited, seconds = run_edits(model, schedule, x0, prep["y_source"], prep["y_target"], method, strength, steps,
                                    t0_fraction, seed, batch_size, progress, **(edit_options or {}))
        out["methods"][method] = {**score(oracle, edited, prep, counterfactual, reference, crop),
                                  "seconds_per_64_edits": seconds}
    out["baseline"] = score(oracle, x0, prep, counterfactual, reference)
    recon, _ = run_edits(model, schedule, x0, prep["y_source"], prep["y_target"], "ddib", 0.0, steps,
                         seed=seed, batch_size=batch_size, progress=progress)
    out["reconstruction"] = {"psnr": float(psnr(recon, x0).mean()), "ssim": float(ssim(recon, x0).mean()),
                             **(identity_scores(recon, x0, crop) if crop is not None else {})}
    out["oracle"] = _judge_accuracy(oracle, prep, counterfactual)
    main = out["methods"][methods[0]] if methods else {}
    top = {key: main.get(key) for key in ("edit_success", "preservation", "psnr_counterfactual")}
    top.update(psnr_source_baseline=out["baseline"].get("psnr_counterfactual"),
               psnr_reconstruction=out["reconstruction"]["psnr"], ssim_reconstruction=out["reconstruction"]["ssim"],
               seconds_per_64_edits=main.get("seconds_per_64_edits"), oracle_accuracy=out["oracle"]["accuracy"],
               oracle_counterfactual_accuracy=out["oracle"]["counterfactual_success"], n=len(prep["rows"]),
               frechet_classifier_distance=main.get("frechet_classifier_distance"),
               kernel_classifier_distance=main.get("kernel_classifier_distance"), note=DISTANCE_NOTE)
    settings = {"method": methods[0] if methods else None, "builtin": counterfactual is not None, "split": split,
                "steps": steps, "strength": strength,
                "t0_fraction": t0_fraction, "edit_options": edit_options or {},
                "attributes": prep["edited"], "judge": list(oracle.attribute_names)}
    return {**top, **settings, **out}


def _judge_accuracy(oracle, prep, counterfactual, limit=1000):
    """The judge's accuracy on the split's first `limit` faces (held out from its training) and, on the
    built-in faces, its edit success on the exact counterfactuals (the best an editor can score)."""
    data, names = prep["data"], list(oracle.attribute_names)
    probs = predict(oracle, to_model_range(data.images[:limit]))
    report = accuracy_report(probs, data.labels[:limit][:, prep["judged"]], names)
    ceiling = _macro(_by_cell(prep, judge(oracle, counterfactual, prep)[0])) if counterfactual is not None else None
    return {"accuracy": float(np.mean([r["accuracy"] for r in report.values()])),
            "balanced_accuracy": float(np.nanmean([r["balanced_accuracy"] for r in report.values()])),
            "by_attribute": {k: r["accuracy"] for k, r in report.items()}, "counterfactual_success": ceiling}


def strength_curve(model, schedule, config, root, strengths=(0, 0.5, 1, 1.5, 2, 3), methods=("ddib-mask", "sdedit"),
                   n=64, oracle=None, split="test", steps=20, t0_fractions=(0.2, 0.35, 0.5, 0.65, 0.8), seed=0,
                   batch_size=64, progress=True):
    """Edit success against preservation as an edit is pushed harder, on the scorecard's faces.

    DDIB (with or without the mask: "ddib-mask", "ddib") varies the strength s over `strengths` (0: the
    reconstruction, 1: the target, > 1 extrapolates). SDEdit varies its own knob instead, t0_fraction over
    `t0_fractions` (how much noise the face gets: near 0 it comes back unchanged, near 1 it is forgotten),
    at strength 1.
    Returns {method: {"knob": "strength" | "t0_fraction", "points": [{"value", "edit_success",
    "preservation"}, ...]}}.
    """
    if oracle is None:
        oracle = default_oracle(root, progress)
    prep = _prepare(config, root, split, n, oracle, seed)
    curve = {}
    for method in methods:
        knob, values = ("t0_fraction", t0_fractions) if method == "sdedit" else ("strength", strengths)
        points = []
        for value in values:
            kwargs = {"strength": value} if knob == "strength" else {"t0_fraction": value}
            edited, _ = run_edits(model, schedule, prep["images"], prep["y_source"], prep["y_target"], method,
                                  steps=steps, seed=seed, batch_size=batch_size, progress=progress, **kwargs)
            success, preservation = judge(oracle, edited, prep)
            points.append({"value": value, "edit_success": _macro(_by_cell(prep, success)),
                           "preservation": _macro(_by_cell(prep, preservation))})
        curve[method] = {"knob": knob, "points": points}
    return curve


# --- figures and reports ----------------------------------------------------------------------------

def plot_strength_curve(curve, preservation_target=None):
    """Edit success (y) against preservation (x), a line per method, points labelled with their knob.

    preservation_target: the left edge of the shaded target region (default: the built-in faces' 0.95;
    on real faces the unchanged photos' preservation minus REAL_PRESERVATION_SLACK)."""
    fig, ax = plt.subplots(figsize=(5.5, 4.2))
    left = TARGETS["preservation"][1] if preservation_target is None else preservation_target
    ax.fill_between([left, 1.0], TARGETS["edit_success"][1], 1.0, color="tab:green", alpha=0.12,
                    label="target region")
    labels = []  # (x, y, text) of every point, placed once the axes' scale is final
    for method, entry in curve.items():
        prefix = "s=" if entry["knob"] == "strength" else "t0="
        x = [p["preservation"] for p in entry["points"]]
        y = [p["edit_success"] for p in entry["points"]]
        ax.plot(x, y, marker="o", label=f"{METHOD_NAMES.get(method, method)} (varying {entry['knob']})")
        labels += [(p["preservation"], p["edit_success"], f"{prefix}{p['value']:g}") for p in entry["points"]]
    ax.set_xlabel("preservation (other attributes kept)")
    ax.set_ylabel("edit success (target attribute read)")
    ax.set_ylim(-0.03, 1.05)
    _place_labels(ax, labels)
    ax.legend(fontsize=8, loc="lower left")
    ax.set_title("Pushing an edit harder: success against preservation", fontsize=10)
    fig.tight_layout()
    return fig


def _place_labels(ax, labels, fontsize=7):
    """Annotate each (x, y, text) at the first of a few offsets where its box overlaps no label placed
    before it: points of a curve, or of two curves, can nearly coincide. Returns the annotations."""
    ax.autoscale_view()
    (x0, x1), (y0, y1) = ax.get_xlim(), ax.get_ylim()
    width_pt, height_pt = (size * 72 / ax.figure.dpi for size in (ax.bbox.width, ax.bbox.height))
    placed, annotations = [], []
    for x, y, text in labels:
        px, py = (x - x0) / (x1 - x0) * width_pt, (y - y0) / (y1 - y0) * height_pt  # the point, in points
        w = 0.6 * fontsize * len(text)  # about the text's width
        for dx, dy in ((4, 3), (4, -9), (-4 - w, 3), (-4 - w, -9), (4, 12), (4, -18), (-4 - w, 12), (-4 - w, -18)):
            box = (px + dx, py + dy, px + dx + w, py + dy + fontsize)
            if not any(box[0] < b[2] and b[0] < box[2] and box[1] < b[3] and b[1] < box[3] for b in placed):
                break
        placed.append(box)
        annotations.append(ax.annotate(text, (x, y), xytext=(dx, dy), textcoords="offset points", fontsize=fontsize))
    return annotations


def plot_success_by_attribute(metrics):
    """Grouped bars: edit success per edited attribute, per direction (on/off) and method."""
    methods = list(metrics["methods"])
    attrs = list(metrics["attributes"])
    fig, ax = plt.subplots(figsize=(1.3 * len(attrs) + 2, 3.6))
    width = 0.8 / (2 * len(methods))
    for m, method in enumerate(methods):
        cells = metrics["methods"][method]["success_by_attribute"]
        for d, direction in enumerate(("on", "off")):
            k = 2 * m + d
            values = [cells[a][direction] if cells[a][direction] is not None else np.nan for a in attrs]
            ax.bar(np.arange(len(attrs)) + (k + 0.5) * width - 0.4, values, width, color=f"C{m}",
                   alpha=1.0 if direction == "on" else 0.5, hatch=None if direction == "on" else "//",
                   label=f"{METHOD_NAMES.get(method, method)}: turn {direction}")
    ax.axhline(TARGETS["edit_success"][1], color="k", lw=0.8, ls="--", label="target")
    ax.set_xticks(np.arange(len(attrs)), [a.replace("_", " ") for a in attrs], fontsize=8)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("edit success")
    ax.legend(fontsize=7, ncol=len(methods) + 1, loc="upper center", bbox_to_anchor=(0.5, -0.12))
    fig.tight_layout()
    return fig


_ROWS = (("edit success (judge)", "edit_success", ".3f"), ("preservation (judge)", "preservation", ".3f"),
         ("PSNR vs counterfactual, dB", "psnr_counterfactual", ".2f"),
         ("SSIM vs counterfactual", "ssim_counterfactual", ".3f"),
         ("mean abs change outside the edit", "change_outside_edit", ".4f"),
         ("Frechet classifier distance", "frechet_classifier_distance", ".3f"),
         ("kernel classifier distance", "kernel_classifier_distance", ".4f"),
         ("identity distance to the source (dlib), mean", "identity_distance", ".3f"),
         ("same person (dlib distance < 0.6)", "identity_same", ".3f"),
         ("seconds per 64 edits", "seconds_per_64_edits", ".1f"))


def _cell(value, fmt):
    return "–" if value is None or not np.isfinite(value) else format(value, fmt)


def markdown_table(metrics):
    """The scorecard as a Markdown table: a column per method, the unchanged source, and the target."""
    columns = {METHOD_NAMES.get(m, m): v for m, v in metrics["methods"].items()}
    columns["source unchanged"] = metrics["baseline"]
    recon = {k: metrics[k] for k in ("psnr_reconstruction", "ssim_reconstruction")}  # DDIB's columns only
    recon.update({f"{k}_reconstruction": metrics["reconstruction"][k] for k in ("identity_distance", "identity_same")
                  if k in metrics.get("reconstruction", {})})
    ddib_columns = (METHOD_NAMES["ddib"], METHOD_NAMES["ddib-mask"])  # at s = 0 the mask is empty: the same
    rows = [*_ROWS, ("DDIB reconstruction PSNR (s=0), dB", "psnr_reconstruction", ".2f"),
            ("DDIB reconstruction SSIM (s=0)", "ssim_reconstruction", ".3f"),
            ("DDIB reconstruction identity distance (s=0)", "identity_distance_reconstruction", ".3f"),
            ("DDIB reconstruction same person (s=0)", "identity_same_reconstruction", ".3f")]
    targets = TARGETS
    if not metrics.get("builtin", True):
        floor = metrics["baseline"]["preservation"] - REAL_PRESERVATION_SLACK
        targets = {**REAL_TARGETS, "preservation": (">=", round(floor, 3))}
    lines = ["| metric | " + " | ".join(columns) + " | target |", "|---" * (len(columns) + 2) + "|"]
    for label, key, fmt in rows:
        values = [recon[key] if key in recon and name in ddib_columns else col.get(key)
                  for name, col in columns.items()]
        if all(v is None for v in values):
            continue
        op, goal = targets.get(key, ("", None))
        target = f"{op} {goal:g}" if goal is not None else ""
        lines.append(f"| {label} | " + " | ".join(_cell(v, fmt) for v in values) + f" | {target} |")
    ceiling = metrics.get("oracle_counterfactual_accuracy")
    lines += ["", f"n = {metrics['n']} edits ({metrics['split']} split; {', '.join(metrics['attributes'])}, each on "
              f"and off), {metrics['steps']} DDIM steps, strength {metrics['strength']:g}. Judge accuracy on the "
              f"split's faces: {_cell(metrics['oracle_accuracy'], '.3f')}"
              + (f"; its edit success on the exact counterfactuals: {_cell(ceiling, '.3f')}." if ceiling is not None
                 else ".") + f" Distances: {metrics['note']}."]
    if metrics.get("method"):
        options = ", ".join(f"{k}={v}" for k, v in metrics.get("edit_options", {}).items())
        lines.append(f"Top-level numbers and targets: {METHOD_NAMES.get(metrics['method'], metrics['method'])}"
                     + (f"; edit options: {options}." if options else "."))
    return "\n".join(lines)


def _finite(obj):
    """A copy with NaN/inf as None and numpy/torch scalars as Python numbers (valid JSON)."""
    if isinstance(obj, dict):
        return {str(k): _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    if isinstance(obj, torch.Tensor):
        return _finite(obj.tolist())
    if isinstance(obj, (np.generic,)):
        return _finite(obj.item())
    if isinstance(obj, float) and not np.isfinite(obj):
        return None
    return obj


def to_json(metrics, indent=2):
    """The metrics as strict JSON text (NaN and inf become null; indent None: one line)."""
    return json.dumps(_finite(metrics), indent=indent, allow_nan=False)


def evaluate_command(args):
    """`python -m celebadiff evaluate`: the scorecard of a checkpoint as JSON (--out) and a Markdown table."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model, config, step = load_model(args.checkpoint, device=device)
    data = args.data[0] if len(args.data) == 1 else args.data
    judge_name = args.classifier or judge_for(args.checkpoint)
    oracle = load_classifier(judge_name) if judge_name else default_oracle(data)
    schedule = NoiseSchedule.named(config.schedule, config.T)
    methods = tuple(m for m in args.methods.split(",") if m)
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        raise ValueError(f"--methods {args.methods!r}: choose among {', '.join(METHODS)}, comma-separated")
    metrics = edit_scorecard(model, schedule, config, data, split=args.split, n=args.n, steps=args.steps,
                             oracle=oracle.to(device), methods=methods,
                             strength=default_strength(args.checkpoint) if args.strength is None else args.strength)
    metrics = {"checkpoint": str(args.checkpoint), "step": step, **metrics}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(to_json(metrics) + "\n")
    print(markdown_table(metrics))
