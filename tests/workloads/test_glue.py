import sys

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from sassha.data.glue import GLUE_TASKS, collate_padded
from sassha.workloads import DataRootError, get_workload
from sassha.workloads.glue import glue_metrics

from .writers import hvp_check

transformers = pytest.importorskip("transformers")

WORDS = "the a cat dog sat on mat is good bad movie film very not it was".split()

# Rows in each task's own column layout (GLUE distribution), header first where GLUE has one.
LAYOUTS = {
    "cola": (None, lambda i, s, t, y: ["gj04", str(y), "" if y else "*", s]),
    "sst2": (["sentence", "label"], lambda i, s, t, y: [s, str(y)]),
    "mrpc": (
        ["Quality", "#1 ID", "#2 ID", "#1 String", "#2 String"],
        lambda i, s, t, y: [str(y), str(i), str(i + 1), s, t],
    ),
    "stsb": (
        [
            "index",
            "genre",
            "filename",
            "year",
            "old_index",
            "source1",
            "source2",
            "sentence1",
            "sentence2",
            "score",
        ],
        lambda i, s, t, y: [
            str(i),
            "main-news",
            "f",
            "2012",
            str(i),
            "n",
            "n",
            s,
            t,
            f"{y * 2.5:.3f}",
        ],
    ),
    "qqp": (
        ["id", "qid1", "qid2", "question1", "question2", "is_duplicate"],
        lambda i, s, t, y: [str(i), str(2 * i), str(2 * i + 1), s, t, str(y)],
    ),
    "mnli": (
        [
            "index",
            "promptID",
            "pairID",
            "genre",
            "sentence1_binary_parse",
            "sentence2_binary_parse",
            "sentence1_parse",
            "sentence2_parse",
            "sentence1",
            "sentence2",
            "label1",
            "gold_label",
        ],
        lambda i, s, t, y: [
            str(i),
            "1",
            "1e",
            "fiction",
            "(",
            "(",
            "(",
            "(",
            s,
            t,
            ["contradiction", "entailment", "neutral"][y],
            ["contradiction", "entailment", "neutral"][y],
        ],
    ),
    "qnli": (
        ["index", "question", "sentence", "label"],
        lambda i, s, t, y: [str(i), s, t, ["entailment", "not_entailment"][y]],
    ),
    "rte": (
        ["index", "sentence1", "sentence2", "label"],
        lambda i, s, t, y: [str(i), s, t, ["entailment", "not_entailment"][y]],
    ),
}


def write_glue(root, task, n_train=12, n_dev=6):
    header, row = LAYOUTS[task]
    rng = np.random.default_rng(0)
    classes = 3 if task == "mnli" else 2
    root.mkdir(parents=True, exist_ok=True)
    for name, n in (("train.tsv", n_train), (GLUE_TASKS[task].dev_file, n_dev)):
        lines = ["\t".join(header)] if header else []
        for i in range(n):
            s = " ".join(rng.choice(WORDS, size=int(rng.integers(3, 9))))
            t = " ".join(rng.choice(WORDS, size=int(rng.integers(3, 9))))
            lines.append("\t".join(row(i, s, t, i % classes)))
        if task == "qqp" and name == "train.tsv":
            lines.append("999\tbroken row")  # QQP's train.tsv has malformed rows
        (root / name).write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    """A tiny random SqueezeBERT and a BERT WordPiece tokenizer, saved like a checkpoint."""
    path = tmp_path_factory.mktemp("squeezebert")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]
    (path / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tok = transformers.BertTokenizer(str(path / "vocab.txt"))
    tok.save_pretrained(str(path))
    torch.manual_seed(0)
    cfg = transformers.SqueezeBertConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=64,
        embedding_size=32,
    )
    transformers.SqueezeBertForSequenceClassification(cfg).save_pretrained(str(path))
    return str(path)


