"""This machine's processes, as the store and the search see them: whether one still runs, and
when it started (a reused pid is another process)."""

from __future__ import annotations

import os

__all__ = ["is_alive", "process_start"]


def _proc_stat(pid: int) -> list[bytes] | None:
    """The fields of /proc/PID/stat after the command name (Linux), or None."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()
    except (OSError, IndexError):
        return None


def process_start(pid: int) -> str | None:
    """When the process started (Linux: clock ticks since boot), to tell a reused pid apart."""
    fields = _proc_stat(pid)
    return fields[19].decode() if fields is not None and len(fields) > 19 else None


def is_alive(pid: int, start: str | None = None) -> bool:
    """Whether process ``pid`` (started at ``start``, if known) still runs on this machine."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    fields = _proc_stat(pid)
    if fields is None or len(fields) <= 19:
        return True  # no /proc: the signal check is all we have
    if start is not None and fields[19].decode() != start:
        return False  # the pid now belongs to another process
    return fields[0] != b"Z"  # a killed process not yet reaped by its parent is a zombie: dead
