"""The contrastive term against none: the `demo-contrastive` preset (the shipped demo's second stage) run
twice from the committed demo-base model, with contrastive_weight 0 and W > 0 (same seed, data order, steps,
learning rate), then both scored by `python -m celebadiff evaluate` on the built-in test faces. With the
defaults the W = 1 arm is `make train-demo`'s second stage, the shipped demo model.

    python benchmarks/contrastive_comparison.py                     # the recorded run (about 16 min, 2 cores)
    python benchmarks/contrastive_comparison.py --steps 20 --n 32   # a quick look

Writes OUT/seedS-w0, OUT/seedS-wW (run folders), OUT/*.json (scorecards) and benchmarks/contrastive_comparison.md.
Like every benchmark it never fails on a slow machine; it reports what it measured, with the wall times.
"""

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ROWS = [("edit success (judge)", "edit_success", "{:.3f}"), ("preservation (judge)", "preservation", "{:.3f}"),
        ("PSNR vs exact counterfactual, dB", "psnr_counterfactual", "{:.2f}"),
        ("reconstruction PSNR, dB", "psnr_reconstruction", "{:.2f}")]


def run(cmd):
    """Run one CLI command from the project folder; returns its wall time in seconds."""
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "4294967296", "MALLOC_TRIM_THRESHOLD_": "4294967296"}
    print("$", " ".join(cmd), flush=True)
    start = time.perf_counter()
    subprocess.run(cmd, cwd=ROOT, env=env, check=True)
    return time.perf_counter() - start


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, help="training steps of each arm (default: the preset's)")
    p.add_argument("--lr", type=float, help="peak learning rate of the warm start (default: the preset's)")
    p.add_argument("--warmup", type=int, help="warm-up steps (default: the preset's)")
    p.add_argument("--weight", type=float, default=1.0, help="contrastive_weight of the second arm")
    p.add_argument("--n", type=int, default=256, help="test faces per scorecard")
    p.add_argument("--seed", type=int, default=0, help="training seed of both arms (data order, noise, dropout)")
    p.add_argument("--out", default="runs/contrastive", help="folder for the two runs and their scorecards")
    p.add_argument("--md", default="benchmarks/contrastive_comparison.md")
    args = p.parse_args()
    py, out = sys.executable, ROOT / args.out
    overrides = [token for k, v in (("steps", args.steps), ("lr", args.lr), ("warmup", args.warmup)) if v is not None
                 for token in (f"--{k}", f"{v:g}")]
    arm = ["train", "--data", "data/synthfaces", "--preset", "demo-contrastive", "--init", "demo-base", *overrides,
           "--seed", str(args.seed)]
    arms, times, folders = {"W = 0": 0.0, f"W = {args.weight:g}": args.weight}, {}, {}
    for name, w in arms.items():
        folder = folders[name] = out / f"seed{args.seed}-w{w:g}"
        if not (folder / "checkpoints" / "last.safetensors").exists():  # an interrupted benchmark reuses a run
            times[name, "train"] = run([py, "-m", "celebadiff", *arm, "--contrastive-weight", f"{w:g}",
                                        "--out", str(folder)])
        times[name, "evaluate"] = run([py, "-m", "celebadiff", "evaluate", "--checkpoint", str(folder), "--data",
                                       "data/synthfaces", "--split", "test", "--n", str(args.n), "--methods",
                                       "ddib-mask", "--out", str(folder) + ".json"])
    metrics = {name: json.loads(Path(f"{folder}.json").read_text()) for name, folder in folders.items()}
    lines = [f"| metric ({args.n} test faces, DDIB + DiffEdit mask, 50 + 50 DDIM steps) | " + " | ".join(arms) + " |",
             "|---|" + "---|" * len(arms)]
    lines += [f"| {label} | " + " | ".join(fmt.format(metrics[a][key]) for a in arms) + " |"
              for label, key, fmt in ROWS]
    lines.append("| wall time: train / evaluate, s | "
                 + " | ".join(f"{times.get((a, 'train'), float('nan')):.0f} / {times[a, 'evaluate']:.0f}" for a in arms)
                 + " |")
    table = "\n".join(lines)
    print(table)
    md = ROOT / args.md
    command = " ".join(["python benchmarks/contrastive_comparison.py", *overrides,
                        f"--weight {args.weight:g} --n {args.n} --seed {args.seed}"])
    arms_text = f"`{' '.join(arm)} --contrastive-weight W`"
    md.write_text(f"# Contrastive term: with and without\n\n```bash\n{command}\n```\n\nBoth arms: {arms_text}, then "
                  f"`evaluate --split test --n {args.n} --methods ddib-mask`. Scorecards: `{args.out}/*w*.json`.\n\n"
                  f"{table}\n\n<!-- the notebook reads the table above -->\n")
    print(f"wrote {md}")


if __name__ == "__main__":
    main()
