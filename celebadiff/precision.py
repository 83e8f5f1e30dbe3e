"""Numerical precision of the U-Net and the judge: bf16 autocast where the processor has bf16 units.

| precision | what runs in bf16                               | when `auto` picks it                       |
|-----------|-------------------------------------------------|--------------------------------------------|
| `fp32`    | nothing                                         | a CPU without bf16 units (AVX2 only)       |
| `bf16`    | convolutions, matmuls (`torch.autocast`)        | a GPU, or a CPU with AMX-BF16/AVX512-BF16  |

Weights, optimizer moments, the EMA and the loss stay float32 under autocast: only the operands of
the big products are rounded. On a CPU without bf16 units bf16 is emulated and slower, so `auto`
reads the processor's flags instead of assuming.
"""

import os
from contextlib import nullcontext
from pathlib import Path

PRECISIONS = ("auto", "fp32", "bf16")
BF16_FLAGS = ("amx_bf16", "avx512_bf16")  # /proc/cpuinfo flags of the units that make bf16 fast


def cpu_field(name, cpuinfo="/proc/cpuinfo"):
    """The first value of field `name` in /proc/cpuinfo ("" where it or the file is not there)."""
    path = Path(cpuinfo)
    lines = path.read_text().splitlines() if path.is_file() else []
    return next((line.split(":", 1)[1].strip() for line in lines if line.split(":", 1)[0].strip() == name), "")


def cpu_bf16_units(cpuinfo="/proc/cpuinfo"):
    """The bf16 flags this CPU reports (a tuple, empty where it has none or the file is not there)."""
    flags = cpu_field("flags", cpuinfo).split()
    return tuple(f for f in BF16_FLAGS if f in flags)


def device_name(device="cpu"):
    """The processor a timing ran on: the GPU's name, or the CPU's model name and core count."""
    import torch
    if torch.device(device).type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{cpu_field('model name') or 'CPU'} x{os.cpu_count()}"


def resolve_precision(precision="auto", device="cpu"):
    """'fp32' or 'bf16': the precision `precision` means on `device` ('auto' asks the hardware)."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    if precision != "auto":
        return precision
    import torch  # here, not at the top: the command line's parser reads PRECISIONS without loading torch

    return "bf16" if torch.device(device).type == "cuda" or cpu_bf16_units() else "fp32"


def describe_precision(precision, device="cpu"):
    """One line saying which precision runs and why, for logs and command output."""
    import torch

    chosen, kind = resolve_precision(precision, device), torch.device(device).type
    if precision != "auto":
        return f"precision {chosen} (asked for)"
    if kind == "cuda":
        return "precision bf16 (auto: a GPU)"
    units = cpu_bf16_units()
    return f"precision {chosen} (auto: {'CPU has ' + ', '.join(units) if units else 'CPU has no bf16 units'})"


def autocast(precision, device="cpu"):
    """The context that runs the model's forward (and loss) at `precision` on `device`."""
    import torch

    if resolve_precision(precision, device) == "fp32":
        return nullcontext()
    return torch.autocast(torch.device(device).type, torch.bfloat16)
