"""Finding, naming, loading and exporting models: the stage between a file on disk and a network.

A model is named by a path (a .safetensors file, a run folder, a folder holding one file) or by the
name of a committed model in `checkpoints/`:

| name             | what                                                         |
|------------------|--------------------------------------------------------------|
| `demo`           | the U-Net of the built-in faces, 32 px, 11 attributes         |
| `celeba64`       | the U-Net of real CelebA faces, 64 px, 40 attributes          |
| `demo-judge`     | the attribute classifier (oracle) of the built-in faces       |
| `celeba64-judge` | the attribute classifier of real faces, 64 px, 40 attributes  |

Each model NAME has its judge NAME-judge beside it (`judge_for`). Checkpoints are safetensors files
with the config as JSON in their metadata, so nothing is ever unpickled.
"""

import json
import os
from pathlib import Path

from safetensors import safe_open
from safetensors.torch import save_file

from .config import Config
from .files import atomic_write, write_text
from .unet import UNet

CHECKPOINTS = Path(__file__).resolve().parents[1] / "checkpoints"
LAST = "last.safetensors"
JUDGE_SUFFIX = "-judge"


def committed_names():
    """The names of the models in checkpoints/ (file stems), sorted."""
    return sorted(p.stem for p in CHECKPOINTS.glob("*.safetensors"))


def resolve(name_or_path):
    """A checkpoint file from a committed model's name, a file, a run folder, or a folder holding one file."""
    text = str(name_or_path)
    named = CHECKPOINTS / f"{text}.safetensors"
    if os.sep not in text and not text.endswith(".safetensors") and named.is_file():
        return named
    path = Path(name_or_path)
    if path.is_file():
        return path
    for candidate in (path / LAST, path / "checkpoints" / LAST):
        if candidate.is_file():
            return candidate
    files = sorted(path.glob("*.safetensors")) if path.is_dir() else []
    if len(files) == 1:
        return files[0]
    raise FileNotFoundError(f"no model {text!r}: name a committed model ({', '.join(committed_names())}), a "
                            f".safetensors file, a run folder (with checkpoints/{LAST}) or a folder holding one "
                            ".safetensors file")


def judge_for(checkpoint):
    """The committed judge of a committed model (checkpoints/NAME-judge.safetensors), or None."""
    path = resolve(checkpoint)
    judge = path.with_name(f"{path.stem}{JUDGE_SUFFIX}.safetensors")
    return judge if path.parent == CHECKPOINTS and judge.is_file() else None


# the strength `edit` and `evaluate` use for a committed model when none is given: the scorecard's choice
# (README, Results: on real faces strength 2 raised edit success from 0.19 to 0.33 within the preservation target)
DEFAULT_STRENGTH = {"celeba64": 2.0}


def default_strength(checkpoint):
    """The edit strength used by default with this model: the one chosen for it on valid faces and stored
    in its file (`strength` in the metadata, written by `celebadiff.campaign`), else DEFAULT_STRENGTH for a
    committed model, else 1."""
    path = resolve(checkpoint)
    with safe_open(path, framework="pt") as f:
        stored = (f.metadata() or {}).get("strength")
    if stored is not None:
        return float(stored)
    return DEFAULT_STRENGTH.get(path.stem, 1.0) if path.parent == CHECKPOINTS else 1.0


def build_model(config):
    """The UNet that `config` describes, freshly initialised."""
    return UNet(config.channels, config.n_blocks, config.attention, len(config.attributes), config.dropout,
                config.patch)


def read_checkpoint(path, device="cpu"):
    """(tensors by name, config, step, init_steps) from a checkpoint; nothing is unpickled.

    step counts the run's own steps (what `--resume` continues from); init_steps those of the model it was
    warm-started from (`train --init`), that model's own warm start included; 0 for a run from scratch.
    """
    path = resolve(path)
    with safe_open(path, framework="pt", device=str(device)) as f:
        meta = f.metadata() or {}
        if "config" not in meta:
            raise ValueError(f"{path} is not a celebadiff diffusion model (no config in its metadata)"
                             + ("; it is an attribute classifier: pass it as --classifier" if "classifier" in meta
                                else ""))
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    config = Config.from_dict(json.loads(meta["config"]))
    return tensors, config, int(meta.get("step", 0)), int(meta.get("init_steps", 0))


def prefixed(tensors, prefix):
    """The tensors whose name starts with `prefix`, with it removed."""
    return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}


def load_model(path, device="cpu", ema=True, expect=None):
    """Load a model for sampling: (UNet in eval mode, Config, step), step counting every training step
    behind the weights (a warm start's included: 6000 + 200 for the two-stage demo).

    Uses the EMA weights when the file has them and `ema` is True; `ema=False` asks for the raw
    training weights, which only a run's full checkpoint holds (an exported model has EMA weights
    only). With `expect` (a Config), a checkpoint from another model config raises ValueError
    naming the differing fields.
    """
    tensors, config, step, init_steps = read_checkpoint(path)
    if expect is not None:
        expect.check_compatible(config, source=str(path))
    raw = prefixed(tensors, "model.")
    if not ema and not raw:
        raise ValueError(f"{resolve(path)} holds only EMA weights (an exported model), no raw training "
                         f"weights: load it with ema=True, or pass the run folder's full checkpoint "
                         f"(RUN/checkpoints/{LAST}) for ema=False")
    weights = (prefixed(tensors, "ema.") if ema else {}) or raw
    model = build_model(config)
    model.load_state_dict({k: v.float() for k, v in weights.items()})
    return model.to(device).eval(), config, init_steps + step


def atomic_save(tensors, path, metadata):
    """save_file through a temporary file and a rename (`files.atomic_write`): an interrupted write leaves
    the old file."""
    with atomic_write(path) as tmp:
        save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, tmp, metadata=metadata)


def export_ema(run, out, half=True):
    """Write only the EMA weights of a run's last checkpoint (fp16 by default): the shippable model.

    The config is written beside it as OUT.json too, for readers of the repository.
    """
    tensors, config, step, init_steps = read_checkpoint(run)
    ema = {k: v.half() if half and v.is_floating_point() else v for k, v in tensors.items() if k.startswith("ema.")}
    out = Path(out)
    atomic_save(ema, out, {"config": config.to_json(), "step": str(step), "init_steps": str(init_steps)})
    write_text(out.with_suffix(".json"), config.to_json() + "\n")
    return out

