"""The trial keys that say how a trial runs, not what it computes.

They stay out of a trial's identity (a sweep moved to a GPU, to more processes or more nodes is
not re-run) and may change between a checkpoint and its resumption. Kept free of torch so that
planning a sweep does not import it.
"""

# What each special trial key is, said once; the key sets below are read from this table.
#   runs      how the trial runs (device, parallelism): not its identity, may change on resume
#   place     where the trial reads or writes: kept out of its identity
#   resume    may differ between a checkpoint and its restart without changing what is trained
#   unlogged  not an MLflow param: per-trial-unique or machine-specific, it would make every run's
#             params differ and hide the ones that matter in comparisons
KEY_ROLES: dict[str, frozenset[str]] = {
    k: frozenset(roles.split())
    for k, roles in {
        "device": "runs resume unlogged",
        "threads": "runs resume",
        "num_workers": "runs resume",
        "nproc": "runs resume",
        "nodes": "runs resume",
        "data_root": "place resume unlogged",
        "tracking": "place unlogged",
        "pin_memory": "place",
        "checkpoint_dir": "place unlogged",
        "trial_dir": "unlogged",
        "hash": "unlogged",
        # a longer run, or one with another stop rule, continues the same training
        "epochs": "resume",
        "max_steps": "resume",
        "time_limit_s": "resume",
        "max_backward_passes": "resume",
        # measured or read beside training, not part of it
        "pretrained_dir": "resume",
        "diagnostics": "resume",
        "eval_batch_size": "resume",
    }.items()
}


def keys_with(*roles: str) -> frozenset[str]:
    """The keys of ``KEY_ROLES`` that have any of ``roles``."""
    return frozenset(k for k, r in KEY_ROLES.items() if r & set(roles))


EXECUTION_KEYS = keys_with("runs")
# Left out of a trial's identity (its hash): moving a sweep to a GPU, to more processes or to a
# cluster keeps hashes.
NON_IDENTITY_KEYS = keys_with("runs", "place")
# May change between a checkpoint and a restart (sassha.trial compares the rest).
RESUMABLE_KEYS = keys_with("runs", "resume")
# Not logged as MLflow params.
PARAM_EXCLUDE = tuple(sorted(keys_with("unlogged")))


def world_size(config) -> int:
    """Processes one trial runs as: ``nproc * nodes``."""
    return int(config.get("nproc", 1)) * int(config.get("nodes", 1))
