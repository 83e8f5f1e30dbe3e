"""Command line: `python -m celebadiff COMMAND ...`; each command calls one library function.

Errors a user can fix (a missing file, a bad name or value) print one line and exit with status 2.
"""

import argparse
import dataclasses
import json
import sys

from . import config as cfg
from .precision import PRECISIONS


def _parse_value(field, text):
    """Command-line text -> the type of a Config field (tuples as comma lists or JSON)."""
    default = field.default
    if isinstance(default, bool):
        if text.lower() not in ("true", "false", "1", "0"):
            raise argparse.ArgumentTypeError(f"--{field.name}: expected true or false, got {text!r}")
        return text.lower() in ("true", "1")
    if isinstance(default, tuple):
        items = json.loads(text) if text.startswith("[") else [s for s in text.split(",") if s]
        kinds = {type(v) for v in default} or {str}
        kind = kinds.pop() if len(kinds) == 1 else str
        if kind is bool:
            return tuple(str(v).lower() in ("true", "1") for v in items)
        return tuple(kind(v) for v in items)
    return type(default)(text)


def _add_config_options(parser):
    group = parser.add_argument_group("preset overrides (any Config field)")
    for field in dataclasses.fields(cfg.Config):
        group.add_argument(f"--{field.name.replace('_', '-')}", dest=f"cfg_{field.name}", metavar="VALUE",
                           type=lambda text, f=field: _parse_value(f, text))


def _config_from(args):
    overrides = {k[4:]: v for k, v in vars(args).items() if k.startswith("cfg_") and v is not None}
    return cfg.preset(args.preset, **overrides)


