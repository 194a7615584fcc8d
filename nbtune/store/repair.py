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

import datetime
import json
import logging
import os
import re
import time
from pathlib import Path
from typing import Any

from nbtune.store.attrs import ATTR

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


def _split(path: Path) -> tuple[bytes, bytes, list[str]]:
    """(the records to keep, every bad line, what the bad lines in the middle cost), in file order.

    A bad line after the last good record is a torn write: nothing depends on it. One between good
    records did hold a record, and Optuna numbers studies and trials by the order of their
    creation records: dropping a lost creation would land every later record on the wrong study
    or trial (found trying nbtune as a new user: a study vanished, a trial lost a parameter
    silently). So a lost creation is stood in for by a plain one of the same study, a lost trial
    record marks its trial (``nbtune:damaged``), and when neither can be told, the file is kept
    up to that line and the rest set aside with it, rather than renumbered."""
    lines = path.read_bytes().splitlines(keepends=True)
    last_good = max((i for i, line in enumerate(lines) if _good(line)), default=-1)
    keep: list[bytes] = []
    bad: list[bytes] = []
    costs: list[str] = []
    for i, line in enumerate(lines):
        if _good(line):
            keep.append(line)
            continue
        appended = _appended_record(line)
        if appended is not None:
            # a torn write that a writer appended a whole record to (an older nbtune): the torn part
            # never counted for any reader, the record did
            bad.append(line[: len(line) - len(appended)])
            keep.append(appended)
            continue
        bad.append(line)
        if i > last_good or not line.strip():  # a torn end; a blank line held nothing
            continue
        mended = _stand_in(line, keep, lines[i + 1 :], path)
        if mended is None:  # unreadable: whether dropping it moves the records after it, their ids say
            mended = _unreadable(keep, lines[i + 1 :], path)
        if mended is None:  # it held a creation that cannot be made again: keep what comes before it
            bad[-1:] = lines[i:]
            costs.append(
                f"a record it cannot tell at line {i + 1}, so the {len(lines) - i - 1} line(s) after it were set aside "
                "too (restore the file from a copy if you have one)"
            )
            break
        stand_in, cost = mended
        keep += stand_in
        if cost:
            costs.append(cost)
    return b"".join(keep), b"".join(bad), costs


_OP_AT = re.compile(rb'"op_code"\s*:\s*(\d+)')


def _appended_record(line: bytes) -> bytes | None:
    """The whole record a damaged ``line`` ends with (after a torn one), or None."""
    at = line.rfind(b'{"op_code"', 1)
    return line[at:] if at > 0 and _good(line[at:]) else None


def _consistent(records: list[bytes]) -> bool:
    """Whether every record refers to a study and a trial made before it, in Optuna's numbering
    (a creation lost from the middle moves every id after it: some record then refers to one that
    does not exist yet)."""
    studies: set[str] = set()
    trials = 0
    for line in records:
        if not _good(line):
            continue
        r = json.loads(line)
        if r.get("study_id", -1) >= len(studies) or r.get("trial_id", -1) >= trials:
            return False
        if r.get("op_code") == _CREATE_STUDY:
            studies.add(r.get("study_name"))
        elif r.get("op_code") == _CREATE_TRIAL:
            trials += 1
    return True


def _unreadable(before: list[bytes], after: list[bytes], path: Path) -> tuple[list[bytes], str] | None:
    """A line nothing of which can be read (binary junk): it held nothing the records after it need
    when they refer to what exists without it; else a trial's creation of the study the creations
    around it made, when that makes them agree; else None."""
    if _consistent([*before, *after]):
        return [], "a line it could not read (the records around it need nothing from it)"
    near = [json.loads(r) for r in [*reversed(before), *after] if _good(r)]
    study = next((r["study_id"] for r in near if r.get("op_code") == _CREATE_TRIAL), None)
    if study is not None:
        stand_in = _creation_stand_in(study, path)
        if _consistent([*before, *stand_in[0], *after]):
            return stand_in
    made = _study_stand_in(b"", before, after, path)  # a study's creation: its name and direction as the file says
    if made is not None and _consistent([*before, *made[0], *after]):
        return made
    return None


def _mark(path: Path) -> str:
    """What marks a trial that lost a record (``nbtune:damaged``)."""
    return f"a record of this trial was lost to damage in the store file (set aside in {path.name}.damaged-*)"


