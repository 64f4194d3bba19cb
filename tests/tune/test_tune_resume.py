"""A study killed mid-trial (SIGKILL) continues on rerun: finished trials are neither repeated
nor retrained, and the interrupted point resumes from its seeds' checkpoints."""

import os
import signal
import subprocess
import sys
import time

import optuna
from optuna.trial import TrialState
from tune_helpers import write_spec

from runners.tune import JOURNAL_FILE

N_TRIALS = 4


def _study(work):
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    storage = JournalStorage(JournalFileBackend(str(work / JOURNAL_FILE)))
    return optuna.load_study(study_name="tune_digits", storage=storage)


def _cmd(spec, work):
    return [
        sys.executable, "-m", "runners.cli", "tune", str(spec),
        "--workdir", str(work), "--tracking-uri", _store(work),
    ]  # fmt: skip


def _store(work):
    return f"sqlite:///{work.parent / 'mlflow.db'}"


def _runs_by_status(work):
    from mlflow.tracking import MlflowClient

    mc = MlflowClient(_store(work))
    runs = [r for e in mc.search_experiments() for r in mc.search_runs([e.experiment_id])]
    out = {}
    for r in runs:
        out.setdefault(r.info.status, []).append(r.data.tags.get("optuna_trial"))
    return out


def _checkpoints(work):
    return {p: p.stat().st_mtime_ns for p in (work / "trials").glob("*/checkpoint.pt")}


def test_killed_study_resumes_without_repeating_finished_trials(tmp_path):
    spec = write_spec(
        tmp_path,
        f"""\
        space: {{lr: {{loguniform: [0.01, 0.5]}}}}
        n_trials: {N_TRIALS}
        pruner: none
        seed: 1
        """,
        epochs=3,
    )
    work = tmp_path / "work"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        _cmd(spec, work), env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    killed_in = None
    deadline = time.monotonic() + 240
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.2)
            if not (work / JOURNAL_FILE).exists():
                continue
            try:
                trials = _study(work).trials
            except KeyError:
                # The journal file appears a moment before the study's creation is written to it.
                continue
            done = [t for t in trials if t.state == TrialState.COMPLETE]
            running = [t for t in trials if t.state == TrialState.RUNNING]
            # kill once two trials are done and the third has trained at least one epoch
            if len(done) >= 2 and running and running[0].intermediate_values:
                proc.send_signal(signal.SIGKILL)
                killed_in = running[0]
                break
    finally:
        if proc.poll() is None and killed_in is None:
            proc.kill()
        proc.wait()
    assert killed_in is not None, proc.stdout.read().decode()[-2000:]

    before = _study(work).trials
    finished_before = {
        t.number: (t.params, t.value) for t in before if t.state == TrialState.COMPLETE
    }
    ckpt_before = _checkpoints(work)
    epochs_before = dict(killed_in.intermediate_values)

    rerun = subprocess.run(
        _cmd(spec, work), env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert rerun.returncode == 0, rerun.stdout[-2000:] + rerun.stderr[-2000:]
    assert "1 interrupted trial(s) re-queued" in rerun.stdout

    after = _study(work).trials
    ended = [t for t in after if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(ended) == N_TRIALS
    # finished trials keep their numbers and values; none is run again
    for number, (params, value) in finished_before.items():
        assert after[number].state == TrialState.COMPLETE and after[number].value == value
        assert not [
            t
            for t in after
            if t.number != number and t.params == params and "reused_from" not in t.user_attrs
        ]
    # their checkpoints were not touched by the rerun
    for path, mtime in ckpt_before.items():
        trial_hashes = [h for n in finished_before for h in after[n].user_attrs["trial_hashes"]]
        if path.parent.name in trial_hashes:
            assert path.stat().st_mtime_ns == mtime
    # the interrupted point was re-queued and finished from its checkpoints
    assert after[killed_in.number].state == TrialState.FAIL
    (resumed,) = [t for t in after if t.user_attrs.get("resumed_from") == killed_in.number]
    assert resumed.params == killed_in.params and resumed.state == TrialState.COMPLETE
    for epoch, value in epochs_before.items():
        assert resumed.intermediate_values[epoch] == value
    assert (work / "best_variant.yaml").exists()
    # the killed point's MLflow runs (its own and its seeds') were ended, none left RUNNING
    runs = _runs_by_status(work)
    assert "RUNNING" not in runs, runs
    assert str(killed_in.number) in runs.get("KILLED", []), runs
