"""The attribute-conditioned U-Net that predicts eps from (x_t, t, y).

    x_t (B, 3, H, W) --conv_in--> Down stages (Blocks, skip after each, stride-2 conv)
        --> middle (Block, optional self-attention, Block)
        --> Up stages (concat skip, Block; nearest upsample + conv) --norm, SiLU, conv--> eps_hat

Every Block receives one embedding vector per image, the sum of a sinusoidal timestep embedding
(Vaswani et al. 2017, as in Ho et al. 2020) and an attribute embedding, and applies it as a
scale and shift after its second GroupNorm (Dhariwal & Nichol 2021, "AdaGN").

Attributes are given as states, `y: (B, A) long` with ABSENT=0, PRESENT=1, UNKNOWN=2. Each
(attribute, state) pair has its own learned vector and the A vectors are summed, so a model
trained with attribute dropout (states randomly set to UNKNOWN) can be asked for any subset of
attributes and supports per-attribute classifier-free guidance (Ho & Salimans 2021).
The U-Net knows nothing of the noise schedule: t is only an index to embed.
"""

import math

import torch
import torch.nn.functional as F
from torch import nn

ABSENT, PRESENT, UNKNOWN = 0, 1, 2


def attribute_states(labels, known=None):
    """0/1 labels (B, A) float -> states (B, A) long; entries where `known` is False become UNKNOWN."""
    states = (labels > 0.5).long()
    if known is not None:
        states = torch.where(known, states, torch.full_like(states, UNKNOWN))
    return states


