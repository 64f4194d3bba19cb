"""A full disk stops trials with one line naming the file, leaves ``sweep status`` and MLflow
agreeing on what ended, and a rerun with space finishes everything (the error is injected at
the checkpoint writer, the first thing a trial writes each epoch)."""

from __future__ import annotations

import errno

from runners_helpers import TINY, mlflow_runs, run_main, write_spec

from sassha import checkpoint

MLFLOW_OF_STATE = {"finished": "FINISHED", "pending": "KILLED"}


def _agree(uri, work, capsys, spec):
    import json

    code, out, _ = run_main(capsys, "status", spec, "--workdir", work, "--json")
    states = {row["hash"]: row["state"] for row in json.loads(out)}
    client, runs = mlflow_runs(uri, "tiny")
    trial_runs = {
        r.data.tags["trial_hash"]: r.info.status
        for r in runs
        if r.data.tags.get("sweep_role") == "trial"
    }
    for h, state in states.items():
        assert trial_runs.get(h, "KILLED") == MLFLOW_OF_STATE[state], (h, state, trial_runs.get(h))
    return states


def test_a_full_disk_stops_cleanly_and_a_rerun_recovers(tmp_path, capsys, monkeypatch):
    spec = write_spec(tmp_path, TINY)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    work = tmp_path / "work"
    real_write = checkpoint._write_tmp
    writes = {"n": 0}

    def filling(directory, data):
        writes["n"] += 1
        if writes["n"] > 6:  # the first trial's checkpoints fit, then the disk is full
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(directory, data)

    monkeypatch.setattr(checkpoint, "_write_tmp", filling)
    code, out, err = run_main(capsys, "run", spec, "--tracking-uri", uri, "--workdir", work)
    assert code == 1
    lines = [ln for ln in out.splitlines() if ln.startswith("sweep: no space left on device")]
    assert len(lines) == 1, out
    assert "/checkpoint.pt; free space and run the same command again" in lines[0]
    assert str(work / "trials") in lines[0]
    assert "Traceback" not in out + err
    states = _agree(uri, work, capsys, spec)
    assert sorted(states.values()).count("finished") >= 1 and "pending" in states.values()
    assert "failed" not in states.values()

    monkeypatch.setattr(checkpoint, "_write_tmp", real_write)
    code, out, _ = run_main(capsys, "run", spec, "--tracking-uri", uri, "--workdir", work)
    assert code == 0, out
    assert set(_agree(uri, work, capsys, spec).values()) == {"finished"}
