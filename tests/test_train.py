"""Training: the loss falls, resume is exact, DDP on two CPU processes, checkpoint errors."""

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from celebadiff.config import preset
from celebadiff.models import export_ema, load_model, read_checkpoint
from celebadiff.train import train


def test_overfitting_eight_images_drives_the_loss_down(tmp_path):
    from conftest import write_celeba
    data = write_celeba(tmp_path / "d", n=12, size=(32, 32))  # 8 train images
    config = preset("smoke", batch_size=8, steps=500, lr=3e-3, warmup=20, log_every=25, p_uncond=0.0,
                    p_drop_attribute=0.0, hflip=False, sample_every=10_000, checkpoint_every=10_000)
    run = train(config, data, tmp_path / "run", progress=False)
    losses = [float(line.split(",")[1]) for line in (run / "loss.csv").read_text().splitlines()[1:]]
    assert losses[-1] < losses[0] / 10, losses


def test_training_with_the_contrastive_term_and_min_snr_drives_the_loss_down(tmp_path):
    from conftest import write_celeba
    data = write_celeba(tmp_path / "d", n=12, size=(32, 32))
    config = preset("smoke", batch_size=8, steps=300, lr=3e-3, warmup=20, log_every=25, hflip=False,
                    contrastive_weight=1.0, min_snr_gamma=5.0, sample_every=10_000, checkpoint_every=10_000)
    run = train(config, data, tmp_path / "run", progress=False)
    losses = [float(line.split(",")[1]) for line in (run / "loss.csv").read_text().splitlines()[1:]]
    assert losses[-1] < losses[0] / 5, losses


def test_resume_reaches_the_same_weights_as_an_uninterrupted_run(tiny_celeba, tmp_path):
    config = preset("smoke", steps=12, checkpoint_every=4)
    train(config, tiny_celeba, tmp_path / "straight", progress=False)
    train(config, tiny_celeba, tmp_path / "resumed", progress=False, stop_after=5)
    assert read_checkpoint(tmp_path / "resumed")[2] == 5
    train(config, tiny_celeba, tmp_path / "resumed", progress=False, resume=True)
    a, _, step_a, _ = read_checkpoint(tmp_path / "straight")
    b, _, step_b, _ = read_checkpoint(tmp_path / "resumed")
    assert step_a == step_b == 12
    for key in a.keys() - {"seconds"}:
        assert torch.equal(a[key], b[key]), key
    assert float(b["seconds"]) > 0  # the wall time of both parts, carried across the resume


def test_a_time_limit_ends_the_run_with_a_checkpoint_and_resume_counts_on(tiny_celeba, tmp_path):
    config = preset("smoke", steps=12, checkpoint_every=100, log_every=100)
    run = train(config, tiny_celeba, tmp_path / "run", progress=False, minutes=1e-9)
    assert read_checkpoint(run)[2] == 1  # stopped after its first step, and saved it
    train(config, tiny_celeba, run, progress=False, resume=True, precision="fp32")
    assert read_checkpoint(run)[2] == 12
    starts = (run / "starts.csv").read_text().splitlines()
    assert [row.split(",")[1] for row in starts[1:]] == ["0", "1"]  # a row per start, with its step
    assert starts[2].endswith(",fp32")


def test_bf16_and_fp32_training_end_at_nearby_losses(tiny_celeba, tmp_path):
    config = preset("smoke", steps=60, lr=3e-3, log_every=20, sample_every=1000, checkpoint_every=1000)
    final = {}
    for precision in ("fp32", "bf16"):
        run = train(config, tiny_celeba, tmp_path / precision, progress=False, precision=precision)
        final[precision] = float((run / "loss.csv").read_text().splitlines()[-1].split(",")[1])
    assert final["bf16"] == pytest.approx(final["fp32"], rel=0.1), final


def test_run_folder_contents_and_refusing_to_overwrite(tiny_celeba, tmp_path):
    run = train(preset("smoke"), tiny_celeba, tmp_path / "run", progress=False)
    assert json.loads((run / "config.json").read_text())["channels"] == [8, 16]
    assert sorted(p.name for p in (run / "samples").iterdir()) == ["step_000010.png", "step_000020.png"]
    with pytest.raises(FileExistsError, match="--resume"):
        train(preset("smoke"), tiny_celeba, run, progress=False)
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        train(preset("smoke"), tiny_celeba, tmp_path / "empty", progress=False, resume=True)