@pytest.mark.parametrize("task", sorted(GLUE_TASKS))
def test_every_task_loads_trains_and_reports_its_metric(task, tmp_path, pretrained):
    wl = get_workload(f"glue_squeezebert_{task}")
    assert wl.task == "glue"
    cfg = {
        "data_root": str(write_glue(tmp_path, task)),
        "pretrained_dir": pretrained,
        "max_length": 16,
    }
    train, val = wl.build_data(cfg)
    assert len(train) == 12 and len(val) == 6  # the malformed QQP row is skipped
    model = wl.build_model(cfg)
    assert model.config.hidden_dropout_prob == 0.0
    assert model.config.attention_probs_dropout_prob == 0.0
    loader = DataLoader(train, batch_size=4, collate_fn=wl.collate_fn)
    batch = next(iter(loader))
    assert batch["input_ids"].shape[1] <= 16
    assert batch["input_ids"].shape == batch["attention_mask"].shape
    loss, stats = wl.loss(model, batch)
    assert loss.shape == () and torch.isfinite(loss) and stats["count"] == 4
    metrics = wl.evaluate(model, DataLoader(val, batch_size=4, collate_fn=wl.collate_fn), "cpu")
    expected = {
        "cola": {"val_loss", "val_acc", "val_matthews"},
        "mrpc": {"val_loss", "val_acc", "val_f1"},
        "qqp": {"val_loss", "val_acc", "val_f1"},
        "stsb": {"val_loss", "val_pearson", "val_spearman"},
    }.get(task, {"val_loss", "val_acc"})
    assert set(metrics) == expected
    if task == "stsb":
        assert batch["labels"].dtype == torch.float32
        assert model.num_labels == 1
    else:
        assert model.num_labels == (3 if task == "mnli" else 2)
        assert 0.0 <= metrics["val_acc"] <= 1.0


def test_labels_follow_the_glue_columns(tmp_path, pretrained):
    root = write_glue(tmp_path, "mnli")
    wl = get_workload("glue_squeezebert_mnli")
    train, _ = wl.build_data({"data_root": str(root), "pretrained_dir": pretrained})
    assert train.targets[:6] == [0, 1, 2, 0, 1, 2]
    root = write_glue(tmp_path / "stsb", "stsb")
    train, _ = get_workload("glue_squeezebert_stsb").build_data(
        {"data_root": str(root), "pretrained_dir": pretrained}
    )
    assert train.targets[:3] == [0.0, 2.5, 0.0]


def test_double_backward_through_squeezebert(tmp_path, pretrained):
    wl = get_workload("glue_squeezebert_sst2")
    cfg = {"data_root": str(write_glue(tmp_path, "sst2")), "pretrained_dir": pretrained}
    model = wl.build_model(cfg)
    train, _ = wl.build_data(cfg)
    batch = next(iter(DataLoader(train, batch_size=4, collate_fn=wl.collate_fn)))
    v, hv = hvp_check(lambda: wl.loss(model, batch)[0], model.parameters())
    assert torch.isfinite(hv).all() and hv.abs().sum() > 0


def test_padding_does_not_change_predictions(tmp_path, pretrained):
    wl = get_workload("glue_squeezebert_rte")
    cfg = {"data_root": str(write_glue(tmp_path, "rte")), "pretrained_dir": pretrained}
    model = wl.build_model(cfg).eval()
    train, _ = wl.build_data(cfg)
    short = min(range(len(train)), key=lambda i: len(train[i]["input_ids"]))
    alone = wl.collate_fn([train[short]])
    padded = wl.collate_fn([train[short], *[train[i] for i in range(len(train))]])
    with torch.no_grad():
        a = model(**{k: v for k, v in alone.items() if k != "labels"}).logits[0]
        b = model(**{k: v for k, v in padded.items() if k != "labels"}).logits[0]
    assert padded["input_ids"].shape[1] > alone["input_ids"].shape[1]
    assert torch.allclose(a, b, atol=1e-5)


def test_metrics_match_known_values():
    m = glue_metrics("cola", np.array([1, 1, 0, 0]), np.array([1, 0, 0, 0]))
    assert m["val_acc"] == 0.75 and m["val_matthews"] == pytest.approx(1 / np.sqrt(3))
    m = glue_metrics("mrpc", np.array([1, 1, 0, 1]), np.array([1, 0, 0, 1]))
    assert m["val_f1"] == pytest.approx(0.8)
    m = glue_metrics("stsb", np.array([1.0, 2.0, 3.0, 5.0]), np.array([1.0, 2.0, 3.0, 4.0]))
    assert m["val_spearman"] == pytest.approx(1.0) and 0.95 < m["val_pearson"] < 1.0
    assert glue_metrics("stsb", np.ones(3), np.arange(3.0))["val_pearson"] == 0.0


