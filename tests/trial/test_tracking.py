import math

from sassha.tracking import (
    JsonTracker,
    MemoryTracker,
    NullTracker,
    Tracker,
    flatten,
    last_logged_step,
    read_json_log,
)


def test_flatten_dotted_keys():
    flat = flatten({"lr": 0.1, "schedule": {"name": "multistep", "milestones": [1]}, "model": {}})
    assert flat == {
        "lr": 0.1,
        "schedule.name": "multistep",
        "schedule.milestones": [1],
        "model": {},
    }


def test_memory_tracker_records_everything():
    t = MemoryTracker()
    assert isinstance(t, Tracker) and isinstance(NullTracker(), Tracker)
    t.log_params({"lr": 0.1})
    t.log_metrics({"val_acc": 0.5, "lr": 0.1}, step=1)
    t.log_metrics({"val_acc": 0.7}, step=2)
    t.log_metrics({"val_acc": 0.6}, step=2)  # a resumed trial may log a step again
    t.set_tags({"status": "finished"})
    t.log_artifact("x.png")
    t.finish("finished")
    assert t.history("val_acc") == [(1, 0.5), (2, 0.7), (2, 0.6)]
    assert t.last() == {"val_acc": 0.6, "lr": 0.1}
    assert (t.status, t.finished, t.tags, t.artifacts) == (
        "finished",
        1,
        {"status": "finished"},
        ["x.png"],
    )


def test_json_tracker_round_trip(tmp_path):
    path = tmp_path / "sub" / "log.jsonl"
    t = JsonTracker(path)
    t.log_params({"lr": 0.1, "betas": (0.9, 0.999)})
    t.log_metrics({"train_loss": float("nan"), "val_acc": 0.9}, step=3)
    t.set_tags({"status": "diverged"})
    t.log_artifact(tmp_path / "a.txt")
    t.finish("diverged")
    records = read_json_log(path)
    assert [r["type"] for r in records] == ["params", "metrics", "tags", "artifact", "finish"]
    assert records[0]["params"] == {"lr": 0.1, "betas": [0.9, 0.999]}
    assert records[1]["step"] == 3 and math.isnan(records[1]["metrics"]["train_loss"])
    assert records[3]["path"] == str(tmp_path / "a.txt")
    assert records[4]["status"] == "diverged"


def test_trackers_say_the_last_step_they_hold(tmp_path):
    memory, log = MemoryTracker(), JsonTracker(tmp_path / "log.jsonl")
    assert last_logged_step(NullTracker(), "x") is None
    for t in (memory, log):
        assert last_logged_step(t, "x") is None
        t.log_metrics({"x": 1.0, "y": 2.0}, step=1)
        t.log_metrics({"x": 3.0}, step=4)
        t.log_metrics({"x": 3.0}, step=2)
        assert (last_logged_step(t, "x"), last_logged_step(t, "y")) == (4, 1)
        assert last_logged_step(t, "z") is None
