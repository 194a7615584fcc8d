"""What produced a study: fingerprints of the cell's code, its notebook and the data it reads."""

from __future__ import annotations

import ast
import os
import random
import subprocess
import sys
import threading
from collections import Counter

import numpy as np
import pandas as pd
import pytest

from nbtune.cell.annotations import parse_cell
from nbtune.cell.identity import (
    JOBLIB,
    PICKLED,
    WEAK,
    cell_identity,
    code_fingerprint,
    describe_difference,
    imported_code,
    notebook_path,
    value_fingerprint,
    weakly_known,
)
from nbtune.cell.reads import notebook_inputs, outside_reads

CELL = "lr = 0.1  # tune: loguniform(1e-3, 1.0)\nmodel = make(lr)\nacc = model.fit(X).score(Y)\n"


@pytest.mark.parametrize(
    "other, same",
    [
        ("# a comment\n" + CELL, True),
        (CELL.replace("model = make(lr)", "model  =  make( lr )  # spaced"), True),
        (CELL.replace("lr = 0.1", "lr = 0.01"), True),  # the default only sets the baseline
        (CELL + "\n\n", True),
        (CELL.replace("make(lr)", "make(lr, depth=3)"), False),
        (CELL.replace("score(Y)", "score(X)"), False),
        (CELL.replace("acc = ", "acc = 1 - "), False),
    ],
)
def test_code_fingerprint_ignores_comments_whitespace_and_defaults(other, same):
    assert (code_fingerprint(parse_cell(CELL)) == code_fingerprint(parse_cell(other))) is same


def test_functions_are_known_by_their_code():
    def f(x):
        return x + 1

    g_src = "def f(x):\n    return x + 2\n"
    ns: dict = {}
    exec(g_src, ns)
    h_src = "def f(x):\n    return x + 1\n"
    ns2: dict = {}
    exec(h_src, ns2)
    assert value_fingerprint(f) != value_fingerprint(ns["f"])
    assert value_fingerprint(ns2["f"]) == value_fingerprint(ns2["f"]) and value_fingerprint(f).startswith("code:")


def test_a_function_is_known_by_its_code_not_by_where_the_kernel_compiled_it():
    """ipykernel names a cell's file after its process id (new after every restart), and a line
    added above a function moves its line numbers: neither is a change of the function."""
    src = "def score(a):\n    return sum(x * a for x in [1, 2])\nclass Scorer:\n    def f(self):\n        return lambda: 1\n"

    def defined(source: str, filename: str) -> tuple[str, str]:
        ns: dict = {"__name__": "__main__"}
        exec(compile(source, filename, "exec"), ns)
        return value_fingerprint(ns["score"]), value_fingerprint(ns["Scorer"])

    first = defined(src, "/tmp/ipykernel_1234/2709.py")
    assert defined("# set-up\n\n" + src, "/tmp/ipykernel_5678/2709.py") == first
    changed = defined(src.replace("x * a", "x + a"), "/tmp/ipykernel_1234/2709.py")
    assert changed[0] != first[0]
    assert defined(src.replace("lambda: 1", "lambda: 2"), "/tmp/ipykernel_1234/2709.py")[1] != first[1]


def test_a_functions_default_values_count_by_their_content_not_their_repr():
    """``def f(x, rng=np.random.default_rng(0))``: the default's repr holds its address, new in
    every kernel."""
    src = "import numpy as np\nclass Opts:\n    pass\ndef f(x, rng=np.random.default_rng(0), o=Opts(), *, k=3):\n    return x\n"
    fingerprints = set()
    for _ in range(2):
        ns: dict = {}
        exec(src, ns)
        fingerprints.add(value_fingerprint(ns["f"]))
    assert len(fingerprints) == 1
    ns = {}
    exec(src.replace("k=3", "k=4"), ns)
    assert value_fingerprint(ns["f"]) not in fingerprints


def test_a_notebook_class_keeps_its_fingerprint_when_a_checkpoint_of_it_is_loaded():
    """cloudpickle, loading a checkpoint of a notebook class's instance (``best_state()``, a cut
    trial's resume, PBT's exploit), rebuilds the class's methods: equal code, different marshal
    bytes. The next run of the cell started a new version (found trying nbtune as a new user)."""
    import cloudpickle

    import __main__

    src = (
        "class NbtuneTestNet:\n    def __init__(self, h):\n        self.h = h\n"
        "    def forward(self, x):\n        return x * self.h if x in {'a', 'b', 'c'} else x\n"
    )
    exec(compile(src, "/tmp/ipykernel_4242/77.py", "exec"), __main__.__dict__)
    try:
        cls = __main__.__dict__["NbtuneTestNet"]
        before = value_fingerprint(cls)
        cloudpickle.loads(cloudpickle.dumps(cls(3)))
        assert cls.forward.__code__.co_filename != "/tmp/ipykernel_4242/77.py"  # rebuilt
        assert value_fingerprint(cls) == before
    finally:
        del __main__.__dict__["NbtuneTestNet"]


def test_a_functions_fingerprint_is_the_same_in_every_process():
    """String hashes are salted per process: a set literal's frozenset constant iterates in
    another order in the next kernel."""
    code = (
        "from nbtune.cell.identity import value_fingerprint\n"
        'ns = {}\nexec(\'def f(x):\\n    return x in {"aa", "bb", "cc", "dd", "ee"}\\n\', ns)\n'
        "print(value_fingerprint(ns['f']))\n"
    )
    seen = {
        subprocess.run(
            [sys.executable, "-c", code], env={**os.environ, "PYTHONHASHSEED": seed}, capture_output=True, text=True
        ).stdout
        for seed in ("1", "2", "3")
    }
    assert len(seen) == 1 and next(iter(seen)).startswith("code:")


@pytest.mark.parametrize(
    "cell, inputs",
    [
        # the loop binds epoch and preds before reading them: after --apply the notebook has them too
        ("a = 0.5\nfor epoch in range(3):\n    preds = X * a + epoch\n    s = f(preds)\n", {"range", "X", "f"}),
        # a DataLoader's batches, the loss: bound by the inner loop
        (
            "model = Net()\nfor epoch in range(E):\n    for xb, yb in dl:\n        loss = lf(model(xb), yb)\n"
            "    v = ev(model)\n",
            {"Net", "range", "E", "dl", "lf", "ev"},
        ),
        # a function the cell defines runs after the cell bound what it uses
        ("def fit():\n    model.fit(X)\nmodel = make()\nfit()\ns = model.score(V)\n", {"X", "make", "V"}),
        # bound on both branches of an if: bound; on one: read from the notebook
        ("if g:\n    d = 1\nelse:\n    d = 2\nif h:\n    z = 1\nw = d + z\n", {"g", "h", "z"}),
        ("s = sum(x * k for x in data)\nf = lambda q: q + off\n", {"sum", "k", "data", "off"}),
        ("total += 1\nn = 0\nn += 1\n", {"total"}),
        ("x = x + 1\n", {"x"}),  # read before it is bound
        (
            "try:\n    import torch\nexcept ImportError as e:\n    print(e)\nm = torch.ones(1)\n",
            {"ImportError", "print"},
        ),
        ("if (n := len(data)) > 3:\n    pass\nq = n\n", {"len", "data"}),
        ("class M(B):\n    k = K\n    def f(self):\n        return self.k + G\nm = M()\n", {"B", "K", "G"}),
    ],
)
def test_the_data_a_cell_reads_is_what_it_reads_before_binding_it(cell, inputs):
    assert notebook_inputs(ast.parse(cell)) == inputs
    assert inputs <= outside_reads(ast.parse(cell))  # the workers get at least these