def test_missing_inputs_are_one_line_errors(tmp_path, pretrained, monkeypatch):
    wl = get_workload("glue_squeezebert_cola")
    with pytest.raises(DataRootError) as err:
        wl.build_data({"data_root": str(tmp_path), "pretrained_dir": pretrained})
    msg = str(err.value)
    assert str(tmp_path) in msg and "train.tsv" in msg and "dev.tsv" in msg and "\n" not in msg
    with pytest.raises(DataRootError, match="dev_matched.tsv"):
        get_workload("glue_squeezebert_mnli").build_data(
            {"data_root": str(tmp_path), "pretrained_dir": pretrained}
        )
    with pytest.raises(DataRootError, match="need config\\['pretrained_dir'\\]"):
        wl.build_model({})
    with pytest.raises(DataRootError, match=f"no pretrained model at {tmp_path}"):
        wl.build_model({"pretrained_dir": str(tmp_path)})
    monkeypatch.setitem(sys.modules, "transformers", None)
    with pytest.raises(ImportError, match="pip install 'sassha-sweeps\\[transformers\\]'"):
        wl.build_model({"pretrained_dir": pretrained})


def test_label_noise_on_glue_relabels_dict_examples(tmp_path, pretrained):
    wl = get_workload("glue_squeezebert_sst2")
    cfg = {
        "data_root": str(write_glue(tmp_path, "sst2")),
        "pretrained_dir": pretrained,
        "label_noise": 0.5,
        "seed": 0,
    }
    train, val = wl.build_data(cfg)
    assert len(train.flipped_indices) == 6
    for i in range(len(train)):
        item = train[i]
        assert int(item["labels"]) == train.targets[i] and item["labels"].dtype == torch.long
    batch = wl.collate_fn([train[i] for i in range(4)])
    assert batch["labels"].tolist() == train.targets[:4]
    with pytest.raises(ValueError, match="does not apply to STS-B"):
        get_workload("glue_squeezebert_stsb").build_data({**cfg, "data_root": str(tmp_path)})


@pytest.mark.parametrize("task", ["cola", "mrpc", "stsb", "mnli"])
def test_synthetic_twins_keep_the_glue_format_and_metrics(task):
    wl = get_workload(f"synthetic_glue_{task}")
    assert wl.task == "glue" and wl.collate_fn is collate_padded
    cfg = {"max_length": 12, "data": {"num_train": 64, "num_val": 32}, "model": {"hidden_size": 16}}
    train, val = wl.build_data(cfg)
    again, _ = wl.build_data(cfg)
    assert len(train) == 64 and len(val) == 32
    assert torch.equal(train[5]["input_ids"], again[5]["input_ids"])  # fixed data, any process
    batch = next(iter(DataLoader(train, batch_size=8, collate_fn=wl.collate_fn)))
    ids, types = batch["input_ids"], batch["token_type_ids"]
    assert ids.shape[1] <= 12 and (ids[:, 0] == 2).all()  # [CLS] first
    pair = GLUE_TASKS[task].text_b is not None
    assert bool((types == 1).any()) == pair  # the second sentence has token type 1
    model = wl.build_model(cfg)
    assert model.config.hidden_size == 16 and model.num_labels == GLUE_TASKS[task].num_labels
    loss, stats = wl.loss(model, batch)
    assert torch.isfinite(loss) and stats["count"] == 8
    metrics = wl.evaluate(model, DataLoader(val, batch_size=8, collate_fn=wl.collate_fn), "cpu")
    expected = {"cola": "val_matthews", "mrpc": "val_f1", "stsb": "val_pearson"}.get(
        task, "val_acc"
    )
    assert expected in metrics
    if task == "stsb":
        assert batch["labels"].dtype == torch.float32
        assert 0.0 <= float(batch["labels"].min()) and float(batch["labels"].max()) <= 5.0
