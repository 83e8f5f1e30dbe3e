"""Precision: what `auto` picks from the CPU's flags, and that bf16 autocast really runs in bf16."""

import pytest
import torch

from celebadiff import precision


def _cpuinfo(tmp_path, flags):
    path = tmp_path / "cpuinfo"
    path.write_text(f"processor\t: 0\nmodel name\t: Test CPU\nflags\t\t: fpu sse2 avx2 {flags}\n\n")
    return path


@pytest.mark.parametrize("flags, units", [("", ()), ("avx512f avx512_bf16", ("avx512_bf16",)),
                                          ("amx_tile amx_bf16 avx512_bf16", ("amx_bf16", "avx512_bf16"))])
def test_bf16_units_are_read_from_the_cpu_flags(tmp_path, flags, units):
    assert precision.cpu_bf16_units(_cpuinfo(tmp_path, flags)) == units
    assert precision.cpu_field("model name", _cpuinfo(tmp_path, flags)) == "Test CPU"
    assert precision.cpu_field("model name", tmp_path / "missing") == ""


def test_auto_picks_bf16_only_where_the_cpu_has_units(monkeypatch):
    monkeypatch.setattr(precision, "cpu_bf16_units", lambda: ())
    assert precision.resolve_precision("auto", "cpu") == "fp32"
    assert "no bf16 units" in precision.describe_precision("auto", "cpu")
    monkeypatch.setattr(precision, "cpu_bf16_units", lambda: ("amx_bf16",))
    assert precision.resolve_precision("auto", "cpu") == "bf16"
    assert precision.resolve_precision("fp32", "cpu") == "fp32"
    assert precision.resolve_precision("auto", "cuda") == "bf16"


def test_an_unknown_precision_names_the_choices():
    with pytest.raises(ValueError, match="auto, fp32, bf16"):
        precision.resolve_precision("fp16")


def test_bf16_autocast_rounds_the_products_and_fp32_does_not():
    a = torch.randn(64, 64, dtype=torch.float64)
    exact = a.float() @ a.float()
    with precision.autocast("bf16"):
        low = a.float() @ a.float()
    with precision.autocast("fp32"):
        full = a.float() @ a.float()
    assert low.dtype == torch.bfloat16 and full.dtype == torch.float32
    assert torch.equal(full, exact)
    assert 1e-4 < (low.float() - exact).abs().max() / exact.abs().max() < 2e-2  # bf16's 8-bit mantissa
