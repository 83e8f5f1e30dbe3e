"""Write-the-code exercises of notebook 03 (the U-Net): the time embedding, the attribute embedding,
a residual Block's forward, self-attention's forward, and the space-to-depth patch stem.

The network exercises take a layer of `celebadiff.unet` with random weights and ask for its forward
pass written with the layer's own sub-layers, so the answer must equal the layer's output exactly.
Each `check_*` takes the student's function and returns True, False or None (`check_function`).
"""

import torch
import torch.nn.functional as F

from ..unet import Block, SelfAttention, timestep_embedding
from . import check_function


def _randomized(module, g):
    """module with every parameter drawn anew (a fresh Block's conv2 starts at zero: an identity)."""
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(0.3 * torch.randn(p.shape, generator=g))
    return module.eval()


def _pick(values, g):
    return values[int(torch.randint(0, len(values), (), generator=g))]


def _steps(g):
    dim = _pick((8, 16, 32), g)
    t = torch.randint(0, 1000, (5,), generator=g)
    return (t, dim), timestep_embedding(t, dim)


def check_timestep_embedding(fn, seed=None):
    """fn(t, dim) -> (B, dim): t (B,) long steps; cos(t f_k) in the first dim/2 columns, sin(t f_k) in
    the rest, f_k = 10000^(-k / (dim/2)) for k = 0 .. dim/2 - 1 (Vaswani et al. 2017)."""
    return check_function(fn, _steps, seed=seed, reference="celebadiff.unet.timestep_embedding", tolerance=1e-3, hint=(
        "half = dim // 2 frequencies, from 1 down towards 1/10000, geometrically spaced: k / half in the "
        "exponent, k = 0 .. half - 1; angles t[:, None] * freqs[None]; then the cosines, then the sines"))


def _attribute_table(g):
    A, E = int(torch.randint(3, 8, (), generator=g)), 6
    table = torch.nn.Embedding(3 * A, E)
    with torch.no_grad():
        table.weight.copy_(torch.randn(3 * A, E, generator=g))
    y = torch.randint(0, 3, (4, A), generator=g)
    return (table, y), table(y + 3 * torch.arange(A)).sum(1)


def check_embed_attributes(fn, seed=None):
    """fn(attr_emb, y) -> (B, E): the attribute part of the U-Net's conditioning vector.

    attr_emb: nn.Embedding with 3A rows, row 3a + s the vector of attribute a in state s (ABSENT 0,
    PRESENT 1, UNKNOWN 2); y: (B, A) long states. The A vectors of a row of y are summed.
    """
    return check_function(fn, _attribute_table, seed=seed, reference="UNet.embed's attribute term", hint=(
        "each (attribute, state) pair has its own row, so attribute a's states live in rows 3a, 3a + 1, "
        "3a + 2: offset y's column a by 3a before the lookup, then sum over the attributes"))


def _block(g):
    c_in, c_out, E = _pick((8, 16), g), _pick((8, 16), g), 12
    block = _randomized(Block(c_in, c_out, E), g)
    x, emb = torch.randn(2, c_in, 6, 6, generator=g), torch.randn(2, E, generator=g)
    with torch.no_grad():
        return (block, x, emb), block(x, emb)


def check_block_forward(fn, seed=None):
    """fn(block, x, emb) -> (B, C_out, H, W): a `celebadiff.unet.Block`'s forward from its sub-layers.

    h = conv1(SiLU(norm1(x))); scale, shift = the two halves of emb(emb) (one per channel);
    h = norm2(h) (1 + scale) + shift; out = conv2(SiLU(h)) + skip(x). block.dropout is off (eval).
    """
    return check_function(fn, _block, seed=seed, reference="celebadiff.unet.Block.forward", hint=(
        "block.emb(emb) is (B, 2 C_out): chunk it in two along dim 1 and give each half shape "
        "(B, C_out, 1, 1); the scale multiplies by (1 + scale) so that 0 leaves the normalized h as it is; "
        "the residual adds block.skip(x), not x (the channels may differ)"))


def _attention(g):
    C, heads = _pick((8, 16), g), _pick((2, 4), g)
    attn = _randomized(SelfAttention(C, heads), g)
    x = torch.randn(2, C, 4, 4, generator=g)
    with torch.no_grad():
        return (attn, x), attn(x)


def check_attention_forward(fn, seed=None):
    """fn(attn, x) -> (B, C, H, W): a `celebadiff.unet.SelfAttention`'s forward from its sub-layers.

    q, k, v = attn.qkv(attn.norm(x)), whose 3C channels are [q | k | v], each C split into attn.heads
    heads of C / heads channels; per head, softmax(q^T k / sqrt(d)) over the H W key positions weights
    v; the heads are put back side by side, then x + attn.out(...).
    """
    return check_function(fn, _attention, seed=seed, reference="celebadiff.unet.SelfAttention.forward", hint=(
        "reshape qkv to (B, 3, heads, d, H W) and unbind dim 1; the scores are (B, heads, HW, HW), scaled by "
        "1 / sqrt(d) with d the channels of one head; the softmax runs over the keys (the last dim); "
        "do not forget the residual x +"))


def _patches(g):
    p = _pick((2, 4), g)
    x = torch.randn(2, 3, 4 * p, 2 * p, generator=g)
    return (x, p), F.pixel_unshuffle(x, p)


def check_space_to_depth(fn, seed=None):
    """fn(x, p) -> (B, C p^2, H/p, W/p): each p x p patch of each channel stacked as p^2 channels,
    channel c i j at index c p^2 + i p + j (F.pixel_unshuffle; the 64 px model's stem, patch = 2)."""
    return check_function(fn, _patches, seed=seed, reference="F.pixel_unshuffle", hint=(
        "split H into (H/p, p) and W into (W/p, p) with one reshape to (B, C, H/p, p, W/p, p); a plain reshape "
        "to the output shape mixes rows, so permute the two within-patch dims next to C first"))