def test_a_variable_the_cell_binds_itself_is_not_in_its_identity():
    spec = parse_cell(
        "a = 0.5  # tune: uniform(0, 1)\nfor epoch in range(3):\n    preds = X * a\n    s = preds.sum()\n"
    )
    identity = cell_identity(spec, {"X": np.arange(3), "epoch": 2, "preds": np.ones(3)}, None)
    assert set(identity["data"]) == {"X"}
    # a study recorded with them (before 2026-11-30) is the same study when they are gone or changed
    old = dict(identity, data=dict(identity["data"], epoch="x", preds="y"))
    assert describe_difference(old, identity) == []


@pytest.mark.parametrize(
    "a, b, same",
    [
        (np.arange(10), np.arange(10), True),
        (np.arange(10), np.arange(10) + 1, False),
        (pd.DataFrame({"a": [1, 2]}), pd.DataFrame({"a": [1, 2]}), True),
        (pd.DataFrame({"a": [1, 2]}), pd.DataFrame({"a": [1, 3]}), False),
        (pd.DataFrame({"a": [1, 2]}), pd.DataFrame({"b": [1, 2]}), False),  # column names count
        (pd.DataFrame({"a": [1, 2]}), pd.DataFrame({"a": [1.0, 2.0]}), False),  # and dtypes
        (pd.DataFrame({"a": [1, 2]}), pd.DataFrame({"a": [1, 2]}, index=[5, 6]), False),  # and the index
        (pd.Series([1, 2], name="y"), pd.Series([1, 2], name="y"), True),
        (pd.Series([1, 2], name="y"), pd.Series([1, 2], name="z"), False),
        (pd.DataFrame({"a": [[1], [2]]}), pd.DataFrame({"a": [[1], [2]]}), True),  # unhashable cells: pickled
        ([1, 2], [1, 2], True),
        ({"k": 1}, {"k": 2}, False),
        (np.random.default_rng(0), np.random.default_rng(1), True),  # generators: by type only
        (random.Random(0), random.Random(1), True),
    ],
)
def test_data_fingerprints(a, b, same):
    assert (value_fingerprint(a) == value_fingerprint(b)) is same


def test_a_generator_drawing_does_not_change_its_fingerprint():
    rng = np.random.default_rng(0)
    before = value_fingerprint(rng)
    rng.normal(size=10)
    assert value_fingerprint(rng) == before


def test_unhashable_values_fall_back_to_their_type():
    lock = threading.Lock()
    spec = parse_cell(CELL + "with lock:\n    pass\n")
    identity = cell_identity(spec, {"X": np.arange(3), "lock": lock}, None)
    assert identity["data"]["lock"].startswith(WEAK) and weakly_known(identity) == ["lock"]


def test_notebook_path_sources(monkeypatch):
    monkeypatch.delenv("JPY_SESSION_NAME", raising=False)
    assert notebook_path({}) is None
    assert notebook_path({"__vsc_ipynb_file__": "/w/a.ipynb"}) == "/w/a.ipynb"
    monkeypatch.setenv("JPY_SESSION_NAME", "/w/b.ipynb")
    assert notebook_path({}) == "/w/b.ipynb"
    assert notebook_path({"__vsc_ipynb_file__": "/w/a.ipynb"}) == "/w/a.ipynb"
    monkeypatch.delenv("JPY_SESSION_NAME")
    assert notebook_path({"PAPERMILL_INPUT_PATH": "in/report.ipynb"}) == "in/report.ipynb"  # papermill --inject-paths


def test_describe_difference():
    spec = parse_cell(CELL)
    a = cell_identity(spec, {"X": np.arange(3), "Y": 1}, {"__session__": "/w/a.ipynb"})
    assert describe_difference(a, a) == [] and describe_difference(None, a) == []
    b = cell_identity(
        parse_cell(CELL.replace("score(Y)", "score(X)")), {"X": np.arange(4), "Y": 1}, {"__session__": "/w/b.ipynb"}
    )
    assert describe_difference(a, b) == [
        "the cell's code changed",
        "another notebook (a.ipynb -> b.ipynb)",
        "the notebook data it reads changed: X",
    ]
    unknown = dict(a, notebook=None)  # plain IPython, nbclient: the notebook is not known
    assert describe_difference(a, unknown) == []
    # the project folder moved or copied with its store: the same notebook (the whole search ran
    # again as a new version, "another notebook (a.ipynb -> a.ipynb)"; found trying nbtune as a new user)
    moved = dict(a, notebook="/home/me/projects/copy/a.ipynb")
    assert describe_difference(a, moved) == []


def test_an_edit_of_what_the_cell_only_prints_is_no_change_of_its_code(ip):
    """An f-string edited in a print() started the whole search again as a new version (found trying
    nbtune as a new PyTorch user). What a cell only shows is not what it computes; a print that calls
    something else may be, and a study recorded before 2026-12-01 compares the code as it did."""
    cell = (
        "x = 0.5  # tune: uniform(0, 1)\nfor epoch in range(3):  # tune: epochs\n    loss = (x - 0.3) ** 2 / (epoch + 1)\n"
        '    print(f"epoch {epoch}: {loss:.3f}")\nprint("done", round(loss, 4), len([loss]))\n'
    )
    first = ip.run_cell_magic("tune", "--minimize loss -n 3 --seed 0", cell)
    edited = cell.replace('f"epoch {epoch}: {loss:.3f}"', 'f"ep {epoch + 1}  loss={loss:.5f}"').replace(
        'print("done", round(loss, 4), len([loss]))\n', ""
    )
    again = ip.run_cell_magic("tune", "--minimize loss -n 5 --seed 0", edited)
    assert again.study.study_name == first.study.study_name, again.messages
    assert again.n_finished == 5 and not any("code changed" in m for m in again.messages), again.messages
    # a print that calls something that may compute (an iterator drawn from) is code
    drawing = edited.replace('f"ep {epoch + 1}  loss={loss:.5f}"', "next(iter([loss]))")
    third = ip.run_cell_magic("tune", "--minimize loss -n 5 --seed 0", drawing)
    assert third.study.study_name == first.study.study_name + ":v2", third.messages
    # in words: an identity recorded before 2026-12-01 has no "code_shown": its "code" counts
    spec, edited_spec = parse_cell(cell), parse_cell(edited)
    old, new = cell_identity(spec, {}, None), cell_identity(edited_spec, {}, None)
    assert describe_difference(old, new) == []
    legacy = {k: v for k, v in old.items() if not k.startswith("code_shown")}
    assert describe_difference(legacy, new) == ["the cell's code changed"]


def test_frames_are_hashed_by_pandas_not_pickled():
    frame = pd.DataFrame({"a": range(5), "s": list("abcde")})
    assert value_fingerprint(frame).startswith("pandas:")
    assert not value_fingerprint(pd.DataFrame({"a": [[1], [2]]})).startswith("pandas:")


