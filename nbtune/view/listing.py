"""What a store holds, as a table: ``nbtune.studies()`` and ``%tune_show`` without a name.

One row per study version, with what a report needs to find its way: the metric and its
direction, how many trials finished and completed, the best value, when it last ran, and for a
version after the first, what changed since the one before (the identities both recorded: the
cell's code, its space, the data it reads), which ``%tune_show NAME`` only says by number.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from nbtune.cell.identity import describe_difference
from nbtune.store.attrs import ATTR, finished_count, is_feasible
from nbtune.store.base import base_name, is_check_study, version_number
from nbtune.store.journal import _user_ns, open_store

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["studies"]


def studies(store: str | os.PathLike[str] | None = None, checks: bool = False) -> pd.DataFrame:
    """The studies of a store (the notebook-local one by default), one row per version, indexed
    by the name ``%tune_show`` and ``nbtune.load_study`` take.

    Columns: ``name`` (without the version), ``version``, ``metric``, ``direction``,
    ``finished`` (the trials that count toward ``-n``), ``complete``, ``best_value`` (the best
    complete trial that meets the guardrails), ``last_run`` (when its latest trial ended) and
    ``changed`` (for a version after the first: what differs from the version before it).
    ``checks=True`` adds the check studies (``NAME@check``: re-validation and holdout runs).

    Example:
        >>> import nbtune  # doctest: +SKIP
        >>> nbtune.studies()  # doctest: +SKIP
    """
    import optuna
    import pandas as pd

    st = open_store(store, _user_ns())
    rows: list[dict[str, Any]] = []
    identities: dict[tuple[str, int], Any] = {}
    names = sorted(st.study_names(), key=lambda n: (base_name(n.removesuffix("@check")), version_number(n), n))
    for name in names:
        if is_check_study(name) and not checks:
            continue
        study = optuna.load_study(study_name=name, storage=st.storage(name))
        trials = study.get_trials(deepcopy=False)
        config = study.user_attrs.get(ATTR.CONFIG) or {}
        complete = [t for t in trials if t.state.name == "COMPLETE" and t.value is not None and is_feasible(t)]
        maximize = study.direction.name == "MAXIMIZE"
        best = (max if maximize else min)((t.value for t in complete), default=None)  # type: ignore[type-var]
        ended = [t.datetime_complete for t in trials if t.datetime_complete is not None]
        base, version = base_name(name.removesuffix("@check")), version_number(name.removesuffix("@check"))
        identity = study.user_attrs.get(ATTR.IDENTITY)
        changed = ""
        if not is_check_study(name):
            before = identities.get((base, version - 1))
            if version > 1 and before is not None and identity:
                changed = "; ".join(describe_difference(before, identity)) or "its search space or settings, or --fresh"
            identities[(base, version)] = identity
        rows.append(
            {
                "study": name,
                "name": base,
                "version": version,
                "metric": config.get("metric"),
                "direction": study.direction.name.lower(),
                "finished": finished_count(trials),
                "complete": len(complete),
                "best_value": best,
                "last_run": max(ended) if ended else None,
                "changed": changed or None,
            }
        )
    columns = ["study", "name", "version", "metric", "direction", "finished", "complete", "best_value", "last_run"]
    df = pd.DataFrame(rows, columns=[*columns, "changed"])
    df["changed"] = df["changed"].astype(object).where(df["changed"].notna(), None)
    return df.set_index("study")
