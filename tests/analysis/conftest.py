"""A temporary MLflow store holding sweeps logged in the documented layout.

Runs are logged here directly (not through the runners) so these tests pin the input contract
of ``analysis`` — docs/architecture.md, "MLflow layout" — and nothing else.
"""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def store(tmp_path_factory):
    """One SQLite store for the session: creating its schema takes seconds."""
    path = tmp_path_factory.mktemp("mlflow") / "mlflow.db"
    return f"sqlite:///{path}"