def test_torch_values_hash_by_their_content_across_processes():
    """joblib.hash of a tensor changes from one tensor to an equal one; a PyTorch study would then
    start a new version after every kernel restart (and a cut trial would never resume)."""
    pytest.importorskip("torch")
    import subprocess
    import sys

    code = (
        "import numpy as np, torch\n"
        "from torch import nn\n"
        "from torch.utils.data import DataLoader, TensorDataset\n"
        "from nbtune.cell.identity import value_fingerprint as f\n"
        "torch.manual_seed(0)\n"
        "ds = TensorDataset(torch.arange(6.).reshape(3, 2), torch.tensor([0, 1, 0]))\n"
        "print(f(torch.arange(5.)), f(torch.from_numpy(np.arange(5.))), f(nn.Linear(3, 2)), f(ds),"
        " f(DataLoader(ds, batch_size=2)), f(torch.arange(4.).to(torch.bfloat16)))\n"
    )
    runs = [
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
        for _ in range(2)
    ]
    assert runs[0] == runs[1] and len(set(runs[0].split())) == 6
    import torch

    from nbtune.cell.identity import value_fingerprint

    assert value_fingerprint(torch.arange(5.0)) == value_fingerprint(torch.arange(5.0))
    assert value_fingerprint(torch.arange(5.0)) != value_fingerprint(torch.arange(1.0, 6.0))


def test_data_a_notebook_function_reads_belongs_to_the_cell_that_calls_it(ip):
    """A cell that calls a notebook function (or a notebook class's method) depends on the notebook
    variables that code reads: changing them starts a new version, as changing the cell's own
    inputs does (it resumed the old study, mixing the two datasets' values; found trying nbtune as
    a new user)."""
    ip.run_cell(
        "import numpy as np\nX_val = np.arange(5.0)\nOFFSET = 0.0\n"
        "def evaluate(c):\n    return float(((X_val - c) ** 2).mean())\n"
        "class Scorer:\n    def __call__(self, c):\n        return evaluate(c) + OFFSET\n"
        "score = Scorer()\n"
    )
    cell = "c = 1.0  # tune: uniform(0, 4)\nloss = score(c)\n"
    first = ip.run_cell_magic("tune", "--minimize loss -n 3 --seed 0", cell)
    again = ip.run_cell_magic("tune", "--minimize loss -n 3 --seed 0", cell)
    assert again.study.study_name == first.study.study_name and len(again.study.trials) == 3
    ip.run_cell("X_val = X_val + 1")
    moved = ip.run_cell_magic("tune", "--minimize loss -n 3 --seed 0", cell)
    assert moved.study.study_name == first.study.study_name + ":v2"
    assert any("the notebook data it reads changed: X_val" in m for m in moved.messages), moved.messages
    ip.run_cell("OFFSET = 1.0")  # read by the class's method, through the instance the cell calls
    offset = ip.run_cell_magic("tune", "--minimize loss -n 3 --seed 0", cell)
    assert any("the notebook data it reads changed: OFFSET" in m for m in offset.messages), offset.messages


def test_a_variable_read_for_the_first_time_is_no_change_by_itself():
    """The identity of a study recorded before notebook functions' reads counted (or before the
    cell's code changed) has no entry for a variable read now: that alone is not a change, and is
    never called one ("the notebook data it reads changed: math" for a newly imported module)."""
    spec = parse_cell(CELL)
    old = cell_identity(spec, {"X": np.arange(3), "Y": 1}, None)
    new = dict(old, data=dict(old["data"], math="module:math", X_val="abc"))
    assert describe_difference(old, new) == []


def test_a_trial_that_changes_notebook_data_in_place_is_named_after_the_search(ip):
    """Trials in the kernel's process share the notebook's objects: 'X -= 0.1' in the cell moved
    the notebook's X once per trial, each trial training on what the ones before left, silently
    (found trying nbtune as a new user)."""
    ip.run_cell("import numpy as np\nX = np.zeros(4)\nhistory = []\nY = np.ones(3)\n")
    res = ip.run_cell_magic(
        "tune",
        "--minimize loss -n 3 --seed 0",
        "a = 0.5  # tune: uniform(0, 1)\nX -= 0.1\nhistory.append(a)\nloss = float(abs(X.sum() + Y.sum() - a))\n",
    )
    assert ip.user_ns["X"][0] == pytest.approx(-0.3)  # what the warning is about
    [line] = [m for m in res.messages if "changed notebook data in place" in m]
    assert line.startswith("the trials changed notebook data in place: X, history (")
    # the copy to make, by kind (clone() was advised for anything: found trying nbtune as a new user)
    assert line.endswith("change a copy made in the cell instead ('X = X.copy()', 'history = list(history)')"), line
    clean = ip.run_cell_magic(
        "tune",
        "--minimize loss -n 3 --seed 0",
        "a = 0.5  # tune: uniform(0, 1)\nZ = X - 0.1\nloss = float(abs(Z.sum() - a))\n",
    )
    assert not any("in place" in m for m in clean.messages)
    # a scipy sparse matrix a model reads (scipy caches what it learns of it in its __dict__): no change
    # in place (found trying nbtune as a new user: a TF-IDF matrix and an SVC)
    ip.run_cell(
        "from sklearn.feature_extraction.text import TfidfVectorizer\n"
        "Xt = TfidfVectorizer().fit_transform(['aa bb cc', 'bb cc dd', 'cc dd ee', 'aa ee'])\n"
    )
    sparse = ip.run_cell_magic(
        "tune",
        "--minimize loss -n 2 --seed 0",
        "a = 0.5  # tune: uniform(0, 1)\nXt.has_sorted_indices\nloss = float(abs(Xt.sum() - a))\n",
    )
    assert not any("in place" in m for m in sparse.messages), sparse.messages
    changed = ip.run_cell_magic(
        "tune",
        "--minimize loss -n 2 --seed 0 --name sparse_changed",
        "a = 0.5  # tune: uniform(0, 1)\nXt.data *= 2\nloss = float(abs(Xt.sum() - a))\n",
    )
    assert any(m.startswith("the trials changed notebook data in place: Xt (") for m in changed.messages)


def test_trials_that_change_notebook_data_in_worker_processes_are_named_too(ip):
    """Under --jobs 2 the same cell changed each worker's copy and the notebook's stayed as it was,
    silently, where one job says so (found trying nbtune as a new user)."""
    ip.run_cell("import numpy as np\nimport pandas as pd\nhistory = []\ndf = pd.DataFrame({'a': [1.0, 2.0]})\n")
    cell = "a = 0.5  # tune: uniform(0, 1)\nhistory.append(a)\ndf['pred'] = a\nloss = float(abs(df.a.sum() - a))\n"
    res = ip.run_cell_magic("tune", "--minimize loss -n 4 --seed 0 --jobs 2", cell)
    assert ip.user_ns["history"] == [] and "pred" not in ip.user_ns["df"]
    [line] = [m for m in res.messages if m.startswith("the trials changed")]
    assert line.startswith("the trials changed notebook data in place in their worker processes: df, history ("), line
    # and the frame changed in every trial was said before the search too
    assert any(m.startswith("line 4: 'df['pred'] = a' changes the notebook's 'df' in place") for m in res.messages)
    clean = ip.run_cell_magic(
        "tune",
        "--minimize loss -n 4 --seed 0 --jobs 2",
        "a = 0.5  # tune: uniform(0, 1)\nloss = float(abs(df.a.sum() - a))\n",
    )
    assert not any("in place" in m for m in clean.messages), clean.messages


