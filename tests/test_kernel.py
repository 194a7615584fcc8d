"""%%tune in a real Jupyter kernel: Interrupt, resume, and a notebook run end to end."""

from __future__ import annotations

import contextlib
import os
import time

import nbformat
import pytest
from jupyter_client.manager import start_new_kernel

import nbtune
from nbtune.store.attrs import ATTR, finished_count

SLOW = """%%tune --trials 200 --minimize loss --store {store} {extra}
x = 0.5  # tune: uniform(0, 1)
import time
for epoch in range(5):  # tune: epochs
    time.sleep(0.06)
    loss = (x - 0.3) ** 2 + 1 / (epoch + 1)
"""


@pytest.fixture
def kernel(tmp_path):
    km, kc = start_new_kernel(kernel_name="python3", cwd=str(tmp_path))
    try:
        yield km, kc
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def _execute(kc, code, timeout=60, interrupt_after=None, km=None, interrupt_when=None):
    """Run code; collect iopub outputs until idle. Optionally interrupt after N seconds, or once
    ``interrupt_when()`` is true (polled every 0.2 s: a slow machine reaches that point later)."""
    msg_id = kc.execute(code)
    outputs, t0, interrupted = [], time.monotonic(), False
    while True:
        due = (
            interrupt_when()
            if interrupt_when is not None
            else (interrupt_after is not None and time.monotonic() - t0 > interrupt_after)
        )
        if due and not interrupted:
            km.interrupt_kernel()
            interrupted = True
            t_int = time.monotonic()
        try:
            msg = kc.get_iopub_msg(timeout=0.2)
        except Exception:
            if time.monotonic() - t0 > timeout:
                raise TimeoutError(code) from None
            continue
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
            break
        outputs.append(msg)
    reply = kc.get_shell_msg(timeout=10)
    while reply["parent_header"].get("msg_id") != msg_id:  # e.g. a kernel_info reply left from start-up
        reply = kc.get_shell_msg(timeout=10)
    stopped_in = (time.monotonic() - t_int) if interrupted else None
    return reply["content"], outputs, stopped_in


def _finished_in(store):
    """Finished trials in the store's one study, read with Optuna alone (0 before it exists)."""
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    files = list(store.glob("*.journal"))
    if not files:
        return 0
    try:
        storage = JournalStorage(JournalFileBackend(str(files[0])))
        study = storage.get_all_studies()[0]
        trials = storage.get_all_trials(study._study_id, deepcopy=False)
    except Exception:  # being written
        return 0
    return sum(t.state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED) for t in trials)


def _errors(outputs):
    return [m for m in outputs if m["msg_type"] == "error"]


@pytest.mark.parametrize("extra", ["", "--jobs 2"])
def test_interrupt_stops_gracefully_and_rerun_resumes(kernel, tmp_path, extra):
    km, kc = kernel
    store = tmp_path / "store"
    reply, _, _ = _execute(kc, "%load_ext nbtune")
    assert reply["status"] == "ok"
    # interrupted once 3 trials finished (after 4 s, a loaded machine had finished 2)
    reply, outputs, stopped_in = _execute(
        kc, SLOW.format(store=store, extra=extra), km=km, interrupt_when=lambda: _finished_in(store) >= 3
    )
    assert stopped_in is not None and stopped_in < 5, "the search did not stop within 5 s"
    # graceful: the partial result is shown, then the cell ends with one error line (no traceback),
    # so Run All stops here as at any interrupted cell
    assert reply["status"] == "error" and reply["ename"] == "UsageError", reply
    assert reply["traceback"] == [] and "re-run the cell to resume" in reply["evalue"]
    stderr = "".join(
        m["content"]["text"] for m in outputs if m["msg_type"] == "stream" and m["content"]["name"] == "stderr"
    )
    assert stderr.count("\n") == 1 and stderr.startswith("UsageError: interrupted:") and not _errors(outputs)
    texts = " ".join(
        str(m["content"].get("data", {}).get("text/plain", "")) for m in outputs if m["msg_type"] == "display_data"
    )
    assert "interrupted: finished trials are kept" in texts
    study = nbtune.load_study(store=store)
    states = [t.state.name for t in study.trials]
    finished = [t for t in study.trials if t.state.name in ("COMPLETE", "PRUNED")]
    assert len(finished) >= 3
    assert "RUNNING" not in states
    interrupted = [t for t in study.trials if ATTR.INTERRUPTED in t.user_attrs]
    # the running trial(s) either ended at that epoch or were recorded as interrupted
    assert len(interrupted) <= 2
    assert all(t.state.name == "FAIL" for t in interrupted)
    if extra:
        # no worker keeps running a trial after the interrupt
        pids = {t.user_attrs[ATTR.OWNER]["pid"] for t in study.trials}
        time.sleep(0.5)
        n = len(nbtune.load_study(store=store).trials)
        time.sleep(1.0)
        assert len(nbtune.load_study(store=store).trials) == n
    # re-running resumes: finished trials are kept, interrupted ones are re-run
    target = len(finished) + 3
    reply, outputs, _ = _execute(
        kc, SLOW.format(store=store, extra=extra).replace("--trials 200", f"--trials {target}")
    )
    assert reply["status"] == "ok", reply
    study = nbtune.load_study(store=store)
    from nbtune.store.attrs import finished_count

    assert finished_count(study.trials) == target
    if extra:
        km.shutdown_kernel(now=False)
        time.sleep(1)
        alive = []
        for pid in pids:
            try:
                os.kill(pid, 0)
                alive.append(pid)
            except ProcessLookupError:
                pass
        assert not alive, f"orphan worker processes: {alive}"


