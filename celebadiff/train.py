"""Training: DDPM's L_simple with AdamW, warm-up, clipping, EMA, atomic safetensors checkpoints,
exact resume, and DistributedDataParallel under `torchrun`.

The data order, the noise and the attribute dropout all come from seeded generators whose state
is saved in the checkpoint, so an interrupted run resumed with `--resume` reaches the same weights
as one that never stopped.
"""

import copy
import csv
import math
import os
import time
from pathlib import Path

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DistributedSampler
from torchvision.utils import save_image
from tqdm.auto import tqdm

from .data import CelebADataset, default_cache_dir, to_model_range
from .diffusion import NoiseSchedule, diffusion_loss
from .models import LAST, atomic_save, build_model, load_model, prefixed, read_checkpoint
from .precision import autocast, describe_precision, device_name, resolve_precision
from .sampling import ddim_sample
from .unet import attribute_states


def training_set(config, data_dir, split="train"):
    """The split as an in-memory uint8 dataset (decoded once, then cached on disk); one folder or a list."""
    return CelebADataset(data_dir, split, attributes=list(config.attributes), size=config.image_size,
                         crop=config.crop, cache_dir=default_cache_dir())


def save_checkpoint(path, config, step, model, ema, optimizer=None, generator=None, init_steps=0, seconds=0.0):
    """Weights, EMA, optimizer moments and generator state in one safetensors file, written atomically.

    `step` counts this run's steps (what a resume continues from); `init_steps` those of the model it was
    warm-started from, so a loaded model knows all the training behind it (`models.load_model`);
    `seconds` the run's training wall time so far, over all its resumes."""
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    tensors.update({f"ema.{k}": v for k, v in ema.state_dict().items()})
    if optimizer is not None:
        for i, state in optimizer.state_dict()["state"].items():
            tensors.update({f"optim.{i}.{k}": torch.as_tensor(v) for k, v in state.items()})
    if generator is not None:
        tensors["rng"] = generator.get_state()
    tensors["seconds"] = torch.tensor(float(seconds), dtype=torch.float64)
    atomic_save(tensors, Path(path), {"config": config.to_json(), "step": str(step), "init_steps": str(init_steps)})


# --- the loop ---------------------------------------------------------------------------------------

def learning_rate(config, step):
    """Linear warm-up to `lr`, then cosine decay to lr / 10."""
    if step < config.warmup:
        return config.lr * (step + 1) / config.warmup
    progress = (step - config.warmup) / max(1, config.steps - config.warmup)
    return config.lr * (0.1 + 0.45 * (1 + math.cos(math.pi * min(1.0, progress))))


def drop_attributes(labels, config, generator):
    """0/1 labels -> states, each attribute UNKNOWN with p_drop_attribute and all with p_uncond."""
    B, A = labels.shape
    known = torch.rand((B, A), generator=generator, device=labels.device) >= config.p_drop_attribute
    known &= (torch.rand((B, 1), generator=generator, device=labels.device) >= config.p_uncond)
    return attribute_states(labels, known)


def _distributed(device=None):
    """(rank, world size), initialising the process group when launched by torchrun."""
    world = int(os.environ.get("WORLD_SIZE", 1))
    if world > 1 and not dist.is_initialized():
        cuda = torch.device(device).type == "cuda" if device else torch.cuda.is_available()
        dist.init_process_group("nccl" if cuda else "gloo")  # --device cpu on a GPU machine: gloo
    return (dist.get_rank() if world > 1 else 0), world


def _device(rank):
    if torch.cuda.is_available():
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", rank)) % torch.cuda.device_count())
        torch.cuda.set_device(device)
        return device
    return torch.device("cpu")


def sample_grid(model, config, schedule, labels, path, steps=25, seed=0):
    """DDIM samples (EMA weights) for the given 0/1 label rows, saved as one PNG grid."""
    device = next(model.parameters()).device
    g = torch.Generator(device).manual_seed(seed)
    x_T = torch.randn((len(labels), 3, config.image_size, config.image_size), generator=g, device=device)
    x0 = ddim_sample(model, schedule, x_T, attribute_states(labels.to(device)), steps=steps, clip=True)
    save_image(x0.add(1).div(2).clamp(0, 1), path, nrow=8)


