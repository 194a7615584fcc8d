"""A trial's prints and displays go to that trial, not to the notebook.

Sixty trials printing every epoch would bury the notebook (and on worker processes the
prints would be lost), so while a trial runs, whatever its thread writes to ``sys.stdout``
or ``sys.stderr`` is kept in that trial's buffer; the worker stores the tail with the trial.
``sys.stdout`` is one object per process, so it is swapped once, while at least one trial
of the process runs, for a stand-in that sends each thread's writes to its own buffer;
writes from any other thread pass through unchanged.

Trials that run in the kernel (one job) can also *display*: ``IPython.display.display``, a
``tqdm.auto`` bar (a widget in a notebook), ``plt.show()``. All of them go through the shell's
display publisher, so while trials run its ``publish`` and ``clear_output`` are wrapped the
same way: a trial's displays are kept in its buffer as their text form, and a trial's
``clear_output`` does not clear the notebook's cell (where the search's dashboard is). A
widget a trial displayed (tqdm's bar: a box, a progress bar, labels, their layouts) is closed
when the trial ends, or every trial's would stay in the kernel and in the saved notebook.
Figures a trial opens with pyplot and leaves open would be shown by the inline backend when
the cell ends, one per trial: they are closed when the trial ends.

Compiled libraries write to the process's file descriptors 1 and 2, below ``sys.stdout``
(LightGBM's ``[LightGBM] [Info]`` lines, XGBoost's, a ``subprocess`` the cell starts, CUDA's
warnings); in a kernel those reach the notebook, from worker processes too. While a worker
runs trials, :data:`native_output` points the two descriptors at pipes whose text goes to the
trial running in the process, and passes through when none is running.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import threading
from typing import Any

__all__ = ["OUTPUT_TAIL", "beside_trials", "captured_output", "close_widgets", "native_output", "warnings_in"]

OUTPUT_TAIL = 2000  # characters of a trial's printed output kept in the store
MAX_WARNINGS = 5  # distinct warnings kept with a trial

# How Python's warnings module prints one (warnings.formatwarning): "path:line: Category: message"
_WARNING = re.compile(r"^\S[^\n]*?:\d+: ([A-Za-z_]\w*Warning): ([^\n]*)$", re.MULTILINE)
# and what compiled libraries print as theirs: LightGBM's "[LightGBM] [Warning] Unknown parameter: lamda_l1"
# (a misspelled parameter tuned for nothing: found trying nbtune as a new user), XGBoost's
# "WARNING: ...: Parameters: { "lamda" } are not used."
_NATIVE_WARNING = re.compile(r"^\[(LightGBM)\] \[Warning\] ([^\n]*)$|^\[[\d:]+\] (WARNING): ([^\n]*)$", re.MULTILINE)
_NATIVE_NAMES = {"LightGBM": "LightGBMWarning", "WARNING": "XGBoostWarning"}


def warnings_in(text: str) -> list[str]:
    """The distinct warnings ``text`` printed, as ``"Category: first line of the message"``, in
    the order first printed (at most :data:`MAX_WARNINGS`). Read from the whole of a trial's
    output, before its tail is cut: a warning of the first epoch is kept however much the
    trial printed after it."""
    if "Warning: " not in text and "[Warning]" not in text and "WARNING: " not in text:
        return []  # most outputs: no regular expression at all
    found = [(m.start(), f"{m[1]}: {m[2].strip()}") for m in _WARNING.finditer(text)]
    for m in _NATIVE_WARNING.finditer(text):
        library, message = (m[1], m[2]) if m[1] else (m[3], m[4])
        found.append((m.start(), f"{_NATIVE_NAMES[library]}: {message.strip()}"))
    out: dict[str, None] = {}
    for _, said in sorted(found):
        out.setdefault(said[:300], None)
        if len(out) == MAX_WARNINGS:
            break
    return list(out)


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


class _ThreadDisplay:
    """The shell's ``display_pub.publish`` / ``clear_output`` while trials run: a capturing
    thread's displays are kept as text (``text/plain``) in its buffer, its clears are dropped."""

    def __init__(self, original: Any, local: threading.local, clear: bool = False) -> None:
        self._original = original
        self._local = local
        self._clear = clear

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        buf = getattr(self._local, "buf", None)
        if buf is None:
            return self._original(*args, **kwargs)
        if self._clear:
            return None
        data = args[0] if args else kwargs.get("data")
        text = data.get("text/plain") if isinstance(data, dict) else None
        if text:
            buf.append(f"{text}\n")
        view = data.get(_WIDGET_VIEW) if isinstance(data, dict) else None
        if isinstance(view, dict) and view.get("model_id"):
            self._local.widgets.append(view["model_id"])
        return None


_WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


class _ThreadComms:
    """``comm.create_comm`` while trials run in the kernel: a widget a capturing thread makes (a
    ``tqdm.auto`` bar) gets a comm that sends nothing to the front end. Its display is kept as text
    anyway, and a front end that saves the state of every widget it was told of (nbclient,
    nbconvert: closed ones too) had kept every trial's bars, 1.6 MB for 18 trials (found trying
    nbtune as a new user)."""

    def __init__(self, original: Any, local: threading.local) -> None:
        self._original = original
        self._local = local

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if getattr(self._local, "buf", None) is None:
            return self._original(*args, **kwargs)
        import comm

        return comm.DummyComm(*args, **kwargs)


def _close_widgets(model_ids: list[str]) -> None:
    """Close the widgets a trial displayed, and the widgets they hold."""
    from nbtune import _compat

    close_widgets([w for m in model_ids if (w := _compat.widget_by_id(m)) is not None])


def close_widgets(widgets: list[Any]) -> None:
    """Close ``widgets`` and the widgets they hold (children, layout, style: any synced trait)."""
    seen: set[int] = set()
    todo = list(widgets)
    while todo:
        widget = todo.pop()
        if id(widget) in seen or not hasattr(widget, "close"):
            continue
        seen.add(id(widget))
        for name in getattr(widget, "keys", ()):  # the synced traits: where widgets hold widgets
            value = getattr(widget, name, None)
            for held in value if isinstance(value, (list, tuple)) else (value,):
                if hasattr(held, "model_id") and hasattr(held, "close"):
                    todo.append(held)
        widget.close()


def _bars() -> list[Any]:
    """tqdm's open progress bars, if the process uses tqdm (it is not imported to find out)."""
    std = sys.modules.get("tqdm.std")
    try:
        return list(std.tqdm._instances) if std is not None else []
    except Exception:  # (a WeakSet changing size under another thread)
        return []


def _pyplot() -> Any:
    """pyplot if the process uses it with a backend that draws off screen (the notebook's inline
    one, Agg in a worker), where a figure may be closed from any thread; else None."""
    plt = sys.modules.get("matplotlib.pyplot")
    if plt is None:
        return None
    backend = str(sys.modules["matplotlib"].get_backend()).lower()  # "inline" or "module://...backend_inline"
    return plt if backend == "agg" or "inline" in backend else None