def _creation_stand_in(study: int, path: Path) -> tuple[list[bytes], str]:
    """A plain trial of ``study``, marked, in place of a lost creation record; and what was lost."""
    record = _record(op_code=_CREATE_TRIAL, study_id=study, datetime_start=None, user_attrs={ATTR.DAMAGED: _mark(path)})
    return [record], "a trial's creation (a trial of its study stands in for it, marked 'nbtune:damaged')"


def _field(line: bytes, key: str) -> int | None:
    found = re.search(rb'"' + key.encode() + rb'"\s*:\s*(\d+)', line)
    return int(found.group(1)) if found else None


def _record(**fields: Any) -> bytes:
    return json.dumps({"worker_id": "nbtune-repair", **fields}, separators=(",", ":")).encode() + b"\n"


def _stand_in(line: bytes, before: list[bytes], after: list[bytes], path: Path) -> tuple[list[bytes], str] | None:
    """What keeps the numbering of the records around a damaged ``line``: (records to put in its
    place, what was lost, in words), or None when what it held cannot be told."""
    found = _OP_AT.search(line)
    op = int(found.group(1)) if found else None
    if op is None:  # its op_code is damaged: what its fields say it was
        if b'"study_name"' in line:
            op = _CREATE_STUDY
        elif b'"trial_id"' in line:
            op = _SET_TRIAL_USER_ATTR  # a record of a trial that exists: its kind does not matter
        elif b'"datetime_start"' in line:
            op = _CREATE_TRIAL
        else:
            return None
    if op == _CREATE_TRIAL:
        study = _field(line, "study_id")
        if study is None:  # the study of the creation before it, else after it
            near = [json.loads(r) for r in [*reversed(before), *after] if _good(r)]
            study = next((r["study_id"] for r in near if r.get("op_code") == _CREATE_TRIAL), None)
        if study is None:
            return None
        return _creation_stand_in(study, path)
    if op == _CREATE_STUDY:
        return _study_stand_in(line, before, after, path)
    trial = _field(line, "trial_id")
    if trial is None:
        if op in (_SET_STUDY_USER_ATTR, 3):
            return [], "a record of a study's attributes"
        if op == _SET_TRIAL_STATE:
            return [], "a trial's end, of a trial it cannot tell (one left without an end is cut: it runs again)"
        return [], "a record of a trial it cannot tell"
    marked = [_record(op_code=_SET_TRIAL_USER_ATTR, trial_id=trial, user_attr={ATTR.DAMAGED: _mark(path)})]
    if found is None or op == _SET_TRIAL_PARAM:
        # (maybe) a parameter: its configuration is not known whole, so it fails (the trial's later
        # records are then ignored, as for any finished trial), rather than be the best without it
        now = datetime.datetime.now().isoformat()
        marked.append(_record(op_code=_SET_TRIAL_STATE, trial_id=trial, state=3, values=None, datetime_complete=now))
        return (
            marked,
            "a trial's parameter, or a record that may have been one (the trial fails, marked 'nbtune:damaged')",
        )
    what = {_SET_TRIAL_STATE: "a trial's end (it counts as cut: it runs again)"}.get(op, "a record of a trial")
    return marked, f"{what} (the trial is marked 'nbtune:damaged')"


def _study_stand_in(line: bytes, before: list[bytes], after: list[bytes], path: Path) -> tuple[list[bytes], str] | None:
    """A study's creation in place of a damaged one: its name as the store names the k-th version in
    a file (the file is named after the first), its direction from its record or nbtune's settings."""
    from nbtune.store.base import versioned

    name_found = re.search(rb'"study_name"\s*:\s*"([^"\\]*)"', line)
    made = sum(1 for r in before if _good(r) and json.loads(r).get("op_code") == _CREATE_STUDY)
    name = name_found.group(1).decode("utf-8", "replace") if name_found else versioned(path.stem, made + 1)
    directions = re.search(rb'"directions"\s*:\s*\[([\d,\s]+)\]', line)
    if directions:
        values = [int(d) for d in directions.group(1).split(b",") if d.strip()]
    else:  # nbtune records its direction in the study's settings (its id: the creations before it)
        settings = (
            r.get("user_attr", {}).get(ATTR.CONFIG)
            for r in (json.loads(x) for x in after if _good(x))
            if r.get("op_code") == _SET_STUDY_USER_ATTR and r.get("study_id") == made
        )
        direction = next((c.get("direction") for c in settings if isinstance(c, dict) and c.get("direction")), None)
        if direction not in ("minimize", "maximize"):
            return None
        values = [1 if direction == "minimize" else 2]  # optuna.study.StudyDirection
    return [_record(op_code=_CREATE_STUDY, study_name=name, directions=values)], (
        f"the creation of the study {name!r} (made again from what the file says of it)"
    )