def test_a_second_signal_while_a_worker_records_its_interrupted_trial_leaves_none_running(kernel, tmp_path):
    """On a loaded machine the forced stop's SIGTERM (1.5 s after Interrupt) reached a worker still
    recording the trial Interrupt cut: that trial stayed RUNNING, and the re-run waited 30 s for the
    journal lock it held (seen in CI). Here each worker gets SIGINT, then SIGTERMs over 0.12 s."""
    import signal

    km, kc = kernel
    store = tmp_path / "store"
    _execute(kc, "%load_ext nbtune")
    sent = []

    def signal_workers():
        if sent or _finished_in(store) < 3:
            return bool(sent)
        study = nbtune.load_study(store=store)
        pids = {t.user_attrs[ATTR.OWNER]["pid"] for t in study.trials}
        for i, sig in enumerate((signal.SIGINT, *[signal.SIGTERM] * 5)):  # the SIGTERMs 0 to 0.12 s later
            time.sleep(0.03 * (i > 1))
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)
        sent.append(True)
        return True

    reply, _, _ = _execute(kc, SLOW.format(store=store, extra="--jobs 2"), km=km, interrupt_when=signal_workers)
    assert reply["status"] == "error" and "re-run the cell to resume" in reply["evalue"], reply
    study = nbtune.load_study(store=store)
    assert [t.number for t in study.trials if t.state.name == "RUNNING"] == []
    assert all(t.state.name == "FAIL" for t in study.trials if ATTR.INTERRUPTED in t.user_attrs)
    target = finished_count(study.trials) + 2
    t0 = time.monotonic()
    reply, _, _ = _execute(kc, SLOW.format(store=store, extra="--jobs 2").replace("--trials 200", f"--trials {target}"))
    assert reply["status"] == "ok", reply
    assert time.monotonic() - t0 < 20  # no stale journal lock to wait out
    assert finished_count(nbtune.load_study(store=store).trials) == target


def test_a_worker_process_interrupted_inside_a_lazy_set_up_is_not_reused(kernel, tmp_path):
    """Interrupt with --jobs 2 cut a worker inside torch's first, lazy import of sympy: the warm
    process kept sympy half made, every trial of the next run failed there ('module 'sympy' has no
    attribute 'printing'') and the search stopped as for a bug in the cell, until a kernel restart
    (found trying nbtune as a new user). Here a library that fills a table on first use is cut
    half-way: a process that was cut keeps the half table for good."""
    store = tmp_path / "store"
    lib = tmp_path / "lib"
    lib.mkdir()
    slow = tmp_path / "slow"
    (lib / "lazylib.py").write_text(
        "import os, time\n_table = {}\n\n\ndef value():\n    if not _table:\n        _table['filling'] = True\n"
        f"        if os.path.exists({str(slow)!r}):\n            time.sleep(20)\n        _table['value'] = 1.0\n"
        "    return _table['value']\n"
    )
    slow.touch()
    cell = (
        f"%%tune --trials {{n}} --maximize v --jobs 2 --store {store}\n"
        "x = 0.5  # tune: uniform(0, 1)\n"
        f"import sys\nsys.path.insert(0, {str(lib)!r})\nimport lazylib\nv = lazylib.value() + x\n"
    )
    km, kc = kernel
    _execute(kc, "%load_ext nbtune")

    def filling():  # both workers inside the slow set-up for a moment
        try:
            running = [t for t in nbtune.load_study(store=store).trials if t.state.name == "RUNNING"]
        except KeyError:
            return False
        if len(running) < 2:
            return False
        time.sleep(1.0)
        return True

    reply, _, _ = _execute(kc, cell.format(n=6), km=km, interrupt_when=filling)
    assert reply["status"] == "error" and "re-run the cell to resume" in reply["evalue"], reply
    slow.unlink()
    reply, _, _ = _execute(kc, cell.format(n=6))
    assert reply["status"] == "ok", reply
    study = nbtune.load_study(store=store)
    failed = [
        t.user_attrs.get(ATTR.ERROR)
        for t in study.trials
        if t.state.name == "FAIL" and ATTR.INTERRUPTED not in t.user_attrs
    ]
    assert failed == [] and finished_count(study.trials) == 6


def _interrupt_reading_slow(kernel, slow, options, after):
    """The cell of a search that reads ``slow = Slow()`` (``slow``: the code of its class) interrupted
    ``after`` seconds in: the reply, the time it started, and what the cell printed."""
    km, kc = kernel
    _execute(kc, "%load_ext nbtune")
    reply, _, _ = _execute(kc, f"import time\n\n{slow}\nslow = Slow()\n")
    assert reply["status"] == "ok", reply
    cell = (
        f"%%tune --trials 4 --maximize v {options} -o res\nx = 0.5  # tune: uniform(0, 1)\nv = x + (slow is not None)\n"
    )
    t0 = time.monotonic()
    reply, outputs, _ = _execute(kc, cell, km=km, interrupt_when=lambda: time.monotonic() - t0 > after, timeout=90)
    return reply, t0, "".join(m["content"].get("text", "") for m in outputs)


def _interrupted_while_workers_rebuild(kernel, store, seconds, cut_by_interrupt=True):
    """A --jobs 2 search of a cell that reads a notebook object whose rebuilding takes ``seconds`` in each
    worker (``cut_by_interrupt=False``: not cut by Interrupt, as a call into compiled code is not),
    interrupted 3 s in; asserted to end as an interrupt. The time it started, and what the cell printed."""
    ignore = "" if cut_by_interrupt else "    import signal\n    signal.signal(signal.SIGINT, signal.SIG_IGN)\n"
    slow = (
        f"def rebuilt():\n{ignore}    time.sleep({seconds})\n    return Slow()\n\n"
        "class Slow:\n    def __reduce__(self):\n        return rebuilt, ()\n"
    )
    reply, t0, said = _interrupt_reading_slow(kernel, slow, f"--jobs 2 --store {store}", 3)
    assert reply["status"] == "error" and "re-run the cell to resume" in reply["evalue"], reply
    return t0, said


