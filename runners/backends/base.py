"""The backend interface: a backend maps ``runners.execute.execute_trial`` over jobs."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable

Job = dict
Result = dict
OnResult = Callable[[Job, Result], None]


def error_tail(text: str, lines: int = 30) -> str:
    """The last ``lines`` lines of an error text: what a failed trial's result keeps of it."""
    return "\n".join(text.rstrip().splitlines()[-lines:])


class Backend(ABC):
    """Runs trial jobs somewhere and reports each result as it arrives.

    ``on_result(job, result)`` is called in the driver process once per job, in completion
    order. A job whose worker crashed is reported with ``{"status": "failed", "error": ...}``
    rather than raised, so one bad trial never loses the others' results.
    """

    name: str = "base"

    def check(self, jobs: list[Job]) -> None:
        """Raise ValueError (one line) for jobs this backend can never run; before any runs."""
        return None  # noqa: B027 - an optional hook: most backends accept every job

    @abstractmethod
    def run(self, jobs: list[Job], on_result: OnResult) -> None:
        """Run every job; return when all have reported."""