def train(config, data_dir, out_dir, resume=False, device=None, progress=True, stop_after=None, init=None,
          precision="auto", minutes=None):
    """Train a model; returns the run folder.

    Writes out_dir/config.json, loss.csv (step, loss, lr, images/s, the run's wall seconds so far),
    starts.csv (a row per start or resume: date, step, CPU, precision), samples/step_NNNNNN.png and
    checkpoints/last.safetensors. `stop_after` ends the run early after that many steps (to test
    resuming); `minutes` after that much wall time, with a checkpoint (a campaign's session). `init`
    (a model's name, run or file of the same model config) warm-starts a new run from its (EMA)
    weights, with a fresh optimizer and learning-rate schedule: a second stage of training.
    `precision` (auto, fp32, bf16) is the forward's autocast (`celebadiff.precision`).
    """
    rank, world = _distributed(device)
    device = torch.device(device) if device else _device(rank)
    out = Path(out_dir)
    ckpt_path = out / "checkpoints" / LAST
    if config.batch_size % world:
        raise ValueError(f"batch_size {config.batch_size} must divide among {world} processes")
    data = training_set(config, data_dir)
    images, labels = data.images, data.labels
    sampler = DistributedSampler(range(len(images)), num_replicas=world, rank=rank, shuffle=True,
                                 seed=config.seed, drop_last=True)
    per_rank = config.batch_size // world
    steps_per_epoch = len(sampler) // per_rank
    if steps_per_epoch == 0:
        raise ValueError(f"{len(images)} training images are fewer than one batch of {config.batch_size}")

    torch.manual_seed(config.seed)
    model, init_steps = build_model(config), 0
    if init is not None and not resume:
        start, _, init_steps = load_model(init, expect=config)
        model.load_state_dict(start.state_dict())
    model = model.to(device)
    memory_format = torch.channels_last if config.channels_last else torch.contiguous_format
    model = model.to(memory_format=memory_format)
    ema = copy.deepcopy(model).requires_grad_(False)
    # fused: one kernel per parameter instead of about ten; the unfused step stalls when other jobs share the CPU
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay, fused=True)
    generator = torch.Generator(device).manual_seed(config.seed * 1000 + rank)
    schedule = NoiseSchedule.named(config.schedule, config.T)
    step, seconds = 0, 0.0
    if resume:
        step, init_steps, seconds = _restore(ckpt_path, config, model, ema, optimizer, generator)
    elif ckpt_path.exists():
        raise FileExistsError(f"{out} already holds a run; pass --resume to continue it or choose another --out")
    net = DistributedDataParallel(model) if world > 1 else model
    mixed = autocast(precision, device)
    if rank == 0:
        (out / "checkpoints").mkdir(parents=True, exist_ok=True)
        (out / "samples").mkdir(exist_ok=True)
        (out / "config.json").write_text(config.to_json())
        _log_start(out / "starts.csv", step, resolve_precision(precision, device), device)
        print(f"train: {describe_precision(precision, device)}, from step {step}", flush=True)
    grid_labels = labels[:16]

    end = min(config.steps, step + stop_after) if stop_after else config.steps
    deadline = time.perf_counter() + 60 * minutes if minutes else math.inf
    bar = tqdm(total=config.steps, initial=step, disable=not progress or rank > 0, desc="train", smoothing=0.05)
    order, epoch, window, t0 = None, -1, [], time.perf_counter()
    while step < end:
        if step // steps_per_epoch != epoch:
            epoch = step // steps_per_epoch
            sampler.set_epoch(epoch)
            order = torch.tensor(list(sampler))
        j = step % steps_per_epoch
        idx = order[j * per_rank:(j + 1) * per_rank]
        x0 = to_model_range(images[idx].to(device)).contiguous(memory_format=memory_format)
        if config.hflip:
            flip = torch.rand(per_rank, generator=generator, device=device) < 0.5
            x0 = torch.where(flip[:, None, None, None], x0.flip(-1), x0)
        y = drop_attributes(labels[idx].to(device), config, generator)
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(config, step)
        with mixed:
            loss = diffusion_loss(net, schedule, x0, y, generator, config.min_snr_gamma, config.contrastive_weight,
                                  config.contrastive_margin)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        optimizer.step()
        decay = min(config.ema_decay, (1 + step) / (10 + step))
        torch._foreach_lerp_(list(ema.parameters()), list(model.parameters()), 1 - decay)
        step += 1
        window.append(loss.item())
        bar.update(1)
        if time.perf_counter() > deadline:
            end = step  # out of wall time: log and checkpoint this step, then stop
        if rank == 0 and (step % config.log_every == 0 or step == end):
            now = time.perf_counter()
            seconds, rate = seconds + now - t0, len(window) * config.batch_size / (now - t0)
            _log(out / "loss.csv", step, sum(window) / len(window), learning_rate(config, step - 1), rate, seconds)
            bar.set_postfix(loss=f"{sum(window) / len(window):.4f}", img_s=f"{rate:.1f}")
            window, t0 = [], time.perf_counter()
        if rank == 0 and (step % config.sample_every == 0 or step == config.steps):
            sample_grid(ema, config, schedule, grid_labels, out / "samples" / f"step_{step:06d}.png")
        if rank == 0 and (step % config.checkpoint_every == 0 or step == end):
            save_checkpoint(ckpt_path, config, step, model, ema, optimizer, generator, init_steps, seconds)
    bar.close()
    if world > 1:
        dist.barrier()
    return out


def _restore(path, config, model, ema, optimizer, generator):
    if not path.exists():
        raise FileNotFoundError(f"--resume: no checkpoint at {path}; start without --resume")
    tensors, saved, step, init_steps = read_checkpoint(path)
    config.check_compatible(saved, source=str(path))
    model.load_state_dict(prefixed(tensors, "model."))
    ema.load_state_dict(prefixed(tensors, "ema."))
    state, params = optimizer.state_dict(), list(model.parameters())
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, i, name = key.split(".", 2)
            if value.shape == params[int(i)].shape:
                # moments back in their parameter's memory format (channels_last): fused AdamW on CPU
                # assumes the same layout without checking, and resumed runs drifted before this copy
                value = torch.empty_like(params[int(i)]).copy_(value)
            state["state"].setdefault(int(i), {})[name] = value
    optimizer.load_state_dict(state)
    generator.set_state(tensors["rng"])
    return step, init_steps, float(tensors.get("seconds", torch.zeros(())))


def _append_row(path, header, row):
    new = not path.exists()
    with open(path, "a", newline="") as f:
        writer = csv.writer(f)
        if new:
            writer.writerow(header)
        writer.writerow(row)


def _log(path, step, loss, lr, rate, seconds):
    _append_row(path, ["step", "loss", "lr", "images_per_s", "seconds"],
                [step, f"{loss:.6f}", f"{lr:.3e}", f"{rate:.1f}", f"{seconds:.0f}"])


def _log_start(path, step, precision, device):
    _append_row(path, ["date", "step", "device", "precision"],
                [time.strftime("%Y-%m-%d %H:%M"), step, device_name(device), precision])