def test_interrupt_while_worker_processes_rebuild_the_notebook_data_is_an_interrupt(kernel, tmp_path):
    """Interrupt while --jobs 2 workers were still unpickling what the cell reads broke their pool,
    which read as 'the worker processes could not rebuild what the cell reads from the notebook', and
    -o was left unbound (found trying nbtune as a new user)."""
    _interrupted_while_workers_rebuild(kernel, tmp_path / "store", 10)
    reply, outputs, _ = _execute(kernel[1], "print(type(res).__name__)")
    assert reply["status"] == "ok", reply
    assert "TuneResult" in "".join(m["content"].get("text", "") for m in outputs)


def test_workers_that_start_after_interrupt_do_not_run_the_search(kernel, tmp_path):
    """Interrupt while the --jobs 2 workers still rebuilt a large notebook object: the cell said
    'interrupted', and once the workers were done, 30 s later, they ran the whole search unseen (the run's
    stop flags had been cleared as the cell ended; found retesting). Here rebuilding takes 9 s, longer
    than the kernel waits for workers after Interrupt (at 3 s, 1.5 s for Stop now, 3 s to end them)."""
    store = tmp_path / "store"
    t0, said = _interrupted_while_workers_rebuild(kernel, store, 9, cut_by_interrupt=False)
    # said as what it is: no trial had started (it read 'running trials did not stop ...', 'Stop now: ...')
    assert "Interrupt or Stop now: no trial had started (the worker processes were still starting)" in said, said
    assert "running trials did not stop" not in said, said
    time.sleep(max(0.0, t0 + 14 - time.monotonic()))  # the workers would be done rebuilding by 10 s
    states = [t.state.name for t in nbtune.load_study(store=store).trials]
    assert "COMPLETE" not in states and "RUNNING" not in states, states


def test_interrupt_while_the_search_is_planned_ends_the_cell_at_once(kernel, tmp_path):
    """Planning reads and hashes the notebook data the cell uses; over a large object that took 20 s, and
    Interrupt, which ipykernel turns into a cancelled await in an async cell, took effect only once the
    search had started (found retesting Interrupt as a user). Here hashing the object takes 20 s."""
    slow = "class Slow:\n    def __reduce__(self):\n        time.sleep(20)\n        return Slow, ()\n"
    reply, t0, said = _interrupt_reading_slow(kernel, slow, f"--store {tmp_path / 'store'}", 7)
    took = time.monotonic() - t0
    assert reply["status"] == "error" and "interrupted before the search began" in reply["evalue"], reply
    assert "no trial ran; re-run the cell to start it" in reply["evalue"] and took < 15, (took, reply["evalue"])
    # nothing showed for those seconds
    assert "nbtune: reading the cell and the notebook data it uses (hashed for the study's identity" in said, said
    reply, _, _ = _execute(kernel[1], "print(1 + 1)")  # the kernel's own Interrupt handling is back
    assert reply["status"] == "ok", reply


def test_dead_kernel_trials_are_marked_on_resume(kernel, tmp_path):
    km, kc = kernel
    store = tmp_path / "store"
    _execute(kc, "%load_ext nbtune")
    kc.execute(SLOW.format(store=store, extra=""))
    # Kill the kernel mid-trial (SIGKILL): wait until a trial runs and two have finished, so the
    # kill does not land in the few milliseconds between two trials.
    t_end = time.monotonic() + 30
    while time.monotonic() < t_end:
        time.sleep(0.05)
        try:
            trials = nbtune.load_study(store=store).trials
        except KeyError:  # no study yet
            continue
        if (
            trials
            and trials[-1].state.name == "RUNNING"
            and sum(t.state.name in ("COMPLETE", "PRUNED") for t in trials) >= 2
        ):
            break
    km.provisioner.process.kill()
    time.sleep(0.5)
    study = nbtune.load_study(store=store)
    running = [t for t in study.trials if t.state.name == "RUNNING"]
    assert len(running) == 1
    done = len([t for t in study.trials if t.state.name in ("COMPLETE", "PRUNED")])
    assert done >= 2
    # a new kernel (here: this process) resumes the study
    res = nbtune.tune(SLOW.split("\n", 1)[1], minimize="loss", n_trials=done + 2, store=store, view=None)
    t = res.study.trials[running[0].number]
    assert t.state.name == "FAIL" and "stopped" in t.user_attrs[ATTR.INTERRUPTED]
    assert any("left running by a stopped kernel" in m for m in res.messages)
    assert res.n_finished == done + 2


HELPERS = """import numpy as np
data = np.linspace(0, 1, 50)
def score(a):
    return -float(((data * a - 0.3) ** 2).mean())
class Scorer:
    def __call__(self, a):
        return score(a) - 0.01
"""
CALLS_HELPERS = """%%tune -n {n} --maximize s --apply --store {store}
a = 0.5  # tune: uniform(0.0, 1.0)
for epoch in range(3):  # tune: epochs
    preds = data * a + epoch * 0.01
    s = Scorer()(a) - float(preds.std()) * 0
"""


def _messages(text: str) -> list[str]:
    """nbtune's lines in a cell's outputs (they name the study's version)."""
    return [line for line in text.replace("\\n", "\n").splitlines() if "started" in line or "resumed" in line]


