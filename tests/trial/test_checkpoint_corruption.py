"""A truncated or garbage checkpoint never fails a trial for good: the bad file is named in the
log, set aside, and the trial resumes from the previous checkpoint or starts over, reaching the
same result as an uninterrupted run."""

from __future__ import annotations

import logging

import pytest
import torch

from sassha import checkpoint
from sassha.tracking import MemoryTracker
from sassha.trial import CHECKPOINT_NAME, Trial, run

SMALL = {
    "workload": "digits_cnn",
    "optimizer": "adamw",
    "batch_size": 32,
    "model": {"width": 4},
    "data": {"num_train": 96, "num_val": 32},
    "seed": 0,
}


def _final(result):
    return {k: result[k] for k in ("val_acc", "val_loss", "train_loss", "epochs_completed")}


@pytest.mark.parametrize("damage", ["truncate", "garbage"])
def test_a_damaged_checkpoint_falls_back_to_the_previous_one(tmp_path, caplog, damage):
    reference = run({**SMALL, "epochs": 3})
    run({**SMALL, "epochs": 2}, checkpoint_dir=tmp_path)  # epochs 1 and 2: current + previous
    path = tmp_path / CHECKPOINT_NAME
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3] if damage == "truncate" else b"\x80garbage" * 50)
    with caplog.at_level(logging.WARNING, logger="sassha.checkpoint"):
        resumed = run({**SMALL, "epochs": 3}, checkpoint_dir=tmp_path)
    assert f"checkpoint {path} is unreadable" in caplog.text
    assert "trying the previous one" in caplog.text
    assert (tmp_path / "checkpoint.pt.corrupt").exists()
    assert _final(resumed) == pytest.approx(_final(reference))
    assert torch.load(path, weights_only=False)["epoch"] == 3  # an ordinary torch file again


def test_no_good_checkpoint_means_a_clean_restart(tmp_path, caplog):
    reference = run({**SMALL, "epochs": 2})
    run({**SMALL, "epochs": 1}, checkpoint_dir=tmp_path)  # one checkpoint, no previous
    (tmp_path / CHECKPOINT_NAME).write_bytes(b"not a checkpoint")
    with caplog.at_level(logging.WARNING, logger="sassha.checkpoint"):
        again = run({**SMALL, "epochs": 2}, checkpoint_dir=tmp_path)
    assert "starting over" in caplog.text
    assert again["status"] == "finished"
    assert _final(again) == pytest.approx(_final(reference))


def _steps(tracker, name):
    return [step for step, _ in tracker.history(name)]


@pytest.mark.parametrize("stopped_after", [2, 3])
def test_epochs_trained_again_after_a_fallback_are_logged_once(tmp_path, stopped_after):
    """The newest checkpoint lost: the trial trains an epoch again from the previous one, but
    its tracker already holds that epoch (and, for an ended trial, the summary) and gets each
    step once, with the numbers of an uninterrupted run."""
    reference = MemoryTracker()
    run({**SMALL, "epochs": 3}, tracker=reference)
    tracker = MemoryTracker()
    epochs = Trial({**SMALL, "epochs": 3}, tracker, tmp_path).epochs()
    for _ in range(stopped_after):  # 2: killed after epoch 2's checkpoint; 3: ended
        next(epochs)
    epochs.close()
    (tmp_path / CHECKPOINT_NAME).write_bytes(b"\x80garbage")
    Trial({**SMALL, "epochs": 3}, tracker, tmp_path).run()
    for name in ("val_loss", "train_loss", "wall_time_s"):
        assert _steps(tracker, name) == [1, 2, 3], name
    assert _steps(tracker, "epochs_completed") == [3]
    for name in ("val_loss", "val_acc", "train_loss", "epochs_completed"):
        assert tracker.history(name) == reference.history(name), name


def test_a_start_over_logs_no_epoch_twice(tmp_path):
    tracker = MemoryTracker()
    run({**SMALL, "epochs": 1}, tracker=tracker, checkpoint_dir=tmp_path)
    (tmp_path / CHECKPOINT_NAME).write_bytes(b"not a checkpoint")
    run({**SMALL, "epochs": 2}, tracker=tracker, checkpoint_dir=tmp_path)
    assert _steps(tracker, "val_loss") == [1, 2]
    assert _steps(tracker, "epochs_completed") == [1, 2]  # the first run's end, then this one's


def test_a_checksum_mismatch_is_caught_even_when_unpickling_would_succeed(tmp_path, caplog):
    path = str(tmp_path / "c.pt")
    checkpoint.save({"epoch": 1}, path)
    checkpoint.save({"epoch": 2}, path)
    torch.save({"epoch": 99}, path)  # a valid pickle that is not what was saved
    with caplog.at_level(logging.WARNING, logger="sassha.checkpoint"):
        assert checkpoint.load(path) == {"epoch": 1}
    assert "sha256 does not match" in caplog.text


def test_a_full_disk_names_the_checkpoint_and_keeps_the_old_one(tmp_path, monkeypatch):
    import errno

    path = str(tmp_path / "c.pt")
    checkpoint.save({"epoch": 1}, path)

    monkeypatch.setattr(checkpoint.os, "fdopen", lambda fd, mode: _Full(fd))
    with pytest.raises(OSError) as info:
        checkpoint.save({"epoch": 2}, path)
    assert info.value.errno == errno.ENOSPC and info.value.filename == path
    monkeypatch.undo()
    assert checkpoint.load(path) == {"epoch": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.pt", "c.pt.sha256"]


class _Full:
    def __init__(self, fd):
        import os

        os.close(fd)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def write(self, data):
        import errno

        raise OSError(errno.ENOSPC, "No space left on device")
