"""Per-trial leases: ``running.json`` in a trial's folder says which process trains it.

Several ``sweep run`` processes (in one folder, or on machines sharing the working folder) may
work on one sweep; each trial goes to whoever takes its lease first. The lease file holds the
holder's pid, host and a token; its modification time is the heartbeat, renewed by a thread
while the trial runs. A lease is stale, and may be taken over, when its heartbeat is older than
``stale_after_s`` or, on the holder's own host, when the holder's process is gone (a kill -9
leaves the file behind). Taking, taking over and releasing happen under an exclusive ``flock``
on the trial folder itself, so two processes can never both decide a lease is theirs; the
check and the write are one step, and no second marker file is needed.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

LEASE_FILE = "running.json"
# A holder renews its heartbeat this often; a lease not renewed for STALE_S is abandoned.
# Both can be shortened for tests or lengthened for slow shared filesystems.
HEARTBEAT_S = float(os.environ.get("SWEEP_LEASE_HEARTBEAT_S", "10"))
STALE_S = float(os.environ.get("SWEEP_LEASE_STALE_S", "120"))


@contextlib.contextmanager
def locked(path: str | Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` (a folder, or a lock file created if missing)."""
    path = Path(path)
    if path.is_dir():
        fd = os.open(path, os.O_RDONLY)
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def read_lease(folder: Path) -> dict[str, Any] | None:
    """The lease in ``folder`` with ``heartbeat`` (its file's mtime), or None if there is none."""
    path = Path(folder) / LEASE_FILE
    try:
        info = json.loads(path.read_text())
        info["heartbeat"] = path.stat().st_mtime
    except (OSError, ValueError, TypeError):
        return None
    return info if isinstance(info, dict) else None


def _pid_alive(pid: Any) -> bool:
    try:
        os.kill(int(pid), 0)
    except PermissionError:
        return True  # exists, owned by someone else
    except (OSError, ValueError, TypeError):
        return False
    return True


def is_live(info: dict[str, Any] | None, now: float | None = None) -> bool:
    """Whether a lease (as ``read_lease`` returns it) still holds its trial."""
    if not info:
        return False
    age = (now or time.time()) - float(info.get("heartbeat", 0))
    if age > STALE_S:
        return False
    if info.get("host") == socket.gethostname():
        return _pid_alive(info.get("pid"))
    return True


def describe(info: dict[str, Any]) -> str:
    return f"pid {info.get('pid')} on {info.get('host')}"


class Lease:
    """A lease this process holds on one trial folder; renews itself until ``release``."""

    def __init__(self, folder: Path, token: str, previous: dict[str, Any] | None) -> None:
        self.folder = Path(folder)
        self.path = self.folder / LEASE_FILE
        self.token = token
        self.previous = previous  # the stale lease taken over, if any
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, daemon=True, name="lease-heartbeat")
        self._thread.start()

    @classmethod
    def acquire(cls, folder: str | Path) -> tuple[Lease | None, dict[str, Any] | None]:
        """``(lease, None)`` if taken (fresh or over a stale one), ``(None, holder)`` if held."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        with locked(folder):
            current = read_lease(folder)
            if is_live(current):
                return None, current
            token = uuid.uuid4().hex
            info = {
                "pid": os.getpid(),
                "host": socket.gethostname(),
                "started": time.time(),
                "token": token,
            }
            tmp = folder / f".{LEASE_FILE}.{token}"
            tmp.write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")
            os.replace(tmp, folder / LEASE_FILE)
        return cls(folder, token, current), None

    def held(self) -> bool:
        info = read_lease(self.folder)
        return bool(info) and info.get("token") == self.token

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            with contextlib.suppress(OSError):
                if self.held():
                    os.utime(self.path)

    def release(self) -> None:
        """Stop the heartbeat and remove the lease if it is still this one's."""
        self._stop.set()
        self._thread.join(timeout=HEARTBEAT_S + 1)
        with contextlib.suppress(OSError), locked(self.folder):
            if self.held():
                self.path.unlink()
