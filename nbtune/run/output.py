"""A trial's prints go to that trial, not to the notebook.

Sixty trials printing every epoch would bury the notebook (and on worker processes the
prints would be lost), so while a trial runs, whatever its thread writes to ``sys.stdout``
or ``sys.stderr`` is kept in that trial's buffer; the worker stores the tail with the trial.
``sys.stdout`` is one object per process, so it is swapped once, while at least one trial
of the process runs, for a stand-in that sends each thread's writes to its own buffer;
writes from any other thread pass through unchanged.
"""

from __future__ import annotations

import sys
import threading
from typing import Any

__all__ = ["OUTPUT_TAIL", "captured_output"]

OUTPUT_TAIL = 2000  # characters of a trial's printed output kept in the store


class _ThreadOutput:
    """sys.stdout/sys.stderr stand-in: a capturing thread's writes go to its buffer."""

    def __init__(self, original: Any, local: threading.local) -> None:
        self._original = original
        self._local = local

    def write(self, text: str) -> int:
        buf = getattr(self._local, "buf", None)
        if buf is None:
            return int(self._original.write(text) or 0)
        buf.append(text)
        return len(text)

    def flush(self) -> None:
        if getattr(self._local, "buf", None) is None:
            self._original.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._original, name)


class _Capture:
    """The process-wide swap, reference-counted over the trials that run at once.

    A context manager class rather than a generator: it is entered once per trial, and on
    millisecond trials a generator's set-up is a measurable share of nbtune's own cost."""

    def __init__(self) -> None:
        self.local = threading.local()
        self.lock = threading.Lock()
        self.users = 0

    def __call__(self) -> _Capture:
        return self

    def __enter__(self) -> list[str]:
        with self.lock:
            if self.users == 0:
                sys.stdout = _ThreadOutput(sys.stdout, self.local)
                sys.stderr = _ThreadOutput(sys.stderr, self.local)
            self.users += 1
        buf: list[str] = []
        self.local.buf = buf
        return buf

    def __exit__(self, *exc: object) -> None:
        self.local.buf = None
        with self.lock:
            self.users -= 1
            if self.users == 0:
                for name in ("stdout", "stderr"):
                    stream = getattr(sys, name)
                    if isinstance(stream, _ThreadOutput):
                        setattr(sys, name, stream._original)


captured_output = _Capture()
"""``with captured_output() as buf:`` collects what the current thread prints into ``buf``."""
