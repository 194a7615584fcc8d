"""What a store holds, as a table: ``nbtune.studies()`` and ``%tune_show`` without a name.

One row per study version, with what a report needs to find its way: the metric and its
direction, how many trials finished and completed, the best value, when it last ran, and for a
version after the first, what changed since the one before (the identities both recorded: the
cell's code, its space, the data it reads), which ``%tune_show NAME`` only says by number.
"""

from __future__ import annotations

import os
import warnings
from typing import TYPE_CHECKING, Any

from nbtune.cell.identity import describe_difference, describe_space_change, fingerprinted_apart
from nbtune.exceptions import NbtuneWarning
from nbtune.store.attrs import ATTR, finished_count, is_feasible, run_records
from nbtune.store.base import base_name, is_check_study, version_number
from nbtune.store.journal import _user_ns, open_store
from nbtune.view.format import missing_as_none

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["studies"]


def studies(store: str | os.PathLike[str] | None = None, checks: bool = False) -> pd.DataFrame:
    """The studies of a store (the notebook-local one by default), one row per version, indexed
    by the study's own name: the first version's has no suffix, the others' ``:v2``, ``:v3``...
    ``%tune_show`` and ``nbtune.load_study`` take those, but read a name without a suffix as its
    latest version: ``NAME:v1`` opens the first.

    Columns: ``name`` (without the version), ``version``, ``metric``, ``direction``,
    ``finished`` (the trials that count toward ``-n``), ``complete``, ``feasible`` (with
    guardrails, ``--subject-to``: the complete trials that meet them; else ``<NA>``), ``best_value``
    (the best complete trial that meets the guardrails), ``runs`` (the runs of the cell that ran trials in
    it; ``res.runs()`` lists them), ``seed`` (the latest run's ``--seed``), ``last_run`` (when its latest
    trial ended) and
    ``changed`` (for a version after the first: what differs from the version before it; and for
    a study ``--resume`` continued over a change, from which trial on and over what), ``note``
    (``--note``).
    ``checks=True`` adds the check studies (``NAME@check``: re-validation and holdout runs; their
    ``best_value`` is empty, as their runs are seeds of the top configurations: ``res.revalidation()``
    compares them).

    Example:
        >>> import nbtune  # doctest: +SKIP
        >>> nbtune.studies()  # doctest: +SKIP
    """
    import optuna
    import pandas as pd

    st = open_store(store, _user_ns())
    rows: list[dict[str, Any]] = []
    identities: dict[tuple[str, int], tuple[dict[str, Any], dict[str, Any]]] = {}
    names = sorted(st.study_names(), key=lambda n: (base_name(n.removesuffix("@check")), version_number(n), n))
    for name in names:
        if is_check_study(name) and not checks:
            continue
        study = optuna.load_study(study_name=name, storage=st.storage(name))
        trials = study.get_trials(deepcopy=False)
        config = study.user_attrs.get(ATTR.CONFIG) or {}
        complete = [t for t in trials if t.state.name == "COMPLETE" and t.value is not None]
        feasible = [t for t in complete if is_feasible(t)]
        guarded = bool(config.get("subject_to")) or any(t.constraints for t in trials)
        maximize = study.direction.name == "MAXIMIZE"
        best = (max if maximize else min)((t.value for t in feasible), default=None)  # type: ignore[type-var]
        ended = [t.datetime_complete for t in trials if t.datetime_complete is not None]
        base, version = base_name(name.removesuffix("@check")), version_number(name.removesuffix("@check"))
        identity: dict[str, Any] = study.user_attrs.get(ATTR.IDENTITY) or {}
        runs = run_records(study.user_attrs)
        space: dict[str, Any] = study.user_attrs.get(ATTR.SPACE) or {}
        changed = ""
        if not is_check_study(name):
            before, space_before = identities.get((base, version - 1), ({}, {}))
            known = bool(before) and bool(identity)
            spaced = bool(space_before) and bool(space)
            if version > 1 and (known or spaced):
                words = describe_difference(before, identity) if known else []
                if spaced and space_before != space:  # (a guardrail's bound, a range)
                    words.append(describe_space_change(space_before, space))
                apart = fingerprinted_apart(before, identity) if known and not words else []
                if apart and not config.get("fresh"):  # the version before was recorded by an earlier nbtune
                    words.append(f"not compared: {', '.join(apart)} (fingerprinted by nbtune before 2026-12-01)")
                # nothing changed: --fresh made it (recorded since 2026-12-01; before, what else could)
                fresh = config.get("fresh") or (known and spaced)
                changed = "; ".join(words) or ("--fresh" if fresh else "settings not recorded")
            identities[(base, version)] = (identity, space)
            # --resume over a change made this study's identity the latest cell's: what its trials ran on is
            # said here for good (it read as 'the cell's code changed' alone, after it continued on other data)
            resumed = [
                f"--resume from trial {r.get('first_trial')} over: {'; '.join(r.get('changes') or [])}"
                for r in study.user_attrs.get(ATTR.RESUMED_OVER) or []
            ]
            changed = "; ".join([*([changed] if changed else []), *resumed])
        rows.append(
            {
                "study": name,
                "name": base,
                "version": version,
                "metric": config.get("metric"),
                "direction": study.direction.name.lower(),
                "finished": finished_count(trials),
                "complete": len(complete),
                "feasible": len(feasible) if guarded else None,
                # a check study's runs are seeds of the top configurations: its best seed is no result
                # (it read as a better search; found trying nbtune as a new user)
                "best_value": None if is_check_study(name) else best,
                "runs": len(runs) or None,  # (not recorded before 2026-12-01)
                "seed": runs[-1].get("seed") if runs else None,
                "last_run": max(ended) if ended else None,
                "changed": changed or None,
                "note": study.user_attrs.get(ATTR.NOTE),
            }
        )
    columns = ["study", "name", "version", "metric", "direction", "finished", "complete", "feasible", "best_value"]
    columns.extend(["runs", "seed", "last_run"])
    df = pd.DataFrame(rows, columns=[*columns, "changed", "note"])
    missing_as_none(df, "changed", "note")
    df["feasible"] = df["feasible"].astype("Int64")  # <NA> without guardrails
    df["runs"], df["seed"] = df["runs"].astype("Int64"), df["seed"].astype("Int64")  # <NA>: none recorded
    if not rows:  # (an empty table did not say which folder it read: found trying nbtune as a new user)
        from nbtune.store.journal import _inside

        warnings.warn(f"the store {st.where()} holds no study yet{_inside(st)}", NbtuneWarning, stacklevel=2)
    for repaired in getattr(st, "repairs", ()):  # opening a study repaired its file: say so (it was silent)
        warnings.warn(repaired, NbtuneWarning, stacklevel=2)
    return df.set_index("study")