def test_a_trials_recorded_duration_leaves_out_the_check_for_data_changed_in_place(ip):
    """A worker process hashes the notebook data before its first trial and after it, to tell
    whether that trial changed it in place: for a large frame that took seconds, which the first
    trial's recorded duration counted (a 3.7 s baseline under --trial-timeout 3s: found trying
    nbtune as a new user). Here each hash of 'slow' takes 1 s; the trials take milliseconds."""
    ip.run_cell(
        "import time\nclass Slow:\n    def __reduce__(self):\n        time.sleep(1.0)\n        return (Slow, ())\n"
    )
    ip.run_cell("slow = Slow()\nhistory = []")
    res = ip.run_cell_magic(
        "tune", "--minimize loss -n 4 --seed 0 --jobs 2", "a = 0.5  # tune: uniform(0, 1)\nslow\nloss = a\n"
    )
    durations = [t.duration.total_seconds() for t in res.study.trials]
    assert len(durations) == 4 and max(durations) < 0.9, durations
    # and the check still says what a trial changed
    changed = ip.run_cell_magic(
        "tune",
        "--minimize loss -n 4 --seed 0 --jobs 2",
        "a = 0.5  # tune: uniform(0, 1)\nslow\nhistory.append(a)\nloss = a\n",
    )
    assert any(
        m.startswith("the trials changed notebook data in place in their worker processes: history (")
        for m in changed.messages
    )
    assert max(t.duration.total_seconds() for t in changed.study.trials) < 0.9


def test_a_worker_hashes_the_notebook_data_once_for_its_check_of_changes_in_place(ip, tmp_path):
    """A worker process hashed the notebook data before its first trial and after it: over a large object
    that was 20-50 s per worker before the search went on (found retesting as a user). The kernel's
    fingerprints from the run's start stand for 'before': each worker hashes once."""
    log = tmp_path / "hashed"
    ip.run_cell(
        f"import os\nclass Counted:\n    def __reduce__(self):\n        with open({str(log)!r}, 'a') as f:\n"
        "            f.write(f'{os.getpid()}\\n')\n        return (Counted, ())\n"
    )
    ip.run_cell("counted = Counted()\nhistory = []")
    log.unlink(missing_ok=True)
    res = ip.run_cell_magic(
        "tune",
        "--minimize loss -n 6 --seed 0 --jobs 2",
        "a = 0.5  # tune: uniform(0, 1)\ncounted\nhistory.append(a)\nloss = a\n",
    )
    by_worker = Counter(int(p) for p in log.read_text().split() if int(p) != os.getpid())
    assert by_worker and all(n == 1 for n in by_worker.values()), by_worker
    assert any(
        m.startswith("the trials changed notebook data in place in their worker processes: history (")
        for m in res.messages
    )


def test_a_large_array_changed_in_place_in_worker_processes_says_why_it_fails(ip):
    """joblib hands workers an array over 1 MB memory-mapped read-only: 'Xbig += x' failed every
    trial with 'output array is read-only', and the stop advised catching the ValueError (found
    trying nbtune as a new user)."""
    from IPython.core.error import UsageError

    ip.run_cell("import numpy as np\nXbig = np.zeros((400_000, 2))\n")
    cell = "x = 0.5  # tune: uniform(0, 1)\nXbig += x\nloss = float(Xbig.mean())\n"
    with pytest.raises(UsageError) as e:
        ip.run_cell_magic("tune", "--minimize loss -n 4 --seed 0 --jobs 2", cell)
    assert (
        "read-only (worker processes get a notebook array over 1 MB memory-mapped and read-only: change a copy"
        in str(e.value)
    )
    assert "by nature" not in str(e.value)


def test_the_code_of_a_time_magic_is_read_as_the_cells(ip):
    """'%time m = Ridge(alpha=alpha).fit(X, y)': IPython hands the code to the magic as a string, so
    its reads were not seen: the data it read changed without a new version, and 'alpha' was said
    to be never read (found trying nbtune as a new user)."""
    ip.run_cell("import numpy as np\nya = np.arange(5.0)")
    cell = "alpha = 1.0  # tune: loguniform(0.01, 10)\n%time m = float(alpha * ya.sum())\nloss = m\n"
    first = ip.run_cell_magic("tune", "--minimize loss -n 3 --seed 0", cell)
    assert not any("never reads" in m for m in first.messages), first.messages
    assert all(t.value == pytest.approx(t.params["alpha"] * 10) for t in first.study.trials)  # the trial's alpha
    ip.run_cell("ya = -ya")
    moved = ip.run_cell_magic("tune", "--minimize loss -n 3 --seed 0", cell)
    assert moved.study.study_name == first.study.study_name + ":v2"
    assert any("the notebook data it reads changed: ya" in m for m in moved.messages), moved.messages


def test_a_magics_options_are_not_its_code():
    from nbtune.cell.reads import notebook_inputs

    tree = ast.parse(
        "get_ipython().run_line_magic('timeit', '-n 3 -r 2 h(beta)')\ny = get_ipython().run_line_magic('time', 'g(a)')\n"
    )
    assert notebook_inputs(tree) == {"h", "beta", "g", "a"}
    assert {"get_ipython", "h", "beta", "g", "a"} <= outside_reads(tree)  # the workers still get the magic's caller


def test_a_generator_inside_a_value_does_not_change_its_fingerprint_when_drawn_from():
    """A notebook DataLoader with a seeded generator (or any object holding one) hashed differently
    after every search that iterated it: each re-run started a new version, and the search said its
    trials changed the loader in place."""
    torch = pytest.importorskip("torch")
    from torch.utils.data import DataLoader, TensorDataset

    loader = DataLoader(
        TensorDataset(torch.arange(20.0).reshape(10, 2)),
        batch_size=3,
        shuffle=True,
        generator=torch.Generator().manual_seed(0),
    )
    holder = {"rng": np.random.default_rng(0), "r": random.Random(1), "data": np.arange(3)}
    before = value_fingerprint(loader), value_fingerprint(holder)
    list(loader)
    holder["rng"].normal(size=4)
    holder["r"].random()
    assert (value_fingerprint(loader), value_fingerprint(holder)) == before
    holder["data"] = np.arange(4)  # the data it holds still counts
    assert value_fingerprint(holder) != before[1]
    # as studies recorded before 2026-12-01 fingerprinted them: joblib.hash, where no generator is inside
    import joblib

    assert value_fingerprint({"a": [1, 2], "b": np.ones(3)}, False) == joblib.hash({"a": [1, 2], "b": np.ones(3)})


