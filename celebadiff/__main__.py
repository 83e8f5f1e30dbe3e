"""Command line: `python -m celebadiff COMMAND ...`; each command calls one library function.

Errors a user can fix (a missing file, a bad name or value) print one line and exit with status 2.

Building the parser imports nothing heavy, so `--help` and a mistyped flag answer at once: each command
imports torch (and face detection) when it runs, and `train`'s Config options are added only when
`train` parses (`_Parser`'s `lazy` hook), since reading Config imports torch.
"""

import argparse
import dataclasses
import json
import sys

from .precision import PRECISIONS  # imports torch only when a precision is resolved


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser that calls `lazy(self)` once, before it first parses or prints its help.

    It lets a command add options that need a heavy import (Config needs torch) only when that command
    is the one run; subparsers are made of the same class, so `add_parser(..., lazy=hook)` takes it too."""

    def __init__(self, *args, lazy=None, **kwargs):
        super().__init__(*args, **kwargs)
        self._lazy = lazy

    def _add_lazy(self):
        if self._lazy is not None:
            hook, self._lazy = self._lazy, None
            hook(self)

    def parse_known_args(self, args=None, namespace=None):
        self._add_lazy()
        return super().parse_known_args(args, namespace)

    def format_help(self):
        self._add_lazy()
        return super().format_help()

    def error(self, message):
        """One line and status 2, as the commands' own errors (argparse would print the whole usage first)."""
        self.exit(2, f"error: {message}; see {self.prog} --help\n")


def _bool(text):
    if text.lower() not in ("true", "false", "1", "0"):
        raise ValueError(text)
    return text.lower() in ("true", "1")


# a Config field's type -> (text -> value, what the text must be, for the error)
KINDS = {bool: (_bool, "true or false"), int: (int, "an integer"), float: (float, "a number"), str: (str, "text")}


def _parse_value(field, text):
    """Command-line text -> the type of a Config field (tuples as comma lists or JSON).

    argparse.ArgumentTypeError saying what the field takes (argparse prefixes the flag) for text that
    does not convert, e.g. "argument --steps: expected an integer, got 'abc'"."""
    default = field.default
    if not isinstance(default, tuple):
        convert, what = KINDS.get(type(default), (type(default), type(default).__name__))
        try:
            return convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
    kinds = {type(v) for v in default} or {str}
    convert, what = KINDS[kinds.pop() if len(kinds) == 1 else str]
    example = ",".join(str(v).lower() if isinstance(v, bool) else str(v) for v in default)
    try:
        items = json.loads(text) if text.startswith("[") else [s for s in text.split(",") if s]
        return tuple(convert(str(v).lower() if isinstance(v, bool) else str(v)) for v in items)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a comma list, each {what}, e.g. {example!r}; "
                                         f"got {text!r}") from None


def _add_config_options(parser):
    """`train`'s --preset and one option per Config field (the `lazy` hook of its parser: imports torch)."""
    from . import config as cfg

    parser.add_argument("--preset", default="demo", choices=sorted(cfg.PRESETS))
    group = parser.add_argument_group("preset overrides (any Config field)")
    for field in dataclasses.fields(cfg.Config):
        group.add_argument(f"--{field.name.replace('_', '-')}", dest=f"cfg_{field.name}", metavar="VALUE",
                           type=lambda text, f=field: _parse_value(f, text))


def _config_from(args):
    from . import config as cfg

    overrides = {k[4:]: v for k, v in vars(args).items() if k.startswith("cfg_") and v is not None}
    return cfg.preset(args.preset, **overrides)


def build_parser():
    parser = _Parser(prog="python -m celebadiff", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    synth = commands.add_parser("synth", help="render the built-in face set in CelebA's layout")
    synth.add_argument("--out", required=True, help="output folder")
    synth.add_argument("--n", type=int, default=30000, help="number of faces")
    synth.add_argument("--size", type=int, default=64, help="image side in pixels")
    synth.add_argument("--seed", type=int, default=0)

    train = commands.add_parser("train", help="train the diffusion model", lazy=_add_config_options)
    train.add_argument("--data", required=True, action="append", help="a CelebA-layout folder (repeatable)")
    train.add_argument("--out", required=True, help="run folder")
    train.add_argument("--resume", action="store_true", help="continue from the run's last checkpoint")
    train.add_argument("--init", default=None, metavar="MODEL",
                       help="warm-start a new run from a model's weights (a committed name, run or file)")
    train.add_argument("--device", default=None, help="default: cuda if available, else cpu")
    train.add_argument("--precision", default="auto", choices=PRECISIONS,
                       help="autocast of the forward: auto = bf16 on a GPU or a CPU with bf16 units, else fp32")
    train.add_argument("--minutes", type=float, default=None,
                       help="stop (with a checkpoint) after this much wall time; --resume continues")
    train.add_argument("--stop-after", type=int, default=None, metavar="STEPS",
                       help="stop (with a checkpoint) after this many more steps; --resume continues")

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
    edit.add_argument("--steps", type=int, default=50, help="DDIM steps, 1 to the model's T (default: 50)")
    edit.add_argument("--skip-bad", action="store_true",
                      help="of a folder, edit the images that can be (readable, with a face) and list the others; "
                           "default: name them all and edit none")
    edit.add_argument("--seed", type=int, default=0)
    edit.add_argument("--precision", default="auto", choices=PRECISIONS,
                      help="of the model's evaluations: auto = bf16 on a GPU or a CPU with bf16 units, else fp32")
    edit.add_argument("--classifier", default=None,
                      help="attribute classifier (name, run or file) that reads the source attributes of a photo "
                           "(default: the model's committed judge, e.g. celeba64-judge)")

    align = commands.add_parser("align", help="write photos' faces aligned like CelebA (178x218)")
    align.add_argument("--image", required=True, help="a photo with a face, or a folder of them")
    align.add_argument("--out", required=True, help="output image (or folder, for a folder in)")
    align.add_argument("--skip-bad", action="store_true",
                       help="of a folder, align the images that can be and list the others (default: align none)")

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
    evaluate.add_argument("--precision", default="fp32", choices=PRECISIONS,
                          help="of the model's evaluations (default fp32: the committed scorecards' numbers)")
    return parser


def run(args):
    if args.command == "synth":
        from .synthfaces import write_dataset
        write_dataset(args.out, args.n, args.size, args.seed)
    elif args.command == "train":
        from .train import train
        train(_config_from(args), args.data, args.out, resume=args.resume, device=args.device, init=args.init,
              precision=args.precision, minutes=args.minutes, stop_after=args.stop_after)
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