def test_a_restarted_kernel_continues_a_study_whose_cell_calls_notebook_functions(kernel, tmp_path):
    """A function or class defined in the notebook is known by its code, not by the file name the
    kernel gives its cell (it holds the kernel's process id, new after every restart); and the
    variables the cell binds itself (``epoch``, ``preds``, left in the notebook by ``--apply`` or a
    plain run) are not data it reads. Either used to start a new version of the study (found
    trying nbtune as a new user)."""
    km, kc = kernel
    store = tmp_path / "store"
    for code in ("%load_ext nbtune", HELPERS, CALLS_HELPERS.format(n=3, store=store)):
        reply, outputs, _ = _execute(kc, code)
        assert reply["status"] == "ok", _errors(outputs)
    # the same kernel: --apply left epoch, preds and s in the notebook; a plain run of the body too
    _execute(kc, CALLS_HELPERS.split("\n", 1)[1])
    reply, outputs, _ = _execute(kc, CALLS_HELPERS.format(n=4, store=store))
    text = "".join(str(m["content"]) for m in outputs)
    assert reply["status"] == "ok" and ":v2" not in text, _messages(text)
    pid = km.provisioner.process.pid
    km.restart_kernel(now=True)
    kc.wait_for_ready(timeout=60)
    assert km.provisioner.process.pid != pid
    for code in ("%load_ext nbtune", HELPERS):
        assert _execute(kc, code)[0]["status"] == "ok"
    reply, outputs, _ = _execute(kc, CALLS_HELPERS.format(n=6, store=store))
    text = "".join(str(m["content"]) for m in outputs)
    assert reply["status"] == "ok" and ":v2" not in text, _messages(text)
    study = nbtune.load_study(store=store)
    assert ":v2" not in study.study_name and finished_count(study.trials) == 6
    # the data the cell does read still counts: changing it starts a new version
    _execute(kc, "data = data * 2")
    reply, outputs, _ = _execute(kc, CALLS_HELPERS.format(n=6, store=store))
    text = "".join(str(m["content"]) for m in outputs)
    assert "the notebook data it reads changed: data since" in text and ":v2" in text, _messages(text)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_workers_do_not_outlive_a_killed_kernel(kernel, tmp_path):
    """After the kernel is SIGKILLed with --jobs 2, its worker processes stop themselves within seconds,
    recording their trials as interrupted; the resume then gives exactly the requested number."""
    km, kc = kernel
    store = tmp_path / "store"
    _execute(kc, "%load_ext nbtune")
    kc.execute(SLOW.format(store=store, extra="--jobs 2"))
    kernel_pid = km.provisioner.process.pid
    t_end = time.monotonic() + 60
    workers: set[int] = set()
    while time.monotonic() < t_end and len(workers) < 2:
        time.sleep(0.2)
        try:
            trials = nbtune.load_study(store=store).trials
        except KeyError:
            continue
        workers = {t.user_attrs[ATTR.OWNER]["pid"] for t in trials if ATTR.OWNER in t.user_attrs} - {kernel_pid}
    assert len(workers) == 2
    km.provisioner.process.kill()
    t_kill = time.monotonic()
    while any(_alive(pid) for pid in workers) and time.monotonic() - t_kill < 15:
        time.sleep(0.1)
    assert not any(_alive(pid) for pid in workers), "a worker outlived its kernel"
    gone_in = time.monotonic() - t_kill
    n_before = len(nbtune.load_study(store=store).trials)
    time.sleep(1.0)
    study = nbtune.load_study(store=store)
    assert len(study.trials) == n_before  # nobody runs trials for the dead kernel
    cut = [t.user_attrs[ATTR.INTERRUPTED] for t in study.trials if ATTR.INTERRUPTED in t.user_attrs]
    assert cut and all(why == "the kernel died; its worker stopped the trial" for why in cut)  # not "the user"
    done = finished_count(study.trials)
    res = nbtune.tune(SLOW.split("\n", 1)[1], minimize="loss", n_trials=done + 3, store=store, view=None)
    assert res.n_finished == done + 3
    assert "RUNNING" not in [t.state.name for t in res.study.trials]
    assert gone_in < 8