def test_an_xgboost_matrix_counts_by_its_data_and_labels():
    """XGBoost's DMatrix is a handle to a C matrix that does not pickle: it was compared by its type
    only, so new data in it never started a new version. Here a stand-in with DMatrix's own methods
    (xgboost is not among the test dependencies)."""
    import scipy.sparse

    class DMatrix:
        __module__ = "xgboost.core"

        def __init__(self, data, label):
            self.data, self.label = np.asarray(data, dtype=float), np.asarray(label, dtype=float)

        def __reduce__(self):
            raise TypeError("ctypes objects containing pointers cannot be pickled")

        def num_row(self):
            return self.data.shape[0]

        def num_col(self):
            return self.data.shape[1]

        def get_label(self):
            return self.label

        def get_weight(self):
            return np.array([], dtype=np.float32)

        def get_data(self):
            return scipy.sparse.csr_matrix(self.data)

    a = value_fingerprint(DMatrix(np.eye(3), [0, 1, 0]))
    assert a.startswith("xgboost:") and a == value_fingerprint(DMatrix(np.eye(3), [0, 1, 0]))
    assert a != value_fingerprint(DMatrix(np.eye(3), [1, 1, 0]))  # other labels
    assert a != value_fingerprint(DMatrix(2 * np.eye(3), [0, 1, 0]))  # other data


def test_a_cell_whose_trials_change_notebook_data_in_place_resumes_its_study(ip):
    """A cell that fits a notebook model (or appends to a notebook list) changes what it reads: the
    next run, the notebook as the trials left it, started a new version claiming the data changed,
    every time (found trying nbtune as a new user). The study records what its trials left, and
    also resumes after a restart that makes the data afresh."""
    setup = "from sklearn.linear_model import Ridge\nimport numpy as np\nX = np.arange(20.0).reshape(10, 2)\ny = X.sum(1)\nmodel = Ridge()\n"
    ip.run_cell(setup)
    cell = "alpha = 1.0  # tune: loguniform(0.01, 10)\nmodel.set_params(alpha=alpha).fit(X, y)\nloss = float(((model.predict(X) - y) ** 2).mean())\n"
    first = ip.run_cell_magic("tune", "--minimize loss -n 3 --seed 0", cell)
    assert any(m.startswith("the trials changed notebook data in place: model (") for m in first.messages)
    again = ip.run_cell_magic("tune", "--minimize loss -n 4 --seed 0", cell)  # Run All: the model as they left it
    assert again.study.study_name == first.study.study_name, again.messages
    ip.run_cell(setup)  # a restart: the data and the model made afresh
    fresh = ip.run_cell_magic("tune", "--minimize loss -n 5 --seed 0", cell)
    assert fresh.study.study_name == first.study.study_name, fresh.messages
    ip.run_cell("y = y + 1")  # new data is still new data
    moved = ip.run_cell_magic("tune", "--minimize loss -n 5 --seed 0", cell)
    assert moved.study.study_name == first.study.study_name + ":v2"


def test_a_kaggle_style_config_class_is_data(ip):
    """'class CFG: batch_size = 128; epochs = 4' read by a notebook helper: changing
    CFG.batch_size resumed the old study, mixing trials of two set-ups, and a cell that set
    CFG.lr = lr was not said to change notebook data (found trying nbtune as a new user)."""
    ip.run_cell(
        "class CFG:\n    scale = 1.0\n    epochs = 3\n    def describe(self):\n        return 'cfg'\ndef scaled(x):\n    return x * CFG.scale\n"
    )
    cell = "x = 0.5  # tune: uniform(0, 1)\nfor epoch in range(CFG.epochs):  # tune: epochs\n    loss = scaled(x)\n"
    first = ip.run_cell_magic("tune", "--minimize loss -n 3 --seed 0", cell)
    same = ip.run_cell_magic("tune", "--minimize loss -n 4 --seed 0", cell)
    assert same.study.study_name == first.study.study_name
    ip.run_cell("CFG.scale = 2.0")
    moved = ip.run_cell_magic("tune", "--minimize loss -n 4 --seed 0", cell)
    assert moved.study.study_name == first.study.study_name + ":v2", moved.messages
    # A cell that sets a setting on the class changes notebook data in place: said, and Run All resumes.
    setter = "x = 0.5  # tune: uniform(0, 1)\nCFG.scale = x\nloss = scaled(x)\n"
    res = ip.run_cell_magic("tune", "--minimize loss -n 3 --seed 0 --name setter", setter)
    assert any(m.startswith("the trials changed notebook data in place: CFG") for m in res.messages), res.messages
    again = ip.run_cell_magic("tune", "--minimize loss -n 4 --seed 0 --name setter", setter)
    assert again.study.study_name == "setter", again.messages
    # a nested settings class (found trying nbtune as a new user)
    ip.run_cell("class CFG2:\n    class model:\n        hidden = 8\n")
    nested = "x = 0.5  # tune: uniform(0, 1)\nloss = x + CFG2.model.hidden\n"
    first = ip.run_cell_magic("tune", "--minimize loss -n 2 --seed 0 --name nested", nested)
    ip.run_cell("CFG2.model.hidden = 16")
    moved = ip.run_cell_magic("tune", "--minimize loss -n 2 --seed 0 --name nested", nested)
    assert moved.study.study_name == "nested:v2", moved.messages


def test_a_value_that_could_not_be_hashed_on_one_side_is_no_change():
    """A LightGBM Dataset hashes by its contents until lgb.train constructs it (then it holds a C
    handle): 'the notebook data it reads changed: ltrain' and 'ltrain cannot be hashed' in one output."""
    spec = parse_cell(CELL)
    old = cell_identity(spec, {"X": np.arange(3), "Y": 1}, None)
    new = dict(old, data=dict(old["data"], X=WEAK + "lightgbm.basic.Dataset"))
    assert describe_difference(old, new) == [] and describe_difference(new, old) == []


def test_a_partial_counts_by_its_function_and_arguments(ip):
    """'scorer = functools.partial(lambda m, X: ..., X=X_val)' could not be hashed (a lambda does not
    pickle): new data in it, or read by its function, never started a new version."""
    ip.run_cell(
        "import functools, numpy as np\nX_val = np.arange(4.0)\nW = 1.0\n"
        "scorer = functools.partial(lambda c, X: float(((X - c) ** 2).mean()) * W, X=X_val)\n"
    )
    cell = "c = 1.0  # tune: uniform(0, 3)\nloss = scorer(c)\n"
    first = ip.run_cell_magic("tune", "--minimize loss -n 3 --seed 0", cell)
    assert not any("cannot be hashed" in m for m in first.messages), first.messages
    ip.run_cell("scorer = functools.partial(scorer.func, X=X_val + 1)")
    moved = ip.run_cell_magic("tune", "--minimize loss -n 3 --seed 0", cell)
    assert any("the notebook data it reads changed: scorer" in m for m in moved.messages), moved.messages
    ip.run_cell("W = 2.0")  # read by the partial's function
    again = ip.run_cell_magic("tune", "--minimize loss -n 3 --seed 0", cell)
    assert any("the notebook data it reads changed: W" in m for m in again.messages), again.messages


