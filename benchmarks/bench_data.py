"""Speed of the CelebA loader: decoding and framing JPEGs on every access vs reading the uint8 cache.

    python benchmarks/bench_data.py [n]

Runs on the first n (default 500) train images of the real CelebA sample (CELEBA_ROOT, else
../shared/celeba-sample) when present, else of the built-in face set. The subset is a temporary
CelebA-layout folder whose images link to the originals, so both paths go through `CelebADataset`.
Prints a small table, then one JSON line. Not a test: numbers depend on the machine and its load.
"""

import json
import os
import sys
import tempfile
import time
from pathlib import Path

from celebadiff import synthfaces
from celebadiff.data import ATTR_FILE, IMAGE_DIR, PARTITION_FILE, CelebADataset, read_partition_file

PROJECT = Path(__file__).resolve().parents[1]


def source_folder():
    """(folder, description): the real sample when there is one, else the built-in face set."""
    real = Path(os.environ.get("CELEBA_ROOT", PROJECT.parent / "shared" / "celeba-sample"))
    if (real / ATTR_FILE).exists():
        return real, f"real CelebA sample ({real})"
    try:
        return synthfaces.builtin_dataset(), "built-in face set"
    except FileNotFoundError:
        return synthfaces.builtin_dataset(smoke=True), "built-in face set (400-face smoke copy)"


def write_subset(root, out, n):
    """A CelebA-layout folder holding the first n train rows of `root`, images as symlinks."""
    partition = read_partition_file(root / PARTITION_FILE)
    lines = (root / ATTR_FILE).read_text().splitlines()
    rows = [line for line in lines[2:] if line.split() and partition.get(line.split()[0]) == 0][:n]
    (out / IMAGE_DIR).mkdir(parents=True)
    for line in rows:
        name = line.split()[0]
        (out / IMAGE_DIR / name).symlink_to((root / IMAGE_DIR / name).resolve())
    (out / ATTR_FILE).write_text("\n".join([str(len(rows)), lines[1], *rows]) + "\n")
    (out / PARTITION_FILE).write_text("".join(f"{line.split()[0]} 0\n" for line in rows))
    return out


def read_all(ds):
    for i in range(len(ds)):
        ds[i]


def seconds(fn):
    """(wall-clock, CPU) seconds of fn(): on a shared machine the CPU time is the steadier number."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def main(n=500, size=64):
    root, described = source_folder()
    with tempfile.TemporaryDirectory() as tmp:
        subset = write_subset(root, Path(tmp) / "subset", n)
        cache = Path(tmp) / "cache"
        plain = CelebADataset(subset, "train", size=size)
        n = len(plain)
        plain[0]  # warm up the decoder and resize kernels
        times = {"decode + crop + resize (no cache)": seconds(lambda: read_all(plain)),
                 "build the cache (decode + write)": seconds(
                     lambda: CelebADataset(subset, "train", size=size, cache_dir=cache))}
        cached = []
        load = seconds(lambda: cached.append(CelebADataset(subset, "train", size=size, cache_dir=cache)))
        index = seconds(lambda: read_all(cached[0]))
        times["read the cache (load file + index)"] = (load[0] + index[0], load[1] + index[1])
    print(f"{described}: {n} train images framed to {size} px")
    print(f"{'path':36s} {'wall s':>8s} {'images/s':>9s} {'CPU s':>8s} {'images/CPU s':>13s}")
    for path, (wall, cpu) in times.items():
        print(f"{path:36s} {wall:8.3f} {n / wall:9.0f} {cpu:8.3f} {n / max(cpu, 1e-9):13.0f}")
    decode, cache = times["decode + crop + resize (no cache)"][0], times["read the cache (load file + index)"][0]
    result = {"decode_images_per_s": n / decode, "cache_images_per_s": n / cache, "speedup": decode / cache}
    print(json.dumps({k: round(v, 1) for k, v in result.items()}))


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 500)