def _write(path: Path, data: bytes, append: bool = False) -> None:
    with open(path, "ab" if append else "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _replace(path: Path, data: bytes) -> None:
    """``path`` holds ``data`` at once, whole (written beside it, then renamed over it)."""
    tmp = path.with_name(path.name + ".repairing")
    _write(tmp, data)
    os.replace(tmp, path)


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
        merged = _merge_conflict(path)
        if merged is not None:
            return merged
        good, bad, costs = _split(path)
        if not bad:
            return None
        at_end = path.read_bytes().endswith(bad) and not costs
        side = path.with_name(f"{path.name}.damaged-{time.strftime('%Y%m%d-%H%M%S')}")
        _write(side, bad, append=True)
        _replace(path, good)
    where = "after its last good record" if at_end else "between good records"
    if costs:
        where += f", where it lost {'; '.join(sorted(set(costs)))}"
    elif where.startswith("after"):
        where += " (a crash or a full disk mid-write?)"
    message = (
        f"the store file {path.name} had {len(bad)} damaged byte(s) {where}; they were set aside in {side.name} "
        "and the study goes on"
    )
    _logger.info(message)  # (info: the result's messages tell the user, once)
    return message


# A journal merged by git: both branches appended records after what they shared, and a line merge
# puts one side's after the other's between conflict markers. Optuna numbers studies and trials in
# the order their records come, so the second side's records would land on the first side's
# trials (its finished trials lost, empty RUNNING ones left). Its studies and trials are renumbered
# to follow the first side's instead: both branches' trials are kept.
_OURS, _BASE, _THEIRS, _END = b"<<<<<<< ", b"||||||| ", b"=======", b">>>>>>> "


def _merge_conflict(path: Path) -> str | None:
    """Merge a journal git left with one conflict (both sides' records, renumbered); a one-line
    message, or None when the file has no conflict markers (or more than one conflict)."""
    data = path.read_bytes()
    if _OURS not in data:
        return None
    lines = data.splitlines(keepends=True)
    starts = [i for i, line in enumerate(lines) if line.startswith(_OURS)]
    ends = [i for i, line in enumerate(lines) if line.startswith(_END)]
    middles = [i for i, line in enumerate(lines) if line.rstrip(b"\r\n") == _THEIRS]
    if len(starts) != 1 or len(ends) != 1 or len(middles) != 1 or not starts[0] < middles[0] < ends[0]:
        return None
    first, mid, last = starts[0], middles[0], ends[0]
    base = next((i for i in range(first, mid) if lines[i].startswith(_BASE)), mid)  # diff3's common part
    prefix, ours, theirs, suffix = lines[:first], lines[first + 1 : base], lines[mid + 1 : last], lines[last + 1 :]
    try:
        records = [[json.loads(x) for x in part if x.strip()] for part in (prefix, ours, theirs, suffix)]
    except ValueError:
        return None  # not only records between the markers: a damage of another kind
    merged_theirs = _renumbered(records[0], records[1], records[2])
    out = b"".join(prefix) + b"".join(ours)
    out += b"".join(json.dumps(r, separators=(",", ":")).encode() + b"\n" for r in merged_theirs)
    out += b"".join(suffix)
    side = path.with_name(f"{path.name}.conflict-{time.strftime('%Y%m%d-%H%M%S')}")
    _write(side, data)
    _replace(path, out)
    n_ours = sum(1 for r in records[1] if r.get("op_code") == _CREATE_TRIAL)
    n_theirs = sum(1 for r in records[2] if r.get("op_code") == _CREATE_TRIAL)
    message = (
        f"the store file {path.name} had git's conflict markers (two branches each added trials): both sides were "
        f"kept, {n_ours} trial(s) of one and {n_theirs} of the other, renumbered after them; the file as git left "
        f"it is in {side.name}"
    )
    _logger.info(message)  # (info: the result's messages tell the user, once)
    return message


# Optuna's JournalOperation codes
_CREATE_STUDY, _DELETE_STUDY, _SET_STUDY_USER_ATTR, _CREATE_TRIAL = 0, 1, 2, 4
_SET_TRIAL_PARAM, _SET_TRIAL_STATE, _SET_TRIAL_USER_ATTR = 5, 6, 8


class _Ids:
    """Optuna's journal numbering: a study id per new study name, a trial id per trial created in a
    study that exists, in the order the records come."""

    def __init__(self) -> None:
        self.studies: dict[str, int] = {}
        self.live: set[int] = set()
        self.next_study = 0
        self.trials = 0
        self.numbers: dict[int, int] = {}  # study id -> trials created in it (the next trial's number)
        self.pauses_ended: dict[int, int] = {}  # study id -> its latest nbtune:pauses_ended

    def apply(self, record: dict[str, Any]) -> int | None:
        """Replay ``record``; the id it created (study or trial), if any."""
        op = record.get("op_code")
        if op == _CREATE_STUDY and record.get("study_name") not in self.studies:
            self.studies[record["study_name"]] = self.next_study
            self.live.add(self.next_study)
            self.next_study += 1
            return self.next_study - 1
        if op == _DELETE_STUDY:
            self.live.discard(record.get("study_id", -1))
            self.studies = {n: i for n, i in self.studies.items() if i != record.get("study_id")}
        if op == _CREATE_TRIAL and record.get("study_id") in self.live:
            self.numbers[record["study_id"]] = self.numbers.get(record["study_id"], 0) + 1
            self.trials += 1
            return self.trials - 1
        ended = (record.get("user_attr") or {}).get(ATTR.PAUSES_ENDED) if op == _SET_STUDY_USER_ATTR else None
        if isinstance(ended, int):
            self.pauses_ended[record.get("study_id", -1)] = ended
        return None


def _renumbered(
    prefix: list[dict[str, Any]], ours: list[dict[str, Any]], theirs: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """``theirs``' records with their study and trial ids as they come out after ``ours``."""
    merged, alone = _Ids(), _Ids()  # the file as merged; their branch as it was
    for r in prefix:
        merged.apply(r)
        alone.apply(r)
    shared = set(merged.studies)  # the studies both branches had before they parted
    for r in ours:
        merged.apply(r)
    study_map: dict[int, int] = {}
    trial_map: dict[int, int] = {}
    number_map: dict[tuple[int, int], int] = {}  # (their study id, their trial number) -> merged number
    out = []
    for orig in theirs:
        was = alone.apply(orig)  # the id it made in their branch's own numbering
        r = dict(orig)
        if (
            r.get("op_code") == _CREATE_STUDY
            and r.get("study_name") in merged.studies
            and r["study_name"] not in shared
        ):
            # both branches made a study of this name (a new version of the cell each): theirs is
            # another study, the next version, not more trials of ours
            r["study_name"] = _next_version(r["study_name"], merged.studies)
        if "study_id" in r:
            r["study_id"] = study_map.get(orig["study_id"], orig["study_id"])
        if "trial_id" in r:
            r["trial_id"] = trial_map.get(orig["trial_id"], orig["trial_id"])
        ended = (r.get("user_attr") or {}).get(ATTR.PAUSES_ENDED) if r.get("op_code") == _SET_STUDY_USER_ATTR else None
        if isinstance(ended, int):
            # the trial number up to which their paused trials stay stopped, in the merged numbering;
            # ours stay stopped too
            ended = number_map.get((orig["study_id"], ended), ended)
            r["user_attr"] = {ATTR.PAUSES_ENDED: max(ended, merged.pauses_ended.get(r["study_id"], ended))}
        now = merged.apply(r)
        if r.get("op_code") == _CREATE_STUDY and was is not None:
            # a study their branch made: the one of that name in the merged file (ours may have made it too)
            study_map[was] = merged.studies.get(r["study_name"], was)
        elif r.get("op_code") == _CREATE_TRIAL and was is not None and now is not None:
            trial_map[was] = now
            number_map[orig["study_id"], alone.numbers[orig["study_id"]] - 1] = merged.numbers[r["study_id"]] - 1
        out.append(r)
    return out


def _next_version(name: str, taken: dict[str, int]) -> str:
    """The first version of ``name``'s base not taken (the store's own naming)."""
    from nbtune.store.base import base_name, versioned

    n = 2
    while versioned(base_name(name), n) in taken:
        n += 1
    return versioned(base_name(name), n)
