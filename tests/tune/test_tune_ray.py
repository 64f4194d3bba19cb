"""`sweep tune --backend ray`: the same study through Ray Tune's OptunaSearch."""

import optuna
import pytest
from optuna.storages.journal import JournalFileBackend, JournalStorage
from tune_helpers import write_spec

from runners.tune import JOURNAL_FILE, run_tune

pytestmark = pytest.mark.ray


def test_ray_backend_runs_the_study_into_the_same_storage(tmp_path, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    spec = write_spec(
        tmp_path,
        """\
        space: {lr: {loguniform: [0.02, 0.3]}}
        n_trials: 2
        pruner: none
        """,
        seeds="[0]",
        epochs=1,
    )
    work = tmp_path / "work"
    assert run_tune(spec, backend="ray", workdir=work, tracking_uri="none") == 0
    storage = JournalStorage(JournalFileBackend(str(work / JOURNAL_FILE)))
    study = optuna.load_study(study_name="tune_digits", storage=storage)
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(complete) == 2
    for t in complete:
        assert 0.02 <= t.params["lr"] <= 0.3
        assert t.user_attrs["seeds"] == [0] and t.value == t.user_attrs["values"][0]
        assert t.value > 0.5  # one epoch of SGD in the good lr range
    assert (work / "best_variant.yaml").exists()
    # rerunning finds the study complete and trains nothing more
    assert run_tune(spec, backend="ray", workdir=work, tracking_uri="none") == 0
    assert len(optuna.load_study(study_name="tune_digits", storage=storage).trials) == 2
