"""A damaged journal's tail is set aside before anyone appends after it.

Optuna's journal reader skips a torn or garbage *last* record, so a study whose file was
cut mid-write (a crash, a full disk) or got garbage appended still opens. But a writer that
appends after the damage leaves a bad record in the *middle*, and from then on no reader
can parse the file: every trial is lost. So before a process writes to a journal, nbtune
checks its end and moves anything after the last good record to a side file
(``<name>.journal.damaged-<time>``, never deleted), under Optuna's own journal lock.

A record is good when it is a whole line (ending with a newline) holding a JSON object
with an ``op_code``, as Optuna writes them. Damage in the middle of a file (left by an
older nbtune) is found the same way when the quick check of the end is not enough: the
bad lines are set aside and every good record is kept.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

__all__ = ["repair_journal"]

_logger = logging.getLogger(__name__)

_TAIL = 1 << 16  # bytes read from the end for the quick check


def _good(line: bytes) -> bool:
    if not line.endswith(b"\n"):
        return False
    try:
        record = json.loads(line)
    except ValueError:
        return False
    return isinstance(record, dict) and "op_code" in record


def _tail_is_good(path: Path, size: int) -> bool:
    """The file ends with a newline and its last line is a good record (or the file is empty)."""
    if size == 0:
        return True
    with open(path, "rb") as f:
        f.seek(max(0, size - _TAIL))
        chunk = f.read()
    if not chunk.endswith(b"\n"):
        return False
    lines = chunk.splitlines(keepends=True)
    if len(lines) == 1 and size > len(chunk):
        return True  # one record longer than the chunk: judged by the full scan if Optuna fails
    return _good(lines[-1])


def _split(path: Path) -> tuple[bytes, bytes]:
    """(every good record, every bad line), in file order."""
    good: list[bytes] = []
    bad: list[bytes] = []
    with open(path, "rb") as f:
        for line in f:
            (good if _good(line) else bad).append(line)
    return b"".join(good), b"".join(bad)


def repair_journal(path: str | os.PathLike[str], *, full: bool = False) -> str | None:
    """Set aside a damaged journal's bad records; return a one-line message, or None if it was sound.

    Args:
        path: the journal file.
        full: check every line (slower), not only the end.

    The caller holds nothing; this takes Optuna's lock on the journal while it works, so no
    other process appends meanwhile. A read-only journal is left as it is (None).
    """
    from optuna.storages.journal import JournalFileSymlinkLock
    from optuna.storages.journal._file import get_lock_file

    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError:
        return None
    if not full and _tail_is_good(path, size):
        return None
    if not os.access(path, os.W_OK) or not os.access(path.parent, os.W_OK):
        return None  # a read-only store is only read: Optuna's reader copes with a bad tail
    with get_lock_file(JournalFileSymlinkLock(str(path))):
        good, bad = _split(path)
        if not bad:
            return None
        side = path.with_name(f"{path.name}.damaged-{time.strftime('%Y%m%d-%H%M%S')}")
        with open(side, "ab") as f:
            f.write(bad)
            f.flush()
            os.fsync(f.fileno())
        tmp = path.with_name(path.name + ".repairing")
        with open(tmp, "wb") as f:
            f.write(good)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    message = (
        f"the store file {path.name} had {len(bad)} damaged byte(s) after its last good record "
        f"(a crash or a full disk mid-write?); they were set aside in {side.name} and the study goes on"
    )
    _logger.warning(message)
    return message
