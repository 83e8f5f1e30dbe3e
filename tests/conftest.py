"""Shared fixtures: a tiny CelebA-format folder written by the test, the real sample if present, a tiny
random U-Net with faces to edit, and a tiny checkpoint for the command line."""

import copy
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from celebadiff.config import preset
from celebadiff.data import CELEBA_ATTRIBUTES
from celebadiff.diffusion import NoiseSchedule
from celebadiff.models import build_model
from celebadiff.unet import ABSENT, PRESENT, UNet

EDIT_NAMES = ("Smiling", "Eyeglasses", "Male")  # the attributes of the tiny models below

CELEBA_SAMPLE = Path(os.environ.get("CELEBA_ROOT", Path(__file__).parents[1] / ".." / "shared" / "celeba-sample"))


def write_celeba(root, n=12, partition=None, size=(178, 218), seed=0):
    """A CelebA-layout folder of n smooth random JPEGs; attribute a of image i is +1 iff (i + a) % 3 == 0."""
    root = Path(root)
    (root / "img_align_celeba").mkdir(parents=True)
    rng = np.random.default_rng(seed)
    partition = partition or [0] * (n - 4) + [1, 1, 2, 2]
    rows, parts = [], []
    for i in range(n):
        name = f"{i + 1:06d}.jpg"
        small = rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)
        Image.fromarray(small).resize(size, Image.BILINEAR).save(root / "img_align_celeba" / name, quality=95)
        values = ["1" if (i + a) % 3 == 0 else "-1" for a in range(len(CELEBA_ATTRIBUTES))]
        rows.append(f"{name} " + " ".join(f"{v:>2}" for v in values))
        parts.append(f"{name} {partition[i]}")
    (root / "list_attr_celeba.txt").write_text("\n".join([str(n), " ".join(CELEBA_ATTRIBUTES), *rows]) + "\n")
    (root / "list_eval_partition.txt").write_text("\n".join(parts) + "\n")
    return root


@pytest.fixture
def tiny_celeba(tmp_path):
    return write_celeba(tmp_path / "celeba")


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CELEBADIFF_CACHE", str(tmp_path / "cache"))


@pytest.fixture
def celeba_sample():
    if not (CELEBA_SAMPLE / "list_attr_celeba.txt").exists():
        pytest.skip(f"real CelebA sample not found at {CELEBA_SAMPLE} (set CELEBA_ROOT)")
    return CELEBA_SAMPLE


@pytest.fixture(scope="module")
def tiny_unet():
    """(model, schedule, x0 (2, 3, 16, 16), y): a random U-Net on EDIT_NAMES whose attributes matter."""
    torch.manual_seed(0)
    model = UNet(channels=(8, 16), attention=(False, False), n_attributes=3).eval()
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.05)
    torch.nn.init.normal_(model.attr_emb.weight, std=1.0)
    x0 = torch.rand(2, 3, 16, 16) * 2 - 1
    y = torch.tensor([[ABSENT, ABSENT, PRESENT], [PRESENT, ABSENT, ABSENT]])
    return model, NoiseSchedule.linear(100), x0, y


def edit_checkpoint(path, attributes=EDIT_NAMES):
    """A tiny random 16 px checkpoint file for the command line."""
    from celebadiff.train import save_checkpoint
    config = preset("smoke", attributes=attributes, image_size=16)
    torch.manual_seed(0)
    model = build_model(config)
    for p in model.parameters():  # random weights everywhere: a fresh U-Net's blocks are identities
        torch.nn.init.normal_(p, std=0.05)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint(path, config, 0, model, copy.deepcopy(model))
    return path


@pytest.fixture
def ckpt(tmp_path):
    return edit_checkpoint(tmp_path / "model.safetensors")


@pytest.fixture
def celeba(tmp_path):
    return write_celeba(tmp_path / "celeba", n=6, partition=[0, 0, 1, 1, 2, 2])