def test_checkpoint_from_another_config_is_a_clear_error(tiny_celeba, tmp_path):
    run = train(preset("smoke"), tiny_celeba, tmp_path / "run", progress=False)
    other = replace(preset("smoke"), channels=(8, 32))
    with pytest.raises(ValueError, match=r"another model config: channels: \(8, 16\)"):
        load_model(run, expect=other)
    with pytest.raises(ValueError, match="another model config"):
        train(other, tiny_celeba, run, progress=False, resume=True)


def test_checkpoints_are_plain_safetensors_that_load_without_unpickling(tiny_celeba, tmp_path):
    run = train(preset("smoke"), tiny_celeba, tmp_path / "run", progress=False)
    tensors = load_file(run / "checkpoints" / "last.safetensors")  # safetensors cannot hold pickles
    assert any(k.startswith("ema.") for k in tensors) and "rng" in tensors
    model, config, step = load_model(run)
    assert step == 20 and config == preset("smoke") and not model.training


def test_two_process_ddp_run_on_cpu_with_gloo(tiny_celeba, tmp_path):
    # gloo over loopback: resolving the host name fails on machines without a network
    env = {**os.environ, "OMP_NUM_THREADS": "1", "GLOO_SOCKET_IFNAME": "lo",
           "PYTHONPATH": str(Path(__file__).parents[1])}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "celebadiff", "train", "--data", str(tiny_celeba), "--preset", "smoke",
           "--out", str(tmp_path / "ddp"), "--steps", "6", "--device", "cpu"]
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    tensors, _, step, _ = read_checkpoint(tmp_path / "ddp")
    assert step == 6
    assert (tmp_path / "ddp" / "loss.csv").read_text().count("\n") == 3  # header + steps 5, 6: rank 0 only


def test_raw_weights_from_an_exported_model_is_a_clear_error():
    exported = Path(__file__).parents[1] / "checkpoints" / "demo.safetensors"  # EMA weights only
    with pytest.raises(ValueError, match=r"only EMA weights.*ema=True.*full checkpoint"):
        load_model(exported, ema=False)
    model, _, _ = load_model(exported, ema=True)
    assert not model.training


def test_a_warm_start_begins_from_the_given_models_ema_weights(tiny_celeba, tmp_path):
    first = train(preset("smoke"), tiny_celeba, tmp_path / "first", progress=False)
    start = load_model(first)[0].state_dict()
    # lr 0 for one step: the weights cannot move, so the second run's EMA is the first run's EMA
    second = train(preset("smoke", steps=1, lr=0.0), tiny_celeba, tmp_path / "second", progress=False, init=first)
    tensors, _, step, init_steps = read_checkpoint(second)
    assert (step, init_steps) == (1, 20)  # this run's own steps (what a resume continues from), the warm start's
    assert load_model(second)[2] == 20 + 1  # all the training behind the weights, the warm start's included
    assert load_model(export_ema(second, tmp_path / "second.safetensors"))[2] == 21  # the shipped file keeps it
    for name, value in start.items():
        torch.testing.assert_close(tensors[f"ema.{name}"], value)
        torch.testing.assert_close(tensors[f"model.{name}"], value)
    with pytest.raises(ValueError, match="another model config"):
        train(replace(preset("smoke"), channels=(8, 32)), tiny_celeba, tmp_path / "third", progress=False, init=first)


def test_a_resumed_warm_start_still_counts_the_steps_behind_it(tiny_celeba, tmp_path):
    first = train(preset("smoke", steps=3), tiny_celeba, tmp_path / "first", progress=False)
    config, second = preset("smoke", steps=2), tmp_path / "second"
    train(config, tiny_celeba, second, progress=False, init=first, stop_after=1)
    train(config, tiny_celeba, second, progress=False, resume=True)
    assert read_checkpoint(second)[2] == 2
    assert load_model(second)[2] == 3 + 2
