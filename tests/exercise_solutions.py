"""The notebooks' write-the-code exercises, solved and mis-solved.

For each exercise: the reference solution, as the notebook's collapsed solution cell holds it, and
plausible wrong answers, each named for its mistake. `EXERCISES` pairs them with their checks;
tests/test_exercises.py runs every check on all of them.
"""

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from celebadiff.data import crop_side
from celebadiff.exercises import (
    nb01_data,
    nb02_forward,
    nb03_unet,
    nb04_training,
    nb05_sampling,
    nb06_editing,
    nb07_editor,
    nb08_evaluation,
    nb09_photo,
)
from celebadiff.sampling import ddim_invert, ddim_sample, ddim_timesteps
from celebadiff.unet import ABSENT, PRESENT, UNKNOWN, attribute_states

# --- 01 · the data -------------------------------------------------------------------------------


def parse_attribute_row(line, names, wanted):
    fields = line.split()  # any run of spaces separates two columns
    sign = dict(zip(names, fields[1:]))
    return fields[0], torch.tensor([1.0 if sign[name] == "1" else 0.0 for name in wanted])


def parse_attribute_row_single_spaces(line, names, wanted):  # " 1" leaves an empty field before it
    fields = line.split(" ")
    sign = dict(zip(names, fields[1:]))
    return fields[0], torch.tensor([1.0 if sign[name] == "1" else 0.0 for name in wanted])


def parse_attribute_row_by_position(line, names, wanted):  # the first len(wanted) columns, not the wanted ones
    fields = line.split()
    return fields[0], torch.tensor([1.0 if v == "1" else 0.0 for v in fields[1:1 + len(wanted)]])


def parse_attribute_row_signs(line, names, wanted):  # keeps CelebA's -1
    fields = line.split()
    sign = dict(zip(names, fields[1:]))
    return fields[0], torch.tensor([float(sign[name]) for name in wanted])


