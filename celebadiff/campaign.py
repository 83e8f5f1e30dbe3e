"""A stopping point of the real-face training campaign: export, score, log, and keep what improved.

    python -m celebadiff.campaign RUN [--n 64] [--strengths 1.5,2]     (`make celeba-stop`)

The campaign (`make train-celeba`) trains `celeba64` a session at a time on whatever machine the session
has. At each stopping point this exports the run's EMA weights (fp16), scores them on the same valid
faces as the committed model (DDIB + DiffEdit mask, 50 + 50 steps, the committed judge), appends a row
to the model card's training log, and replaces `checkpoints/celeba64.safetensors` only when the new
weights edit better: each model is judged at its best strength among those scored that keeps the other
attributes (preservation at most 0.02 below the unchanged photos') and reconstructs (30 dB), and that
strength is stored in the file as the model's default (`models.default_strength`). The repository keeps
one model file, not one per stop.
"""

import argparse
import csv
import hashlib
import json
import subprocess
import sys
import time
from pathlib import Path

from safetensors import safe_open

from .models import CHECKPOINTS, atomic_save, export_ema, read_checkpoint

NAME = "celeba64"
CARD = CHECKPOINTS / "CELEBA64_MODEL_CARD.md"
LOG_END = "<!-- training log: rows above this line are appended by celebadiff.campaign -->"
# the first stage (preset celeba64, 3,000 steps): 86 minutes on the 2 CPU cores, before runs recorded their time
STAGE1_HOURS = 86 / 60
DATA = Path(__file__).resolve().parents[1].parent / "shared" / "celeba-sample"


def score(checkpoint, strength, n=64, data=DATA, out=None):
    """The scorecard of `checkpoint` on the first n valid faces at `strength` (the evaluate command's JSON)."""
    out = Path(out or Path(checkpoint).with_name(f"{Path(checkpoint).stem}-valid{n}-s{strength:g}.json"))
    subprocess.run([sys.executable, "-m", "celebadiff", "evaluate", "--checkpoint", str(checkpoint),
                    "--classifier", f"{NAME}-judge", "--data", str(data), "--split", "valid", "--n", str(n),
                    "--methods", "ddib-mask", "--strength", str(strength), "--out", str(out)], check=True)
    return json.loads(out.read_text())


def summary(metrics):
    """(success, preservation, unchanged photos' preservation, reconstruction PSNR, SSIM) of a scorecard."""
    return (metrics["edit_success"], metrics["preservation"], metrics["baseline"]["preservation"],
            metrics["psnr_reconstruction"], metrics["ssim_reconstruction"])


def within_targets(summary_, slack=0.02, min_psnr=30.0):
    """Whether a scorecard keeps the other attributes (preservation at most `slack` below the unchanged
    photos') and reconstructs (at least `min_psnr` dB)."""
    _, preservation, unchanged, recon, _ = summary_
    return preservation >= unchanged - slack and recon >= min_psnr


def best_strength(summaries, **targets):
    """(strength, summary) of the most successful edit strength that stays within the targets, or None.

    summaries: {strength: summary}; ties go to the lower strength (the gentler edit)."""
    fine = [(s, v) for s, v in sorted(summaries.items()) if within_targets(v, **targets)]
    return max(fine, key=lambda sv: sv[1][0], default=None)


def improves(new, old, **targets):
    """Whether the new model's best edit within the targets beats the old one's (both {strength: summary})."""
    new_best, old_best = best_strength(new, **targets), best_strength(old, **targets)
    return new_best is not None and (old_best is None or new_best[1][0] > old_best[1][0])


def read_rows(path):
    """The rows of a CSV file with a header, as dicts (a run's loss.csv or starts.csv); [] if it is not there."""
    path = Path(path)
    return list(csv.DictReader(path.read_text().splitlines())) if path.exists() else []


