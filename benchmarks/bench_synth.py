"""Speed of the built-in face set: render alone, PNG encoding alone, and write_dataset end to end.

    python benchmarks/bench_synth.py [n]

Prints a small table, then one JSON line. Not a test: numbers depend on the machine and its load.
"""

import io
import json
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image

from celebadiff import synthfaces as sf


def faces_per_second(fn, n):
    start = time.perf_counter()
    fn()
    return n / (time.perf_counter() - start)


def main(n=2000):
    identity, attributes = sf.sample_identities(n, seed=0), sf.sample_attributes(n, seed=0)
    sf.render({k: v[:8] for k, v in identity.items()}, {k: v[:8] for k, v in attributes.items()}, 64)  # warm
    result = {}
    for size in (32, 64):
        result[f"render_faces_per_s_{size}"] = faces_per_second(
            lambda s=size: sf.render(identity, attributes, s), n)
    images = sf.render(identity, attributes, 64)

    def encode():
        for image in images:
            Image.fromarray(image).save(io.BytesIO(), format="PNG", compress_level=3)

    result["png_encode_faces_per_s_64"] = faces_per_second(encode, n)
    with tempfile.TemporaryDirectory() as tmp:
        for size in (32, 64):
            result[f"write_faces_per_s_{size}"] = faces_per_second(
                lambda s=size: sf.write_dataset(Path(tmp) / f"s{s}", n=n, size=s, progress=False), n)
    print(f"{'stage':28s} {'faces/s':>9s}   (n={n})")
    for key, value in result.items():
        print(f"{key:28s} {value:9.0f}")
    print(f"30,000 faces at 64 px: about {30000 / result['write_faces_per_s_64']:.0f} s")
    print(json.dumps({k: round(v, 1) for k, v in result.items()}))


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 2000)
