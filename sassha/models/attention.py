"""Multi-head self-attention written with explicit matmul and softmax.

Fused scaled-dot-product kernels (flash / memory-efficient) have no double backward, so
Hessian-vector products by ``create_graph=True`` would fail through them; this path always
works and is what every transformer in ``sassha.models`` uses.
"""

from __future__ import annotations

import math

import torch
from torch import nn


class SelfAttention(nn.Module):
    """``score_scale`` multiplies the usual ``1 / sqrt(head_dim)`` (GPT-2's
    ``scale_attn_by_inverse_layer_idx`` passes ``1 / (layer index + 1)``)."""

    def __init__(
        self,
        dim: int,
        heads: int,
        *,
        causal: bool = False,
        max_len: int = 0,
        bias: bool = True,
        score_scale: float = 1.0,
    ):
        super().__init__()
        if dim % heads != 0:
            raise ValueError(f"dim {dim} is not divisible by heads {heads}")
        self.heads = int(heads)
        self.head_dim = dim // heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=bias)
        self.proj = nn.Linear(dim, dim, bias=bias)
        self.scale = float(score_scale) / math.sqrt(self.head_dim)
        self.causal = causal
        if causal:
            mask = torch.tril(torch.ones(max_len, max_len, dtype=torch.bool))
            self.register_buffer("mask", mask.view(1, 1, max_len, max_len), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        scores = (q @ k.transpose(-2, -1)) * self.scale
        if self.causal:
            scores = scores.masked_fill(~self.mask[:, :, :t, :t], float("-inf"))
        attn = torch.softmax(scores, dim=-1)
        out = (attn @ v).transpose(1, 2).reshape(b, t, d)
        return self.proj(out)


class MLPBlock(nn.Module):
    def __init__(self, dim: int, hidden: int, dropout: float = 0.0, *, bias: bool = True):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden, bias=bias)
        self.fc2 = nn.Linear(hidden, dim, bias=bias)
        self.drop = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    def forward(self, x):
        return self.drop(self.fc2(nn.functional.gelu(self.fc1(x))))


class TransformerBlock(nn.Module):
    """Pre-LayerNorm block: x + attn(LN(x)), then x + MLP(LN(x)).

    ``bias=False`` drops the biases of every linear layer and LayerNorm (nanoGPT's GPT-2).
    """

    def __init__(
        self,
        dim,
        heads,
        mlp_dim,
        *,
        causal=False,
        max_len=0,
        dropout=0.0,
        bias=True,
        score_scale=1.0,
    ):
        super().__init__()
        self.ln1 = nn.LayerNorm(dim, bias=bias)
        self.attn = SelfAttention(
            dim, heads, causal=causal, max_len=max_len, bias=bias, score_scale=score_scale
        )
        self.ln2 = nn.LayerNorm(dim, bias=bias)
        self.mlp = MLPBlock(dim, mlp_dim, dropout, bias=bias)
        self.drop = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    def forward(self, x):
        x = x + self.drop(self.attn(self.ln1(x)))
        return x + self.mlp(self.ln2(x))
