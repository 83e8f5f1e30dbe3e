"""Shared fixtures: a tiny CelebA-format folder written by the test, and the real sample if present."""

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from celebadiff.data import CELEBA_ATTRIBUTES

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
