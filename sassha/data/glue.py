"""GLUE tasks from the local TSV files of the GLUE distribution (``download_glue_data.py``)."""

from __future__ import annotations

import csv
import os
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


from sassha.data.errors import DataRootError, require_data_root

_HOW = (
    "get the GLUE data with the GLUE benchmark's download_glue_data.py "
    "(https://gluebenchmark.com/tasks) and point data_root at the task's folder"
)


@dataclass(frozen=True)
class GlueTask:
    name: str
    folder: str
    text_a: int  # column index of the first sentence
    text_b: int | None  # column index of the second sentence (None: single sentence)
    label: int  # column index of the label (-1: last column)
    labels: tuple[str, ...] | None  # label strings in id order; None: regression (STS-B)
    header: bool
    dev_file: str = "dev.tsv"

    @property
    def num_labels(self) -> int:
        return 1 if self.labels is None else len(self.labels)


# Column layouts of the GLUE distribution's train.tsv / dev.tsv.
GLUE_TASKS: dict[str, GlueTask] = {
    t.name: t
    for t in (
        GlueTask("cola", "CoLA", 3, None, 1, ("0", "1"), header=False),
        GlueTask("sst2", "SST-2", 0, None, 1, ("0", "1"), header=True),
        GlueTask("mrpc", "MRPC", 3, 4, 0, ("0", "1"), header=True),
        GlueTask("stsb", "STS-B", 7, 8, -1, None, header=True),
        GlueTask("qqp", "QQP", 3, 4, 5, ("0", "1"), header=True),
        GlueTask(
            "mnli",
            "MNLI",
            8,
            9,
            -1,
            ("contradiction", "entailment", "neutral"),
            header=True,
            dev_file="dev_matched.tsv",
        ),
        GlueTask("qnli", "QNLI", 1, 2, 3, ("entailment", "not_entailment"), header=True),
        GlueTask("rte", "RTE", 1, 2, 3, ("entailment", "not_entailment"), header=True),
    )
}


def read_glue_tsv(path: str, task: GlueTask, limit: int | None = None):
    """``(texts_a, texts_b | None, labels)``; malformed rows (as in QQP's train.tsv) are skipped."""
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
    needed = max(task.text_a, task.text_b or 0, task.label) + 1
    a: list[str] = []
    b: list[str] = []
    y: list[float | int] = []
    with open(path, encoding="utf-8", newline="") as f:
        rows = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        for i, row in enumerate(rows):
            if (i == 0 and task.header) or len(row) < needed:
                continue
            raw = row[task.label].strip()
            if task.labels is None:
                try:
                    label: float | int = float(raw)
                except ValueError:
                    continue
            elif raw in task.labels:
                label = task.labels.index(raw)
            else:
                continue
            a.append(row[task.text_a])
            if task.text_b is not None:
                b.append(row[task.text_b])
            y.append(label)
            if limit is not None and len(y) >= int(limit):
                break
    return a, (b if task.text_b is not None else None), y


def check_glue_root(data_root, task: GlueTask) -> str:
    expected = f"train.tsv and {task.dev_file} (GLUE's {task.folder}/ folder)"
    root = require_data_root(data_root, f"GLUE {task.folder}", expected, _HOW)
    missing = [f for f in ("train.tsv", task.dev_file) if not os.path.isfile(os.path.join(root, f))]
    if missing:
        raise DataRootError(
            f"GLUE {task.folder} not found at {root}: expected {expected} "
            f"(missing {', '.join(missing)}); {_HOW}"
        )
    return root


class EncodedPairs:  # a map-style dataset: __len__ and __getitem__ are what DataLoader needs
    """Tokenized examples: item i is a dict of 1-D tensors plus ``labels``."""

    def __init__(self, encodings: dict[str, list[list[int]]], labels, regression: bool):
        self.encodings = encodings
        self.targets = list(labels)
        self.regression = regression

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i: int):
        import torch

        item = {k: torch.tensor(v[i], dtype=torch.long) for k, v in self.encodings.items()}
        dtype = torch.float32 if self.regression else torch.long
        item["labels"] = torch.tensor(self.targets[i], dtype=dtype)
        return item


def collate_padded(items: list[dict]) -> dict[str, torch.Tensor]:
    """Pad each batch to its longest sequence (right padding, attention_mask 0 there).

    The pad value of ``input_ids`` is 0 ([PAD] in BERT-style vocabularies); masked positions
    do not affect the outputs, so the value only matters for readability.
    """
    import torch

    out: dict[str, torch.Tensor] = {}
    longest = max(int(it["input_ids"].shape[0]) for it in items)
    for key in items[0]:
        if key == "labels":
            out[key] = torch.stack([it[key] for it in items])
            continue
        batch = torch.zeros(len(items), longest, dtype=torch.long)
        for r, it in enumerate(items):
            batch[r, : it[key].shape[0]] = it[key]
        out[key] = batch
    return out


def glue_datasets(
    data_root,
    task_name: str,
    tokenizer,
    *,
    max_length: int = 128,
    num_train: int | None = None,
    num_val: int | None = None,
):
    task = GLUE_TASKS[task_name]
    root = check_glue_root(data_root, task)
    splits = []
    for file, limit in (("train.tsv", num_train), (task.dev_file, num_val)):
        a, b, y = read_glue_tsv(os.path.join(root, file), task, limit)
        if not y:
            raise DataRootError(
                f"GLUE {task.folder} at {root}: {file} has no readable examples "
                f"(expected GLUE's column layout); {_HOW}"
            )
        enc = tokenizer(a, b, truncation=True, max_length=int(max_length))
        keys = [k for k in ("input_ids", "token_type_ids", "attention_mask") if k in enc]
        splits.append(EncodedPairs({k: enc[k] for k in keys}, y, task.labels is None))
    return splits[0], splits[1]
