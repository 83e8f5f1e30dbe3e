"""The edit scorecard of a checkpoint on the built-in faces: DDIB with DiffEdit's mask (the default
editor), DDIB without it and SDEdit on the same test faces, side by side with the trivial baseline (the
source returned unchanged), and the judge's own accuracy.

    python benchmarks/bench_edit.py [--checkpoint demo] [--n 512] [--steps 50] [--quick]
        [--methods ddib-mask,ddib,sdedit] [--mask-t 0.5] [--mask-threshold 0.1]

--quick (for development) edits 64 faces with 10 DDIM steps. The targets are printed next to the
numbers, never asserted; the last line is one JSON object. Not a test: the numbers depend on the
checkpoint, and the timings on the machine and its load.
"""

import argparse

import torch

from celebadiff import evaluation, scorecard
from celebadiff.diffusion import NoiseSchedule
from celebadiff.models import load_model
from celebadiff.synthfaces import builtin_dataset

KEYS = ("edit_success", "preservation", "psnr_counterfactual", "psnr_source_baseline", "psnr_reconstruction",
        "ssim_reconstruction", "seconds_per_64_edits", "oracle_accuracy", "oracle_counterfactual_accuracy",
        "frechet_classifier_distance", "kernel_classifier_distance", "n", "steps", "step", "method", "edit_options")
PER_METHOD = ("edit_success", "preservation", "psnr_counterfactual", "change_outside_edit", "seconds_per_64_edits")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default="demo", help="a committed model's name, a run folder or a file")
    parser.add_argument("--data", default=None, help="default: the built-in face set (data/synthfaces)")
    parser.add_argument("--n", type=int, default=512, help="faces to edit")
    parser.add_argument("--steps", type=int, default=50, help="DDIM steps (inversion and generation each)")
    parser.add_argument("--device", default=None, help="default: cuda if available, else cpu")
    parser.add_argument("--quick", action="store_true", help="64 faces, 10 steps")
    parser.add_argument("--methods", default="ddib-mask,ddib,sdedit",
                        help="comma-separated, the first gives the top-level numbers; of "
                             f"{', '.join(scorecard.SCORED_METHODS)}")
    parser.add_argument("--mask-t", type=float, default=None, help="DiffEdit mask noise level, fraction of T")
    parser.add_argument("--mask-threshold", type=float, default=None, help="DiffEdit mask threshold in [0, 1)")
    args = parser.parse_args(argv)
    methods = tuple(m.strip() for m in args.methods.split(",") if m.strip())
    unknown = [m for m in methods if m not in scorecard.SCORED_METHODS]
    if unknown or not methods:
        parser.error(f"--methods {args.methods}: choose among {', '.join(scorecard.SCORED_METHODS)}, "
                     "e.g. --methods ddib-mask,ddib")
    options = {k: v for k, v in (("mask_t", args.mask_t), ("mask_threshold", args.mask_threshold)) if v is not None}
    n, steps = (min(args.n, 64), min(args.steps, 10)) if args.quick else (args.n, args.steps)

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    model, config, step = load_model(args.checkpoint, device=device)
    data = args.data or builtin_dataset()
    oracle = scorecard.default_oracle(data).to(device)
    schedule = NoiseSchedule.named(config.schedule, config.T)
    print(f"checkpoint {args.checkpoint} (step {step}), {n} faces, {steps} DDIM steps, "
          f"on {device} ({torch.get_num_threads()} threads)")
    metrics = scorecard.edit_scorecard(model, schedule, config, data, n=n, steps=steps, oracle=oracle,
                                       methods=methods, edit_options=options)
    metrics["step"] = step
    print(evaluation.markdown_table(metrics))
    print("\njudge accuracy per attribute on the test faces:")
    for name, accuracy in metrics["oracle"]["by_attribute"].items():
        print(f"  {name:<22}{accuracy:.3f}")
    print("\ntargets (not asserted):")
    for key, (op, goal) in scorecard.TARGETS.items():
        value = metrics[key]
        met = value is not None and (value >= goal if op == ">=" else value < goal)
        print(f"  {key:<24}{'–' if value is None else f'{value:.3f}':>9}  {op} {goal:g}  {'met' if met else 'NOT met'}")
    above = (metrics["psnr_counterfactual"] or 0) > (metrics["psnr_source_baseline"] or 0)
    print(f"  psnr_counterfactual above the source baseline: {'yes' if above else 'NO'}")
    print("\nper method:")
    for method, m in metrics["methods"].items():
        print(f"  {method:<10}" + "  ".join(f"{k} {_fmt(m.get(k))}" for k in PER_METHOD))
    print(evaluation.to_json({**{k: metrics.get(k) for k in KEYS},
                              "methods": {name: {k: m.get(k) for k in PER_METHOD}
                                          for name, m in metrics["methods"].items()}}, indent=None))


def _fmt(value):
    return "–" if value is None else f"{value:.4g}"


if __name__ == "__main__":
    main()