def timestep_embedding(t, dim, max_period=10_000):
    """Sinusoidal embedding of integer timesteps. t: (B,) -> (B, dim) float32."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device) / half)
    angles = t.float()[:, None] * freqs[None]
    return torch.cat([angles.cos(), angles.sin()], dim=1)


def norm(channels):
    return nn.GroupNorm(min(8, channels), channels)


class Block(nn.Module):
    """Residual block: GroupNorm, SiLU, conv, then GroupNorm scaled and shifted by the embedding."""

    def __init__(self, ch_in, ch_out, emb_dim, dropout=0.0):
        super().__init__()
        self.norm1, self.conv1 = norm(ch_in), nn.Conv2d(ch_in, ch_out, 3, padding=1)
        self.emb = nn.Linear(emb_dim, 2 * ch_out)
        self.norm2, self.conv2 = norm(ch_out), nn.Conv2d(ch_out, ch_out, 3, padding=1)
        self.dropout = nn.Dropout(dropout)
        self.skip = nn.Conv2d(ch_in, ch_out, 1) if ch_in != ch_out else nn.Identity()
        nn.init.zeros_(self.conv2.weight)  # starts as its skip path (the identity where ch_in == ch_out): stable
        nn.init.zeros_(self.conv2.bias)

    def forward(self, x, emb):  # x: (B, C_in, H, W), emb: (B, E)
        h = self.conv1(F.silu(self.norm1(x)))
        scale, shift = self.emb(emb)[:, :, None, None].chunk(2, dim=1)
        h = self.norm2(h) * (1 + scale) + shift
        h = self.conv2(self.dropout(F.silu(h)))
        return h + self.skip(x)


class SelfAttention(nn.Module):
    """Multi-head self-attention over the H*W positions, residual."""

    def __init__(self, channels, heads=4):
        super().__init__()
        self.heads, self.norm = heads, norm(channels)
        self.qkv, self.out = nn.Conv2d(channels, 3 * channels, 1), nn.Conv2d(channels, channels, 1)

    def forward(self, x):
        B, C, H, W = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(B, 3, self.heads, C // self.heads, H * W).unbind(1)
        h = F.scaled_dot_product_attention(q.transpose(-1, -2), k.transpose(-1, -2), v.transpose(-1, -2))
        return x + self.out(h.transpose(-1, -2).reshape(B, C, H, W))


class Down(nn.Module):
    """`n_blocks` Blocks (each output kept as a skip), then a stride-2 conv unless last."""

    def __init__(self, ch_in, ch_out, emb_dim, n_blocks, downsample, attention=False, dropout=0.0):
        super().__init__()
        chs = [ch_in] + [ch_out] * n_blocks
        self.blocks = nn.ModuleList(Block(a, b, emb_dim, dropout) for a, b in zip(chs, chs[1:]))
        self.attn = SelfAttention(ch_out) if attention else nn.Identity()
        self.down = nn.Conv2d(ch_out, ch_out, 3, stride=2, padding=1) if downsample else nn.Identity()

    def forward(self, x, emb, skips):
        for block in self.blocks:
            x = self.attn(block(x, emb))
            skips.append(x)
        return self.down(x)


class Up(nn.Module):
    """Nearest upsample + conv unless first, then `n_blocks` Blocks, each on [x, skip]."""

    def __init__(self, ch_in, ch_skip, ch_out, emb_dim, n_blocks, upsample, attention=False, dropout=0.0):
        super().__init__()
        self.up = nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"),
                                nn.Conv2d(ch_in, ch_in, 3, padding=1)) if upsample else nn.Identity()
        chs = [ch_in] + [ch_out] * n_blocks
        self.blocks = nn.ModuleList(Block(a + ch_skip, b, emb_dim, dropout) for a, b in zip(chs, chs[1:]))
        self.attn = SelfAttention(ch_out) if attention else nn.Identity()

    def forward(self, x, emb, skips):
        x = self.up(x)
        for block in self.blocks:
            x = self.attn(block(torch.cat([x, skips.pop()], dim=1), emb))
        return x


class UNet(nn.Module):
    """eps_hat = UNet(x_t, t, y).

    Args:
        channels: width of each resolution level, e.g. (32, 64, 128); len(channels) - 1 halvings.
        n_blocks: Blocks per level on each side.
        attention: one flag per level: self-attention after that level's Blocks (and in the middle
            if the last level has it).
        n_attributes: A, the length of y.
        patch: space-to-depth factor p of the stem: x_t (3, H, W) is rearranged to (3 p^2, H/p, W/p)
            before the first conv and the output back (pixel unshuffle / shuffle; Hoogeboom et al.
            2023, "simple diffusion"), so a 64 px model costs about what a 32 px one does.
    """

    def __init__(self, channels=(32, 64, 128), n_blocks=1, attention=(False, False, True), n_attributes=40,
                 dropout=0.0, patch=1):
        super().__init__()
        if len(attention) != len(channels):
            raise ValueError(f"attention needs one flag per level: {len(channels)} levels, "
                             f"got {len(attention)} flags")
        self.base, emb_dim, self.patch = channels[0], 4 * channels[0], patch
        self.time_mlp = nn.Sequential(nn.Linear(channels[0], emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        self.attr_emb = nn.Embedding(3 * n_attributes, emb_dim)  # row 3a + state
        nn.init.normal_(self.attr_emb.weight, std=0.02)
        self.register_buffer("attr_offset", 3 * torch.arange(n_attributes), persistent=False)
        self.conv_in = nn.Conv2d(3 * patch**2, channels[0], 3, padding=1)
        last = len(channels) - 1
        ins = (channels[0], *channels[:-1])
        self.downs = nn.ModuleList(Down(a, b, emb_dim, n_blocks, i < last, attention[i], dropout)
                                   for i, (a, b) in enumerate(zip(ins, channels)))
        mid = channels[-1]
        self.mid1, self.mid2 = Block(mid, mid, emb_dim, dropout), Block(mid, mid, emb_dim, dropout)
        self.mid_attn = SelfAttention(mid) if attention[-1] else nn.Identity()
        # Up stage i works at level j = last - i: input from the level below, skips and output at channels[j]
        self.ups = nn.ModuleList(
            Up(channels[min(j + 1, last)], channels[j], channels[j], emb_dim, n_blocks, j < last, attention[j], dropout)
            for j in reversed(range(len(channels))))
        self.norm_out, self.conv_out = norm(channels[0]), nn.Conv2d(channels[0], 3 * patch**2, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)

    def embed(self, t, y):
        """(B,) timesteps and (B, A) states -> (B, E) conditioning vector."""
        return self.time_mlp(timestep_embedding(t, self.base)) + self.attr_emb(y + self.attr_offset).sum(1)

    def forward(self, x_t, t, y):
        """x_t: (B, 3, H, W); t: (B,) long in [0, T); y: (B, A) long states -> eps_hat like x_t."""
        emb, skips = self.embed(t, y), []
        h = self.conv_in(F.pixel_unshuffle(x_t, self.patch))  # (B, 3 p^2, H/p, W/p)
        for down in self.downs:
            h = down(h, emb, skips)
        h = self.mid2(self.mid_attn(self.mid1(h, emb)), emb)
        for up in self.ups:
            h = up(h, emb, skips)
        return F.pixel_shuffle(self.conv_out(F.silu(self.norm_out(h))), self.patch)
