"""A run's stop flags, trial target and worker registry, shared by threads and processes."""

from __future__ import annotations

import multiprocessing as mp
import os
import pickle
import time

from nbtune.store.control import FileControl
from nbtune.store.journal import JournalStore


def _worker_side(control: FileControl, q) -> None:
    control.register_worker(0)
    q.put((control.stop_requested(), control.stop_now_requested(), control.target()))
    control.set_target(12)
    control.stop("bug")


def test_flags_reach_another_process_and_back(tmp_path):
    control = JournalStore(tmp_path).control("study", 5)
    assert str(tmp_path) in control.directory  # inside the store: every worker that reaches it sees it
    assert control.target() == 5 and not control.stop_requested() and control.why() == ""
    control.stop_now()
    q = mp.get_context("spawn").Queue()
    p = mp.get_context("spawn").Process(target=_worker_side, args=(control, q))
    p.start()
    assert q.get(timeout=60) == (True, True, 5)
    p.join(60)
    time.sleep(FileControl.FRESH)  # a target read is reused for FRESH seconds: workers ask before every trial
    assert control.target() == 12 and control.why() == "bug"
    assert control.worker_pids() == [p.pid]
    control.forget_workers()
    assert control.worker_pids() == []
    control.cleanup()
    assert not os.path.exists(control.directory)


def test_stop_is_not_stop_now(tmp_path):
    control = FileControl(3, tmp_path / "run")
    control.stop("timeout")
    assert control.stop_requested() and not control.stop_now_requested() and control.why() == "timeout"
    control.cleanup()


def test_a_pickled_copy_sees_flags_set_later(tmp_path):
    control = FileControl(3, tmp_path / "run")
    copy = pickle.loads(pickle.dumps(control))
    assert not copy.stop_requested()
    control.stop("stop")
    assert copy.stop_requested() and copy.why() == "stop"
    control.cleanup()


def test_a_control_never_copied_answers_from_memory_and_hears_its_copies_once_copied(tmp_path, monkeypatch):
    control = FileControl(3, tmp_path / "run")
    reads: list[str] = []
    monkeypatch.setattr(os, "access", lambda path, mode: reads.append(path) or False)
    assert not control.stop_requested() and not control.stop_now_requested() and control.target() == 3
    assert reads == []  # checked before every trial and after every epoch: its own events say it all
    control.stop("stop")
    assert control.stop_requested() and reads == []
    fresh = FileControl(3, tmp_path / "run2")
    copy = pickle.loads(pickle.dumps(fresh))  # a worker process's copy: flags now come through the folder
    monkeypatch.undo()
    copy.set_target(5)
    copy.stop("bug")
    assert fresh.stop_requested() and fresh.why() == "bug" and not fresh.stop_now_requested()
    copy.stop_now()
    assert fresh.stop_now_requested()
    time.sleep(FileControl.FRESH)
    assert fresh.target() == 5


def test_target_survives_an_unreadable_file(tmp_path):
    control = FileControl(7, tmp_path / "run")
    control.set_target(9)
    control.cleanup()  # the folder is gone: the last target seen stands
    assert control.target() == 9


def test_a_dead_runs_control_folder_is_swept_when_the_next_run_starts(tmp_path):
    """A killed kernel left its 'runs/<name>-<id>' folder in the store for good (swept by nothing).
    The next run on this machine removes those whose process is gone; a live one's, another
    machine's and one being made stay."""
    import socket
    import subprocess
    import sys

    import nbtune

    store = tmp_path / ".nbtune"
    runs = store / "runs"
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    folders = {
        "dead": f"{socket.gethostname()} {int(gone.stdout)}",
        "live": f"{socket.gethostname()} {os.getppid()}",
        "elsewhere": f"another-host {int(gone.stdout)}",
        "making": None,
    }
    for name, owner in folders.items():
        (runs / f"s-{name}").mkdir(parents=True)
        if owner is not None:
            (runs / f"s-{name}" / "owner").write_text(owner)
    nbtune.tune(
        "x = 0.5  # tune: uniform(0, 1)\nloss = x\n", minimize="loss", n_trials=2, store=store, name="s", view=None
    )
    assert sorted(p.name for p in runs.iterdir()) == ["s-elsewhere", "s-live", "s-making"]


def test_a_worker_slot_taken_again_by_another_process_is_told_so(tmp_path):
    """A Dask nanny restarts a dead worker's task on a new process: with --seed, its sampler drew
    its predecessor's configurations again (found trying nbtune as a new user). Registering says
    how many processes held the slot before."""
    control = pickle.loads(pickle.dumps(FileControl(10, tmp_path / "run")))  # as a worker has it
    assert control.register_worker(0) == 0 and control.register_worker(1) == 0
    assert control.register_worker(0) == 0  # the same process again: no restart
    control._put("worker-999999", "0")  # a process that held slot 0 and died
    assert control.register_worker(0) == 1 and control.register_worker(1) == 0