def run_facts(run):
    """(training hours of the model's whole lineage, CPUs and precisions) of a run folder."""
    run = Path(run)
    rows = read_rows(run / "loss.csv")
    seconds = float(rows[-1].get("seconds") or 0) if rows else 0.0
    starts = read_rows(run / "starts.csv")
    machines = sorted({f"{r['device']}, {r['precision']}" for r in starts})
    return STAGE1_HOURS + seconds / 3600, "; ".join(machines) or "unknown"


def log_row(card, cells):
    """Insert a Markdown table row just above LOG_END in the model card."""
    text = Path(card).read_text()
    if LOG_END not in text:
        raise ValueError(f"{card} has no training log: add a table ending with the line {LOG_END!r}")
    row = "| " + " | ".join(str(c) for c in cells) + " |\n"
    Path(card).write_text(text.replace(LOG_END, row + LOG_END))


def score_committed(strength, n, folder, committed):
    """`score` of the committed file, kept in `folder` under the file's hash (scored once per model)."""
    digest = hashlib.sha256(Path(committed).read_bytes()).hexdigest()[:12]
    out = Path(folder) / f"committed-{digest}-valid{n}-s{strength:g}.json"
    return json.loads(out.read_text()) if out.exists() else score(committed, strength, n, out=out)


def stop(run, n=64, strengths=(1.5, 2.0), card=CARD, committed=None):
    """Export `run`, score it and the committed model at each strength, log a row, and replace the committed
    model if it edits better (`improves`), with its best strength stored as its default (`default_strength`).

    Returns (whether it was committed, {strength: (new summary, committed summary)})."""
    committed = Path(committed or CHECKPOINTS / f"{NAME}.safetensors")
    _, config, step, init_steps = read_checkpoint(run)
    exported = export_ema(run, Path(run) / f"{NAME}-step{init_steps + step}.safetensors")
    new = {s: summary(score(exported, s, n)) for s in strengths}
    old = {s: summary(score_committed(s, n, run, committed)) for s in strengths}
    better = improves(new, old)
    chosen = best_strength(new)
    if better:
        with safe_open(exported, framework="pt") as f:
            tensors, meta = {k: f.get_tensor(k) for k in f.keys()}, f.metadata()
        atomic_save(tensors, committed, {**meta, "strength": f"{chosen[0]:g}"})
        committed.with_suffix(".json").write_text(config.to_json() + "\n")
    hours, machines = run_facts(run)
    cells = [time.strftime("%Y-%m-%d"), f"{init_steps + step:,}", f"{hours:.2f}", machines,
             "; ".join(f"s={s:g}: {new[s][0]:.3f}" for s in strengths),
             "; ".join(f"s={s:g}: {new[s][1]:.3f}" for s in strengths) + f" (unchanged {new[strengths[0]][2]:.3f})",
             f"{new[strengths[0]][3]:.2f} dB / {new[strengths[0]][4]:.3f}",
             f"yes, strength {chosen[0]:g}" if better else "no"]
    log_row(card, cells)
    return better, {s: (new[s], old[s]) for s in strengths}


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m celebadiff.campaign", description=__doc__.splitlines()[0])
    parser.add_argument("run", help="the campaign's run folder (runs/celeba64)")
    parser.add_argument("--n", type=int, default=64, help="valid faces to score")
    parser.add_argument("--strengths", default="1.5,2", help="comma-separated edit strengths to score")
    args = parser.parse_args(argv)
    strengths = tuple(float(s) for s in args.strengths.split(","))
    better, scores = stop(args.run, args.n, strengths)
    for s, (new, old) in scores.items():
        print(f"strength {s:g}: success {new[0]:.3f} (committed {old[0]:.3f}), preservation {new[1]:.3f} "
              f"(unchanged photos {new[2]:.3f}), reconstruction {new[3]:.2f} dB / {new[4]:.3f}")
    print(f"{'committed as' if better else 'not better than'} {CHECKPOINTS / NAME}.safetensors")


if __name__ == "__main__":
    main()
