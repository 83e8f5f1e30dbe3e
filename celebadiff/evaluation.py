"""The edit scorecard's report and command: a Markdown table, strict JSON, `python -m celebadiff evaluate`.

    python -m celebadiff evaluate --checkpoint demo --data data/synthfaces --out metrics.json

The numbers are `celebadiff.scorecard.edit_scorecard`'s (which edits faces through `editing.Editor`,
and judges them with `celebadiff.metrics`); its figures are `celebadiff.plotting`'s.
"""

import json
from pathlib import Path

import numpy as np
import torch

from .classifier import load_classifier
from .diffusion import NoiseSchedule
from .files import write_text
from .models import default_strength, judge_for, load_model
from .scorecard import (
    METHOD_NAMES,
    REAL_PRESERVATION_SLACK,
    REAL_TARGETS,
    SCORED_METHODS,
    TARGETS,
    default_oracle,
    edit_scorecard,
)

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
              f"and off), {metrics['steps']} DDIM steps, strength {metrics['strength']:g}"
              + (f", {metrics['precision']}" if metrics.get("precision") else "") + ". Judge accuracy on the "
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
    unknown = [m for m in methods if m not in SCORED_METHODS]
    if unknown or not methods:
        raise ValueError(f"--methods {args.methods!r}: choose among {', '.join(SCORED_METHODS)}, comma-separated")
    metrics = edit_scorecard(model, schedule, config, data, split=args.split, n=args.n, steps=args.steps,
                             oracle=oracle.to(device), methods=methods, precision=getattr(args, "precision", "fp32"),
                             strength=default_strength(args.checkpoint) if args.strength is None else args.strength)
    metrics = {"checkpoint": str(args.checkpoint), "step": step, **metrics}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_text(out, to_json(metrics) + "\n")
    print(markdown_table(metrics))