def test_a_method_or_function_a_library_wrapped_counts_by_its_own_code(ip):
    """scikit-learn's TransformerMixin wraps transform: an edited transform kept the class's
    fingerprint, so the study resumed with the old results (found trying nbtune as a new user);
    the same for a function under a library's decorator."""
    pytest.importorskip("sklearn")
    define = (
        "import contextlib\nfrom sklearn.base import BaseEstimator, TransformerMixin\n"
        "class Interact(BaseEstimator, TransformerMixin):\n    def fit(self, X, y=None):\n        return self\n"
        "    def transform(self, X):\n        return X * {k}\n"
        "@contextlib.contextmanager\ndef scope():\n    yield {k}\n"
    )
    ip.run_cell(define.format(k=1))
    before = {n: value_fingerprint(ip.user_ns[n]) for n in ("Interact", "scope")}
    ip.run_cell(define.format(k=2))
    after = {n: value_fingerprint(ip.user_ns[n]) for n in ("Interact", "scope")}
    assert before["Interact"] != after["Interact"] and before["scope"] != after["scope"]
    ip.run_cell(define.format(k=2))  # the same code defined again: the same fingerprints
    assert after == {n: value_fingerprint(ip.user_ns[n]) for n in ("Interact", "scope")}


@pytest.mark.parametrize("jobs", [1, 2])
def test_what_apply_changed_in_place_resumes_the_study(ip, jobs):
    """--apply ran the cell in the notebook, which added a column to the notebook's frame: with
    --jobs 2 the next run of the unchanged cell took it for new data and searched again (found
    trying nbtune as a new user)."""
    ip.run_cell("import pandas as pd\ndf = pd.DataFrame({'a': [1.0, 2.0, 3.0]})\n")
    cell = "x = 0.5  # tune: uniform(0, 1)\ndf['b'] = df['a'] * 2\nloss = (x - 0.3) ** 2 + float(df['b'].sum())\n"
    first = ip.run_cell_magic("tune", f"--minimize loss -n 3 --seed 0 --jobs {jobs} --apply", cell)
    assert "b" in ip.user_ns["df"].columns
    again = ip.run_cell_magic("tune", f"--minimize loss -n 3 --seed 0 --jobs {jobs} --apply", cell)
    assert again.study.study_name == first.study.study_name, again.messages


def test_a_random_generator_is_told_by_its_type_and_module():
    """One place decides it (the data fingerprint, the epoch's checkpoint); a GAN's model class named
    Generator is a model whose weights are data, not a generator."""
    import random

    import numpy as np

    from nbtune.cell.rng import is_generator

    class Generator:  # a GAN's
        pass

    assert is_generator(np.random.default_rng(0)) and is_generator(np.random.RandomState(0))
    assert is_generator(random.Random(0)) and is_generator(np.random.PCG64(0))
    assert not is_generator(Generator()) and not is_generator(np.zeros(3))


_SAME_EVERYWHERE = """
import collections, numpy as np
from nbtune.cell.identity import value_fingerprint as f
words = [f"w{i}" for i in range(50)]
out = [
    f({*words}),
    f(frozenset(words)),
    f({w: len(w) for w in set(words)}),
    f([{"user": i, "item": words[i % 50], "tags": {"a", "b", words[i % 7]}} for i in range(100)]),
    f(np.arange(12.0).reshape(3, 4).T),
    f(np.array([{"a": 1}, "x", None], dtype=object)),
    f(collections.Counter(words * 2)),
    f(collections.defaultdict(int, {w: 1 for w in set(words)})),
    f([len, collections.OrderedDict, np.float64(1.5)]),
]
print(" ".join(out))
"""


def test_data_fingerprints_are_the_same_in_every_process():
    """Data is hashed by the C pickler (12-15x faster than joblib.hash on lists of dicts, strings or
    token lists), which writes sets and dicts in the order they iterate: a set of strings iterates in
    another order in every process (strings' hashes are salted), and so would a study's identity,
    starting a new version at every kernel restart. Sorted, they are the same everywhere."""
    runs = [
        subprocess.run(
            [sys.executable, "-c", _SAME_EVERYWHERE],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "PYTHONHASHSEED": seed},
        ).stdout.split()
        for seed in ("1", "2", "3")
    ]
    assert runs[0] == runs[1] == runs[2], runs
    assert len(set(runs[0])) == len(runs[0]) and all(h.startswith(PICKLED) for h in runs[0]), runs[0]


@pytest.mark.parametrize(
    "a, b, same",
    [
        ({"a": 1, "b": [2, 3]}, {"b": [2, 3], "a": 1}, True),  # equal dicts, built in another order
        (["aa", "aa"], ["aa", "".join(["a", "a"])], True),  # one string twice, or two equal ones
        ([[1, 2]] * 2, [[1, 2], [1, 2]], True),  # a small list twice, or two: written out both times
        (
            [list(range(20))] * 2,
            [list(range(20)), list(range(20))],
            False,
        ),  # a larger one: referred to, as joblib.hash does
        ({"a": 1}, {"a": 1.0}, False),
        ([1, 2], (1, 2), False),
        ({1, 2}, frozenset({1, 2}), False),
        (np.arange(3), np.arange(3.0), False),
        (np.zeros((2, 3)), np.zeros((3, 2)), False),
        ([{"u": 1, "i": "a"}] * 3, [{"u": 1, "i": "a"}] * 2, False),
    ],
)
def test_data_fingerprints_compare_values(a, b, same):
    assert (value_fingerprint(a) == value_fingerprint(b)) is same
    assert value_fingerprint(a).startswith(PICKLED)


def test_what_the_c_pickler_cannot_write_is_hashed_by_joblib():
    mixed = {1: "a", "b": 2}  # keys that do not sort
    for value in (mixed, {1, "a"}):
        assert value_fingerprint(value) == JOBLIB + value_fingerprint(value, False)  # joblib.hash's
    assert value_fingerprint(threading.Lock()).startswith(WEAK)
    # a value that goes from one kind to the other changed (it read as nothing to compare: found retesting)
    a = cell_identity(parse_cell(CELL), {"X": {0: "cat", 1: "dog"}, "Y": 1}, None)
    b = cell_identity(parse_cell(CELL), {"X": {0: "cat", 1: "dog", "unknown": "?"}, "Y": 1}, None)
    assert describe_difference(a, b) == ["the notebook data it reads changed: X"]
    # a cycle, and a container met again, are written as references
    cyclic: list = list(range(20))
    cyclic.append(cyclic)
    assert value_fingerprint(cyclic).startswith(PICKLED)
    small: list = [1]
    small.append(small)
    assert value_fingerprint(small) == JOBLIB + value_fingerprint(small, False)
    vocab = {f"w{i}": i for i in range(2000)}
    shared, copies = [{"id": i, "vocab": vocab} for i in range(3)], [{"id": i, "vocab": dict(vocab)} for i in range(3)]
    assert value_fingerprint(shared) != value_fingerprint(copies)  # (as joblib.hash tells them apart)
    assert value_fingerprint(shared) == value_fingerprint([{"id": i, "vocab": vocab} for i in range(3)])


