"""Speed of our U-Net against diffusers' UNet2DModel of the same widths, depth and attention, on this CPU.

    python benchmarks/bench_unet.py [--quick] [--sizes 32 64] [--precision-only] [--compile]

Measures, in one run and interleaved (ours, theirs, then theirs, ours in the next round; medians over
rounds, because other processes may share the cores):
  - training images/s: forward + MSE backward + fused AdamW step (as train.py), batch 64 at 32 px
    (64 * (32 / size)^2 images);
  - sampling steps/s: one no-grad forward of a batch of 64;
  - achieved GFLOP/s of the training step: FLOPs counted by FlopCounterMode (forward + backward)
    divided by the median time, as a fraction of the best of several float32 1024^3 torch.mm measured
    in the same rounds. The step's FLOPs are 99% convolutions, of 0.1 to 5 GFLOP each at batch 64,
    which a 2 GFLOP square product represents (512^3 to 2048^3 ran within 10% of each other on the
    2-core AMD EPYC this was written on).
Each model runs in the default (contiguous) and channels_last formats; the ratios compare the best
format of each.

Then the real-face model's step in both precisions (`precision_run`): the celeba64 preset's training
step (batch 64, channels_last, fused AdamW) in float32 and under bf16 autocast, each as a fraction of
that precision's own matmul rate (2048^3 torch.mm in float32 and in bfloat16, measured in the same
run), the top operators of the bf16 step by self CPU time (where the time goes besides the products),
and with --compile the same step under torch.compile, with its compile time.

Prints tables, then JSON lines. Not a test: numbers depend on the machine and its load.
About 25 s for --sizes 32 and a minute for the default on an idle 2-core machine.

Run it on an idle machine: cpu_share in the JSON near the thread count. The training step is several
hundred parallel ops; when another process holds a core, each of them waits for the descheduled
thread, while one long torch.mm barely notices. On the 2-core EPYC, an evaluation job beside it made
the step 7x slower and torch.mm 2x, so the script warns when it got less than 90% of its threads' CPU time.

The diffusers model: block_out_channels (32, 64, 128), layers_per_block 1, attention at the last level
and in the middle, GroupNorm(8), 4 heads of 32 and scale-shift ("AdaGN") embedding as ours;
class_embed_type "identity" with a random (B, 128) vector stands in for our summed attribute embedding.
Its up path has layers_per_block + 1 resnets per level (ours: n_blocks), so it does about 1.3x the
FLOPs: images/s favour ours, GFLOP/s compare the kernels' efficiency.
"""

import argparse
import json
import os
import statistics
import sys
import time

# The Makefile's allocator settings (see there): without them glibc unmaps the activation buffers
# after every step and training runs much slower. Re-exec so a direct run measures what `make` does.
if "MALLOC_TRIM_THRESHOLD_" not in os.environ:
    os.environ.update(MALLOC_MMAP_THRESHOLD_="4294967296", MALLOC_TRIM_THRESHOLD_="4294967296")
    os.execv(sys.executable, [sys.executable, *sys.argv])

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from diffusers import UNet2DModel  # noqa: E402
from torch import nn  # noqa: E402
from torch.nn.attention import SDPBackend, sdpa_kernel  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

from celebadiff.config import preset  # noqa: E402
from celebadiff.models import build_model  # noqa: E402
from celebadiff.precision import autocast, cpu_bf16_units, device_name, resolve_precision  # noqa: E402

FORMATS = {"contiguous": torch.contiguous_format, "channels_last": torch.channels_last}
SAMPLE_BATCH, MM_N = 64, 1024


class Diffusers(nn.Module):
    """UNet2DModel called as ours: (x_t, t, cond) -> eps_hat."""

    def __init__(self, channels, attention):
        super().__init__()
        down = tuple("AttnDownBlock2D" if a else "DownBlock2D" for a in attention)
        self.net = UNet2DModel(
            block_out_channels=channels, layers_per_block=1, down_block_types=down,
            up_block_types=tuple(d.replace("Down", "Up") for d in reversed(down)), norm_num_groups=8,
            attention_head_dim=32, resnet_time_scale_shift="scale_shift", class_embed_type="identity")

    def forward(self, x_t, t, cond):
        return self.net(x_t, t, cond, return_dict=False)[0]


