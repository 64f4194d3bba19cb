"""The files a trial leaves in its folder, and how they are written (atomically)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from runners.tracking import _atomic_write
from sassha.tracking import json_safe

RESULT_FILE = "result.json"
PROGRESS_FILE = "progress.json"
CONFIG_FILE = "config.json"


def write_json(path: Path, data: Any) -> None:
    _atomic_write(path, json.dumps(json_safe(data), indent=2, sort_keys=True) + "\n")
