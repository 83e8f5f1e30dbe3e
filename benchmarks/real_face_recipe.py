"""The real-face recipe, chosen by edit success per CPU-hour: arms of equal wall time, scored alike.

    python benchmarks/real_face_recipe.py [--minutes 30] [--arms plain,contrastive] [--n 64]

Each arm is `train --preset celeba64-campaign --init celeba64` plus its own options, trained for
the same time on this machine when idle: its step budget is `minutes` at its own idle rate, read from
the best windows of its loss.csv (the 80th percentile of images/s, after a first 200 steps), so that a
job beside it slows an arm without shortening it. An arm whose run is already there is resumed up to
its budget. Each is then scored on the same valid faces at strength 1 and 2 (DDIB + DiffEdit mask,
50 + 50 steps, judge celeba64-judge; `celebadiff.campaign.score`). Writes a Markdown table (--md) with
each arm's steps, images/s, loss and scores. Not a test: about `minutes` per arm plus 5 minutes of
scoring each on 2 idle cores.
"""

import argparse
import subprocess
import sys
from pathlib import Path

from celebadiff.campaign import read_rows, score, summary
from celebadiff.models import export_ema, read_checkpoint

ROOT = Path(__file__).resolve().parents[1]
DATA = [ROOT.parent / "shared" / "celeba-sample", ROOT.parent / "shared" / "celeba-halfres"]
ARMS = {  # name: train options beyond the campaign preset
    "plain": [],
    "contrastive": ["--contrastive-weight", "1"],
    "lr1e-3": ["--lr", "1e-3"],
}


def train_arm(name, minutes, runs, probe=200):
    """Train arm `name` to its budget of `minutes` at its idle rate; returns its run folder."""
    run = runs / name
    data = [arg for d in DATA for arg in ("--data", str(d))]

    def steps(more):
        resume = ["--resume"] if (run / "checkpoints" / "last.safetensors").exists() else ["--init", "celeba64"]
        subprocess.run([sys.executable, "-m", "celebadiff", "train", *data, "--preset", "celeba64-campaign",
                        "--out", str(run), "--stop-after", str(more), *resume, *ARMS[name]], check=True)

    if not (run / "checkpoints" / "last.safetensors").exists():
        steps(probe)
    left = budget(run, minutes) - read_checkpoint(run)[2]
    if left > 0:
        steps(left)
    return run


def idle_rate(run):
    """Images/s of the arm on an idle machine: the 80th percentile of its loss.csv windows."""
    rates = sorted(float(r["images_per_s"]) for r in read_rows(run / "loss.csv"))
    return rates[int(0.8 * (len(rates) - 1))]


def budget(run, minutes, batch=64):
    """The steps `minutes` buy at the arm's idle rate."""
    return round(minutes * 60 * idle_rate(run) / batch)


def arm_row(name, run, n):
    _, _, step, _ = read_checkpoint(run)
    rows, rate = read_rows(run / "loss.csv"), idle_rate(run)
    exported = export_ema(run, run / "ema.safetensors")
    scores = {s: summary(score(exported, s, n)) for s in (1.0, 2.0)}
    return {"arm": name, "options": " ".join(ARMS[name]) or "(none)", "steps": step,
            "minutes": step * 64 / rate / 60, "img_s": rate,
            "loss_last_500": sum(float(r["loss"]) for r in rows[-10:]) / len(rows[-10:]), "scores": scores}


def markdown(results, n):
    head = ("| arm | options | steps | idle minutes | images/s (idle) | loss (last 500 steps) | success s=1 | s=2 | "
            "preservation s=1 | s=2 | unchanged photos | reconstruction dB / SSIM |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in results:
        s1, s2 = r["scores"][1.0], r["scores"][2.0]
        lines.append(f"| {r['arm']} | `{r['options']}` | {r['steps']:,} | {r['minutes']:.1f} | "
                     f"{r['img_s']:.1f} | {r['loss_last_500']:.4f} | {s1[0]:.3f} | {s2[0]:.3f} | "
                     f"{s1[1]:.3f} | {s2[1]:.3f} | {s1[2]:.3f} | {s1[3]:.2f} / {s1[4]:.3f} |")
    return "\n".join(lines) + f"\n\n{n} valid faces, DDIB + DiffEdit mask, 50 + 50 DDIM steps, judge celeba64-judge.\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30, help="wall time of each arm")
    parser.add_argument("--arms", default="plain,contrastive", help=f"comma-separated, of {', '.join(ARMS)}")
    parser.add_argument("--n", type=int, default=64, help="valid faces to score")
    parser.add_argument("--runs", default=str(ROOT / "runs" / "recipe"))
    parser.add_argument("--md", default=None, help="write the table to this Markdown file")
    args = parser.parse_args()
    arms = [a for a in args.arms.split(",") if a]
    unknown = [a for a in arms if a not in ARMS]
    if unknown:
        raise SystemExit(f"unknown arms {unknown}; choose among {', '.join(ARMS)}")
    runs = [train_arm(a, args.minutes, Path(args.runs)) for a in arms]
    table = markdown([arm_row(a, run, args.n) for a, run in zip(arms, runs)], args.n)
    print(table)
    if args.md:
        Path(args.md).write_text(table)


if __name__ == "__main__":
    main()
