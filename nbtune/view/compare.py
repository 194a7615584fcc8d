"""Studies side by side: ``nbtune.compare("mlp")`` (its versions) or ``nbtune.compare("tpe", "random")``.

What a sweep tool's comparison view gives (found missing trying nbtune as a new user coming from W&B
Sweeps): one row per study with how it searched and what it found, and their best-so-far curves on
one figure, by finished trial and, for cells with an epochs loop, by epochs trained (the fair axis
when schedulers stop trials at different points).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from nbtune.cell.identity import describe_space_change
from nbtune.store.attrs import ATTR, finished_count, is_feasible, is_interrupted, ranked, run_records
from nbtune.store.base import base_name, version_number, versioned
from nbtune.store.journal import _user_ns, open_store
from nbtune.view.format import fmt, missing_as_none

if TYPE_CHECKING:
    import optuna
    import pandas as pd
    from matplotlib.figure import Figure

__all__ = ["Comparison", "compare"]


@dataclass
class Comparison:
    """Studies of one metric side by side.

    Attributes:
        frame: one row per study, indexed by its name: ``sampler``, ``scheduler``, ``finished``,
            ``complete``, ``best_value`` (the best complete trial that meets the guardrails),
            ``best_trial``, ``epochs`` (the epochs, or folds, its trials reported in all) and
            ``note`` (``--note``) and ``trial_seconds`` (the time its trials ran, summed).
        studies: the ``optuna.Study`` of each row, in order.
        notes: what to know to read it (studies that searched other spaces, which version a name is).
    """

    frame: pd.DataFrame
    studies: list[optuna.Study] = field(repr=False)
    metric: str = ""
    direction: str = "minimize"
    notes: list[str] = field(default_factory=list)  # what to know to read it: another space, a name's version

    def figure(self) -> Figure:
        """Each study's best value so far: by finished trial, and by epochs trained when its trials
        report epochs."""
        from nbtune.view.plots import WIDE, _figure

        curves = [_best_so_far(s, self.direction) for s in self.studies]
        by_epochs = any(epochs for _, epochs, _ in curves)
        fig, axes = _figure(WIDE[0], WIDE[1], ncols=2 if by_epochs else 1)
        axes = list(axes) if by_epochs else [axes]
        for study, (by_trial, by_epoch, _) in zip(self.studies, curves, strict=True):
            label = study.study_name
            if by_trial:
                line = axes[0].step(*zip(*by_trial), where="post", label=label)[0]
                if by_epochs and by_epoch:
                    axes[1].step(*zip(*by_epoch), where="post", color=line.get_color(), label=label)
        axes[0].set_xlabel("trials ended (a paused one and its continuation: two)")
        axes[0].set_ylabel(f"best {self.metric} so far")
        axes[0].legend(fontsize=9, loc="best")
        if by_epochs:
            axes[1].set_xlabel("epochs trained (all trials)")
            axes[1].set_title("by the work spent", fontsize=11)
        axes[0].set_title("by trial", fontsize=11)
        fig.suptitle(f"{self.metric} ({'higher' if self.direction == 'maximize' else 'lower'} is better)", fontsize=11)
        return fig

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        import base64
        from html import escape

        from nbtune.view.plots import to_png

        png = base64.b64encode(to_png(self.figure())).decode()
        html = self.frame.to_html(float_format=fmt, na_rep="")
        said = "".join(f"<p>note: {escape(n)}</p>" for n in self.notes)
        return {
            "text/plain": "\n".join([self.frame.to_string(), *(f"note: {n}" for n in self.notes)]),
            "text/html": f'{html}{said}<img src="data:image/png;base64,{png}" style="max-width:100%">',
        }


def _best_so_far(study: optuna.Study, direction: str) -> tuple[list[tuple[int, float]], list[tuple[int, float]], int]:
    """(finished trials, best) and (epochs trained, best) after each trial that ended, in the order
    they ended, and the epochs trained in all."""
    trials = [t for t in study.get_trials(deepcopy=False) if t.state.is_finished() and not is_interrupted(t)]
    trials.sort(key=lambda t: (t.datetime_complete is None, t.datetime_complete or 0, t.number))
    best: float | None = None
    by_trial, by_epoch, epochs = [], [], 0
    for i, t in enumerate(trials, start=1):
        epochs += len(t.intermediate_values)
        if t.state.name == "COMPLETE" and t.value is not None and is_feasible(t):
            v = float(t.value)
            if best is None or (v > best if direction == "maximize" else v < best):
                best = v
        if best is not None:
            by_trial.append((i, best))
            by_epoch.append((epochs, best))
    return by_trial, by_epoch if epochs else [], epochs


def compare(*names: str, store: str | os.PathLike[str] | None = None) -> Comparison:
    """Studies of one metric side by side (a ``Comparison``: ``.frame``, ``.figure()``; shown as
    both in a notebook).

    Args:
        names: one name: every version of it (``"mlp"``: ``mlp``, ``mlp:v2``, ...); several: those
            studies (a name without ``:vN`` is its latest version, as ``load_study`` takes it).
        store: the store (the notebook-local one by default).

    Raises:
        StudyNotFound: a name the store does not hold.
        ValueError: no name, or studies of other metrics or directions.

    Example:
        >>> nbtune.compare("val_acc-1a2b3c")  # doctest: +SKIP
        >>> nbtune.compare("tpe", "random").frame  # doctest: +SKIP
    """
    import optuna
    import pandas as pd

    from nbtune.exceptions import StudyNotFound

    if not names:
        raise ValueError(
            "nbtune.compare() takes the names of studies (nbtune.studies() lists them), or one name for its versions"
        )
    st = open_store(store, _user_ns())
    targets: list[str] = []
    notes: list[str] = []
    for name in names:
        versions = st.versions(base_name(name))
        if not versions:
            known = sorted({base_name(n) for n in st.study_names()})
            raise StudyNotFound(f"no study {name!r} in {st.where()}; the store holds {known}")
        if ":v" in name:  # NAME:v1 is the first version, whose own name has no suffix (it was refused)
            target = versioned(base_name(name), version_number(name))
            if target not in versions:
                raise StudyNotFound(f"no version {name!r} in {st.where()}; the versions are {versions}")
            targets.append(target)
        elif len(names) == 1:
            targets.extend(versions)
        else:
            targets.append(versions[-1])
            if len(versions) > 1:  # (as load_study takes it, said: it read as the first)
                notes.append(f"{name!r} is its latest version, {versions[-1]!r} ({name + ':v1'!r} is the first)")
    twice = sorted({t for t in targets if targets.count(t) > 1})
    if twice:
        notes.append(f"{', '.join(map(repr, twice))} given twice: shown once")
    loaded = [optuna.load_study(study_name=n, storage=st.storage(n)) for n in dict.fromkeys(targets)]
    metrics = {((s.user_attrs.get(ATTR.CONFIG) or {}).get("metric"), s.direction.name.lower()) for s in loaded}
    if len(metrics) > 1:
        said = ", ".join(
            f"{s.study_name!r} {s.direction.name.lower()}s {(s.user_attrs.get(ATTR.CONFIG) or {}).get('metric')}"
            for s in loaded
        )
        raise ValueError(f"nbtune.compare() compares studies of one metric, in one direction: {said}")
    [(metric, direction)] = metrics
    rows = []
    for s in loaded:
        trials = s.get_trials(deepcopy=False)
        config = s.user_attrs.get(ATTR.CONFIG) or {}
        best = next(iter(ranked(trials, direction)), None)  # (complete, meeting the guardrails; ties: the first)
        runs = run_records(s.user_attrs)
        rows.append(
            {
                "study": s.study_name,
                # each run's, where runs differed (a TPE run continued at random read 'random')
                "sampler": ", ".join(dict.fromkeys(str(r.get("sampler")) for r in runs)) or config.get("sampler"),
                "scheduler": ", ".join(dict.fromkeys(str(r.get("scheduler")) for r in runs)) or config.get("scheduler"),
                "finished": finished_count(trials),
                "complete": sum(t.state.name == "COMPLETE" for t in trials),
                "best_value": best.value if best is not None else None,
                "best_trial": best.number if best is not None else None,
                "epochs": sum(len(t.intermediate_values) for t in trials),
                "note": s.user_attrs.get(ATTR.NOTE),
                "trial_seconds": sum(
                    (t.datetime_complete - t.datetime_start).total_seconds()
                    for t in trials
                    if t.datetime_complete is not None and t.datetime_start is not None
                ),
            }
        )
    frame = pd.DataFrame(rows).set_index("study")
    frame["best_trial"] = frame["best_trial"].astype("Int64")
    missing_as_none(frame, "note")
    # searches of other spaces are no like-for-like comparison: said (it showed only in studies().changed)
    first = loaded[0].user_attrs.get(ATTR.SPACE) or {}
    for s in loaded[1:]:
        space = s.user_attrs.get(ATTR.SPACE) or {}
        if first and space and space.get("params") != first.get("params"):
            notes.append(
                f"{s.study_name!r} searched another space than {loaded[0].study_name!r}: "
                f"{describe_space_change({'params': first['params']}, {'params': space['params']})}"
            )
    return Comparison(frame, loaded, metric=metric or "value", direction=direction, notes=notes)