def _display_publisher() -> Any:
    """The running IPython shell's display publisher (the kernel's), or None (a worker process,
    a script). IPython is not imported to find out."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    return getattr(shell, "display_pub", None)


class _Capture:
    """The process-wide swap, reference-counted over the trials that run at once.

    A context manager class rather than a generator: it is entered once per trial, and on
    millisecond trials a generator's set-up is a measurable share of nbtune's own cost."""

    def __init__(self) -> None:
        self.local = threading.local()
        self.lock = threading.Lock()
        self.users = 0
        self.publisher: Any = None  # the display publisher wrapped while trials run
        self.saved: dict[str, Any] = {}  # its own instance attributes of those names, if it had any
        self.figures: set[int] = set()  # pyplot's open figures when the trials began
        self.running: list[list[str]] = []  # the buffers of the trials running in this process

    def __call__(self) -> _Capture:
        return self

    def active(self) -> bool:
        """Whether the calling thread runs a trial whose output is being kept."""
        return getattr(self.local, "buf", None) is not None

    def __enter__(self) -> list[str]:
        with self.lock:
            if self.users == 0:
                sys.stdout = _ThreadOutput(sys.stdout, self.local)
                sys.stderr = _ThreadOutput(sys.stderr, self.local)
                self._wrap_displays()
                plt = _pyplot()
                self.figures = set(plt.get_fignums()) if plt is not None else set()
            self.users += 1
        buf: list[str] = []
        self.local.buf = buf
        self.local.widgets = []  # model ids of the widgets this trial displays
        self.local.bars = {id(b) for b in _bars()}  # the progress bars open before it
        self.running.append(buf)
        return buf

    def __exit__(self, *exc: object) -> None:
        if self.users == 1:  # (alone in the process: another trial's bars are not this one's to close)
            # a tqdm bar the trial left open draws its last state when it is collected, after the trial,
            # into the notebook (one bar per trial: found retesting); closed here, it draws into the trial's
            for bar in [b for b in _bars() if id(b) not in getattr(self.local, "bars", ())]:
                with contextlib.suppress(Exception):
                    bar.close()
        native_output.drain()  # what a library of this trial wrote below sys.stdout, into its buffer
        with self.lock:  # this trial's buffer, by identity (another trial's may be equal: both empty)
            self.running[:] = [b for b in self.running if b is not self.local.buf]
        self.local.buf = None
        if self.local.widgets:
            _close_widgets(self.local.widgets)
            self.local.widgets = []
        with self.lock:
            self.users -= 1
            if self.users == 0:
                for name in ("stdout", "stderr"):
                    stream = getattr(sys, name)
                    if isinstance(stream, _ThreadOutput):
                        setattr(sys, name, stream._original)
                self._unwrap_displays()
                plt = _pyplot()  # (imported by the trial, perhaps: then every figure is the trials')
                for number in set(plt.get_fignums()) - self.figures if plt is not None else ():
                    plt.close(number)

    def _wrap_displays(self) -> None:
        pub = _display_publisher()
        if pub is None or isinstance(pub.__dict__.get("publish"), _ThreadDisplay):
            return
        comms: Any = sys.modules.get("comm")
        if comms is not None and not isinstance(comms.create_comm, _ThreadComms):
            comms.create_comm = _ThreadComms(comms.create_comm, self.local)
        self.publisher = pub
        self.saved = {name: pub.__dict__[name] for name in ("publish", "clear_output") if name in pub.__dict__}
        pub.publish = _ThreadDisplay(pub.publish, self.local)
        pub.clear_output = _ThreadDisplay(pub.clear_output, self.local, clear=True)

    def _unwrap_displays(self) -> None:
        pub, self.publisher = self.publisher, None
        if pub is None:
            return
        comms: Any = sys.modules.get("comm")
        if comms is not None and isinstance(comms.create_comm, _ThreadComms):
            comms.create_comm = comms.create_comm._original
        for name in ("publish", "clear_output"):
            if not isinstance(pub.__dict__.get(name), _ThreadDisplay):
                continue  # replaced since by someone else: theirs stays
            if name in self.saved:
                pub.__dict__[name] = self.saved[name]
            else:
                del pub.__dict__[name]  # the class's method again


captured_output = _Capture()
"""``with captured_output() as buf:`` collects what the current thread prints into ``buf``."""


def _flush_c_stdio() -> None:
    """Write out what C's stdio holds in its buffers (printf's, before it reaches the descriptor)."""
    global _libc
    if _libc is None:
        import ctypes

        try:
            _libc = ctypes.CDLL(None)
        except OSError:  # pragma: no cover - no C library to load
            _libc = False
    if _libc:
        _libc.fflush(None)


_libc: Any = None


class _NativeCapture:
    """Descriptors 1 and 2 into pipes while a worker runs trials (reference-counted over the
    workers of the process); a thread per pipe hands what arrives to the running trial's buffer.

    Entered once per worker run, not per trial: a trial only waits, when it ends, until what its
    libraries wrote is read (a ``fflush`` and a look at the pipes, a few microseconds)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.users = 0
        self.saved: dict[int, int] = {}  # descriptor -> a copy of what it was
        self.pipes: dict[int, int] = {}  # descriptor -> the read end of its pipe
        self.readers: list[threading.Thread] = []
        self.io_lock = threading.Lock()  # one reader at a time hands a pipe's text over
        # a pipe's last line while it is not whole: C's stdio flushes a full buffer anywhere in a line, and a
        # line the trial printed from Python landed inside LightGBM's "[LightGBM] [Warning] ..." (read as a
        # warning that said Python's line: found trying nbtune as a new user)
        self.partial: dict[int, bytes] = {}
        self.generation = 0  # counts releases: a run from before one leaves nothing (see leave)

    def enter(self) -> int:
        """A worker's run begins: the descriptors go to the trials. Returns the token :meth:`leave` takes."""
        with self.lock:
            self.users += 1
            if self.users == 1:
                self._swap()
            return self.generation

    def leave(self, token: int) -> None:
        """A worker's run ends; the last one gives the descriptors back. A run that began before a
        :meth:`release` counts no more (a later search's capture stays)."""
        with self.lock:
            if token != self.generation:
                return
            self.users -= 1
            if self.users == 0:
                self._restore()

    def release(self) -> None:
        """Give descriptors 1 and 2 back now, though a trial still runs: an Interrupt that cannot cut a
        trial inside a compiled call leaves it running on the kernel's thread, and in a terminal or a
        script the search's summary, printed meanwhile, went into that trial's output. What the trial
        writes from here on goes where it was going."""
        with self.lock:
            if self.users:
                self.users = 0
                self.generation += 1
                self._restore()

    def _swap(self) -> None:
        _flush_c_stdio()
        for fd in (1, 2):
            try:
                with contextlib.suppress(Exception):  # Python's buffers first: they belong before
                    (sys.__stdout__ if fd == 1 else sys.__stderr__).flush()  # type: ignore[union-attr]
                saved = os.dup(fd)
                read, write = os.pipe()
                os.set_blocking(read, False)
                os.dup2(write, fd)
                os.close(write)
            except OSError:  # no such descriptor (a daemon, an embedded interpreter): leave it be
                continue
            self.saved[fd], self.pipes[fd] = saved, read
            reader = threading.Thread(target=self._read, args=(fd, read, saved), name=f"nbtune-fd{fd}", daemon=True)
            reader.start()
            self.readers.append(reader)

    def _restore(self) -> None:
        _flush_c_stdio()
        for fd, saved in self.saved.items():
            os.dup2(saved, fd)  # the pipe's last write end closes: its reader sees the end
        done = True
        for reader in self.readers:
            reader.join(timeout=1.0)  # (a process the cell started may still hold the pipe)
            done = done and not reader.is_alive()
        if done:  # else a reader may still pass text through the copies: they stay open
            for saved in self.saved.values():
                os.close(saved)
        self.saved, self.pipes, self.readers = {}, {}, []

    def _read(self, fd: int, read: int, saved: int) -> None:
        import select

        while True:
            try:
                select.select([read], [], [])  # readable: data, or the end
            except (OSError, ValueError):
                break
            with self.io_lock:
                try:
                    if not self._take(read, saved):
                        break
                except Exception:  # never die with the pipe open: a writer would block once it fills
                    continue
        os.close(read)

    def _take(self, read: int, saved: int) -> bool:
        """Hand over what the pipe holds now (the caller holds ``io_lock``); False at its end."""
        while True:
            try:
                chunk = os.read(read, 65536)
            except BlockingIOError:
                return True
            except OSError:
                return False
            if not chunk:
                self._hand_over(read, saved, b"", whole=True)
                return False
            self._hand_over(read, saved, chunk)

    def _hand_over(self, read: int, saved: int, chunk: bytes, whole: bool = False) -> None:
        """The pipe's text to the running trial, whole lines only (``whole``: the rest too)."""
        data = self.partial.pop(read, b"") + chunk
        running = list(captured_output.running)  # (a copy: trials end on other threads)
        if not running:  # no trial runs: where it was going
            with contextlib.suppress(OSError):
                if data:
                    os.write(saved, data)
            return
        cut = len(data) if whole else data.rfind(b"\n") + 1
        if cut:
            running[-1].append(data[:cut].decode("utf-8", "replace"))
        if cut < len(data):
            self.partial[read] = data[cut:]

    def drain(self) -> None:
        """Hand over what was written to the descriptors so far (the ending trial's last lines)."""
        if not self.pipes:
            return
        _flush_c_stdio()
        with self.io_lock:
            for fd, read in list(self.pipes.items()):
                self._take(read, self.saved[fd])
                if read in self.partial:  # (the ending trial's last line, though it ends with no newline)
                    self._hand_over(read, self.saved[fd], b"", whole=True)