def test_a_study_recorded_before_the_c_pickler_resumes_and_still_sees_new_data(ip):
    """Studies recorded before 2026-12-01 hold joblib.hash fingerprints, which the new ones never
    equal: without a comparison in their own terms, each would start a new version once, saying the
    data changed. Such a study resumes (and records the new fingerprint), and new data is still new."""
    import optuna

    from nbtune.store.attrs import ATTR

    ip.run_cell("records = [{'x': float(i), 'tag': {'a', str(i)}} for i in range(50)]\nshift = 0.0\n")
    cell = "c = 1.0  # tune: uniform(0, 3)\nloss = sum((r['x'] / 50 - c) ** 2 for r in records) + shift\n"
    first = ip.run_cell_magic("tune", "--minimize loss -n 3 --seed 0", cell)
    name = first.study.study_name
    storage = first.study._storage
    study = optuna.load_study(study_name=name, storage=storage)
    identity = study.user_attrs[ATTR.IDENTITY]
    assert identity["data"]["records"].startswith(PICKLED)
    old = {n: value_fingerprint(ip.user_ns[n], False) for n in identity["data"]}  # as nbtune made them before
    assert all(":" not in h for h in old.values())
    study.set_user_attr(ATTR.IDENTITY, {**identity, "data": old})

    again = ip.run_cell_magic("tune", "--minimize loss -n 5 --seed 0", cell)
    assert again.study.study_name == name, again.messages
    assert len(again.study.trials) == 5
    recorded = optuna.load_study(study_name=name, storage=storage).user_attrs[ATTR.IDENTITY]["data"]
    assert recorded == identity["data"]  # now in the new terms: the next run needs no joblib.hash

    study.set_user_attr(ATTR.IDENTITY, {**identity, "data": old})
    ip.run_cell("records[0]['x'] = 99.0")
    moved = ip.run_cell_magic("tune", "--minimize loss -n 3 --seed 0", cell)
    assert moved.study.study_name == name + ":v2"
    assert any("the notebook data it reads changed: records" in m for m in moved.messages), moved.messages
    # the listing compares the two versions' records: not claimed as --fresh, nor as a change it cannot see
    import nbtune

    changed = nbtune.studies().loc[name + ":v2", "changed"]
    assert changed == "not compared: records, shift (fingerprinted by nbtune before 2026-12-01)", changed


def _user_module(root, name: str, source: str):
    """A module of the user's own, in a project folder on sys.path, imported afresh."""
    import importlib

    (root / f"{name}.py").write_text(source)
    sys.modules.pop(name, None)
    importlib.invalidate_caches()
    return importlib.import_module(name)


def test_the_users_own_modules_that_the_cell_uses_are_part_of_its_identity(tmp_path, monkeypatch):
    """A cell calling make_model from the project's src/ resumed its study after an edit of the
    module's helper, a constant or a class, mixing trials of two versions of the code (found trying
    nbtune as a new user with a src/ package and %autoreload). The module's code counts; what its
    code keeps at run time (a cache, a counter, a timestamp made at import) and its docstrings and
    comments do not (each started a new version at every run: found retesting)."""
    import importlib
    import json

    monkeypatch.syspath_prepend(str(tmp_path))
    helper = _user_module(tmp_path, "nbt_helper", "SCALE = 2.0\ndef scale(x, k=1):\n    return x * SCALE * k\n")
    models = _user_module(
        tmp_path,
        "nbt_models",
        "import time\nfrom nbt_helper import scale\nLOSS = 'log'\n_CACHE = {}\nN_CALLS = 0\n"
        "OUT_DIR = f'runs/{time.time_ns()}'\n"
        "class Net:\n    width = 8\n    @staticmethod\n    def depth():\n        return 2\n"
        "    class Head:\n        def size(self):\n            return 4\n"
        'def make(x):\n    """Make it."""\n    global N_CALLS\n    N_CALLS += 1\n    _CACHE[x] = [x]\n'
        "    return scale(x)  # once\n",
    )

    def edit(module, old, new):
        path = tmp_path / f"{module.__name__}.py"
        path.write_text(path.read_text().replace(old, new))
        importlib.reload(module)
        return imported_code({"make": models.make})

    try:
        code = cell_identity(parse_cell(CELL), {"make": models.make, "X": json, "Y": 1}, None)["imports"]
        assert sorted(code) == ["nbt_helper", "nbt_models"]  # not json: a library's
        models.make(3.0)  # what its code keeps at run time is no edit
        assert imported_code({"make": models.make}) == code
        for old, new in [
            ('"""Make it."""', '"""Make the model."""'),
            ("# once", "# once only"),
            ("time.time_ns()}", "time.time_ns()}"),  # run again at import: another value, the same code
        ]:
            assert edit(models, old, new) == code, (old, new)
        before = dict(code)
        for module, old, new in [
            (helper, "SCALE = 2.0", "SCALE = 3.0"),
            (helper, "x * SCALE * k", "x * SCALE * k + 1"),
            (helper, "k=1", "k=2"),
            (models, "LOSS = 'log'", "LOSS = 'hinge'"),
            (models, "width = 8", "width = 16"),
            (models, "return 2", "return 3"),
            (models, "return 4", "return 5"),  # a method of a class defined in a class
        ]:
            now = edit(module, old, new)
            assert now != before, (old, new)
            words = describe_difference(
                {"code": "c", "data": {}, "imports": before}, {"code": "c", "data": {}, "imports": now}
            )
            assert words == [f"the code it imports changed: {module.__name__}"], words
            before = now
    finally:
        sys.modules.pop("nbt_helper", None)
        sys.modules.pop("nbt_models", None)


@pytest.mark.parametrize("jobs", [1, 2])
def test_an_edited_module_starts_a_new_version_that_runs_the_new_code(ip, tmp_path, monkeypatch, jobs):
    """After an edit of the user's module (brought in by %autoreload, here importlib.reload), the
    re-run starts a new version; with --jobs 2 its trials ran the code the worker processes had
    imported before the edit, until a kernel restart (found trying nbtune as a new user)."""
    name = f"nbt_model_{jobs}"
    monkeypatch.syspath_prepend(str(tmp_path))
    _user_module(tmp_path, name, "FACTOR = 1.0\ndef loss_of(x):\n    return x * FACTOR\n")
    try:
        ip.run_cell(f"import importlib, {name} as model\nfrom {name} import loss_of")
        # (the module by reference: a function the worker processes are sent by value would bring its code)
        cell = "x = 0.5  # tune: uniform(0.1, 1)\nloss = model.loss_of(x) + 0 * loss_of(x)\n"
        line = f"--minimize loss -n 4 --seed 0 --jobs {jobs}"
        first = ip.run_cell_magic("tune", line, cell)
        assert all(t.value == pytest.approx(t.params["x"]) for t in first.study.trials)
        path = tmp_path / f"{name}.py"
        path.write_text(path.read_text().replace("FACTOR = 1.0", "FACTOR = 10.0").replace("x * FACTOR", "FACTOR * x"))
        ip.run_cell(f"importlib.reload(model)\nfrom {name} import loss_of")  # as %autoreload updates it
        again = ip.run_cell_magic("tune", line, cell)
        assert again.study.study_name == first.study.study_name + ":v2", again.messages
        assert any(f"the code it imports changed: {name}" in m for m in again.messages), again.messages
        assert not any("the notebook data it reads changed" in m for m in again.messages), again.messages
        values = [(t.value, t.params["x"]) for t in again.study.trials]
        assert all(v == pytest.approx(10 * x) for v, x in values), values
        assert not any("in place" in m for m in again.messages), again.messages
        # a setting the notebook sets on the module is a change too, and worker processes, which import the
        # module from its file, run with it (both silent: found retesting)
        ip.run_cell("model.FACTOR = 3.0")
        third = ip.run_cell_magic("tune", line, cell)
        assert third.study.study_name == first.study.study_name + ":v3", third.messages
        values = [(t.value, t.params["x"]) for t in third.study.trials]
        assert all(v == pytest.approx(3 * x) for v, x in values), values
    finally:
        sys.modules.pop(name, None)