def test_run_all_stops_at_an_interrupted_tune_cell(tmp_path):
    """Interrupt keeps the finished trials and shows them, then Run All stops, as at any interrupted cell."""
    import threading

    import nbclient

    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell(c)
        for c in ["%load_ext nbtune", SLOW.format(store=tmp_path / "store", extra="-o res"), "after = 'ran'"]
    ]
    client = nbclient.NotebookClient(
        nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    with client.setup_kernel():
        client.execute_cell(nb.cells[0], 0)
        from jupyter_core.utils import run_sync

        timer = threading.Timer(4.0, run_sync(client.km.interrupt_kernel))  # the Interrupt button
        timer.start()
        with pytest.raises(nbclient.exceptions.CellExecutionError, match="UsageError: interrupted: .* finished trials"):
            client.execute_cell(nb.cells[1], 1)
        shown = " ".join(o.get("data", {}).get("text/plain", "") for o in nb.cells[1].outputs)
        assert "trials finished" in shown and "interrupted: finished trials are kept" in shown
        # the result is bound all the same, for the user to look at
        check = nbformat.v4.new_code_cell("print(res.interrupted, res.n_finished >= 3)")
        nb.cells.append(check)
        client.execute_cell(check, 3)
        assert check.outputs[0]["text"].strip() == "True True"
    assert nb.cells[2].outputs == [] and nb.cells[2].get("execution_count") is None


def test_a_search_stopped_as_a_bug_shows_and_binds_its_trials(tmp_path):
    """Run All stops at the cell with one error line, and the cell shows the trials as they stopped
    (not the dashboard's first state, 'no trial yet', which a saved notebook would keep)."""
    import nbclient

    bug = "%%tune --trials 20 --minimize loss -o res\nx = 0.5  # tune: uniform(0, 1)\ny = 1 / 0\nloss = x\n"
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(c) for c in ["%load_ext nbtune", bug, "print(res.n_finished)"]]
    client = nbclient.NotebookClient(
        nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    with client.setup_kernel():
        client.execute_cell(nb.cells[0], 0)
        with pytest.raises(nbclient.exceptions.CellExecutionError, match="UsageError: the first 3 trials"):
            client.execute_cell(nb.cells[1], 1)
        shown = " ".join(o.get("data", {}).get("text/plain", "") for o in nb.cells[1].outputs)
        assert "3/20 trials finished (3 failed)" in shown and "0/20" not in shown, shown
        client.execute_cell(nb.cells[2], 2)
        assert nb.cells[2].outputs[0]["text"].strip() == "3"


def test_notebook_end_to_end_with_nbclient(tmp_path):
    import nbclient

    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell(c)
        for c in [
            "%load_ext nbtune",
            "def f(x):\n    return (x - 0.3) ** 2\nSEED = 0",
            "N = 8",
            "%%tune --trials {N} --minimize loss --seed $SEED -o res\nx = 0.5  # tune: uniform(0, 1)\n"
            "for epoch in range(3):  # tune: epochs\n    loss = f(x) + 1 / (epoch + 1)\n",
            "print(len(res.study.trials), sorted(res.best_params))",
        ]
    ]
    client = nbclient.NotebookClient(
        nb, timeout=120, kernel_name="python3", store_widget_state=True, resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()
    out = nb.cells[3].outputs
    result = next(o for o in out if o["output_type"] == "execute_result")
    # the saved result renders without the kernel's widget models: no widget MIME type in any output
    assert "best loss" in result["data"]["text/html"] and "8/8 trials finished" in result["data"]["text/plain"]
    assert "<img" in result["data"]["text/html"]
    assert not any("application/vnd.jupyter.widget-view+json" in o.get("data", {}) for o in out), out
    assert nb.cells[4].outputs[0]["text"].strip() == "8 ['x']"
    assert (tmp_path / ".nbtune").is_dir()
    # running the notebook again resumes: nothing new runs, the same study is shown
    nb2 = nbformat.from_dict(nb)
    nbclient.NotebookClient(
        nb2, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    assert nb2.cells[4].outputs[0]["text"].strip() == "8 ['x']"
    # ...and says that a kernel nbclient started does not know its notebook (found trying nbtune with papermill)
    said = "".join(o.get("text", "") + str(o.get("data", {}).get("text/plain", "")) for o in nb2.cells[3].outputs)
    assert "this kernel does not say which notebook it runs" in said and "give --name" in said, said
    # papermill's --inject-paths parameter names it
    nb3 = nbformat.from_dict(nb)
    nb3.cells[2].source = "N = 8\nPAPERMILL_INPUT_PATH = 'report.ipynb'"
    nbclient.NotebookClient(
        nb3, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    said = "".join(o.get("text", "") + str(o.get("data", {}).get("text/plain", "")) for o in nb3.cells[3].outputs)
    assert "nothing to run" in said and "does not say which notebook" not in said, said


def _executed(tmp_path, cells, timeout=120):
    """A notebook of ``cells`` executed headless in a real kernel in ``tmp_path``, widget state kept
    as nbclient keeps it (every widget it was told of)."""
    import nbclient

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(c) for c in cells]
    nbclient.NotebookClient(
        nb,
        timeout=timeout,
        kernel_name="python3",
        store_widget_state=True,
        resources={"metadata": {"path": str(tmp_path)}},
    ).execute()
    return nb


def test_a_trials_progress_bars_and_displays_stay_out_of_the_notebook(tmp_path):
    """tqdm.auto draws a widget per bar in a notebook, display() shows in the cell, and the inline
    backend shows the figures left open when the cell ends: from 4 trials in the kernel that would be
    4 bars, 4 displays and 4 figures around the search's own summary."""
    nb = _executed(
        tmp_path,
        [
            "%load_ext nbtune\nfrom tqdm.auto import trange\nfrom IPython.display import display\n"
            "%matplotlib inline\nimport matplotlib.pyplot as plt",  # (the tests' MPLBACKEND=Agg reaches kernels too)
            "%%tune --trials 4 --minimize loss --seed 0 -o res\nx = 0.5  # tune: uniform(0, 1)\n"
            "for epoch in trange(3, desc='train'):  # tune: epochs\n    loss = (x - 0.3) ** 2 + 1 / (epoch + 1)\n"
            "display('shown in a trial')\nplt.figure()\nplt.plot([x, loss])  # a figure left open\n",
            "done = [t for t in res.study.trials if t.state.name == 'COMPLETE']  # (paused ones never got there)\n"
            "print(len(done), sum('shown in a trial' in t.user_attrs.get('nbtune:output', '') for t in done))",
            # the trials' bars were closed: no progress bar widget is left in the kernel (JupyterLab
            # would save each one's state in the notebook)
            "from ipywidgets.widgets.widget import _instances\n"
            "print(sum(type(w).__name__ == 'FloatProgress' for w in list(_instances.values())))",
        ],
    )
    out = nb.cells[1].outputs
    # nor in the saved notebook: nbclient keeps the state of every widget it was told of, closed ones
    # too, and the trials' bars were 1,320 widget models in one user's notebook
    state = nb.metadata.get("widgets", {}).get("application/vnd.jupyter.widget-state+json", {}).get("state", {})
    assert state, "the dashboard's widgets are saved"
    assert not any(m["model_name"] == "FloatProgressModel" for m in state.values()), state
    assert any(o["output_type"] == "execute_result" for o in out)  # the search's summary
    shown = [o for o in out if o["output_type"] in ("display_data", "stream")]
    assert not any("shown in a trial" in str(o) or "train" in str(o) for o in shown), shown
    assert not any("image/png" in o.get("data", {}) for o in shown)  # the trials' figures were closed
    assert nb.cells[3].outputs[0]["text"].strip() == "0"
    complete, kept = nb.cells[2].outputs[0]["text"].split()
    assert int(complete) >= 2 and kept == complete  # kept with each trial instead


def test_tune_show_in_text_leaves_no_widget_in_the_saved_notebook(tmp_path):
    """A report notebook executed headless kept 200 kB of widget state per %tune_show, NBTUNE_VIEW=text
    or not (found trying nbtune as a new user): --view text shows the static summary with its plot."""
    nb = _executed(
        tmp_path,
        [
            "%load_ext nbtune",
            "%%tune --trials 3 --minimize loss --seed 0 --name shown --view text\nx = 0.5  # tune: uniform(0, 1)\nloss = x\n",
            "%tune_show shown --view text",
            "%tune_show shown",
            "r = %tune_show shown --view none\nprint(type(r).__name__, r.study.study_name)",
            "r",
            "r = %tune_show shown --view none\nr",
            "r = %tune_show shown --view none\ndisplay(r)\nprint('after')",
            "%tune_show shown --view none;",
        ],
    )
    text, live = nb.cells[2].outputs, nb.cells[3].outputs
    # the magic's value is the result, which the cell's output does not show a second time
    assert not any(o["output_type"] == "execute_result" for o in text + live), text + live
    assert nb.cells[4].outputs[0]["text"].strip() == "TuneResult shown" and len(nb.cells[4].outputs) == 1
    assert "3 trials finished" in nb.cells[5].outputs[0]["data"]["text/plain"]  # a later cell shows it
    # and so does the cell that bound it, later than the magic (it showed nothing: found trying nbtune as a new user)
    assert [o["output_type"] for o in nb.cells[6].outputs] == ["execute_result"], nb.cells[6].outputs
    assert "3 trials finished" in nb.cells[6].outputs[0]["data"]["text/plain"]
    assert [o["output_type"] for o in nb.cells[7].outputs] == ["display_data", "stream"], nb.cells[7].outputs
    assert "3 trials finished" in nb.cells[7].outputs[0]["data"]["text/plain"]
    assert nb.cells[8].outputs == []  # --view none, and a semicolon: nothing
    assert any(
        "image/png" in o.get("data", {}).get("text/html", "") or "<img" in o.get("data", {}).get("text/html", "")
        for o in text
    ), text
    assert not any("application/vnd.jupyter.widget-view+json" in o.get("data", {}) for o in text)
    assert any("application/vnd.jupyter.widget-view+json" in o.get("data", {}) for o in live)  # the default: live


def test_saved_notebook_of_a_1000_trial_study_stays_small(tmp_path):
    import json

    nb = _executed(
        tmp_path,
        [
            "%load_ext nbtune",
            "%%tune --trials 1000 --minimize loss --sampler random --seed 0\nx = 0.5  # tune: uniform(0, 1)\n"
            "for epoch in range(3):  # tune: epochs\n    loss = (x - 0.3) ** 2 + 1 / (epoch + 1)\n",
        ],
        timeout=300,
    )
    path = tmp_path / "saved.ipynb"
    nbformat.write(nb, path)
    size = path.stat().st_size
    assert size < 1_000_000, f"saved notebook is {size} bytes"
    result = next(o for o in nb.cells[1].outputs if o["output_type"] == "execute_result")["data"]
    assert "1000/1000 trials finished" in result["text/plain"]
    assert "<img" in result["text/html"] and "stopped early" in result["text/html"]
    print(f"saved notebook: {size / 1e3:.0f} kB; widget state {len(json.dumps(nb.metadata['widgets'])) / 1e3:.0f} kB")


@pytest.mark.parametrize("jobs", [1, 2])
def test_ctrl_c_in_a_script_or_terminal_stops_gracefully(tmp_path, jobs):
    """The blocking driver (terminal IPython, scripts): Ctrl-C = Stop now, result returned."""
    import signal
    import subprocess
    import sys

    script = f'''
import nbtune
cell = """x = 0.5  # tune: uniform(0, 1)
import time
for epoch in range(5):  # tune: epochs
    time.sleep(0.1)
    loss = x + 1 / (epoch + 1)
"""
res = nbtune.tune(cell, minimize="loss", n_trials=500, n_jobs={jobs}, store={str(tmp_path)!r}, view="text")
print("RESULT", res.n_finished, res.messages[-1])
'''
    proc = subprocess.Popen(
        [sys.executable, "-c", script],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    time.sleep(5)
    os.killpg(proc.pid, signal.SIGINT)  # as a terminal's Ctrl-C reaches the whole process group
    t0 = time.monotonic()
    out, err = proc.communicate(timeout=30)
    assert time.monotonic() - t0 < 6
    assert proc.returncode == 0, err
    assert "RESULT" in out and "interrupted: finished trials are kept" in out, out + err
    assert "Traceback" not in err, err
    study = nbtune.load_study(store=tmp_path)
    assert "RUNNING" not in {t.state.name for t in study.trials}


def test_tune_async_awaited_in_a_kernel_cell(kernel, tmp_path):
    _km, kc = kernel
    code = (
        "import nbtune\nK = 2.0\ncell = 'x = 0.5  # tune: uniform(0, 1)\\nloss = K * x\\n'\n"
        f"res = await nbtune.tune_async(cell, minimize='loss', n_trials=4, user_ns=globals(), store={str(tmp_path)!r})\n"
        "print(res.n_finished, round(res.best_value / res.best_params['x'], 3))"
    )
    reply, outputs, _ = _execute(kc, code)
    assert reply["status"] == "ok", reply
    text = "".join(m["content"].get("text", "") for m in outputs if m["msg_type"] == "stream")
    assert "4 2.0" in text


def test_options_below_the_tune_line_are_named_in_a_kernel(kernel):
    """In a kernel a %%tune cell runs as an async cell, not through run_cell_magic: the check of
    options written below the %%tune line is made there too."""
    _km, kc = kernel
    _execute(kc, "%load_ext nbtune")
    reply, outputs, _ = _execute(kc, "%%tune\n-n 4 --minimize loss\nx = 0.5  # tune: uniform(0, 1)\nloss = x\n")
    assert reply["status"] == "error", reply
    said = reply["evalue"] + "".join(str(m["content"]) for m in outputs)
    assert "line 2 of the %%tune cell: '-n 4 --minimize loss' looks like options" in said, said


TORCH_SETUP = """\
%load_ext nbtune
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

g = torch.Generator().manual_seed(0)
X = torch.randn(256, 8, generator=g)
y = (X[:, 0] + X[:, 1] > 0).long()
X_val, y_val = X[:64], y[:64]
train_ds = TensorDataset(X[64:], y[64:])
EPOCHS = 4
"""

TORCH_CELL = """\
%%tune --maximize val_acc --trials 4 --seed 0 --jobs 2 -o res
lr = 1e-2      # tune: loguniform(1e-3, 1e-1)
hidden = 16    # tune: logint(4, 32)
torch.manual_seed(0)
model = nn.Sequential(nn.Linear(8, hidden), nn.ReLU(), nn.Linear(hidden, 2))
opt = torch.optim.Adam(model.parameters(), lr=lr)
loader = DataLoader(train_ds, batch_size=32, shuffle=True, num_workers=2)
for epoch in range(EPOCHS):  # tune: epochs
    for xb, yb in loader:
        opt.zero_grad()
        F.cross_entropy(model(xb), yb).backward()
        opt.step()
    with torch.no_grad():
        val_acc = (model(X_val).argmax(1) == y_val).float().mean()
"""


def test_a_pytorch_cell_as_people_write_it_under_two_worker_processes(kernel, tmp_path):
    """range(EPOCHS) of a notebook variable, a tensor metric, and a DataLoader that starts its own
    worker processes, inside nbtune's loky workers (it failed with "'Process' object has no
    attribute 'env'" before the workers restored the kernel's start method)."""
    pytest.importorskip("torch")
    _km, kc = kernel
    reply, outputs, _ = _execute(kc, TORCH_SETUP, timeout=120)
    assert reply["status"] == "ok", _errors(outputs)
    reply, outputs, _ = _execute(kc, TORCH_CELL, timeout=240)
    assert reply["status"] == "ok", _errors(outputs)
    reply, outputs, _ = _execute(
        kc, "print(res.n_finished, res.counts(), res.scheduler, sorted(res.errors().items()), res.best_value)"
    )
    text = "".join(m["content"].get("text", "") for m in outputs if m["msg_type"] == "stream")
    n, rest = text.split(" ", 1)
    assert n == "4" and "'fail'" not in rest, text
    assert "R=4" in rest  # the loop's length came from EPOCHS
    assert 0.5 < float(text.split()[-1]) <= 1.0


STATEFUL = """%%tune --trials 3 --minimize loss --scheduler none --store {store} --seed 0 --record done,steps
x = 0.5  # tune: uniform(0, 1)
import time
model = {{"epochs": []}}  # tune: state
for epoch in range(30):  # tune: epochs
    time.sleep(0.15)
    model["epochs"].append(epoch)
    steps = len(model["epochs"])
    with open("epochs.log", "a") as f:
        f.write(f"{{x!r}} {{epoch}}\\n")
    loss = (x - 0.3) ** 2 + 1 / (epoch + 1)
done = len(model["epochs"])
"""


def test_interrupt_then_rerun_continues_the_cut_trial_from_its_last_epoch(kernel, tmp_path):
    """The kernel's Interrupt cuts a trial with a declared state mid-way; running the cell again
    continues it from its last saved epoch: no epoch runs twice, and its model has every epoch."""
    km, kc = kernel
    store = tmp_path / "store"
    _execute(kc, "%load_ext nbtune")
    log = tmp_path / "epochs.log"

    def second_trial_midway():  # a trial cut between its checkpoints, not before its first
        lines = log.read_text().split("\n")[:-1] if log.exists() else []
        xs = [line.split()[0] for line in lines]
        return len(set(xs)) >= 2 and 3 <= xs.count(xs[-1]) <= 20

    reply, _, _ = _execute(kc, STATEFUL.format(store=store), timeout=120, km=km, interrupt_when=second_trial_midway)
    assert reply["status"] == "error" and "re-run the cell to resume" in reply["evalue"]
    study = nbtune.load_study(store=store)
    cut = [t for t in study.trials if ATTR.INTERRUPTED in t.user_attrs]
    assert len(cut) == 1 and 0 < cut[0].user_attrs[ATTR.CHECKPOINT]["step"] < 30
    saved = cut[0].user_attrs[ATTR.CHECKPOINT]["step"]
    reply, _, _ = _execute(kc, STATEFUL.format(store=store), timeout=90)
    assert reply["status"] == "ok", reply
    study = nbtune.load_study(store=store)
    rerun = next(t for t in study.trials if t.user_attrs.get(ATTR.RERUN_OF) == cut[0].number)
    assert rerun.user_attrs[ATTR.RESUME]["step"] == saved
    assert sorted(rerun.intermediate_values) == list(range(1, 31))  # the whole curve, each epoch once
    assert rerun.intermediate_values[saved] == cut[0].intermediate_values[saved]
    assert rerun.user_attrs[ATTR.RECORD]["done"] == 30  # its model went through every epoch, from the checkpoint
    # and its --record curve is whole too: the cut trial's epochs before the cut were lost (found retesting)
    from nbtune.store.attrs import recorded_curves

    assert recorded_curves(study.trials)[rerun.number]["steps"] == {e: float(e) for e in range(1, 31)}
    lines = (tmp_path / "epochs.log").read_text().split("\n")[:-1]
    mine = [int(e) for x, e in (line.split() for line in lines) if float(x) == rerun.params["x"]]
    # the epochs after the last save ran once more (the cut one was not saved); none before it
    assert sorted(set(mine)) == list(range(30)) and all(mine.count(e) == 1 for e in range(saved))
    assert finished_count(study.trials) == 3


def test_a_notebook_object_the_workers_cannot_rebuild_is_one_line(kernel, tmp_path):
    """An lru_cache'd notebook function pickles by a reference to the kernel's __main__, which worker
    processes do not have: a 22-frame BrokenProcessPool traceback (found trying nbtune as a new user)."""
    _, kc = kernel
    code = "%load_ext nbtune\nimport functools\n@functools.lru_cache\ndef cached(x):\n    return x * 2\n"
    assert _execute(kc, code)[0]["status"] == "ok"
    cell = f"%%tune --minimize loss -n 2 --jobs 2 --store {tmp_path / 'store'}\nx = 0.5  # tune: uniform(0, 1)\nloss = cached(x)\n"
    reply, _, _ = _execute(kc, cell, timeout=120)
    assert reply["status"] == "error" and reply["ename"] == "UsageError", reply
    assert reply["evalue"].startswith("the worker processes could not rebuild what the cell reads from the notebook")


@pytest.mark.parametrize("above", ["%%time", "%%capture cap"])
def test_a_cell_magic_above_tune_runs_it_in_a_kernel(kernel, tmp_path, above):
    """%%time or %%capture above %%tune in Jupyter: "SyntaxError: 'await' outside function" and
    "This event loop is already running" (found trying nbtune as a new user)."""
    _km, kc = kernel
    reply, _, _ = _execute(kc, "%load_ext nbtune")
    assert reply["status"] == "ok", reply
    cell = f"{above}\n%%tune --minimize loss --trials 3 --view none --store {tmp_path} -o res\nx = 0.5  # tune: uniform(0, 1)\nloss = x\n"
    reply, outputs, _ = _execute(kc, cell)
    assert reply["status"] == "ok", (reply, outputs)
    reply, outputs, _ = _execute(kc, "print(res.n_finished)")
    text = "".join(m["content"].get("text", "") for m in outputs if m["msg_type"] == "stream")
    assert text.strip() == "3", outputs


def test_a_notebook_that_changes_folder_headless_is_told_where_its_store_went(tmp_path):
    """A kernel that does not know its notebook keeps the store in the working folder: an earlier
    cell's os.chdir("data") put the study in data/.nbtune, silently, where the notebook run in
    JupyterLab keeps it beside the notebook (found trying nbtune as a new user)."""
    (tmp_path / "data").mkdir()
    nb = _executed(
        tmp_path,
        [
            "%load_ext nbtune",
            "import os\nos.chdir('data')",
            "%%tune --trials 2 --minimize loss --view text -o res\nx = 0.5  # tune: uniform(0, 1)\nloss = x\n",
            "print([m for m in res.messages if 'working folder' in m])",
        ],
    )
    said = nb.cells[3].outputs[0]["text"]
    assert f"the store is {tmp_path / 'data' / '.nbtune'}, in the working folder, which the notebook changed" in said
    assert "pass --store" in said and (tmp_path / "data" / ".nbtune").is_dir()


def test_a_bar_a_trial_leaves_open_draws_into_the_trial_not_the_notebook(tmp_path):
    """A tqdm bar the cell never closes drew its last state when it was collected, after its trial,
    into the notebook: one ' 60%|██████ | 3/5' line per trial (found retesting)."""
    nb = _executed(
        tmp_path,
        [
            "%load_ext nbtune\nfrom tqdm import tqdm",
            "%%tune --trials 4 --maximize acc --scheduler none --view text -o res\na = 0.5  # tune: uniform(0, 1)\n"
            "pbar = tqdm(total=5)\nfor i in range(3):\n    pbar.update(1)\nacc = a\n",
            "print(sum('3/5' in t.user_attrs.get('nbtune:output', '') for t in res.study.trials))",
        ],
    )
    streams = [o for o in nb.cells[1].outputs if o["output_type"] == "stream"]
    assert not any("3/5" in o["text"] for o in streams), streams
    assert nb.cells[2].outputs[0]["text"].strip() == "4"  # kept with each trial instead


def test_a_headless_kernel_says_it_cannot_tell_notebooks_apart_once_per_study(tmp_path):
    """The note came with every run of the cell in the same kernel (found trying nbtune as a new user)."""
    cell = "%%tune --trials {n} --minimize loss --view text\nx = 0.5  # tune: uniform(0, 1)\nloss = x\n"
    nb = _executed(tmp_path, ["%load_ext nbtune", cell.format(n=2), cell.format(n=3), cell.format(n=4)])

    def said(i):
        return "".join(o.get("text", "") + str(o.get("data", {}).get("text/plain", "")) for o in nb.cells[i].outputs)

    assert "does not say which notebook" in said(2) and "does not say which notebook" not in said(3), said(3)
