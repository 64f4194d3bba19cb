"""GPT-2 small as nanoGPT builds it, and nanoGPT's train.bin/val.bin memmap loader."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sassha.data.openwebtext import TokenWindows, write_tokens
from sassha.models.gpt import gpt2_small
from sassha.workloads import DataRootError, get_workload

TINY = {"n_layer": 2, "n_head": 2, "n_embd": 16, "block_size": 8, "vocab_size": 64}


def test_gpt2_small_has_nanogpts_shape_and_parameter_count():
    with torch.device("meta"):
        model = gpt2_small()
    n = sum(p.numel() for p in model.parameters())
    # nanoGPT reports 123.59M for GPT-2 small with bias=False and vocabulary 50304 (it leaves
    # the position embeddings out of its count)
    assert n - model.pos.weight.numel() == 123_587_328
    assert model.tok.weight.shape == (50304, 768) and model.head.weight is model.tok.weight
    assert len(model.blocks) == 12 and model.block_size == 1024
    assert all(m.bias is None for m in model.modules() if isinstance(m, torch.nn.Linear))
    assert all(m.bias is None for m in model.modules() if isinstance(m, torch.nn.LayerNorm))
    # scale_attn_by_inverse_layer_idx: layer i's scores are divided by i + 1 as well
    head_dim = 64
    scales = [b.attn.scale * head_dim**0.5 for b in model.blocks]
    assert scales == pytest.approx([1 / (i + 1) for i in range(12)])


def test_inverse_layer_scaling_changes_the_output_and_double_backward_works():
    torch.manual_seed(0)
    a = gpt2_small(**TINY)
    torch.manual_seed(0)
    b = gpt2_small(**TINY, scale_attn_by_inverse_layer_idx=False)
    x = torch.randint(0, 64, (2, 8))
    assert not torch.allclose(a(x), b(x))
    loss = torch.nn.functional.cross_entropy(a(x).reshape(-1, 64), x.roll(-1, 1).reshape(-1))
    params = [p for p in a.parameters()]
    grads = torch.autograd.grad(loss, params, create_graph=True)
    hv = torch.autograd.grad(grads, params, grad_outputs=[torch.ones_like(p) for p in params])
    assert all(torch.isfinite(h).all() for h in hv)
    assert any(float(h.abs().sum()) > 0 for h in hv[1:])


def write_owt(root, n_train=500, n_val=120, seed=0):
    rng = np.random.default_rng(seed)
    train = rng.integers(0, 50257, n_train)
    write_tokens(str(root / "train.bin"), train)
    write_tokens(str(root / "val.bin"), rng.integers(0, 50257, n_val))
    return train


def test_memmap_windows_read_nanogpts_format(tmp_path):
    train = write_owt(tmp_path)
    # the on-disk format is a headerless uint16 array, as nanoGPT's prepare.py writes it
    assert (tmp_path / "train.bin").stat().st_size == 2 * 500
    assert np.array_equal(np.fromfile(tmp_path / "train.bin", dtype=np.uint16), train)
    wl = get_workload("openwebtext_gpt2_small")
    cfg = {"data_root": str(tmp_path), "model": {"block_size": 16}}
    tr, va = wl.build_data(cfg)
    assert isinstance(tr, TokenWindows) and tr.sample_with_replacement
    assert len(tr) == 500 - 16 and len(va) == 120 - 16
    x, y = tr[37]
    assert x.dtype == torch.int64 and x.shape == (16,)
    assert x.tolist() == train[37:53].tolist() and y.tolist() == train[38:54].tolist()
    with pytest.raises(IndexError):
        tr[len(tr)]
    # a pickled dataset (DataLoader workers) reopens the memmap itself
    import pickle

    tr.tokens()
    clone = pickle.loads(pickle.dumps(tr))
    assert clone._tokens is None and torch.equal(clone[3][0], tr[3][0])


def test_missing_or_bad_data_root_is_one_data_root_error(tmp_path):
    wl = get_workload("openwebtext_gpt2_small")
    with pytest.raises(DataRootError, match="needs data_root.*train.bin,val.bin.*prepare.py"):
        wl.build_data({})
    with pytest.raises(DataRootError) as err:
        wl.build_data({"data_root": str(tmp_path / "owt")})
    msg = str(err.value)
    assert "\n" not in msg
    assert "missing train.bin, val.bin" in msg and "data/openwebtext/prepare.py" in msg
    write_tokens(str(tmp_path / "train.bin"), [1, 2, 3])
    write_tokens(str(tmp_path / "val.bin"), range(100))
    with pytest.raises(DataRootError, match="holds 3 tokens, fewer than one window"):
        wl.build_data({"data_root": str(tmp_path), "model": {"block_size": 8}})


def test_tiny_gpt2_trains_on_the_memmap_and_reports_ppl(tmp_path):
    write_owt(tmp_path)
    wl = get_workload("openwebtext_gpt2_small")
    cfg = {"data_root": str(tmp_path), "model": {**TINY, "vocab_size": 50304}}
    torch.manual_seed(0)
    model = wl.build_model(cfg)
    tr, va = wl.build_data(cfg)
    batch = torch.utils.data.default_collate([tr[i] for i in range(4)])
    loss, stats = wl.loss(model, batch)
    assert stats == {"count": 32, "tokens": 32}
    sampled, true, s2 = wl.sampled_loss(model, batch)
    assert float(true) == pytest.approx(float(loss.detach()), rel=1e-6) and s2 == stats
    assert sampled.requires_grad and not true.requires_grad
    metrics = wl.evaluate(model, torch.utils.data.DataLoader(va, batch_size=8), "cpu")
    assert metrics["val_ppl"] == pytest.approx(np.exp(metrics["val_loss"]))
    assert wl.tokens_per_example(cfg) == 8 and wl.tokens_per_example({}) == 1024
