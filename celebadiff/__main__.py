"""Command line: `python -m celebadiff {synth,train} ...`; each command calls one library function."""

import argparse
import dataclasses
import json
import sys

from . import config as cfg


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
        group.add_argument(f"--{field.name.replace('_', '-')}", dest=f"cfg_{field.name}",
                           type=lambda text, f=field: _parse_value(f, text), metavar=field.type.__name__
                           if isinstance(field.type, type) else str(field.type))


def _config_from(args):
    overrides = {k[4:]: v for k, v in vars(args).items() if k.startswith("cfg_") and v is not None}
    return cfg.preset(args.preset, **overrides)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m celebadiff", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    synth = commands.add_parser("synth", help="render the built-in face set in CelebA's layout")
    synth.add_argument("--out", required=True, help="output folder")
    synth.add_argument("--n", type=int, default=30000, help="number of faces")
    synth.add_argument("--size", type=int, default=64, help="image side in pixels")
    synth.add_argument("--seed", type=int, default=0)

    train = commands.add_parser("train", help="train the diffusion model")
    train.add_argument("--data", required=True, help="a CelebA-layout folder")
    train.add_argument("--preset", default="demo", choices=sorted(cfg.PRESETS))
    train.add_argument("--out", required=True, help="run folder")
    train.add_argument("--resume", action="store_true", help="continue from the run's last checkpoint")
    train.add_argument("--device", default=None, help="default: cuda if available, else cpu")
    _add_config_options(train)

    export = commands.add_parser("export", help="write a run's EMA weights as a small shippable file")
    export.add_argument("--checkpoint", required=True)
    export.add_argument("--out", required=True)

    args = parser.parse_args(argv)
    try:
        if args.command == "synth":
            from .synthfaces import write_dataset
            write_dataset(args.out, args.n, args.size, args.seed)
        elif args.command == "train":
            from .train import train as run_training
            run_training(_config_from(args), args.data, args.out, resume=args.resume, device=args.device)
        elif args.command == "export":
            from .train import export_ema
            print(export_ema(args.checkpoint, args.out))
    except (ValueError, FileNotFoundError, FileExistsError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
