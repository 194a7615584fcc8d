"""A damaged journal loses nothing: the bad tail is set aside, every good record kept, the study resumes."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import optuna
import pytest
from IPython.core.error import UsageError
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend

import nbtune
from nbtune.exceptions import NbtuneWarning
from nbtune.store.attrs import finished_count
from nbtune.store.repair import repair_journal

CELL = "x = 0.5  # tune: uniform(0, 1)\nloss = (x - 0.3) ** 2\n"


def _plain(path):
    """The study as plain Optuna reads it (no nbtune code involved)."""
    return optuna.load_study(study_name="s", storage=JournalStorage(JournalFileBackend(str(path))))


@pytest.fixture(scope="module")
def sound(tmp_path_factory):
    store = tmp_path_factory.mktemp("sound")
    nbtune.tune(CELL, minimize="loss", n_trials=5, seed=0, store=store, name="s", view=None)
    data = (store / "s.journal").read_bytes()
    last = data.rstrip(b"\n").rfind(b"\n") + 1  # where the last record starts
    return data, last


def _write(data: bytes, name: str, tmp: Path) -> Path:
    """A store folder ``tmp/name`` holding ``data`` as the journal of study "s"."""
    (tmp / name).mkdir(exist_ok=True)
    path = tmp / name / "s.journal"
    path.write_bytes(data)
    return path


def _finished(data: bytes, tmp: Path) -> int:
    return finished_count(_plain(_write(data, "count", tmp)).trials)


def test_every_cut_of_the_last_record_is_repaired(sound, tmp_path):
    data, last = sound
    before = _finished(data[:last], tmp_path)  # the last record is cut away entirely
    for cut in range(last, len(data)):
        path = _write(data[:cut], f"cut{cut}", tmp_path)
        message = repair_journal(path)
        if cut == last:
            assert message is None  # a cut between records is no damage
        else:
            assert message is not None and "set aside" in message, cut
            side = list(path.parent.glob("s.journal.damaged-*"))
            assert len(side) == 1 and side[0].read_bytes() == data[last:cut]
        assert path.read_bytes() == data[:last]
        assert finished_count(_plain(path).trials) == before


@pytest.mark.parametrize(
    "garbage",
    [
        b"garbage",
        b"garbage\n",
        b"{not json\n",
        b"\x00\x01\x02",
        b'{"a": 1}\n',
        b"\n",
        b'{"op_code": 4, "worker_id"',
        b"x\ny\nz",
    ],
)
def test_garbage_after_the_last_record_is_set_aside(sound, tmp_path, garbage):
    data, _ = sound
    path = _write(data + garbage, "g", tmp_path)
    assert repair_journal(path) is not None
    assert path.read_bytes() == data
    side = next(path.parent.glob("s.journal.damaged-*"))
    assert side.read_bytes() == garbage


@pytest.mark.parametrize("damage", ["cut", "garbage"])
def test_the_study_resumes_after_damage_and_stays_readable(sound, tmp_path, damage):
    data, last = sound
    # (a NUL byte even stops plain Optuna's reader: json guesses UTF-16 and fails)
    damaged = data[: last + 7] if damage == "cut" else data + b"\x00garbage\n"
    good_before = _finished(data[:last] if damage == "cut" else data, tmp_path)
    store = tmp_path / "store"
    _write(damaged, "store", tmp_path)
    res = nbtune.tune(CELL, minimize="loss", n_trials=good_before + 4, seed=0, store=store, name="s", view=None)
    assert res.n_finished == good_before + 4
    assert any("set aside" in m for m in res.messages)
    # plain Optuna still reads every record, the old ones and the new ones
    assert finished_count(_plain(store / "s.journal").trials) == good_before + 4
    assert nbtune.load_study("s", store=store).best_value == res.best_value


def test_bad_lines_in_the_middle_are_set_aside_and_every_good_record_kept(sound, tmp_path):
    """What an older nbtune left when it appended after damage: Optuna cannot read it at all."""
    data, _ = sound
    lines = data.splitlines(keepends=True)
    broken = b"".join(lines[:3]) + b"{torn\n" + b"".join(lines[3:])
    path = _write(broken, "mid", tmp_path)
    with pytest.raises(ValueError):
        _plain(path)
    with pytest.warns(NbtuneWarning, match=r"had 6 damaged byte\(s\) between good records, where it lost a line it"):
        study = nbtune.load_study("s", store=path.parent)
    assert finished_count(study.trials) == 5
    assert path.read_bytes() == data
    assert finished_count(_plain(path).trials) == 5
    # the shape an older nbtune left: a torn record, and the next writer's whole record right after it
    torn = b"".join(lines[:3]) + b'{"op_code":8,"worker_id":"x' + b"".join(lines[3:])
    path = _write(torn, "appended", tmp_path)
    with pytest.warns(NbtuneWarning, match=r"had 27 damaged byte\(s\) between good records; they were set aside"):
        study = nbtune.load_study("s", store=path.parent)
    assert path.read_bytes() == data and finished_count(study.trials) == 5


def test_a_sound_journal_is_left_alone(sound, tmp_path):
    data, _ = sound
    path = _write(data, "ok", tmp_path)
    mtime = path.stat().st_mtime_ns
    assert repair_journal(path) is None and repair_journal(path, full=True) is None
    assert path.stat().st_mtime_ns == mtime and not list(path.parent.glob("*.damaged-*"))


def test_viewing_a_finished_study_writes_nothing(ip, tmp_path):
    store = tmp_path / "view"
    ip.run_cell_magic("tune", f"--trials 3 --minimize loss --store {store} --name seen", CELL)
    shutil.rmtree(store / "runs", ignore_errors=True)
    before = {p.name: p.stat().st_mtime_ns for p in store.iterdir()}
    res = ip.run_cell_magic("tune", f"--trials 3 --minimize loss --store {store} --name seen", CELL)
    assert any("nothing to run" in m for m in res.messages)
    ip.run_line_magic("tune_show", f"seen --store {store}")
    nbtune.load_study("seen", store=store)
    assert {p.name: p.stat().st_mtime_ns for p in store.iterdir()} == before


_GIT_ENV = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t",
            "PATH": "/usr/bin:/bin"}  # fmt: skip


def _git(path, *args, check=True):
    import subprocess

    return subprocess.run(
        ["git", *args], cwd=path, check=check, capture_output=True, env={**_GIT_ENV, "HOME": str(path)}
    )


def _branches(tmp_path, base, ours, theirs):
    """A project whose store ran ``base`` on main, then ``theirs`` on a branch and ``ours`` on main,
    merged by git (a conflict in the journal); what each of them returned."""
    _git(tmp_path, "init", "-q", "-b", "main")
    base()
    shutil.rmtree(tmp_path / ".nbtune" / "runs", ignore_errors=True)
    (tmp_path / ".gitignore").write_text(".nbtune/*.budget\n.nbtune/*.lock\n.nbtune/runs/\n")
    _git(tmp_path, "add", "-A")
    _git(tmp_path, "commit", "-qm", "base")
    _git(tmp_path, "checkout", "-qb", "other")
    t = theirs()
    _git(tmp_path, "add", "-A")
    _git(tmp_path, "commit", "-qm", "theirs")
    _git(tmp_path, "checkout", "-q", "main")
    o = ours()
    _git(tmp_path, "add", "-A")
    _git(tmp_path, "commit", "-qm", "ours")
    assert _git(tmp_path, "merge", "-q", "other", check=False).returncode != 0
    return o, t


def test_a_journal_git_merged_keeps_both_branches_trials(tmp_path):
    """Two branches of a notebook project each ran 3 more trials, and `git merge` put one side's
    records after the other's between conflict markers: the markers were set aside as "damage
    from a crash", and the other branch's finished trials landed on this one's trial ids, lost,
    with empty RUNNING trials left (found trying nbtune as a new user). Both sides are kept."""

    def search(n, seed):
        return nbtune.tune(
            CELL, minimize="loss", n_trials=n, seed=seed, store=tmp_path / ".nbtune", name="s", view=None
        )

    def added(n, seed):  # the configurations this branch added, read before the merge
        return {round(t.params["x"], 12) for t in search(n, seed).study.trials[4:]}

    ours, theirs = _branches(tmp_path, lambda: search(4, 0), lambda: added(7, 7), lambda: added(7, 5))
    assert b"<<<<<<<" in (tmp_path / ".nbtune" / "s.journal").read_bytes()
    assert ours != theirs
    res = search(10, 0)  # the next run: nothing left to run, every trial kept
    trials = res.study.trials
    assert [t.state.name for t in trials] == ["COMPLETE"] * 10, [(t.number, t.state.name) for t in trials]
    assert {round(t.params["x"], 12) for t in trials[4:]} == ours | theirs
    assert all(t.value == pytest.approx((t.params["x"] - 0.3) ** 2) for t in trials)
    assert any("had git's conflict markers (two branches each added trials): both sides were kept, 3 trial(s) "
               "of one and 3 of the other" in m for m in res.messages), res.messages  # fmt: skip
    assert list((tmp_path / ".nbtune").glob("s.journal.conflict-*"))


def test_a_version_both_branches_started_stays_two_studies_after_a_git_merge(tmp_path):
    """Each branch changed the cell and started its own 's:v2': merged, they became one study of
    two codes, each branch's cell resuming the other's trials (found trying nbtune as a new user)."""

    def search(k, n=3):
        cell = CELL.replace("** 2", f"** 2 + {k}")
        return nbtune.tune(cell, minimize="loss", n_trials=n, seed=0, store=tmp_path / ".nbtune", name="s", view=None)

    ours, theirs = _branches(
        tmp_path, lambda: search(0), lambda: search(1).study.study_name, lambda: search(2).study.study_name
    )
    assert ours == theirs == "s:v2"
    again_ours, again_theirs = search(1), search(2)
    assert {again_ours.study.study_name, again_theirs.study.study_name} == {"s:v2", "s:v3"}
    for res, k in ((again_ours, 1), (again_theirs, 2)):
        assert len(res.study.trials) == 3 and all(
            t.value == pytest.approx((t.params["x"] - 0.3) ** 2 + k) for t in res.study.trials
        )


def test_paused_trials_both_branches_stopped_for_good_stay_stopped_after_a_git_merge(tmp_path):
    """Pause-and-promote: a search that ends by its budget says its paused trials are stopped for good
    (a trial number). Merged, the other branch's trials came after this one's, and its number
    (or this branch's) no longer covered them: they showed as paused, waiting to go on."""
    from nbtune.store.attrs import ATTR
    from nbtune.view.summary import still_paused

    cell = "x = 0.5  # tune: uniform(0, 1)\nfor epoch in range(9):  # tune: epochs\n    loss = (x - 0.3) ** 2 + 1 / (epoch + 1)\n"

    def search(n, seed):
        res = nbtune.tune(cell, minimize="loss", n_trials=n, seed=seed, store=tmp_path / ".nbtune", name="s", view=None)
        study = res.study
        return still_paused(study.trials, study.user_attrs.get(ATTR.PAUSES_ENDED)), study.trials

    def paused(trials):
        return {t.number for t in trials if t.state.name == "PRUNED"}

    _, base = search(10, 0)
    (ours_left, ours), (theirs_left, theirs) = _branches(
        tmp_path, lambda: search(10, 0), lambda: search(20, 1), lambda: search(20, 2)
    )
    assert ours_left == theirs_left == set() and paused(ours) - paused(base) and paused(theirs) - paused(base)
    with pytest.warns(nbtune.NbtuneWarning, match="had git's conflict markers"):
        study = nbtune.load_study("s", store=tmp_path / ".nbtune")
    assert len(study.trials) == len(ours) + len(theirs) - len(base)
    assert len(paused(study.trials)) == len(paused(ours)) + len(paused(theirs)) - len(paused(base))
    assert still_paused(study.trials, study.user_attrs.get(ATTR.PAUSES_ENDED)) == set()


def test_a_store_deleted_or_replaced_under_a_live_kernel_is_read_afresh(tmp_path):
    """'rm -rf .nbtune' to start over broke every later run until a restart (FileNotFoundError,
    then 'Bad file descriptor'), and a journal restored from a copy crashed the next run with
    'Cannot tell a COMPLETE trial' (the process kept the parsed log of the file it had read;
    found trying nbtune as a new user)."""
    store = tmp_path / ".nbtune"

    def search(n):
        return nbtune.tune(CELL, minimize="loss", n_trials=n, seed=0, store=store, name="s", view=None)

    search(3)
    shutil.rmtree(store)
    assert search(2).n_finished == 2 and len(search(3).study.trials) == 3
    copy = (store / "s.journal").read_bytes()
    search(5)
    (store / "s.journal").write_bytes(copy)  # a backup restored, a git checkout
    res = search(6)
    assert [t.state.name for t in res.study.trials] == ["COMPLETE"] * 6
    replaced = tmp_path / "replacement"
    replaced.write_bytes(copy)
    os.replace(replaced, store / "s.journal")  # a new file in its place
    assert len(search(4).study.trials) == 4


def test_viewing_one_study_neither_touches_nor_trips_on_another_damaged_one(ip, tmp_path):
    """%tune_show of one study rewrote another study's damaged journal in the same folder, and in a
    read-only folder failed with a raw JSONDecodeError (found trying nbtune as a new user)."""
    store = tmp_path / "two"
    nbtune.tune(CELL, minimize="loss", n_trials=3, seed=0, store=store, name="good", view=None)
    nbtune.tune(CELL, minimize="loss", n_trials=3, seed=0, store=store, name="other", view=None)
    other = store / "other.journal"
    lines = other.read_bytes().splitlines(keepends=True)
    other.write_bytes(b"".join(lines[:3]) + b"garbage in the middle\n" + b"".join(lines[3:]))
    import nbtune.store.journal as journal

    journal._CACHE.storages.clear()  # a new kernel
    before = other.stat().st_mtime_ns
    assert len(nbtune.load_study("good", store=store).trials) == 3
    ip.run_line_magic("tune_show", f"good --store {store} -o shown")
    assert len(ip.user_ns["shown"].study.trials) == 3
    with pytest.raises(UsageError, match=r"the store holds \['good', 'other'\]"):  # a typo lists the studies
        ip.run_line_magic("tune_show", f"goo --store {store}")
    assert other.stat().st_mtime_ns == before and not list(store.glob("*.damaged-*"))


def _ops(data: bytes) -> list[int]:
    import json

    return [json.loads(line)["op_code"] for line in data.splitlines()]


def _damaged_at(data: bytes, index: int, how: str = "garbage") -> bytes:
    lines = data.splitlines(keepends=True)
    line = lines[index]
    if how == "garbage":  # bytes inserted after the op_code, as a bad disk sector or an editor might
        lines[index] = line[:20] + b"\x00\xff GARBAGE ###" + line[20:]
    elif how == "name":
        lines[index] = line.replace(b'"study_name"', b'"study_n\xffame', 1)
    elif how == "op":  # even its op_code unreadable
        lines[index] = line.replace(b'"op_code"', b'"op_\xffcode', 1)
    return b"".join(lines)


def _by_number(study):
    return {t.number: (t.state.name, t.params, t.value) for t in study.trials}


@pytest.mark.parametrize("how", ["garbage", "op"])
def test_a_lost_parameter_record_fails_its_trial_and_leaves_every_other_as_it_was(sound, tmp_path, how):
    """A damaged record in the middle of a journal was dropped when the store was opened: the trial
    whose parameter it was stayed COMPLETE without it, silently (found trying nbtune as a new
    user). It fails now, marked, and every other trial is what it was."""
    data, _ = sound
    index = max(i for i, op in enumerate(_ops(data)) if op == 5)  # the last trial's parameter
    path = _write(_damaged_at(data, index, how), "param", tmp_path)
    with pytest.warns(NbtuneWarning, match=r"between good records, where it lost a trial's parameter.*fails"):
        study = nbtune.load_study("s", store=path.parent)
    before, after = _by_number(_plain(_write(data, "clean", tmp_path))), _by_number(study)
    [hurt] = [n for n in before if before[n] != after[n]]
    assert after[hurt][0] == "FAIL" and "lost to damage" in study.trials[hurt].user_attrs["nbtune:damaged"]
    assert study.best_trial.number != hurt
    frame = nbtune.load_result("s", store=path.parent).trials_dataframe()
    assert list(frame.index[frame["damaged"].notna()]) == [hurt]


def test_a_lost_study_creation_is_made_again_and_keeps_every_trial(sound, tmp_path):
    """A damaged first record (the study's creation) made the whole study vanish: 'holds no study
    yet', and a re-run started from scratch (found trying nbtune as a new user)."""
    data, _ = sound
    assert _ops(data)[0] == 0
    path = _write(_damaged_at(data, 0, "name"), "first", tmp_path)
    with pytest.warns(NbtuneWarning, match=r"the creation of the study 's'"):
        study = nbtune.load_study("s", store=path.parent)
    assert _by_number(study) == _by_number(_plain(_write(data, "clean", tmp_path)))
    assert study.direction == optuna.study.StudyDirection.MINIMIZE


def test_a_lost_trial_creation_keeps_the_trials_after_it_numbered_as_they_were(sound, tmp_path):
    """Optuna numbers trials by the order of their creation records: dropping a lost one landed
    every later record on the trial before."""
    data, _ = sound
    creations = [i for i, op in enumerate(_ops(data)) if op == 4]
    path = _write(_damaged_at(data, creations[2]), "create", tmp_path)
    with pytest.warns(NbtuneWarning, match=r"a trial's creation"):
        study = nbtune.load_study("s", store=path.parent)
    before, after = _by_number(_plain(_write(data, "clean", tmp_path))), _by_number(study)
    assert before == after  # (its parameters and value are records of their own)
    assert "nbtune:damaged" in study.trials[2].user_attrs


def test_an_unreadable_record_keeps_the_file_up_to_it_rather_than_renumber(sound, tmp_path):
    """Two trials' creations lost in a row: no one stand-in makes the records after them agree, so
    the file is kept up to the first, and the rest set aside with it (in the side file)."""
    data, _ = sound
    lines = data.splitlines(keepends=True)
    index, second = [i for i, op in enumerate(_ops(data)) if op == 4][3:5]
    lines[index] = b'{"worker_id": \xff\xff}\n'  # a record, but of what kind nobody can tell
    lines[second] = b"\xfe\xfe\xfe\n"
    path = _write(b"".join(lines), "unknown", tmp_path)
    with pytest.warns(NbtuneWarning, match=r"a record it cannot tell at line \d+, so the \d+ line\(s\) after it"):
        study = nbtune.load_study("s", store=path.parent)
    clean = _by_number(_plain(_write(b"".join(lines[:index]), "prefix", tmp_path)))
    assert _by_number(study) == clean and len(clean) == 3


def test_nbtune_studies_says_what_opening_a_damaged_store_repaired(sound, tmp_path):
    """nbtune.studies() repaired a damaged journal and said nothing."""
    data, _ = sound
    index = max(i for i, op in enumerate(_ops(data)) if op == 5)
    path = _write(_damaged_at(data, index), "listed", tmp_path)
    with pytest.warns(NbtuneWarning, match=r"set aside"):
        frame = nbtune.studies(path.parent)
    assert list(frame.index) == ["s"]


@pytest.mark.parametrize("which", [0, 4, 5, 8])
def test_a_line_made_wholly_unreadable_moves_nothing_around_it(sound, tmp_path, which):
    """Binary junk in place of a whole record: a trial's creation among them was read as 'a line
    that held no record' and dropped, which moved every later record to the trial before it (the
    best trial gone, three left empty and running: found retesting)."""
    data, _ = sound
    lines = data.splitlines(keepends=True)
    index = [i for i, op in enumerate(_ops(data)) if op == which][1 if which == 4 else 0 if which == 0 else -1]
    lines[index] = bytes(200 + k % 50 for k in range(len(lines[index]) - 1)) + b"\n"
    path = _write(b"".join(lines), f"junk{which}", tmp_path)
    with pytest.warns(NbtuneWarning, match=r"between good records, where it lost"):
        study = nbtune.load_study("s", store=path.parent)
    before, after = _by_number(_plain(_write(data, "clean", tmp_path))), _by_number(study)
    moved = [n for n in before if after.get(n) != before[n] and n in after]
    # a creation stood in for: its trial keeps its records (or, for the study's, every trial); an
    # attribute or a value: at most its own trial loses it
    assert len(moved) <= 1 and sorted(after) == sorted(before), (before, after)