native_output = _NativeCapture()
"""``native_output.enter()`` / ``leave(token)`` around a worker's trials: descriptors 1 and 2 go to the running trial."""


class _Beside:
    """A terminal's stream as the search's own output sees it: its writes go where its descriptor
    pointed before the trials' capture took it, not into the running trial's buffer."""

    def __init__(self, stream: Any, fd: int) -> None:
        self.stream, self.fd = stream, fd
        self.encoding = getattr(stream, "encoding", None) or "utf-8"

    def write(self, text: str) -> int:
        with contextlib.suppress(Exception):
            self.stream.flush()  # what was printed before comes first
        data = text.encode(self.encoding, "replace")
        # (the capture's saved copy is closed under its lock when trials end)
        with native_output.lock, contextlib.suppress(OSError):
            os.write(native_output.saved.get(self.fd, self.fd), data)
        return len(text)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return bool(getattr(self.stream, "isatty", lambda: False)())


def beside_trials(stream: Any) -> Any:
    """``stream`` for progress lines written while trials run: a terminal's or a script's stdout
    (a file on descriptor 1 or 2) writes beside the trials' capture of those descriptors (in a
    terminal IPython the lines went into the running trial's output); any other stream (a Jupyter
    kernel's, a ``StringIO``) is itself."""
    import io

    if not isinstance(stream, io.TextIOWrapper):
        return stream
    try:
        fd = stream.fileno()
    except (OSError, ValueError):
        return stream
    return _Beside(stream, fd) if fd in (1, 2) else stream