def test_a_worker_that_runs_other_code_of_the_users_module_stops_the_search_before_any_trial(ip, tmp_path, monkeypatch):
    """A module edited on disk but not reloaded in the kernel: worker processes that import it now ran
    the edited code, in a study recorded as the kernel's older code (silent). Said before any trial,
    with the reload to do; after it, the workers run the code the kernel has."""
    from IPython.core.error import UsageError

    name = "nbt_unreloaded"
    monkeypatch.syspath_prepend(str(tmp_path))
    _user_module(tmp_path, name, "def loss_of(x):\n    return x\n")
    try:
        ip.run_cell(f"import importlib, {name} as model")
        path = tmp_path / f"{name}.py"
        path.write_text("def loss_of(x):\n    return 10 * x\n")  # no reload: the kernel runs x
        cell = "x = 0.5  # tune: uniform(0.1, 1)\nloss = model.loss_of(x)\n"
        with pytest.raises(UsageError) as e:
            ip.run_cell_magic("tune", "--minimize loss -n 4 --jobs 2", cell)
        said = str(e.value)
        assert f"imports other code of {name} than the kernel runs: its file ({path}) was edited since" in said, said
        assert "'%autoreload 2', which also updates the names imported from it" in said, said
        assert said.endswith("no trial ran"), said
        ip.run_cell("importlib.reload(model)")
        res = ip.run_cell_magic("tune", "--minimize loss -n 4 --jobs 2", cell)
        assert [t.state.name for t in res.study.trials] == ["COMPLETE"] * 4
        assert all(t.value == pytest.approx(10 * t.params["x"]) for t in res.study.trials)
    finally:
        sys.modules.pop(name, None)


def test_dask_workers_that_ran_a_module_before_its_edit_stop_the_search_saying_to_restart_them(
    ip, tmp_path, monkeypatch
):
    """A Dask worker imports a module once: after an edit (and %autoreload in the kernel), the trials
    of the new version ran the old code on the cluster, silently. Said before any trial, with
    client.restart(); after it, the trials run the new code."""
    from IPython.core.error import UsageError

    distributed = pytest.importorskip("distributed")
    name = "nbt_on_dask"
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("PYTHONPATH", f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    _user_module(tmp_path, name, "def loss_of(x):\n    return x\n")
    try:
        with (
            distributed.LocalCluster(
                n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None
            ) as cluster,
            distributed.Client(cluster) as client,
        ):
            ip.run_cell(f"import importlib, {name} as model")
            cell = "x = 0.5  # tune: uniform(0.1, 1)\nloss = model.loss_of(x)\n"
            line = "--minimize loss -n 2 --jobs 1 --backend dask"
            first = ip.run_cell_magic("tune", line, cell)
            assert all(t.value == pytest.approx(t.params["x"]) for t in first.study.trials)
            (tmp_path / f"{name}.py").write_text("def loss_of(x):\n    return 10 * x\n")
            ip.run_cell("importlib.reload(model)")
            with pytest.raises(UsageError) as e:
                ip.run_cell_magic("tune", line, cell)
            said = str(e.value)
            assert f"runs the code of {name} it imported before the module was edited" in said, said
            assert "client.restart()" in said and said.endswith("no trial ran"), said
            client.restart()
            again = ip.run_cell_magic("tune", line, cell)
            assert again.study.study_name == first.study.study_name + ":v2"
            assert [t.state.name for t in again.study.trials] == ["COMPLETE"] * 2, again.messages
            assert all(t.value == pytest.approx(10 * t.params["x"]) for t in again.study.trials)
    finally:
        sys.modules.pop(name, None)


def test_a_module_the_workers_cannot_import_says_their_error(ip, tmp_path, monkeypatch):
    """A module of the user's that needs the notebook when imported failed in the worker processes
    with the canned advice about C-level wrappers, and the workers' own error was dropped."""
    from IPython.core.error import UsageError

    monkeypatch.syspath_prepend(str(tmp_path))
    _user_module(
        tmp_path,
        "nbt_needs_shell",
        "from IPython import get_ipython\nSHELL = get_ipython().user_ns\ndef f(x):\n    return x\n",
    )
    try:
        ip.run_cell("import nbt_needs_shell as helpers")
        with pytest.raises(UsageError) as e:
            ip.run_cell_magic(
                "tune", "--minimize loss -n 2 --jobs 2", "x = 0.5  # tune: uniform(0, 1)\nloss = helpers.f(x)\n"
            )
        assert "(AttributeError: 'NoneType' object has no attribute 'user_ns')" in str(e.value), e.value
        assert "get_ipython()" in str(e.value)
    finally:
        sys.modules.pop("nbt_needs_shell", None)


def test_a_bug_in_the_users_module_is_named_where_it_is(ip, tmp_path, monkeypatch):
    """A NameError in a helper of the project's src/ stopped the search saying '(line 2 of the
    %%tune cell) ... the cell probably has a bug' (found trying nbtune as a new user)."""
    from IPython.core.error import UsageError

    monkeypatch.syspath_prepend(str(tmp_path))
    _user_module(tmp_path, "nbt_buggy", "def per_class(x):\n    return x * N_CLASES\n")
    monkeypatch.chdir(tmp_path)
    try:
        ip.run_cell("import nbt_buggy")
        with pytest.raises(UsageError) as e:
            ip.run_cell_magic(
                "tune",
                "--minimize loss -n 4 --seed 0",
                "x = 0.5  # tune: uniform(0, 1)\nloss = nbt_buggy.per_class(x)\n",
            )
        said = str(e.value)
        assert "(line 3 of the %%tune cell, raised in nbt_buggy.py, line 2, in per_class)" in said, said
        assert "your code probably has a bug" in said, said
    finally:
        sys.modules.pop("nbt_buggy", None)


def test_re_validation_refuses_after_an_edit_of_the_users_module(ip, tmp_path, monkeypatch):
    """Re-validation runs the recorded cell again, with the user's modules as they are now: after an
    edit there it would mix runs of two versions of the code into one interval."""
    import importlib

    from nbtune.exceptions import ConfigError

    monkeypatch.syspath_prepend(str(tmp_path))
    module = _user_module(tmp_path, "nbt_rv", "OFFSET = 0.0\ndef score(x, seed):\n    return (x - 0.3) ** 2 + OFFSET\n")
    try:
        ip.run_cell("import nbt_rv")
        cell = "x = 0.5  # tune: uniform(0, 1)\nseed = 0  # tune: seed\nloss = nbt_rv.score(x, seed)\n"
        res = ip.run_cell_magic("tune", "--minimize loss -n 3 --seed 0", cell)
        path = tmp_path / "nbt_rv.py"
        path.write_text(path.read_text().replace("OFFSET = 0.0", "OFFSET = 1.0"))
        importlib.reload(module)
        with pytest.raises(ConfigError, match="^the code it imports changed: nbt_rv since '.*' ran: re-validating now"):
            res.revalidate(top=2, seeds=2, view=None)
    finally:
        sys.modules.pop("nbt_rv", None)
