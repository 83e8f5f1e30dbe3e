"""Frozen configuration of a model and its training run, and the named presets.

One flat dataclass: every field can be overridden from the command line (`--batch-size 32`)
and the whole config is stored as JSON inside every checkpoint.
"""

import dataclasses
import json
from dataclasses import dataclass

from .data import CELEBA_ATTRIBUTES
from .synthfaces import DRAWN

# Fields that define the network's weights: a checkpoint only loads into a model that agrees on them.
MODEL_FIELDS = ("image_size", "channels", "n_blocks", "attention", "attributes", "schedule", "T", "patch")


@dataclass(frozen=True)
class Config:
    # model
    image_size: int = 32  # side of the square training images, pixels
    channels: tuple = (32, 64, 128)  # U-Net width per resolution level
    n_blocks: int = 1  # residual Blocks per level, on each side
    attention: tuple = (False, False, True)  # self-attention per level
    attributes: tuple = DRAWN  # the attribute names y is made of, in order
    dropout: float = 0.0  # dropout inside Blocks
    patch: int = 1  # space-to-depth stem: the U-Net works at image_size / patch (1: none)
    # diffusion
    schedule: str = "linear"  # "linear" (Ho et al.) or "cosine" (Nichol & Dhariwal)
    T: int = 1000  # diffusion steps
    # optimisation
    steps: int = 6000  # optimizer steps in total
    batch_size: int = 64  # images per step, over all processes
    lr: float = 1e-3  # AdamW peak learning rate
    warmup: int = 200  # linear warm-up steps
    weight_decay: float = 0.0  # AdamW weight decay
    grad_clip: float = 1.0  # max gradient norm
    min_snr_gamma: float = 0.0  # min-SNR-gamma loss weighting (Hang et al. 2023); 0: plain L_simple
    contrastive_weight: float = 0.0  # weight of the term making y explain eps better than flipped y; 0: off
    contrastive_margin: float = 0.1  # that term's margin m: err(flipped y) must reach (1 + m) err(y)
    ema_decay: float = 0.999  # EMA of the weights, used for sampling
    p_uncond: float = 0.1  # probability that a whole y is set UNKNOWN (classifier-free guidance)
    p_drop_attribute: float = 0.1  # probability that each attribute alone is set UNKNOWN
    # data and bookkeeping
    crop: int = 140  # centre crop before resizing (aligned CelebA framing)
    hflip: bool = True  # random horizontal flips
    seed: int = 0  # seeds the data order, noise and initial weights
    log_every: int = 50  # steps between loss-log lines
    sample_every: int = 1000  # steps between sample grids
    checkpoint_every: int = 500  # steps between checkpoints
    channels_last: bool = True  # memory format (faster on this CPU and on GPUs)

    def to_json(self):
        return json.dumps(dataclasses.asdict(self), indent=2)

    @classmethod
    def from_dict(cls, d):
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"unknown config fields {sorted(unknown)}; valid fields: {sorted(names)}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})

    def check_compatible(self, other, source="checkpoint"):
        """Raise ValueError listing the model fields where `other` disagrees with this config."""
        diff = [f"{k}: {getattr(other, k)!r} (here {getattr(self, k)!r})"
                for k in MODEL_FIELDS if getattr(self, k) != getattr(other, k)]
        if diff:
            raise ValueError(f"{source} was made with another model config: {'; '.join(diff)}; "
                             "load it with its own config (celebadiff.models.load_model) or retrain")


PRESETS = {
    # seconds on a CPU: for tests and notebooks' SMOKE mode
    "smoke": Config(image_size=16, channels=(8, 16), attention=(False, True), steps=20, batch_size=8,
                    warmup=5, log_every=5, sample_every=10, checkpoint_every=10, T=100),
    # the built-in faces at 32 px, from scratch: the committed demo-base checkpoint, about 2 h on a 2-core CPU
    "demo": Config(),
    # the demo's second stage, warm-started from a demo run (`--init demo-base`): 200 steps with the contrastive
    # term, which beat the same 200 steps without it on two seeds (benchmarks/contrastive_comparison*.md); the
    # committed demo checkpoint, about 5 minutes on a 2-core CPU
    "demo-contrastive": Config(steps=200, lr=2e-4, warmup=20, contrastive_weight=1.0, log_every=10,
                               sample_every=100, checkpoint_every=50),
    # real CelebA (e.g. the 4,560-image sample) at 32 px on a CPU, the same attributes as the demo
    "celeba-cpu": Config(steps=6000, sample_every=500),
    # real CelebA at 64 px, all 40 attributes, trained on the 2 CPU cores in about 2 hours
    "celeba64": Config(image_size=64, patch=2, channels=(64, 128, 256), attributes=CELEBA_ATTRIBUTES,
                       steps=3000, min_snr_gamma=5.0, sample_every=500, checkpoint_every=250),
    # the real-face campaign (issue 18): celeba64 warm-started from the committed model (`--init celeba64`),
    # run a session at a time (`--minutes`, `--resume`) on the CPU; the cosine decay spans the whole campaign
    "celeba64-campaign": Config(image_size=64, patch=2, channels=(64, 128, 256), attributes=CELEBA_ATTRIBUTES,
                                steps=40_000, lr=5e-4, warmup=100, min_snr_gamma=5.0, sample_every=1000,
                                checkpoint_every=250),
    # CelebA 64x64 on a GPU: a DDIM-paper-sized model
    "full": Config(image_size=64, channels=(128, 256, 256, 512), n_blocks=2,
                   attention=(False, True, False, False), attributes=CELEBA_ATTRIBUTES, dropout=0.1, steps=200_000,
                   batch_size=128, lr=2e-4, warmup=5000, ema_decay=0.9999, sample_every=5000,
                   checkpoint_every=5000),
}


def preset(name, **overrides):
    """A named preset, with fields replaced (`dataclasses.replace`)."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    return dataclasses.replace(PRESETS[name], **overrides)