class Case:
    """One model in one memory format at one image size: its optimizer and fixed inputs."""

    def __init__(self, net, fmt, size, train_batch, cond):
        self.net, self.opt = net, torch.optim.AdamW(net.parameters(), lr=1e-4, fused=True)  # as train.py
        self.fmt = FORMATS[fmt]
        self.inputs = {b: (torch.randn(b, 3, size, size).contiguous(memory_format=self.fmt),
                           torch.randint(0, 1000, (b,)), cond(b)) for b in {train_batch, SAMPLE_BATCH}}
        self.train_batch = train_batch

    def train(self):
        x, t, c = self.inputs[self.train_batch]
        self.opt.zero_grad(set_to_none=True)
        F.mse_loss(self.net(x, t, c), x).backward()
        self.opt.step()

    @torch.no_grad()
    def sample(self):
        self.net(*self.inputs[SAMPLE_BATCH])


def seconds(fn):
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def matmul():
    a, b = torch.randn(MM_N, MM_N), torch.randn(MM_N, MM_N)
    return lambda: torch.mm(a, b)


def training_flops(case):
    # the counter has no formula for CPU flash attention: count attention in its math form (bmm)
    with FlopCounterMode(display=False) as counter, sdpa_kernel(SDPBackend.MATH):
        case.train()
    return counter.get_total_flops()