def to_uint8_mine(x):
    return ((x + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)


def to_uint8_truncated(x):  # no rounding, no clamp: 127.9 becomes 127 and 256 wraps to 0
    return ((x + 1) * 127.5).to(torch.uint8)


def to_uint8_unclamped(x):
    return ((x + 1) * 127.5).round().to(torch.uint8)


def changed_region(before, after):
    return (before != after).any(-1)


def changed_region_all_channels(before, after):
    return (before != after).all(-1)


def changed_region_fraction(before, after):  # the share of exercise 3, not the mask
    return (before != after).any(-1).float().mean()


# --- 02 · the forward process --------------------------------------------------------------------


def alpha_bar_from_beta(beta):
    return torch.cumprod(1 - beta, dim=0)


def alpha_bar_cumsum(beta):  # 1 - sum of beta: the first-order approximation
    return 1 - torch.cumsum(beta, dim=0)


def alpha_bar_of_beta(beta):  # the product of the betas
    return torch.cumprod(beta, dim=0)


def alpha_bar_shifted(beta):  # one step late: step t left out
    return torch.cumprod(torch.cat([torch.ones(1, dtype=beta.dtype), 1 - beta[:-1]]), dim=0)


def q_sample_mine(schedule, x0, t, eps):
    alpha_bar = schedule.alpha_bar[t].reshape(-1, 1, 1, 1)
    return alpha_bar.sqrt() * x0 + (1 - alpha_bar).sqrt() * eps


def q_sample_alpha(schedule, x0, t, eps):  # alpha_t of one step in place of alpha_bar_t
    alpha = schedule.alpha[t].reshape(-1, 1, 1, 1)
    return alpha.sqrt() * x0 + (1 - alpha).sqrt() * eps


def q_sample_no_sqrt(schedule, x0, t, eps):  # variances where the scales belong
    alpha_bar = schedule.alpha_bar[t].reshape(-1, 1, 1, 1)
    return alpha_bar * x0 + (1 - alpha_bar) * eps


def predict_x0_mine(schedule, x_t, t, eps):
    alpha_bar = schedule.alpha_bar[t].reshape(-1, 1, 1, 1)
    return (x_t - (1 - alpha_bar).sqrt() * eps) / alpha_bar.sqrt()


def predict_x0_plus(schedule, x_t, t, eps):  # adds the noise instead of removing it
    alpha_bar = schedule.alpha_bar[t].reshape(-1, 1, 1, 1)
    return (x_t + (1 - alpha_bar).sqrt() * eps) / alpha_bar.sqrt()


def predict_x0_order(schedule, x_t, t, eps):  # divides first, then subtracts unscaled noise
    alpha_bar = schedule.alpha_bar[t].reshape(-1, 1, 1, 1)
    return x_t / alpha_bar.sqrt() - (1 - alpha_bar).sqrt() * eps


# --- 03 · the U-Net ------------------------------------------------------------------------------


def timestep_embedding_mine(t, dim):
    half = dim // 2
    freqs = 10_000 ** (-torch.arange(half) / half)
    angles = t.float()[:, None] * freqs[None]
    return torch.cat([angles.cos(), angles.sin()], dim=1)


def timestep_embedding_sin_first(t, dim):
    half = dim // 2
    angles = t.float()[:, None] * (10_000 ** (-torch.arange(half) / half))[None]
    return torch.cat([angles.sin(), angles.cos()], dim=1)


def timestep_embedding_over_dim(t, dim):  # k / dim in the exponent: frequencies fall only to 1/100
    half = dim // 2
    angles = t.float()[:, None] * (10_000 ** (-torch.arange(half) / dim))[None]
    return torch.cat([angles.cos(), angles.sin()], dim=1)


def embed_attributes(attr_emb, y):
    offset = 3 * torch.arange(y.shape[1])  # attribute a's three states are rows 3a, 3a + 1, 3a + 2
    return attr_emb(y + offset).sum(1)


def embed_attributes_shared(attr_emb, y):  # every attribute reads the same three rows
    return attr_emb(y).sum(1)


def embed_attributes_mean(attr_emb, y):
    return attr_emb(y + 3 * torch.arange(y.shape[1])).mean(1)


def block_forward(block, x, emb):
    h = block.conv1(F.silu(block.norm1(x)))
    scale, shift = block.emb(emb)[:, :, None, None].chunk(2, dim=1)
    h = block.norm2(h) * (1 + scale) + shift
    return block.conv2(block.dropout(F.silu(h))) + block.skip(x)


def block_forward_scale(block, x, emb):  # h * scale: a zero scale wipes h out
    h = block.conv1(F.silu(block.norm1(x)))
    scale, shift = block.emb(emb)[:, :, None, None].chunk(2, dim=1)
    return block.conv2(F.silu(block.norm2(h) * scale + shift)) + block.skip(x)


def block_forward_no_residual(block, x, emb):
    h = block.conv1(F.silu(block.norm1(x)))
    scale, shift = block.emb(emb)[:, :, None, None].chunk(2, dim=1)
    return block.conv2(F.silu(block.norm2(h) * (1 + scale) + shift))


def block_forward_norm_after(block, x, emb):  # conditions before the norm, which then undoes the shift
    h = block.conv1(F.silu(block.norm1(x)))
    scale, shift = block.emb(emb)[:, :, None, None].chunk(2, dim=1)
    return block.conv2(F.silu(block.norm2(h * (1 + scale) + shift))) + block.skip(x)


def attention_forward(attn, x):
    B, C, H, W = x.shape
    q, k, v = attn.qkv(attn.norm(x)).reshape(B, 3, attn.heads, C // attn.heads, H * W).unbind(1)
    scores = q.transpose(-1, -2) @ k / math.sqrt(C // attn.heads)  # (B, heads, HW queries, HW keys)
    h = scores.softmax(dim=-1) @ v.transpose(-1, -2)  # (B, heads, HW, d)
    return x + attn.out(h.transpose(-1, -2).reshape(B, C, H, W))


def attention_forward_unscaled(attn, x):
    B, C, H, W = x.shape
    q, k, v = attn.qkv(attn.norm(x)).reshape(B, 3, attn.heads, C // attn.heads, H * W).unbind(1)
    h = (q.transpose(-1, -2) @ k).softmax(dim=-1) @ v.transpose(-1, -2)
    return x + attn.out(h.transpose(-1, -2).reshape(B, C, H, W))


def attention_forward_query_softmax(attn, x):  # normalizes over the queries
    B, C, H, W = x.shape
    q, k, v = attn.qkv(attn.norm(x)).reshape(B, 3, attn.heads, C // attn.heads, H * W).unbind(1)
    scores = q.transpose(-1, -2) @ k / math.sqrt(C // attn.heads)
    h = scores.softmax(dim=-2) @ v.transpose(-1, -2)
    return x + attn.out(h.transpose(-1, -2).reshape(B, C, H, W))


def attention_forward_no_residual(attn, x):
    B, C, H, W = x.shape
    q, k, v = attn.qkv(attn.norm(x)).reshape(B, 3, attn.heads, C // attn.heads, H * W).unbind(1)
    h = (q.transpose(-1, -2) @ k / math.sqrt(C // attn.heads)).softmax(dim=-1) @ v.transpose(-1, -2)
    return attn.out(h.transpose(-1, -2).reshape(B, C, H, W))


def space_to_depth(x, p):
    B, C, H, W = x.shape
    x = x.reshape(B, C, H // p, p, W // p, p)  # (B, C, rows, i, cols, j)
    return x.permute(0, 1, 3, 5, 2, 4).reshape(B, C * p * p, H // p, W // p)


def space_to_depth_reshape(x, p):  # one reshape: rows of the image become channels
    B, C, H, W = x.shape
    return x.reshape(B, C * p * p, H // p, W // p)


def space_to_depth_patch_major(x, p):  # channel index i p C + j C + c instead of c p^2 + i p + j
    B, C, H, W = x.shape
    x = x.reshape(B, C, H // p, p, W // p, p)
    return x.permute(0, 3, 5, 1, 2, 4).reshape(B, C * p * p, H // p, W // p)


# --- 04 · training -------------------------------------------------------------------------------


def training_loss(model, schedule, x0, y, generator):
    t = torch.randint(0, schedule.T, (x0.shape[0],), generator=generator)
    eps = torch.randn(x0.shape, generator=generator)
    alpha_bar = schedule.at("alpha_bar", t, x0)
    x_t = alpha_bar.sqrt() * x0 + (1 - alpha_bar).sqrt() * eps
    return (model(x_t, t, y) - eps).pow(2).mean()


def training_loss_x0_target(model, schedule, x0, y, generator):  # regresses the clean image
    t = torch.randint(0, schedule.T, (x0.shape[0],), generator=generator)
    eps = torch.randn(x0.shape, generator=generator)
    alpha_bar = schedule.at("alpha_bar", t, x0)
    return (model(alpha_bar.sqrt() * x0 + (1 - alpha_bar).sqrt() * eps, t, y) - x0).pow(2).mean()


def training_loss_eps_first(model, schedule, x0, y, generator):  # draws in the other order
    eps = torch.randn(x0.shape, generator=generator)
    t = torch.randint(0, schedule.T, (x0.shape[0],), generator=generator)
    alpha_bar = schedule.at("alpha_bar", t, x0)
    return (model(alpha_bar.sqrt() * x0 + (1 - alpha_bar).sqrt() * eps, t, y) - eps).pow(2).mean()


def training_loss_clean_input(model, schedule, x0, y, generator):  # the network sees x0
    t = torch.randint(0, schedule.T, (x0.shape[0],), generator=generator)
    eps = torch.randn(x0.shape, generator=generator)
    return (model(x0, t, y) - eps).pow(2).mean()


def min_snr_weight(schedule, t, gamma):
    snr = schedule.snr[t]
    return snr.clamp(max=gamma) / snr


def min_snr_weight_clamped(schedule, t, gamma):  # min(SNR, gamma) without the division
    return schedule.snr[t].clamp(max=gamma)


def min_snr_weight_ratio(schedule, t, gamma):  # gamma / SNR everywhere: above 1 at low SNR
    return gamma / schedule.snr[t]


def drop_attributes_mine(labels, p_drop, p_uncond, generator):
    B, A = labels.shape
    known = torch.rand((B, A), generator=generator) >= p_drop
    known &= torch.rand((B, 1), generator=generator) >= p_uncond
    return attribute_states(labels, known)


def drop_attributes_absent(labels, p_drop, p_uncond, generator):  # dropped becomes ABSENT, not UNKNOWN
    B, A = labels.shape
    known = torch.rand((B, A), generator=generator) >= p_drop
    known &= torch.rand((B, 1), generator=generator) >= p_uncond
    return torch.where(known, labels.long(), ABSENT)


def drop_attributes_per_attribute(labels, p_drop, p_uncond, generator):  # p_uncond per entry, not per row
    B, A = labels.shape
    known = torch.rand((B, A), generator=generator) >= p_drop
    known &= torch.rand((B, A), generator=generator) >= p_uncond
    return attribute_states(labels, known)


def v_target(schedule, x0, t, eps):
    alpha_bar = schedule.at("alpha_bar", t, x0)
    return alpha_bar.sqrt() * eps - (1 - alpha_bar).sqrt() * x0


def v_target_sign(schedule, x0, t, eps):  # the minus on the wrong term
    alpha_bar = schedule.at("alpha_bar", t, x0)
    return (1 - alpha_bar).sqrt() * x0 - alpha_bar.sqrt() * eps


def v_target_swapped(schedule, x0, t, eps):  # the two scales swapped
    alpha_bar = schedule.at("alpha_bar", t, x0)
    return (1 - alpha_bar).sqrt() * eps - alpha_bar.sqrt() * x0


def hinge(err, err_flip, has_known, margin):
    terms = ((1 + margin) * err - err_flip).clamp(min=0)
    return (terms * has_known).sum() / has_known.sum().clamp(min=1)


def hinge_all_rows(err, err_flip, has_known, margin):
    return ((1 + margin) * err - err_flip).clamp(min=0).mean()


def hinge_additive(err, err_flip, has_known, margin):  # a fixed gap, not a ratio
    terms = (err + margin - err_flip).clamp(min=0)
    return (terms * has_known).sum() / has_known.sum().clamp(min=1)


# --- 05 · sampling -------------------------------------------------------------------------------


def posterior(schedule, x0, x_t, t):
    beta, alpha = schedule.at("beta", t, x0), schedule.at("alpha", t, x0)
    ab, ab_prev = schedule.at("alpha_bar", t, x0), schedule.at("alpha_bar_prev", t, x0)
    mean = ab_prev.sqrt() * beta / (1 - ab) * x0 + alpha.sqrt() * (1 - ab_prev) / (1 - ab) * x_t
    return mean, (1 - ab_prev) / (1 - ab) * beta


def posterior_same_step(schedule, x0, x_t, t):  # alpha_bar_t where alpha_bar_{t-1} belongs
    beta, alpha, ab = schedule.at("beta", t, x0), schedule.at("alpha", t, x0), schedule.at("alpha_bar", t, x0)
    mean = ab.sqrt() * beta / (1 - ab) * x0 + alpha.sqrt() * (1 - ab) / (1 - ab) * x_t
    return mean, beta


def posterior_beta_variance(schedule, x0, x_t, t):  # the mean right, the forward variance beta_t
    mean, _ = posterior(schedule, x0, x_t, t)
    return mean, schedule.at("beta", t, x0)


def reverse_mean(schedule, x_t, t, eps_hat):
    beta, alpha, ab = (schedule.at(name, t, x_t) for name in ("beta", "alpha", "alpha_bar"))
    return (x_t - beta / (1 - ab).sqrt() * eps_hat) / alpha.sqrt()


def reverse_mean_alpha_bar(schedule, x_t, t, eps_hat):  # divides by sqrt(alpha_bar_t)
    beta, ab = schedule.at("beta", t, x_t), schedule.at("alpha_bar", t, x_t)
    return (x_t - beta / (1 - ab).sqrt() * eps_hat) / ab.sqrt()


def reverse_mean_no_sqrt(schedule, x_t, t, eps_hat):
    beta, alpha, ab = (schedule.at(name, t, x_t) for name in ("beta", "alpha", "alpha_bar"))
    return (x_t - beta / (1 - ab) * eps_hat) / alpha.sqrt()


def ddim_step_mine(schedule, x_t, eps_hat, t, s, eta, z):
    ab_t = schedule.alpha_bar[t]
    ab_s = schedule.alpha_bar[s] if s >= 0 else torch.tensor(1.0, dtype=torch.float64)
    x0_hat = (x_t - (1 - ab_t).sqrt() * eps_hat) / ab_t.sqrt()
    sigma = eta * ((1 - ab_s) / (1 - ab_t) * (1 - ab_t / ab_s)).sqrt()
    return ab_s.sqrt() * x0_hat + (1 - ab_s - sigma**2).sqrt() * eps_hat + sigma * z


def ddim_step_last_index(schedule, x_t, eps_hat, t, s, eta, z):  # alpha_bar[-1] for the clean image
    ab_t, ab_s = schedule.alpha_bar[t], schedule.alpha_bar[s]
    x0_hat = (x_t - (1 - ab_t).sqrt() * eps_hat) / ab_t.sqrt()
    sigma = eta * ((1 - ab_s) / (1 - ab_t) * (1 - ab_t / ab_s)).sqrt()
    return ab_s.sqrt() * x0_hat + (1 - ab_s - sigma**2).sqrt() * eps_hat + sigma * z


def ddim_step_noise_twice(schedule, x_t, eps_hat, t, s, eta, z):  # sigma not taken from the eps_hat term
    ab_t = schedule.alpha_bar[t]
    ab_s = schedule.alpha_bar[s] if s >= 0 else torch.tensor(1.0, dtype=torch.float64)
    x0_hat = (x_t - (1 - ab_t).sqrt() * eps_hat) / ab_t.sqrt()
    sigma = eta * ((1 - ab_s) / (1 - ab_t) * (1 - ab_t / ab_s)).sqrt()
    return ab_s.sqrt() * x0_hat + (1 - ab_s).sqrt() * eps_hat + sigma * z


def guidance(model, x_t, t, y, w):
    eps_cond, eps_uncond = model(x_t, t, y), model(x_t, t, torch.full_like(y, UNKNOWN))
    return eps_cond + w * (eps_cond - eps_uncond)


def guidance_absent(model, x_t, t, y, w):  # "no attributes" as all ABSENT: a condition, not none
    eps_cond, eps_uncond = model(x_t, t, y), model(x_t, t, torch.full_like(y, ABSENT))
    return eps_cond + w * (eps_cond - eps_uncond)


def guidance_backwards(model, x_t, t, y, w):  # steps towards the unconditional prediction
    eps_cond, eps_uncond = model(x_t, t, y), model(x_t, t, torch.full_like(y, UNKNOWN))
    return eps_cond + w * (eps_uncond - eps_cond)


# --- 06 · editing --------------------------------------------------------------------------------


def inversion_step(schedule, x_s, eps_hat, s, t):
    ab_s = schedule.alpha_bar[s] if s >= 0 else torch.tensor(1.0, dtype=torch.float64)
    ab_t = schedule.alpha_bar[t]
    x0_hat = (x_s - (1 - ab_s).sqrt() * eps_hat) / ab_s.sqrt()
    return ab_t.sqrt() * x0_hat + (1 - ab_t).sqrt() * eps_hat


def inversion_step_target_alpha(schedule, x_s, eps_hat, s, t):  # x0_hat with the step it goes to
    ab_t = schedule.alpha_bar[t]
    x0_hat = (x_s - (1 - ab_t).sqrt() * eps_hat) / ab_t.sqrt()
    return ab_t.sqrt() * x0_hat + (1 - ab_t).sqrt() * eps_hat


def inversion_step_last_index(schedule, x_s, eps_hat, s, t):  # alpha_bar[-1] for the clean image
    ab_s, ab_t = schedule.alpha_bar[s], schedule.alpha_bar[t]
    x0_hat = (x_s - (1 - ab_s).sqrt() * eps_hat) / ab_s.sqrt()
    return ab_t.sqrt() * x0_hat + (1 - ab_t).sqrt() * eps_hat


def ddib(model, schedule, x0, y_source, y_target, steps):
    x_T = ddim_invert(model, schedule, x0, y_source, steps=steps)  # under the face's own attributes
    return ddim_sample(model, schedule, x_T, y_target, steps=steps)


def ddib_invert_under_target(model, schedule, x0, y_source, y_target, steps):
    x_T = ddim_invert(model, schedule, x0, y_target, steps=steps)
    return ddim_sample(model, schedule, x_T, y_target, steps=steps)


def ddib_reconstruction(model, schedule, x0, y_source, y_target, steps):  # never told the target
    return ddim_sample(model, schedule, ddim_invert(model, schedule, x0, y_source, steps=steps), y_source, steps=steps)


def edit_eps(model, x_t, t, y_source, y_target, strength):
    eps_source = model(x_t, t, y_source)
    return eps_source + strength * (model(x_t, t, y_target) - eps_source)


def edit_eps_scaled_target(model, x_t, t, y_source, y_target, strength):  # s eps(y'): no base
    return strength * model(x_t, t, y_target)


def edit_eps_added(model, x_t, t, y_source, y_target, strength):  # adds the target's whole prediction
    return model(x_t, t, y_source) + strength * model(x_t, t, y_target)


def diffedit_mask(eps_edit, eps_source, threshold):
    D = (eps_edit - eps_source).abs().mean(dim=(0, 2)).unsqueeze(1)  # (B, 1, H, W)
    peak = D.amax(dim=(1, 2, 3), keepdim=True)  # one peak per face
    return (D / peak > threshold).float()


def diffedit_mask_batch_peak(eps_edit, eps_source, threshold):  # one peak for the whole batch
    D = (eps_edit - eps_source).abs().mean(dim=(0, 2)).unsqueeze(1)
    return (D / D.max() > threshold).float()


def diffedit_mask_signed(eps_edit, eps_source, threshold):  # signed differences cancel over draws
    D = (eps_edit - eps_source).mean(dim=(0, 2)).unsqueeze(1)
    return (D / D.amax(dim=(1, 2, 3), keepdim=True) > threshold).float()


def masked_blend(x, x_inv, mask):
    return mask * x + (1 - mask) * x_inv


def masked_blend_swapped(x, x_inv, mask):
    return mask * x_inv + (1 - mask) * x


def masked_blend_hard(x, x_inv, mask):  # a hard threshold of a soft mask
    return torch.where(mask > 0.5, x, x_inv)


def sdedit_start(schedule, x0, t0_fraction, steps, eps):
    below = [t for t in ddim_timesteps(schedule.T, steps) if t <= t0_fraction * schedule.T]
    t_start = below[-1] if below else 0
    alpha_bar = schedule.alpha_bar[t_start]
    return t_start, alpha_bar.sqrt() * x0 + (1 - alpha_bar).sqrt() * eps


def sdedit_start_off_grid(schedule, x0, t0_fraction, steps, eps):  # t0 rounded, not on DDIM's grid
    t_start = int(t0_fraction * schedule.T)
    alpha_bar = schedule.alpha_bar[t_start]
    return t_start, alpha_bar.sqrt() * x0 + (1 - alpha_bar).sqrt() * eps


def sdedit_start_above(schedule, x0, t0_fraction, steps, eps):  # the grid step just above t0
    t_start = next(t for t in ddim_timesteps(schedule.T, steps) + [schedule.T - 1] if t >= t0_fraction * schedule.T)
    alpha_bar = schedule.alpha_bar[t_start]
    return t_start, alpha_bar.sqrt() * x0 + (1 - alpha_bar).sqrt() * eps


def region_eps(model, x_t, t, y, targets, strengths, masks):
    eps = base = model(x_t, t, y)
    for y_k, s_k, m_k in zip(targets, strengths, masks):
        eps = eps + s_k * m_k * (model(x_t, t, y_k) - base)
    return eps


def region_eps_unmasked(model, x_t, t, y, targets, strengths, masks):  # every change everywhere
    base = model(x_t, t, y)
    return base + sum(s_k * (model(x_t, t, y_k) - base) for y_k, s_k in zip(targets, strengths))


def region_eps_union(model, x_t, t, y, targets, strengths, masks):  # every change in the union of the regions
    base, union = model(x_t, t, y), torch.stack(masks).amax(0)
    return base + sum(s_k * union * (model(x_t, t, y_k) - base) for y_k, s_k in zip(targets, strengths))


# --- 07 · the interactive editor -----------------------------------------------------------------


def slider_eps(model, x_t, t, y, strengths):
    base = model(x_t, t, y)
    eps = base
    for a in range(y.shape[1]):
        s = strengths[:, a].reshape(-1, 1, 1, 1)
        y_a = y.clone()
        y_a[:, a] = torch.where(strengths[:, a] > 0, PRESENT, ABSENT)
        eps = eps + s.abs() * (model(x_t, t, y_a) - base)
    return eps


def slider_eps_signed(model, x_t, t, y, strengths):  # signed weight, always towards PRESENT
    base = model(x_t, t, y)
    eps = base
    for a in range(y.shape[1]):
        y_a = y.clone()
        y_a[:, a] = PRESENT
        eps = eps + strengths[:, a].reshape(-1, 1, 1, 1) * (model(x_t, t, y_a) - base)
    return eps


def slider_eps_all_at_once(model, x_t, t, y, strengths):  # one joint target: one weight for all
    y_all = torch.where(strengths > 0, PRESENT, torch.where(strengths < 0, ABSENT, y))
    base = model(x_t, t, y)
    return base + strengths.abs().amax(1).reshape(-1, 1, 1, 1) * (model(x_t, t, y_all) - base)


def acting_sliders(y, strengths):
    return ((strengths > 0) & (y != PRESENT)) | ((strengths < 0) & (y != ABSENT))


def acting_sliders_nonzero(y, strengths):  # every moved slider
    return strengths != 0


def acting_sliders_opposite(y, strengths):  # only where y holds the opposite: UNKNOWN forgotten
    return ((strengths > 0) & (y == ABSENT)) | ((strengths < 0) & (y == PRESENT))


def difference_map(source, edited, gain):
    return ((edited - source).abs().mean(0) / 2 * gain).clamp(max=1)


def difference_map_unhalved(source, edited, gain):  # as if the range were [0, 1]
    return ((edited - source).abs().mean(0) * gain).clamp(max=1)


def difference_map_max_channel(source, edited, gain):
    return ((edited - source).abs().amax(0) / 2 * gain).clamp(max=1)


# --- 08 · evaluation -----------------------------------------------------------------------------


def psnr_mine(a, b):
    mse = (a - b).square().mean(dim=(1, 2, 3))
    return (10 * torch.log10(4 / mse)).clamp(max=100)


def psnr_unit_range(a, b):  # the peak of [0, 1] images
    return (10 * torch.log10(1 / (a - b).square().mean(dim=(1, 2, 3)))).clamp(max=100)


def psnr_batch_mse(a, b):  # one MSE for the batch
    return (10 * torch.log10(4 / (a - b).square().mean())).clamp(max=100).expand(len(a))


def psnr_uncapped(a, b):
    return 10 * torch.log10(4 / (a - b).square().mean(dim=(1, 2, 3)))


def edit_rates(probs, attribute, value, labels, keep):
    read = probs > 0.5
    rows = torch.arange(len(probs))
    success = (read[rows, attribute] == value.bool()).double()
    preservation = ((read == labels.bool()) & keep).double().sum(1) / keep.double().sum(1)
    return success, preservation


def edit_rates_all_attributes(probs, attribute, value, labels, keep):  # the edited attribute counted too
    read = probs > 0.5
    success = (read[torch.arange(len(probs)), attribute] == value.bool()).double()
    return success, (read == labels.bool()).double().mean(1)


def edit_rates_source_value(probs, attribute, value, labels, keep):  # success against the source's value
    read, rows = probs > 0.5, torch.arange(len(probs))
    success = (read[rows, attribute] == labels[rows, attribute].bool()).double()
    return success, ((read == labels.bool()) & keep).double().sum(1) / keep.double().sum(1)


def frechet(a, b):
    cov_a, cov_b = torch.cov(a.T), torch.cov(b.T)
    trace_root = torch.linalg.eigvals(cov_a @ cov_b).real.clamp(min=0).sqrt().sum()
    return float((a.mean(0) - b.mean(0)).square().sum() + cov_a.trace() + cov_b.trace() - 2 * trace_root)


def frechet_elementwise_root(a, b):  # right only for diagonal covariances
    cov_a, cov_b = torch.cov(a.T), torch.cov(b.T)
    root = (cov_a * cov_b).abs().sqrt()
    return float((a.mean(0) - b.mean(0)).square().sum() + (cov_a + cov_b - 2 * root).trace())


def frechet_means_only(a, b):
    return float((a.mean(0) - b.mean(0)).square().sum())


def mmd2(x, y):
    m, F = x.shape
    k = lambda u, v: (u @ v.T / F + 1) ** 3  # noqa: E731
    k_xx, k_yy = k(x, x), k(y, y)
    within = (k_xx.sum() - k_xx.diagonal().sum() + k_yy.sum() - k_yy.diagonal().sum()) / (m * (m - 1))
    return float(within - 2 * k(x, y).mean())


def mmd2_biased(x, y):  # keeps k(x_i, x_i): always above the unbiased estimate
    F = x.shape[1]
    k = lambda u, v: (u @ v.T / F + 1) ** 3  # noqa: E731
    return float(k(x, x).mean() + k(y, y).mean() - 2 * k(x, y).mean())


# --- 09 · your own photo -------------------------------------------------------------------------


def similarity(src, dst):
    p, q = src.double(), dst.double()
    mu_p, mu_q = p.mean(0), q.mean(0)
    U, D, Vh = torch.linalg.svd((q - mu_q).T @ (p - mu_p) / len(p))
    E = torch.diag(torch.tensor([1.0, torch.linalg.det(U @ Vh).sign().item()], dtype=torch.float64))
    R = U @ E @ Vh
    s = (D * E.diagonal()).sum() / (p - mu_p).square().sum(1).mean()
    T = torch.eye(3, dtype=torch.float64)
    T[:2, :2], T[:2, 2] = s * R, mu_q - s * R @ mu_p
    return T


def similarity_reflecting(src, dst):  # no determinant correction: a mirrored face stays mirrored
    p, q = src.double(), dst.double()
    mu_p, mu_q = p.mean(0), q.mean(0)
    U, D, Vh = torch.linalg.svd((q - mu_q).T @ (p - mu_p) / len(p))
    s = D.sum() / (p - mu_p).square().sum(1).mean()
    T = torch.eye(3, dtype=torch.float64)
    T[:2, :2], T[:2, 2] = s * U @ Vh, mu_q - s * U @ Vh @ mu_p
    return T


def similarity_affine(src, dst):  # least squares over all affine maps: shears the face
    A = torch.cat([src.double(), torch.ones(len(src), 1, dtype=torch.float64)], 1)
    T = torch.eye(3, dtype=torch.float64)
    T[:2] = torch.linalg.lstsq(A, dst.double()).solution.T
    return T


def frame_matrix(height, width, size, crop):
    side = crop_side(height, width, crop)
    left, top, k = (width - side) / 2, (height - side) / 2, size / side
    return torch.tensor([[k, 0, -k * left], [0, k, -k * top], [0, 0, 1]], dtype=torch.float64)


def frame_matrix_rounded(height, width, size, crop):  # the corner rounded to a whole pixel
    side = crop_side(height, width, crop)
    left, top, k = round((width - side) / 2), round((height - side) / 2), size / side
    return torch.tensor([[k, 0, -k * left], [0, k, -k * top], [0, 0, 1]], dtype=torch.float64)


def frame_matrix_unscaled_crop(height, width, size, crop):  # 140 px whatever the image's scale
    side = min(crop, height, width)
    left, top, k = (width - side) / 2, (height - side) / 2, size / side
    return torch.tensor([[k, 0, -k * left], [0, k, -k * top], [0, 0, 1]], dtype=torch.float64)


def paste(photo, source, edit, weight):
    out = photo.double() + weight * (edit - source) * 255 / 2
    return out.round().clamp(0, 255).to(torch.uint8)


def paste_edit_pixels(photo, source, edit, weight):  # blends in the edit itself: the model's blur too
    edit_pixels = ((edit + 1) * 127.5).round().clamp(0, 255)
    return (weight * edit_pixels + (1 - weight) * photo.double()).round().to(torch.uint8)


def paste_wrapping(photo, source, edit, weight):  # no clamp: 256 wraps to 0
    return (photo.double() + weight * (edit - source) * 255 / 2).round().to(torch.uint8)


# --- the table -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Exercise:
    """One write-the-code exercise: its notebook, its check, the reference solution, wrong answers."""

    notebook: str
    check: object
    solution: object
    wrong: tuple


EXERCISES = [
    Exercise("01", nb01_data.check_parse_attribute_row, parse_attribute_row,
             (parse_attribute_row_single_spaces, parse_attribute_row_by_position, parse_attribute_row_signs)),
    Exercise("01", nb01_data.check_to_uint8, to_uint8_mine, (to_uint8_truncated, to_uint8_unclamped)),
    Exercise("01", nb01_data.check_changed_region, changed_region, (changed_region_all_channels,
                                                                   changed_region_fraction)),
    Exercise("02", nb02_forward.check_alpha_bar, alpha_bar_from_beta, (alpha_bar_cumsum, alpha_bar_of_beta,
                                                                      alpha_bar_shifted)),
    Exercise("02", nb02_forward.check_q_sample, q_sample_mine, (q_sample_alpha, q_sample_no_sqrt)),
    Exercise("02", nb02_forward.check_predict_x0, predict_x0_mine, (predict_x0_plus, predict_x0_order)),
    Exercise("03", nb03_unet.check_timestep_embedding, timestep_embedding_mine, (timestep_embedding_sin_first,
                                                                                 timestep_embedding_over_dim)),
    Exercise("03", nb03_unet.check_embed_attributes, embed_attributes, (embed_attributes_shared,
                                                                        embed_attributes_mean)),
    Exercise("03", nb03_unet.check_block_forward, block_forward, (block_forward_scale, block_forward_no_residual,
                                                                  block_forward_norm_after)),
    Exercise("03", nb03_unet.check_attention_forward, attention_forward, (
        attention_forward_unscaled, attention_forward_query_softmax, attention_forward_no_residual)),
    Exercise("03", nb03_unet.check_space_to_depth, space_to_depth, (space_to_depth_reshape,
                                                                    space_to_depth_patch_major)),
    Exercise("04", nb04_training.check_training_loss, training_loss, (
        training_loss_x0_target, training_loss_eps_first, training_loss_clean_input)),
    Exercise("04", nb04_training.check_min_snr_weight, min_snr_weight, (min_snr_weight_clamped,
                                                                        min_snr_weight_ratio)),
    Exercise("04", nb04_training.check_drop_attributes, drop_attributes_mine, (drop_attributes_absent,
                                                                          drop_attributes_per_attribute)),
    Exercise("04", nb04_training.check_v_target, v_target, (v_target_sign, v_target_swapped)),
    Exercise("04", nb04_training.check_contrastive_hinge, hinge, (hinge_all_rows, hinge_additive)),
    Exercise("05", nb05_sampling.check_posterior, posterior, (posterior_same_step, posterior_beta_variance)),
    Exercise("05", nb05_sampling.check_reverse_mean, reverse_mean, (reverse_mean_alpha_bar, reverse_mean_no_sqrt)),
    Exercise("05", nb05_sampling.check_ddim_step, ddim_step_mine, (ddim_step_last_index, ddim_step_noise_twice)),
    Exercise("05", nb05_sampling.check_guidance, guidance, (guidance_absent, guidance_backwards)),
    Exercise("06", nb06_editing.check_inversion_step, inversion_step, (inversion_step_target_alpha,
                                                                       inversion_step_last_index)),
    Exercise("06", nb06_editing.check_ddib, ddib, (ddib_invert_under_target, ddib_reconstruction)),
    Exercise("06", nb06_editing.check_edit_eps, edit_eps, (edit_eps_scaled_target, edit_eps_added)),
    Exercise("06", nb06_editing.check_diffedit_mask, diffedit_mask, (diffedit_mask_batch_peak,
                                                                     diffedit_mask_signed)),
    Exercise("06", nb06_editing.check_masked_blend, masked_blend, (masked_blend_swapped, masked_blend_hard)),
    Exercise("06", nb06_editing.check_sdedit_start, sdedit_start, (sdedit_start_off_grid, sdedit_start_above)),
    Exercise("06", nb06_editing.check_region_eps, region_eps, (region_eps_unmasked, region_eps_union)),
    Exercise("07", nb07_editor.check_slider_eps, slider_eps, (slider_eps_signed, slider_eps_all_at_once)),
    Exercise("07", nb07_editor.check_acting_sliders, acting_sliders, (acting_sliders_nonzero,
                                                                      acting_sliders_opposite)),
    Exercise("07", nb07_editor.check_difference_map, difference_map, (difference_map_unhalved,
                                                                      difference_map_max_channel)),
    Exercise("08", nb08_evaluation.check_psnr, psnr_mine, (psnr_unit_range, psnr_batch_mse, psnr_uncapped)),
    Exercise("08", nb08_evaluation.check_edit_rates, edit_rates, (edit_rates_all_attributes,
                                                                  edit_rates_source_value)),
    Exercise("08", nb08_evaluation.check_frechet_distance, frechet, (frechet_elementwise_root, frechet_means_only)),
    Exercise("08", nb08_evaluation.check_mmd2, mmd2, (mmd2_biased,)),
    Exercise("09", nb09_photo.check_similarity_transform, similarity, (similarity_reflecting, similarity_affine)),
    Exercise("09", nb09_photo.check_frame_transform, frame_matrix, (frame_matrix_rounded,
                                                                    frame_matrix_unscaled_crop)),
    Exercise("09", nb09_photo.check_paste, paste, (paste_edit_pixels, paste_wrapping)),
]
