"""The trial keys that say how a trial runs, not what it computes.

They stay out of a trial's identity (a sweep moved to a GPU, to more processes or more nodes is
not re-run) and may change between a checkpoint and its resumption. Kept free of torch so that
planning a sweep does not import it.
"""

EXECUTION_KEYS = frozenset({"device", "threads", "num_workers", "nproc", "nodes"})


def world_size(config) -> int:
    """Processes one trial runs as: ``nproc * nodes``."""
    return int(config.get("nproc", 1)) * int(config.get("nodes", 1))
