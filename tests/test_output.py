"""A trial's prints and displays are kept with the trial; other threads print and display as usual."""

from __future__ import annotations

import sys
import threading

from nbtune.run.output import captured_output


def test_each_thread_collects_its_own_prints(capsys):
    out: dict[str, list[str]] = {}
    start = threading.Barrier(2)

    def trial(name: str) -> None:
        with captured_output() as buf:
            start.wait()
            for i in range(3):
                print(name, i)
            print("warn", name, file=sys.stderr)
        out[name] = buf

    threads = [threading.Thread(target=trial, args=(n,)) for n in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print("main thread")
    assert "".join(out["a"]) == "a 0\na 1\na 2\nwarn a\n"
    assert "".join(out["b"]) == "b 0\nb 1\nb 2\nwarn b\n"
    captured = capsys.readouterr()
    assert captured.out == "main thread\n" and "warn" not in captured.err


def test_streams_are_restored_after_the_last_trial():
    before = sys.stdout, sys.stderr
    with captured_output():
        with captured_output():
            assert sys.stdout is not before[0]
        assert sys.stdout is not before[0]
    assert (sys.stdout, sys.stderr) == before


def test_a_trials_displays_are_kept_with_it_and_the_shells_return(ip, monkeypatch):
    """In the kernel, trials run on threads: what one displays (display(), a tqdm.auto bar, a
    figure) and clears must not reach the notebook's cell, where the dashboard is."""
    from IPython.core.displaypub import CapturingDisplayPublisher
    from IPython.display import clear_output, display

    pub = CapturingDisplayPublisher()
    monkeypatch.setattr(ip, "display_pub", pub)
    kept: list[str] = []
    shown, done = threading.Event(), threading.Event()

    def trial() -> None:
        with captured_output() as buf:
            display("shown in a trial")
            clear_output()
            shown.set()
            done.wait(10)  # still running while the kernel displays
        kept.extend(buf)

    t = threading.Thread(target=trial)
    t.start()
    assert shown.wait(10)
    display("shown by the kernel")
    done.set()
    t.join()
    assert "".join(kept) == "'shown in a trial'\n"
    assert [o["data"]["text/plain"] for o in pub.outputs] == ["'shown by the kernel'"]
    assert "publish" not in vars(pub) and "clear_output" not in vars(pub)  # the class's methods again
    display("after the search")
    assert pub.outputs[-1]["data"]["text/plain"] == "'after the search'"


def test_figures_a_trial_leaves_open_are_closed_when_it_ends():
    """The inline backend shows every figure still open when the cell ends: one per trial."""
    import matplotlib.pyplot as plt

    before = plt.figure()  # the notebook's own, opened before the search: left alone
    try:
        with captured_output():
            plt.figure()
            plt.plot([1, 2])
            assert len(plt.get_fignums()) == 2
        assert plt.get_fignums() == [before.number]
    finally:
        plt.close("all")


def test_widgets_a_trial_displays_are_closed_when_it_ends(ip, monkeypatch):
    """tqdm.auto's bar in a notebook is a box of widgets; each trial's would stay in the kernel."""
    import ipywidgets as w
    from IPython.core.displaypub import CapturingDisplayPublisher
    from IPython.display import display

    monkeypatch.setattr(ip, "display_pub", CapturingDisplayPublisher())
    kept = w.IntSlider()  # the notebook's own: left alone
    made: list[w.Widget] = []

    def trial() -> None:
        with captured_output():
            bar = w.HBox([w.HTML("train"), w.FloatProgress(value=1, max=3)])
            made.extend([bar, *bar.children, bar.layout, bar.children[1].style])
            display(bar)

    t = threading.Thread(target=trial)
    t.start()
    t.join()
    assert made and all(x.comm is None for x in made)  # closed: gone from the kernel and the frontend
    assert kept.comm is not None
    kept.close()


NATIVE = """\
x = 0.5  # tune: uniform(0, 1)
import ctypes, os, subprocess
os.write(1, f"native {x:.3f}\\n".encode())
os.write(2, b"native error\\n")
ctypes.CDLL(None).printf(b"from printf\\n")
subprocess.run(["echo", "from a subprocess"])
loss = x
"""


def test_what_compiled_code_writes_below_sys_stdout_is_kept_with_its_trial(tmp_path, capfd):
    """LightGBM's '[LightGBM] [Info]' lines (C's printf on descriptor 1) reached the notebook, from
    worker processes too, and not the trial's output (found trying nbtune as a new user)."""
    import os

    import nbtune

    for jobs in (1, 2):
        res = nbtune.tune(NATIVE, minimize="loss", n_trials=3, n_jobs=jobs, store=tmp_path / str(jobs), view=None)
        for t in res.study.trials:
            out = t.user_attrs.get("nbtune:output", "")
            for line in (f"native {t.params['x']:.3f}", "native error", "from printf", "from a subprocess"):
                assert line in out, (jobs, t.number, out)
    os.write(1, b"the process's own, after\n")
    seen = capfd.readouterr()
    assert "native" not in seen.out + seen.err and "printf" not in seen.out
    assert "the process's own, after" in seen.out  # the descriptors are back


SPLIT = """\
x = 0.5  # tune: uniform(0, 1)
import os, time
os.write(1, b"[LightGBM] [Warning] No further splits")
time.sleep(0.1)  # (the capture's reader has taken the start of the line)
print("Training until validation scores don't improve for 50 rounds")
os.write(1, b" with positive gain, best gain: -inf\\n")
os.write(1, b"no newline at the end")
loss = x
"""


def test_a_line_compiled_code_writes_in_parts_is_kept_whole(tmp_path):
    """C's stdio flushes a full buffer anywhere in a line: a line the trial printed from Python landed
    inside LightGBM's '[LightGBM] [Warning] ...', which then read as a warning that said LightGBM's
    Python message (found trying nbtune as a new user)."""
    import nbtune

    for jobs in (1, 2):
        res = nbtune.tune(SPLIT, minimize="loss", n_trials=2, n_jobs=jobs, store=tmp_path / str(jobs), view=None)
        for t in res.study.trials:
            out = t.user_attrs.get("nbtune:output", "")
            assert "[LightGBM] [Warning] No further splits with positive gain, best gain: -inf\n" in out, (jobs, out)
            assert out.endswith("no newline at the end"), (jobs, out)
            assert t.user_attrs.get("nbtune:warnings") == [
                "LightGBMWarning: No further splits with positive gain, best gain: -inf"
            ], t.user_attrs


TERMINAL = """\
import sys, tempfile
import nbtune
import nbtune.view.text as text

init = text.TextView.__init__
text.TextView.__init__ = lambda self, *a, **k: init(self, *a, **{**k, "every": 0.2})  # a line every 0.2 s
cell = "x = 0.5  # tune: uniform(0, 1)\\nimport time\\ntime.sleep(0.15)\\nprint('trial says hi')\\nloss = x\\n"
res = nbtune.tune(cell, minimize="loss", n_trials=12, view="text", store=tempfile.mkdtemp(), user_ns={})
outputs = [t.user_attrs.get("nbtune:output", "") for t in res.study.trials]
print("TRIALS WITH PROGRESS", sum("finished" in o for o in outputs), "WITH THEIR OWN", sum("hi" in o for o in outputs))
"""


def test_progress_lines_in_a_terminal_reach_it_and_not_the_running_trials_output(tmp_path):
    """A terminal IPython or a script (stdout a file on descriptor 1): the text view's progress lines
    went into the output of whichever trial was running (its descriptor 1 was the trials' capture),
    so the terminal showed the header, nothing for the whole search, then the summary (found trying
    nbtune as a new user)."""
    import subprocess

    script = tmp_path / "search.py"
    script.write_text(TERMINAL)
    out = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=300, cwd=tmp_path, check=True
    ).stdout
    progress = [line for line in out.splitlines() if " finished · " in line]
    assert len(progress) >= 3, out
    assert "TRIALS WITH PROGRESS 0 WITH THEIR OWN 12" in out, out


