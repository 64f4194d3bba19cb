"""The special trial-key sets come from one table; their contents are pinned here.

A key moving between these sets changes trial hashes (runs/ folders), which checkpoints a
restart accepts, or which MLflow params are logged, so the literal sets below must be changed on
purpose, never by accident.
"""

from runners import execute, identity
from sassha import config
from sassha.execution import EXECUTION_KEYS, NON_IDENTITY_KEYS, PARAM_EXCLUDE, RESUMABLE_KEYS

EXECUTION = {"device", "threads", "num_workers", "nproc", "nodes"}


def test_execution_keys():
    assert EXECUTION_KEYS == EXECUTION


def test_non_identity_keys():
    assert NON_IDENTITY_KEYS == EXECUTION | {
        "data_root",
        "tracking",
        "pin_memory",
        "checkpoint_dir",
    }
    assert identity.NON_IDENTITY_KEYS is NON_IDENTITY_KEYS


def test_resumable_keys():
    assert RESUMABLE_KEYS == EXECUTION | {
        "epochs",
        "time_limit_s",
        "max_backward_passes",
        "max_steps",
        "data_root",
        "pretrained_dir",
        "diagnostics",
        "eval_batch_size",
    }
    assert config.RESUMABLE_KEYS is RESUMABLE_KEYS


def test_param_exclude():
    assert set(PARAM_EXCLUDE) == {
        "data_root",
        "checkpoint_dir",
        "trial_dir",
        "tracking",
        "hash",
        "device",
    }
    assert len(PARAM_EXCLUDE) == 6
    assert execute.PARAM_EXCLUDE is PARAM_EXCLUDE


def test_hash_ignores_exactly_the_non_identity_keys():
    base = {"workload": "digits_mlp", "optimizer": "sgd", "lr": 0.1}
    h = identity.trial_hash(base)
    for key in NON_IDENTITY_KEYS:
        assert identity.trial_hash({**base, key: "x"}) == h, key
    assert identity.trial_hash({**base, "epochs": 2}) != h
