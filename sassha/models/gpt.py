"""A GPT decoder (learned positions, pre-LN blocks, tied embeddings) for language modelling.

GPT1-mini is this model with 4 layers; GPT-2 small is nanoGPT's GPT-2 (12 layers, 12 heads, 768
wide, block 1024, no biases, vocabulary padded to 50304) with the authors'
``scale_attn_by_inverse_layer_idx``. Attention takes the explicit matmul/softmax path with a
causal mask (``sassha.models.attention``) so that double backward works: the fused flash kernel
has none.
"""

from __future__ import annotations

import torch
from torch import nn

from sassha.models.attention import TransformerBlock


class GPT(nn.Module):
    def __init__(
        self,
        vocab_size: int,
        *,
        block_size: int = 256,
        n_layer: int = 4,
        n_head: int = 12,
        n_embd: int = 768,
        dropout: float = 0.0,
        bias: bool = True,
        scale_attn_by_inverse_layer_idx: bool = False,
    ):
        super().__init__()
        self.block_size = int(block_size)
        self.tok = nn.Embedding(vocab_size, n_embd)
        self.pos = nn.Embedding(block_size, n_embd)
        self.drop = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.blocks = nn.ModuleList(
            TransformerBlock(
                n_embd,
                n_head,
                4 * n_embd,
                causal=True,
                max_len=block_size,
                dropout=dropout,
                bias=bias,
                # attention scores of layer i (from 0) divided by i + 1 on top of sqrt(head_dim)
                score_scale=1.0 / (i + 1) if scale_attn_by_inverse_layer_idx else 1.0,
            )
            for i in range(n_layer)
        )
        self.ln_f = nn.LayerNorm(n_embd, bias=bias)
        self.head = nn.Linear(n_embd, vocab_size, bias=False)
        self.head.weight = self.tok.weight
        self.apply(self._init)
        # Residual projections scaled by depth (GPT-2's initialisation).
        for block in self.blocks:
            for proj in (block.attn.proj, block.mlp.fc2):
                nn.init.normal_(proj.weight, std=0.02 / (2 * n_layer) ** 0.5)

    @staticmethod
    def _init(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, std=0.02)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        t = idx.shape[1]
        if t > self.block_size:
            raise ValueError(f"sequence length {t} exceeds block_size {self.block_size}")
        pos = torch.arange(t, device=idx.device)
        x = self.drop(self.tok(idx) + self.pos(pos))
        for block in self.blocks:
            x = block(x)
        return self.head(self.ln_f(x))


def gpt1_mini(vocab_size: int, **overrides) -> GPT:
    """GPT1-mini: GPT-1's width (768, 12 heads) with 4 layers instead of 12."""
    cfg = {"block_size": 256, "n_layer": 4, "n_head": 12, "n_embd": 768, "dropout": 0.0}
    cfg.update(overrides)
    return GPT(vocab_size, **cfg)


GPT2_VOCAB = 50257  # GPT-2's BPE vocabulary
GPT2_PADDED_VOCAB = 50304  # nanoGPT pads it to a multiple of 64


def gpt2_small(vocab_size: int = GPT2_PADDED_VOCAB, **overrides) -> GPT:
    """GPT-2 small (124M) as the authors' nanoGPT scripts build it; ``overrides`` shrink it."""
    cfg = {
        "block_size": 1024,
        "n_layer": 12,
        "n_head": 12,
        "n_embd": 768,
        "dropout": 0.0,
        "bias": False,
        "scale_attn_by_inverse_layer_idx": True,
    }
    cfg.update(overrides)
    return GPT(vocab_size, **cfg)
