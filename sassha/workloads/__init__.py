"""Named workloads: model + data + schedule + epochs from the paper's Appendix E.

``get_workload(name)`` returns one; ``WORKLOADS`` maps every registered name to its workload.
"""

from __future__ import annotations

from sassha.data.errors import DataRootError
from sassha.workloads.base import (
    ClassificationWorkload,
    LanguageModelWorkload,
    RelabeledDataset,
    Workload,
)
from sassha.workloads.registry import WORKLOADS, get_workload

__all__ = [
    "WORKLOADS",
    "ClassificationWorkload",
    "DataRootError",
    "LanguageModelWorkload",
    "RelabeledDataset",
    "Workload",
    "get_workload",
]