def test_the_warnings_a_trial_printed_are_read_from_all_of_its_output():
    from nbtune.run.output import MAX_WARNINGS, warnings_in

    text = (
        "/x/sklearn/linear_model/_logistic.py:599: ConvergenceWarning: lbfgs failed to converge (status=1):\n"
        "STOP: TOTAL NO. OF ITERATIONS REACHED LIMIT\n"
        "  n_iter_i = _check_optimize_result(\n"
        "epoch 1 loss: 0.3\n"
        "<ipython-input-3>:5: UserWarning: the validation set has one class\n"
        "/x/_logistic.py:599: ConvergenceWarning: lbfgs failed to converge (status=1):\n"  # the same again
    )
    assert warnings_in(text) == [
        "ConvergenceWarning: lbfgs failed to converge (status=1):",
        "UserWarning: the validation set has one class",
    ]
    assert warnings_in("a print that says Warning: no line number\nloss 0.3\n") == []
    many = "".join(f"f.py:{i}: UserWarning: number {i}\n" for i in range(9))
    assert len(warnings_in(many)) == MAX_WARNINGS
    # compiled libraries' own: a misspelled LightGBM parameter was tuned for nothing, unsaid (found
    # trying nbtune as a new user)
    native = (
        "[LightGBM] [Info] Number of positive: 3234\n[LightGBM] [Warning] Unknown parameter: lamda_l1\n"
        '[12:01:33] WARNING: /workspace/src/learner.cc:740: Parameters: { "lamda" } are not used.\n'
    )
    assert warnings_in(native) == [
        "LightGBMWarning: Unknown parameter: lamda_l1",
        'XGBoostWarning: /workspace/src/learner.cc:740: Parameters: { "lamda" } are not used.',
    ]


def test_a_compiled_librarys_warning_reaches_the_diagnosis(ip):
    cell = "x = 0.5  # tune: uniform(0, 1)\nprint('[LightGBM] [Warning] Unknown parameter: lamda_l1')\nloss = x\n"
    res = ip.run_cell_magic("tune", "--minimize loss -n 3 -o res", cell)
    df = res.diagnose()
    assert "warned" in set(df.kind), df
    assert "LightGBMWarning: Unknown parameter: lamda_l1" in df[df.kind == "warned"].iloc[0].evidence