def build(size, n_attributes):
    """{(model, format): Case} at one size; the same random weights in both formats."""
    config = preset("demo")
    train_batch = max(1, 64 * 32 * 32 // size**2)
    emb_dim = 4 * config.channels[0]
    makers = {"ours": (lambda: build_model(config), lambda b: torch.randint(0, 3, (b, n_attributes))),
              "diffusers": (lambda: Diffusers(config.channels, config.attention), lambda b: torch.randn(b, emb_dim))}
    cases = {}
    for name, (make, cond) in makers.items():
        for fmt in FORMATS:
            torch.manual_seed(0)
            cases[name, fmt] = Case(make().to(memory_format=FORMATS[fmt]), fmt, size, train_batch, cond)
    return cases, train_batch


def run(sizes, warmup, rounds):
    config = preset("demo")
    load = os.getloadavg()[0]
    by_size = {s: build(s, len(config.attributes)) for s in sizes}
    params = {name: sum(p.numel() for p in by_size[sizes[0]][0][name, "contiguous"].net.parameters())
              for name in ("ours", "diffusers")}
    flops = {(s, name): training_flops(cases[name, "contiguous"])  # doubles as a first warm-up step
             for s, (cases, _) in by_size.items() for name in ("ours", "diffusers")}
    mm = matmul()
    times = {}  # (size, model, format, task) -> [seconds]
    for r in range(warmup + rounds):
        if r == warmup:
            wall, cpu = time.perf_counter(), time.process_time()
        for s, (cases, _) in by_size.items():
            for fmt in FORMATS:
                for task in ("train", "sample"):
                    order = ("ours", "diffusers") if r % 2 == 0 else ("diffusers", "ours")
                    for name in order:
                        dt = seconds(getattr(cases[name, fmt], task))
                        if r >= warmup:
                            times.setdefault((s, name, fmt, task), []).append(dt)
        for _ in range(5):  # cheap next to the U-Nets; the best of all is the machine's rate
            dt = seconds(mm)
            if r >= warmup:
                times.setdefault("mm", []).append(dt)
    # CPU seconds this process got per wall second: near the thread count on an idle machine
    share = (time.process_time() - cpu) / (time.perf_counter() - wall)
    median = {k: statistics.median(v) for k, v in times.items()}
    mm_gflops = 2 * MM_N**3 / min(times["mm"]) / 1e9
    return report(sizes, by_size, params, flops, median, mm_gflops, load, share, rounds)


def report(sizes, by_size, params, flops, median, mm_gflops, load, share, rounds):
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} cores, load average "
          f"{load:.2f} at start; this process got {share:.2f} CPU-seconds per second while timing. Other processes "
          f"(e.g. a background training job) share the cores: each number is the median of {rounds} interleaved rounds")
    print(f"parameters: ours {params['ours']:,}, diffusers {params['diffusers']:,} "
          "(diffusers: class_embed_type='identity', a (B, 128) vector in place of our attribute embedding; "
          "layers_per_block + 1 resnets per up level); training-step GFLOP (fwd + bwd): "
          + ", ".join(f"{s} px ours {flops[s, 'ours'] / 1e9:.1f} diffusers {flops[s, 'diffusers'] / 1e9:.1f}"
                      for s in sizes))
    if share < 0.9 * torch.get_num_threads():
        print(f"WARNING: this process got {share:.2f} of {torch.get_num_threads()} cores while timing: other jobs "
              "held the CPU, and the training step's many small parallel ops suffer far more than torch.mm. "
              "Rerun on an idle machine for GFLOP/s and the fraction of the matmul rate")
    print(f"float32 torch.mm {MM_N}^3, best of {5 * rounds}: {mm_gflops:.1f} GFLOP/s")
    print(f"{'size':>4s} {'model':10s} {'format':14s} {'train img/s':>11s} {'GFLOP/s':>8s} {'of mm':>6s} "
          f"{'sample steps/s':>14s}")
    result = {"params_ours": params["ours"], "params_diffusers": params["diffusers"],
              "matmul_gflops": round(mm_gflops, 1), "threads": torch.get_num_threads(),
              "load_average": round(load, 2), "cpu_share": round(share, 2), "rounds": rounds,
              "diffusers_class_embed_type": "identity"}
    best = {}
    for s in sizes:
        batch = by_size[s][1]
        for name in ("ours", "diffusers"):
            for fmt in FORMATS:
                train_t, sample_t = median[s, name, fmt, "train"], median[s, name, fmt, "sample"]
                gflops = flops[s, name] / train_t / 1e9
                row = {"train_img_s": batch / train_t, "train_gflops": gflops, "sample_steps_s": 1 / sample_t}
                print(f"{s:4d} {name:10s} {fmt:14s} {row['train_img_s']:11.1f} {gflops:8.1f} "
                      f"{gflops / mm_gflops:6.0%} {row['sample_steps_s']:14.2f}")
                result[f"{s}px_{name}_{fmt}"] = {k: round(v, 2) for k, v in row.items()}
                for key, value in row.items():
                    best[s, name, key] = max(best.get((s, name, key), 0), value)
            fastest = max(FORMATS, key=lambda f: result[f"{s}px_{name}_{f}"]["train_img_s"])
            result[f"{s}px_{name}_faster_train_format"] = fastest
            result[f"{s}px_{name}_train_gflop_per_step"] = round(flops[s, name] / 1e9, 2)
        ratios = {f"{s}px_{key}_ratio_vs_diffusers": best[s, "ours", key] / best[s, "diffusers", key]
                  for key in ("train_img_s", "sample_steps_s", "train_gflops")}
        ratios[f"{s}px_train_fraction_of_matmul"] = best[s, "ours", "train_gflops"] / mm_gflops
        result.update({k: round(v, 3) for k, v in ratios.items()})
        r = {k.removeprefix(f"{s}px_"): v for k, v in ratios.items()}
        print(f"{s:4d} px, best format of each, ours/diffusers: train img/s {r['train_img_s_ratio_vs_diffusers']:.2f}, "
              f"sample steps/s {r['sample_steps_s_ratio_vs_diffusers']:.2f}, "
              f"train GFLOP/s {r['train_gflops_ratio_vs_diffusers']:.2f}; ours' training runs at "
              f"{r['train_fraction_of_matmul']:.0%} of the matmul rate, faster in "
              f"{result[f'{s}px_ours_faster_train_format']}")
    head = 32 if 32 in sizes else sizes[0]
    summary = {"train_speed_ratio_vs_diffusers": result[f"{head}px_train_img_s_ratio_vs_diffusers"],
               "sample_speed_ratio_vs_diffusers": result[f"{head}px_sample_steps_s_ratio_vs_diffusers"],
               "train_fraction_of_matmul": result[f"{head}px_train_fraction_of_matmul"], "summary_size": head}
    print(json.dumps({**summary, **result}))
    return result


# --- the real-face step in float32 and bf16 ----------------------------------------------------------

