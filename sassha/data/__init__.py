"""Dataset loading for the workloads, label noise and the data-root error."""

from sassha.data.errors import DataRootError
from sassha.data.label_noise import apply_label_noise

__all__ = ["DataRootError", "apply_label_noise"]
