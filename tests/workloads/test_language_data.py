import math

import pytest
import torch
from torch.utils.data import DataLoader

from sassha.data.wikitext import EOS, UNK, Vocabulary, tokenize_file
from sassha.workloads import DataRootError, get_workload

from .writers import WIKI_TRAIN, WIKI_VALID, hvp_check, write_wikitext

TINY = {"block_size": 8, "n_layer": 1, "n_head": 2, "n_embd": 16}


def test_vocabulary_and_blocks(tmp_path):
    root = write_wikitext(tmp_path)
    wl = get_workload("wikitext2_gpt1mini")
    train, val = wl.build_data({"data_root": str(root), "model": TINY})
    train_words = [w for line in WIKI_TRAIN.splitlines(keepends=True) for w in line.split() + [EOS]]
    vocab = Vocabulary()
    for w in train_words:
        vocab.add(w)
    assert len(train) == (len(train_words) - 1) // 8
    x, y = train[1]
    assert [vocab.itos[i] for i in x.tolist()] == train_words[8:16]
    assert torch.equal(y[:-1], x[1:])  # next-token targets
    # Validation words absent from the training file map to <unk>.
    val_ids = tokenize_file(str(root / "wiki.valid.tokens"), vocab, grow=False)
    assert "Homarus" not in vocab.stoi
    assert int((val_ids == vocab.stoi[UNK]).sum()) > 5
    assert len(val) == (len(WIKI_VALID.split()) + len(WIKI_VALID.splitlines()) - 1) // 8

    model = wl.build_model({"data_root": str(root), "model": TINY})
    assert model.tok.num_embeddings == len(vocab)
    loss, stats = wl.loss(model, next(iter(DataLoader(train, batch_size=2))))
    assert stats == {"count": 16, "tokens": 16}
    # Untrained GPT with small init: loss near log(vocab size).
    assert abs(loss.item() - math.log(len(vocab))) < 0.5
    m = wl.evaluate(model, DataLoader(val, batch_size=2), "cpu")
    assert set(m) == {"val_loss", "val_ppl"}
    assert m["val_ppl"] == pytest.approx(math.exp(m["val_loss"]))


def test_lm_trains_and_has_double_backward(tmp_path):
    root = write_wikitext(tmp_path)
    wl = get_workload("wikitext2_gpt1mini")
    cfg = {"data_root": str(root), "model": TINY}
    torch.manual_seed(0)
    model = wl.build_model(cfg)
    train, _ = wl.build_data(cfg)
    batch = next(iter(DataLoader(train, batch_size=4)))
    v, hv = hvp_check(lambda: wl.loss(model, batch)[0], model.parameters())
    assert torch.isfinite(hv).all() and hv.abs().sum() > 0
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    first = wl.loss(model, batch)[0].item()
    for _ in range(30):
        opt.zero_grad()
        wl.loss(model, batch)[0].backward()
        opt.step()
    assert wl.loss(model, batch)[0].item() < 0.5 * first


def test_test_split_and_missing_files(tmp_path):
    root = write_wikitext(tmp_path / "w", with_test=False)
    wl = get_workload("wikitext2_gpt1mini")
    with pytest.raises(DataRootError, match="wiki.test.tokens missing"):
        wl.build_data({"data_root": str(root), "model": TINY, "data": {"val_split": "test"}})
    with pytest.raises(DataRootError) as err:
        wl.build_data({"data_root": str(tmp_path / "nothing"), "model": TINY})
    msg = str(err.value)
    assert str(tmp_path / "nothing") in msg and "wiki.train.tokens" in msg
    assert "wikitext-2" in msg and "\n" not in msg
    with pytest.raises(DataRootError, match="WikiText-2 needs data_root"):
        wl.build_model({"model": TINY})


def test_synthetic_lm_is_learnable_structure():
    wl = get_workload("synthetic_lm")
    cfg = {
        "model": {**TINY, "vocab_size": 64},
        "data": {"num_train_tokens": 4000, "num_val_tokens": 400},
    }
    train, val = wl.build_data(cfg)
    again, _ = wl.build_data(cfg)
    assert torch.equal(train.ids, again.ids)  # fixed data seed
    ids = train.ids
    # Each token has at most 4 successors: bigram entropy far below log(64).
    pairs = torch.stack([ids[:-1], ids[1:]], 1).unique(dim=0)
    assert pairs.shape[0] <= 64 * 4
    assert wl.build_model(cfg).tok.num_embeddings == 64


def test_label_noise_is_rejected_for_language_models():
    with pytest.raises(ValueError, match="label_noise applies to classification workloads"):
        get_workload("synthetic_lm").build_data({"label_noise": 0.2})