WARNS = """\
C = 1.0  # tune: loguniform(1e-3, 1e3)
import warnings
from sklearn.exceptions import ConvergenceWarning
warnings.warn(f"lbfgs failed to converge after {int(C * 100)} iteration(s)", ConvergenceWarning)
warnings.warn("this keyword is deprecated", FutureWarning)
import chatty_library
chatty_library.fit()  # the same message at the same place in every trial
print("epoch loss\\n" * 400)  # a chatty trial: its warning is far above the output's kept tail
val_acc = 0.9
"""


WARNS_SCRIPT = f"""\
import json, sys, tempfile
import nbtune
out = []
for jobs in (1, 2):
    res = nbtune.tune({WARNS!r}, maximize="val_acc", n_trials=4, n_jobs=jobs, store=tempfile.mkdtemp(), view=None)
    df = res.trials_dataframe()
    found = res.diagnose()
    out.append(dict(warnings=df.warnings.tolist(), output=df.output.tolist(), kinds=found.kind.tolist(),
                    n=found.n_trials.tolist(), advice=found.advice.tolist(), summary=res.summary()))
print("RESULT", json.dumps(out))
"""


def test_warnings_trials_printed_are_kept_and_diagnosed_from_worker_processes_too(tmp_path):
    """Eleven of twelve trials of a LogisticRegression search printed 'ConvergenceWarning: lbfgs
    failed to converge': the models were scored as they stopped, and neither the summary nor
    res.diagnose() said a word (found trying nbtune). A script, as a terminal runs it (pytest's
    own process records warnings instead of printing them)."""
    import json
    import subprocess

    (tmp_path / "chatty_library.py").write_text(
        "import warnings\n\ndef fit():\n    warnings.warn('the labels have one class', UserWarning)\n"
    )
    run = subprocess.run([sys.executable, "-c", WARNS_SCRIPT], capture_output=True, text=True, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    for jobs, got in zip((1, 2), json.loads(run.stdout.split("RESULT ", 1)[1]), strict=True):
        assert all(w[0].startswith("ConvergenceWarning: lbfgs failed to converge after") for w in got["warnings"]), jobs
        assert all("FutureWarning: this keyword is deprecated" in w for w in got["warnings"])
        # Python prints a warning once per place and message: it reached the first trial of a process only
        assert all("UserWarning: the labels have one class" in w for w in got["warnings"]), got["warnings"]
        assert all("ConvergenceWarning" not in o for o in got["output"])  # cut from the kept tail
        assert got["kinds"] == ["warned", "warned"] and got["n"] == [4, 4], got  # not the FutureWarning
        assert "these models stopped before they converged" in got["advice"][0]
        assert "read it (res.trials_dataframe().warnings)" in got["advice"][1]
        assert "diagnosis: 4 trials warned ('ConvergenceWarning: lbfgs failed to converge after" in got["summary"]


def test_deprecations_under_their_libraries_names_are_no_finding():
    """pandas 3's 'Pandas4Warning: DatetimeIndex.dayofweek is deprecated' (a DeprecationWarning
    under another name) was a finding in every trial (found trying nbtune as a new user)."""
    from nbtune.view.diagnose import _about_the_code

    for w in (
        "Pandas4Warning: DatetimeIndex.dayofweek is deprecated and will be removed",
        "DeprecationWarning: x",
        "FutureWarning: the default will change",
        "SettingWithCopyWarning: this will be removed in a future version",
        "MatplotlibDeprecationWarning: y",
    ):
        assert _about_the_code(w), w
    for w in ("ConvergenceWarning: lbfgs failed to converge", "RuntimeWarning: overflow encountered in exp"):
        assert not _about_the_code(w), w


INTERRUPTED_IN_A_CALL = """\
import os, signal, tempfile, threading
import nbtune
import nbtune._tune
nbtune._tune.STOP_WAIT = 1.8  # (past the forced stop's 1.5 s; the trial's call lasts 3 s)
threading.Timer(0.8, os.kill, (os.getpid(), signal.SIGINT)).start()
cell = "x = 0.5  # tune: uniform(0, 1)\\nimport time\\ntime.sleep(3)\\nloss = x\\n"
res = nbtune.tune(cell, minimize="loss", n_trials=3, view=None, store=tempfile.mkdtemp(), user_ns={})
print("MESSAGES", res.messages)
print("AFTER THE SEARCH")
"""


def test_what_a_script_prints_after_an_interrupt_that_left_a_trial_running_reaches_the_terminal(tmp_path):
    """Ctrl-C in a terminal while a trial sat in a compiled call: the trial went on on the search's thread,
    holding descriptors 1 and 2, and everything printed after (the search's summary, the script's own
    lines) went into that trial's output: the terminal showed nothing more."""
    import subprocess

    script = tmp_path / "interrupted.py"
    script.write_text(INTERRUPTED_IN_A_CALL)
    out = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=120, cwd=tmp_path, check=True
    ).stdout
    assert "trial 0 still runs inside a call that Interrupt cannot cut" in out and "AFTER THE SEARCH" in out, out