def build_parser():
    parser = argparse.ArgumentParser(prog="python -m celebadiff", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    synth = commands.add_parser("synth", help="render the built-in face set in CelebA's layout")
    synth.add_argument("--out", required=True, help="output folder")
    synth.add_argument("--n", type=int, default=30000, help="number of faces")
    synth.add_argument("--size", type=int, default=64, help="image side in pixels")
    synth.add_argument("--seed", type=int, default=0)

    train = commands.add_parser("train", help="train the diffusion model")
    train.add_argument("--data", required=True, action="append", help="a CelebA-layout folder (repeatable)")
    train.add_argument("--preset", default="demo", choices=sorted(cfg.PRESETS))
    train.add_argument("--out", required=True, help="run folder")
    train.add_argument("--resume", action="store_true", help="continue from the run's last checkpoint")
    train.add_argument("--init", default=None, metavar="MODEL",
                       help="warm-start a new run from a model's weights (a committed name, run or file)")
    train.add_argument("--device", default=None, help="default: cuda if available, else cpu")
    train.add_argument("--precision", default="auto", choices=PRECISIONS,
                       help="autocast of the forward: auto = bf16 on a GPU or a CPU with bf16 units, else fp32")
    train.add_argument("--minutes", type=float, default=None,
                       help="stop (with a checkpoint) after this much wall time; --resume continues")
    _add_config_options(train)

    export = commands.add_parser("export", help="write a run's EMA weights as a small shippable file")
    export.add_argument("--checkpoint", required=True, help="run folder or checkpoint file")
    export.add_argument("--out", required=True, help="output .safetensors file")

    edit = commands.add_parser("edit", help="edit the face of a photo (or of a folder of them); writes the whole photo")
    edit.add_argument("--checkpoint", default="celeba64",
                      help="a committed model (celeba64: real faces; demo: the built-in faces), a run folder or a file")
    edit.add_argument("--image", required=True, help="a photo with a face, or a folder of them")
    edit.add_argument("--set", action="append", default=[], metavar="NAME=0|1", help="target attribute, repeatable")
    edit.add_argument("--source", action="append", default=[], metavar="NAME=0|1",
                      help="the source image's attributes, when it is not a dataset image")
    edit.add_argument("--out", required=True, help="output image (or folder, for a folder in): the photo at its size")
    edit.add_argument("--face-out", default=None, metavar="FILE|DIR",
                      help="also write the aligned source, the model's reconstruction and the edit side by side")
    edit.add_argument("--all-faces", action="store_true", help="edit every face of a photo, not only the largest")
    edit.add_argument("--aligned", action="store_true",
                      help="the images are already framed like the training data: skip face detection")
    edit.add_argument("--strength", action="append", default=[], metavar="S|NAME=S",
                      help="strength of the edit (default: the model's: 2 for celeba64, else 1; 0: reconstruct); "
                           "NAME=S: of one --set attribute alone (then each acts in its own region), repeatable")
    edit.add_argument("--region", action="append", default=[], metavar="NAME=MASK",
                      help="where the --set change of NAME may act: a mask image (white = may change, black = "
                           "keep; any size, resized to the aligned face of --face-out) or one of mouth, eyes, "
                           "hair, face, all, diffedit (its own DiffEdit mask, the default); repeatable")
    edit.add_argument("--method", default="ddib", choices=["ddib", "sdedit"])
    edit.add_argument("--mask", action=argparse.BooleanOptionalAction, default=None,
                      help="DDIB: regenerate only where the edit acts (DiffEdit's mask; the default for ddib)")
    edit.add_argument("--steps", type=int, default=50)
    edit.add_argument("--seed", type=int, default=0)
    edit.add_argument("--classifier", default=None,
                      help="attribute classifier (name, run or file) that reads the source attributes of a photo "
                           "(default: the model's committed judge, e.g. celeba64-judge)")

    align = commands.add_parser("align", help="write photos' faces aligned like CelebA (178x218)")
    align.add_argument("--image", required=True, help="a photo with a face, or a folder of them")
    align.add_argument("--out", required=True, help="output image (or folder, for a folder in)")

    classify = commands.add_parser("classify", help="the attribute classifier").add_subparsers(
        dest="action", required=True)
    ctrain = classify.add_parser("train", help="train the attribute classifier")
    ctrain.add_argument("--data", required=True, action="append", help="a CelebA-layout folder (repeatable)")
    ctrain.add_argument("--out", required=True)
    ctrain.add_argument("--attributes", default=None, help="comma-separated names (default: all 40)")
    ctrain.add_argument("--image-size", type=int, default=32)
    ctrain.add_argument("--steps", type=int, default=2000)
    ctrain.add_argument("--seed", type=int, default=0)
    ctrain.add_argument("--pos-weight-cap", type=float, default=20.0,
                        help="largest up-weighting of a rare attribute's positives (1: plain BCE)")
    cevaluate = classify.add_parser("evaluate", help="per-attribute accuracy and balanced accuracy")
    cevaluate.add_argument("--checkpoint", required=True, help="a committed judge's name, a run folder or a file")
    cevaluate.add_argument("--data", required=True)
    cevaluate.add_argument("--split", default="test", choices=["train", "valid", "test", "all"])
    cevaluate.add_argument("--out", required=True, help="metrics JSON")

    evaluate = commands.add_parser("evaluate", help="the edit scorecard of a checkpoint")
    evaluate.add_argument("--checkpoint", required=True, help="a committed model's name, a run folder or a file")
    evaluate.add_argument("--data", required=True, action="append", help="a CelebA-layout folder (repeatable)")
    evaluate.add_argument("--split", default="test", choices=["train", "valid", "test"])
    evaluate.add_argument("--out", required=True, help="metrics JSON (a Markdown table goes to stdout)")
    evaluate.add_argument("--classifier", default=None,
                          help="the judge: a name, run or file (default: the model's own, e.g. celeba64-judge)")
    evaluate.add_argument("--n", type=int, default=512, help="number of faces")
    evaluate.add_argument("--steps", type=int, default=50)
    evaluate.add_argument("--methods", default="ddib-mask,sdedit",
                          help="comma-separated editors to score: ddib-mask (edit's default), ddib, sdedit")
    evaluate.add_argument("--strength", type=float, default=None,
                          help="edit strength (default: the model's, as for edit: 2 for celeba64, else 1)")
    return parser


def run(args):
    if args.command == "synth":
        from .synthfaces import write_dataset
        write_dataset(args.out, args.n, args.size, args.seed)
    elif args.command == "train":
        from .train import train
        train(_config_from(args), args.data, args.out, resume=args.resume, device=args.device, init=args.init,
              precision=args.precision, minutes=args.minutes)
    elif args.command == "export":
        from .models import export_ema
        print(export_ema(args.checkpoint, args.out))
    elif args.command == "edit":
        from .edit_command import run_edit
        run_edit(args)
    elif args.command == "align":
        from .edit_command import run_align
        run_align(args)
    elif args.command == "classify":
        from .classifier import classify_command
        classify_command(args)
    elif args.command == "evaluate":
        from .evaluation import evaluate_command
        evaluate_command(args)


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        run(args)
    except (ValueError, FileNotFoundError, FileExistsError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