def matmul_rate(dtype, n=2048, repeats=5):
    """Best GFLOP/s of the same n^3 product as torch.mm and as a 1x1 convolution in `dtype`.

    The convolution runs through oneDNN, as the U-Net's do; torch.mm in float32 goes through the BLAS,
    which on an AMD EPYC here ran at half oneDNN's rate: the better of the two is the machine's rate."""
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    image = torch.randn(1, n, n // 64, 64, dtype=dtype).contiguous(memory_format=torch.channels_last)
    kernel = torch.randn(n, n, 1, 1, dtype=dtype).contiguous(memory_format=torch.channels_last)
    products = {"mm": lambda: torch.mm(a, b), "conv1x1": lambda: F.conv2d(image, kernel)}
    rates = {}
    for name, product in products.items():
        product()
        rates[name] = 2 * n**3 / min(seconds(product) for _ in range(repeats)) / 1e9
    return rates


def real_face_case(precision, compiled=False):
    """The celeba64 training step as train.py runs it: (step function, batch, FLOPs of one step)."""
    torch.manual_seed(0)
    config = preset("celeba64")
    net = build_model(config).to(memory_format=torch.channels_last)
    case = Case(net, "channels_last", config.image_size, config.batch_size,
                lambda b: torch.randint(0, 3, (b, len(config.attributes))))
    flops = training_flops(case)
    forward = torch.compile(net) if compiled else net
    x, t, c = case.inputs[case.train_batch]

    def step():
        case.opt.zero_grad(set_to_none=True)
        with autocast(precision):
            loss = F.mse_loss(forward(x, t, c).float(), x)
        loss.backward()
        case.opt.step()
    return step, case.train_batch, flops


def precision_run(rounds, compiled=False, top=8):
    products = {"fp32": matmul_rate(torch.float32), "bf16": matmul_rate(torch.bfloat16)}
    rates = {k: max(v.values()) for k, v in products.items()}
    print(f"\nthe celeba64 training step, batch 64, channels_last; CPU: {device_name('cpu')}; bf16 units: "
          f"{', '.join(cpu_bf16_units()) or 'none'}; auto picks {resolve_precision('auto')}")
    for k, v in products.items():
        print(f"2048^3 product in {k}: torch.mm {v['mm']:.0f} GFLOP/s, as a 1x1 convolution {v['conv1x1']:.0f} "
              f"GFLOP/s; its rate: {rates[k]:.0f}")
    print(f"{'precision':10s} {'compiled':8s} {'img/s':>7s} {'GFLOP/s':>8s} {'of its rate':>12s} {'first step s':>12s}")
    result = {"matmul_gflops": {k: {n: round(r, 1) for n, r in v.items()} for k, v in products.items()}}
    arms = [(p, False) for p in ("fp32", "bf16")] + ([(p, True) for p in ("fp32", "bf16")] if compiled else [])
    for precision, comp in arms:
        step, batch, flops = real_face_case(precision, comp)
        first = seconds(step)  # with --compile: the compilation
        best = min(seconds(step) for _ in range(2 + rounds))
        gflops = flops / best / 1e9
        print(f"{precision:10s} {str(comp):8s} {batch / best:7.1f} {gflops:8.0f} {gflops / rates[precision]:12.2f} "
              f"{first:12.1f}")
        result[f"{precision}{'_compiled' if comp else ''}"] = {
            "img_s": round(batch / best, 1), "gflops": round(gflops),
            "fraction_of_matmul": round(gflops / rates[precision], 3), "first_step_s": round(first, 1)}
    step, _, _ = real_face_case("bf16")
    step()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        step()
    print(f"bf16 step, top {top} operators by self CPU time:")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=top))
    print(json.dumps({"real_face_step": result}))
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="one warm-up and one timed round instead of 1 + 2")
    parser.add_argument("--sizes", type=int, nargs="+", default=[32, 64], help="image sizes, pixels")
    parser.add_argument("--precision-only", action="store_true", help="only the real-face step in fp32 and bf16")
    parser.add_argument("--compile", action="store_true", help="also time the real-face step under torch.compile")
    args = parser.parse_args()
    bad = [s for s in args.sizes if s % 4]
    if bad:
        raise ValueError(f"sizes must be multiples of 4 (two halvings in the U-Net), got {bad}")
    if not args.precision_only:
        run(args.sizes, warmup=1, rounds=1 if args.quick else 2)
    precision_run(rounds=1 if args.quick else 3, compiled=args.compile)


if __name__ == "__main__":
    main()
