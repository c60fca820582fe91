"""One writer per run id: a lock file holding the writer's pid, host and a heartbeat.

A second process that asks for a held lock waits until it is free (then reuses the result the
holder wrote, or trains if there is none). A lock whose holder is dead (same host, no such
pid) or silent (no heartbeat for ``STALE_S``, any host) is taken over.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path

HEARTBEAT_S = 30.0
STALE_S = 600.0  # a holder on another host that has not touched the lock this long is dead
POLL_S = 1.0


class RunLock:
    """``with RunLock(path):`` holds ``path`` for this process; see the module docstring."""

    def __init__(self, path: Path, log: Callable[[str], None] = print, poll_s: float = POLL_S):
        self.path, self.log, self.poll_s = Path(path), log, poll_s
        self.stop = threading.Event()
        self.beat: threading.Thread | None = None
        self.waited = False  # whether another process held it when we asked

    def __enter__(self) -> RunLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        while not self.try_take():
            holder = read_holder(self.path)
            if holder is None or is_stale(holder, self.path):
                self.log(f"taking over the stale lock {self.path} ({describe(holder)})")
                self.path.unlink(missing_ok=True)
                continue
            if not self.waited:
                self.log(f"waiting: {describe(holder)} is running this run ({self.path})")
            self.waited = True
            time.sleep(self.poll_s)
        self.beat = threading.Thread(target=self.heartbeat, daemon=True)
        self.beat.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        if self.beat is not None:
            self.beat.join()
        holder = read_holder(self.path)
        if holder and holder.get("pid") == os.getpid() and holder.get("host") == host():
            self.path.unlink(missing_ok=True)

    def try_take(self) -> bool:
        """Create the lock with its content in one step (a hard link of a written temp file),
        so another process never reads it half-written and takes it for a dead holder's."""
        temp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        holder = {"pid": os.getpid(), "host": host(), "since": time.time()}
        temp.write_text(json.dumps(holder))
        try:
            os.link(temp, self.path)
        except FileExistsError:
            return False
        finally:
            temp.unlink(missing_ok=True)
        return True

    def heartbeat(self) -> None:
        while not self.stop.wait(HEARTBEAT_S):
            try:
                os.utime(self.path)
            except OSError:
                return


def host() -> str:
    return socket.gethostname()


def read_holder(path: Path) -> dict | None:
    """The lock's content, or None when it is unreadable (a holder died while writing it)."""
    try:
        holder = json.loads(Path(path).read_text())
    except FileNotFoundError:
        return {}  # released meanwhile: not stale, just try again
    except (OSError, ValueError):
        return None
    return holder if isinstance(holder, dict) else None


def is_stale(holder: dict, path: Path) -> bool:
    if not holder:
        return False
    if holder.get("host") == host():
        return not pid_alive(int(holder.get("pid", -1)))
    try:
        return time.time() - path.stat().st_mtime > STALE_S
    except FileNotFoundError:
        return False


def pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def describe(holder: dict | None) -> str:
    if not holder:
        return "unreadable holder"
    return f"pid {holder.get('pid')} on {holder.get('host')}"
