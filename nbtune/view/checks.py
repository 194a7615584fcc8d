"""What the checks after a search found: re-validation across seeds, and the sealed holdout.

The runs live in the check study (``NAME@check``, beside the search in the store); this module
only reads them and the search, and says what they mean: per configuration the mean, the
standard deviation and a 95% confidence interval over seeds, the rank change against the
search, the most stable choice, and the gap between the metric and the holdout score.
"""

from __future__ import annotations

import html
import math
import statistics
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from nbtune.cell.space import as_drawn, drawn_params
from nbtune.store.attrs import ATTR, configuration, cross_validated, finished_count, is_feasible, ran_sealed, ranked
from nbtune.view.format import fmt, params_as_drawn, plural_trials

if TYPE_CHECKING:
    import optuna
    import pandas as pd

__all__ = ["CheckReport", "HoldoutReport", "RULE", "t_quantile"]

RULE = (
    "the most stable choice is the configuration with the best lower end of its 95% confidence "
    "interval (the upper end when minimising; every candidate on the same seeds, its spread never "
    "taken below the candidates' pooled spread): good on average and consistently so"
)

# Student's t, 97.5% quantile, by degrees of freedom (two-sided 95% intervals).
_T975 = [12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131]
_T975 += [2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042]


def t_quantile(df: int) -> float:
    """The 97.5% quantile of Student's t with ``df`` degrees of freedom (a table to 30, then
    the Cornish-Fisher correction of the normal's 1.96, within 0.001)."""
    if df < 1:
        return math.inf
    if df <= len(_T975):
        return _T975[df - 1]
    z = 1.959964
    return z + (z**3 + z) / (4 * df)


@dataclass
class Candidate:
    """One re-validated configuration."""

    number: int  # its trial in the search
    params: dict[str, Any]
    search_value: float
    search_rank: int
    values: list[float] = field(default_factory=list)  # one per seed, full fidelity
    holdouts: list[float] = field(default_factory=list)
    failed: int = 0
    broke: int = 0  # runs that broke a guardrail (--subject-to)
    sd_floor: float = 0.0  # the pooled sd of all candidates: a few identical scores are no proof of stability

    @property
    def mean(self) -> float:
        return statistics.fmean(self.values) if self.values else math.nan

    @property
    def sd(self) -> float:
        return statistics.stdev(self.values) if len(self.values) > 1 else math.nan

    @property
    def ci_sd(self) -> float:
        """The sd the 95% interval uses: this candidate's, never below the pooled sd of all candidates
        (five seeds that score the same are not five proofs of stability); NaN with fewer than two runs."""
        return max(self.sd, self.sd_floor) if len(self.values) > 1 else math.nan

    @property
    def half_width(self) -> float:
        """Of the 95% interval: Student's t with :attr:`ci_sd`."""
        n = len(self.values)
        return t_quantile(n - 1) * self.ci_sd / math.sqrt(n) if n > 1 else math.inf


@dataclass
class HoldoutReport:
    """The chosen configuration on the metric and on the sealed holdout."""

    metric: str
    holdout: str
    direction: str
    trial: int  # the search trial whose configuration was chosen
    value: float  # the metric (mean over seeds when re-validated)
    holdout_value: float
    n_trials: int  # search trials evaluated against the same validation data
    threshold: float | None  # --holdout-gap; None: see tolerance
    n_runs: int = 1
    cross_validated: bool = False  # the metric is a mean over '# tune: folds(k)'
    seeded: bool = True  # the cell has a '# tune: seed' variable (--revalidate needs one)
    baseline: bool = (
        False  # the chosen configuration is the cell's own defaults (no search picked it, unless re-validated)
    )
    noise: float | None = None  # cross-validated: the spread (sd) of the chosen one's scores over its folds
    leaks: tuple[str, ...] = ()  # the "possible leak" notes: lines of the search that read the holdout's data

    @property
    def tolerance(self) -> float:
        """The gap that warns: ``--holdout-gap``, else 0.02 (two points of accuracy, about twice
        the sampling error of an accuracy near 0.9 over 1,000 examples) for a score maximised within
        [-1, 1], and 10% of the holdout's size for an error or a loss, or a metric on another scale
        (about twice the sampling error of a mean squared error over 1,000 examples; an absolute
        0.02 made an MSE of 3000 warn at any gap at all, and an RMSE of 0.02, a target in other
        units, at none)."""
        if self.threshold is not None:
            return self.threshold
        return max(self._default, 2 * self.noise) if self.noise else self._default

    @property
    def _default(self) -> float:
        """0.02 for a score, else 10% of the holdout's value; with folds, twice their spread when that is
        larger: a score over a fold's examples varies that much by chance, and so does the holdout's over
        as many (a 375-example holdout with 38 positives warned at an AUC gap of 0.03, about one standard
        error: found trying nbtune as a new user)."""
        return 0.02 if self._a_score else 0.1 * abs(self.holdout_value)

    @property
    def _a_score(self) -> bool:
        """A score maximised, both numbers within [-1, 1]: an accuracy, an AUC, an R² (not an error
        minimised, whose size is its target's units, nor a count)."""
        return self.direction == "maximize" and max(abs(self.value), abs(self.holdout_value)) <= 1

    @property
    def gap(self) -> float:
        """How much better the metric looks than the holdout (positive: optimistic)."""
        d = self.value - self.holdout_value
        return d if self.direction == "maximize" else -d

    @property
    def warn(self) -> bool:
        return self.gap > self.tolerance

    def __repr__(self) -> str:
        # with the gap, the tolerance it is held to and the verdict: 'threshold=None' alone read as no
        # tolerance at all where the default applied (found trying nbtune as a new user)
        fields = ", ".join(f"{f}={getattr(self, f)!r}" for f in self.__dataclass_fields__ if f != "leaks")
        return f"HoldoutReport({fields}, gap={self.gap!r}, tolerance={self.tolerance!r}, warn={self.warn!r})"

    def sentence(self) -> str:
        runs = f" (mean of {self.n_runs} seeds)" if self.n_runs > 1 else ""
        head = (
            f"holdout: trial {self.trial}'s configuration scores {self.metric} {fmt(self.value)}{runs} and "
            f"{self.holdout} {fmt(self.holdout_value)}: a gap of {fmt(self.gap)} after {plural_trials(self.n_trials)} "
            "against the same validation data"
        )
        # a small gap reassured where the search itself read the holdout's data (found trying nbtune as a new user)
        # each leak's lines and names alone: its whole note, nested here, was hard to read (found trying nbtune)
        where = "; ".join(
            leak.removeprefix("possible leak: ").split(", as the sealed holdout's")[0] for leak in self.leaks
        )
        leaked = (
            f" But the search read the holdout's data ({where}): a small gap is what a leak looks like too, so this "
            "check cannot tell; score the search on other data."
            if self.leaks
            else ""
        )
        if self.gap < 0:  # "a gap of -0.68 (within 0.44)" read as a contradiction
            return (
                head
                + ": the holdout scores better than the metric, so nothing says the search's score is optimistic."
                + leaked
            )
        if not self.warn:
            return head + f" (within {fmt(self.tolerance)})." + leaked
        # the defaults, unless re-validation picked them from the top ones on this validation data (it said
        # "no search picked" of a pick: found trying nbtune as a new user)
        if (self.baseline and self.n_runs == 1) or self.n_trials <= 3:
            # no search picked it, or hardly: the gap is the two datasets' own (a macro F1 over a
            # 600-document holdout with a class of 30; found trying nbtune as a new user)
            why = (
                "No search picked this configuration (it is the cell's own defaults)"
                if self.baseline
                else f"Little of it is the search's doing (it compared {plural_trials(self.n_trials)})"
            )
            return (
                head + f". WARNING: the gap exceeds {fmt(self.tolerance)}{self._set_by()}. {why}: the validation data "
                "and the holdout disagree by that much on their own, by chance (too few examples to measure this "
                "metric closer) or because they differ (compare their sizes and, for classes, their balance). To "
                "narrow it: more validation and holdout data"
                + (", or more folds." if self.cross_validated else ", or cross-validation.")
            )
        fixes = (
            "more data in the folds, or more folds (folds(k) with a larger k), fewer trials per dataset"
            if self.cross_validated
            else "more validation data or cross-validation, fewer trials per validation set"
        )
        if self.n_runs == 1:
            fixes += (
                ", or re-validate the top configurations across seeds (--revalidate K)"
                if self.seeded
                else ", or mark the cell's seed ('seed = 0  # tune: seed') and re-validate the top configurations "
                "across seeds (--revalidate K)"
            )
        return (
            head
            + f". WARNING: the gap exceeds {fmt(self.tolerance)}{self._set_by()}. The search picked what scores best on "
            "the data it was chosen on, and that score is optimistic: expect the holdout's, not the metric's. "
            f"To narrow the gap: {fixes}."
        )

    def _set_by(self) -> str:
        if self.threshold is not None:
            return " (--holdout-gap)"
        if self.noise and 2 * self.noise > self._default:
            return (
                " (twice the spread of its scores over the folds: by chance a score over that many examples varies "
                "that much; --holdout-gap sets it)"
            )
        if self._a_score:
            return " (the default for a score within [-1, 1]; --holdout-gap sets it)"
        return " (10% of the holdout, the default for an error or a metric on this scale; --holdout-gap sets it)"


class CheckReport:
    """The checks of one search, read from its check study.

    Args:
        study: the search's study; checks: its check study (None: no checks ran).
        metric, holdout: the names; threshold: the holdout gap that warns (``--holdout-gap``; None:
            :attr:`HoldoutReport.tolerance`'s default).
    """

    def __init__(
        self,
        study: optuna.Study,
        checks: optuna.Study | None,
        metric: str,
        holdout: str | None = None,
        threshold: float | None = None,
    ) -> None:
        self.study, self.checks = study, checks
        self.metric, self.holdout, self.threshold = metric, holdout, threshold
        self.direction = study.direction.name.lower()

    # --- reading the runs ---------------------------------------------------------------
    def _runs(self, role: str) -> list[optuna.trial.FrozenTrial]:
        if self.checks is None:
            return []
        return [
            t
            for t in self.checks.get_trials(deepcopy=False)
            if (t.user_attrs.get(ATTR.CHECK) or {}).get("role") == role
            and t.state.is_finished()
            and ran_sealed(self.checks, t)  # not a run of the holdout's lines as they were before an edit
        ]

    def candidates(self) -> list[Candidate]:
        """The re-validated configurations, in the search's order (best first)."""
        from optuna.trial import TrialState

        runs = self._runs("revalidate")
        if not runs:
            return []
        by_number = {t.number: t for t in self.study.get_trials(deepcopy=False)}
        request = (self.checks.user_attrs.get(ATTR.REQUEST) if self.checks is not None else None) or {}
        numbers = request.get("candidates") or sorted({t.user_attrs[ATTR.CHECK]["candidate"] for t in runs})
        if request.get("seeds"):
            seeds = set(request["seeds"])
            runs = [t for t in runs if t.user_attrs.get(ATTR.SEED) in seeds]
        rank = {t.number: i + 1 for i, t in enumerate(ranked(list(by_number.values()), self.direction))}
        out = {
            n: Candidate(n, dict(by_number[n].params), float(by_number[n].value or math.nan), rank.get(n, 0))
            for n in numbers
            if n in by_number
        }
        for t in sorted(runs, key=lambda t: t.user_attrs.get(ATTR.SEED, 0)):
            c = out.get(t.user_attrs[ATTR.CHECK]["candidate"])
            if c is None or t.user_attrs.get(ATTR.INTERRUPTED):
                continue
            if t.state == TrialState.COMPLETE and t.value is not None:
                c.values.append(float(t.value))
                c.broke += not is_feasible(t)
                if ATTR.HOLDOUT in t.user_attrs:
                    c.holdouts.append(float(t.user_attrs[ATTR.HOLDOUT]))
            else:
                c.failed += 1
        spread = [c.sd**2 for c in out.values() if len(c.values) > 1]
        pooled = math.sqrt(statistics.fmean(spread)) if spread else 0.0
        for c in out.values():
            c.sd_floor = pooled
        return sorted(out.values(), key=lambda c: c.search_rank)

    def bound(self, c: Candidate) -> float:
        """The end of the interval the rule compares: lower when maximising, upper when minimising."""
        return c.mean - c.half_width if self.direction == "maximize" else c.mean + c.half_width

    def chosen(self) -> Candidate | None:
        """The most stable configuration (see :data:`RULE`) of those that met every guardrail on
        every seed; None before re-validation, or when none did."""
        scored = [c for c in self.candidates() if len(c.values) > 1 and not c.broke]
        if not scored:
            return None
        pick = max if self.direction == "maximize" else min
        # on equal bounds, the better mean (max of it maximising, min minimising: the key had it negated
        # minimising, so min took the worse mean; found by a user auditing the numbers)
        return pick(scored, key=lambda c: (self.bound(c), c.mean))

    @staticmethod
    def _holdout_shown(c: Any, chosen: Any) -> float:
        """The holdout mean of a re-validated configuration as the table shows it: the chosen one's
        only. Each run scores the holdout, but the others' scores beside it invited picking by the
        holdout, which then is no holdout (found trying nbtune as a new user); the runs keep them,
        in ``NAME@check``."""
        if chosen is None or c.number != chosen.number or not c.holdouts:
            return math.nan
        return statistics.fmean(c.holdouts)

    def frame(self) -> pd.DataFrame:
        """One row per re-validated configuration (``res.revalidation()``); the holdout's mean for
        the chosen one only."""
        import pandas as pd

        cands = self.candidates()
        chosen = self.chosen()
        maximize = self.direction == "maximize"
        means = sorted((c.mean for c in cands if c.values), reverse=maximize)
        rows = []
        for c in cands:
            row: dict[str, Any] = {
                "trial": c.number,
                "search_rank": c.search_rank,
                "search_value": c.search_value,
                "n_seeds": len(c.values),
                "mean": c.mean,
                "sd": c.sd,
                # (the interval could not be rebuilt from the sd beside it: found by a user auditing the numbers)
                "ci_sd": c.ci_sd,
                "ci95_low": c.mean - c.half_width,
                "ci95_high": c.mean + c.half_width,
                "rank": (means.index(c.mean) + 1) if c.values else None,
                "failed": c.failed,
                "broke_guardrail": c.broke,
            }
            row["rank_change"] = (c.search_rank - row["rank"]) if row["rank"] else None
            if self.holdout is not None:  # the chosen one's only (see _holdout_shown)
                row[f"{self.holdout}_mean"] = self._holdout_shown(c, chosen)
            row["chosen"] = chosen is not None and c.number == chosen.number
            row.update({f"params_{k}": as_drawn(v) for k, v in c.params.items()})
            rows.append(row)
        df = pd.DataFrame(rows)
        # (1000.0 and NaN for choice(None, 1000): found trying nbtune)
        params_as_drawn(df, [drawn_params(c.params) for c in cands])
        return df.set_index("trial") if not df.empty else df

    def holdout_report(self) -> HoldoutReport | None:
        """The chosen configuration's metric against its holdout score; None without a holdout."""
        if self.holdout is None:
            return None
        trials = self.study.get_trials(deepcopy=False)
        n_trials = finished_count(trials)  # configurations, as -n counts them
        chosen = self.chosen()

        def baseline(number: int) -> bool:
            return 0 <= number < len(trials) and bool(trials[number].user_attrs.get(ATTR.BASELINE))

        if chosen is not None and chosen.holdouts:
            return HoldoutReport(
                self.metric,
                self.holdout,
                self.direction,
                chosen.number,
                chosen.mean,
                statistics.fmean(chosen.holdouts),
                n_trials,
                self.threshold,
                n_runs=len(chosen.holdouts),
                cross_validated=self._cross_validated(),
                seeded=self._seeded(),
                baseline=baseline(chosen.number),
                noise=self._fold_spread(trials, chosen.number),
                leaks=tuple(self.study.user_attrs.get(ATTR.HOLDOUT_LEAKS) or ()),
            )
        final = [t for t in self._runs("final") if t.state.name == "COMPLETE" and ATTR.HOLDOUT in t.user_attrs]
        if not final:
            return None
        t = final[-1]
        return HoldoutReport(
            self.metric,
            self.holdout,
            self.direction,
            t.user_attrs[ATTR.CHECK]["candidate"],
            float(t.value),  # type: ignore[arg-type]
            float(t.user_attrs[ATTR.HOLDOUT]),
            n_trials,
            self.threshold,
            cross_validated=self._cross_validated(),
            seeded=self._seeded(),
            baseline=baseline(t.user_attrs[ATTR.CHECK]["candidate"]),
            noise=self._fold_spread(trials, t.user_attrs[ATTR.CHECK]["candidate"]) or self._fold_spread([t], 0),
            leaks=tuple(self.study.user_attrs.get(ATTR.HOLDOUT_LEAKS) or ()),
        )

    def _fold_spread(self, trials: list[optuna.trial.FrozenTrial], number: int) -> float | None:
        """The standard deviation of trial ``number``'s scores over its folds (None without folds)."""
        if not 0 <= number < len(trials):
            return None
        values = trials[number].user_attrs.get(ATTR.FOLDS) or []
        return statistics.stdev(values) if len(values) > 1 else None

    def _seeded(self) -> bool:
        import re

        source = (self.study.user_attrs.get(ATTR.CELL) or {}).get("source")
        return source is None or re.search(r"#\s*tune:\s*seed\b", source) is not None

    def _cross_validated(self) -> bool:
        return cross_validated(self.study)

    def tied_out(self) -> int:
        """How many configurations the re-validation left out that tie on the search's metric with
        the last one it took: the search ranks ties by trial number, so ``--revalidate K`` cut
        among equals (nine configurations tied at the top of a digits search)."""
        cands = self.candidates()
        if not cands:
            return 0
        last = cands[-1].search_value
        taken = {c.number for c in cands}
        seen = {configuration(c.params) for c in cands}
        tied = 0
        for t in ranked(self.study.get_trials(deepcopy=False), self.direction):
            key = configuration(t.params)
            if t.number in taken or key in seen or t.value != last:
                continue
            seen.add(key)
            tied += 1
        return tied

    def _apart_sentence(self) -> str:
        """Whether the re-validation told the chosen configuration apart from the next best by the rule:
        their intervals overlapping, the choice is the rule's, not evidence that one is better (the lower
        ends 0.006 apart read as a verdict: found trying nbtune as a new RL user)."""
        chosen = self.chosen()
        others = [c for c in self.candidates() if chosen is not None and c.number != chosen.number]
        others = [c for c in others if len(c.values) > 1 and not c.broke]
        if chosen is None or not others:
            return ""
        maximize = self.direction == "maximize"
        runner = (max if maximize else min)(others, key=self.bound)
        low = max(chosen.mean - chosen.half_width, runner.mean - runner.half_width)
        high = min(chosen.mean + chosen.half_width, runner.mean + runner.half_width)
        if low > high:
            return ""
        n = max(len(chosen.values), len(runner.values))
        if chosen.values == runner.values:  # (max_features 0.5888 and 0.5906: five features both, every seed)
            return (
                f"trial {chosen.number} and trial {runner.number} scored the same with every seed: with this data "
                "their values make the same model, and no number of seeds tells them apart"
            )
        return (
            f"trial {chosen.number}'s and trial {runner.number}'s 95% intervals overlap: {n} seeds do not tell them "
            f"apart, so either may be the better configuration; more seeds narrow them "
            f"(res.revalidate(top={len(self.candidates())}, seeds={2 * n}))"
        )

    def _tie_sentence(self) -> str:
        tied = self.tied_out()
        if not tied:
            return ""
        cands = self.candidates()
        return (
            f"{tied} more configuration{'s' if tied > 1 else ''} tie{'' if tied > 1 else 's'} with trial "
            f"{cands[-1].number} at {self.metric} {fmt(cands[-1].search_value)} and {'were' if tied > 1 else 'was'} "
            f"not re-validated (the search ranks ties by trial number): --revalidate {len(cands) + tied} takes "
            f"{'them' if tied > 1 else 'it'} too"
        )

    # --- text ---------------------------------------------------------------------------
    def lines(self) -> list[str]:
        """The checks as a few sentences (after the search summary)."""
        out = []
        cands = self.candidates()
        if cands:
            chosen = self.chosen()
            n = max((len(c.values) for c in cands), default=0)
            out.append(f"re-validated the top {len(cands)} configurations with {n} seeds each:")
            for c in cands:
                mark = "  <- most stable" if chosen is not None and c.number == chosen.number else ""
                out.append(
                    f"  trial {c.number} (search rank {c.search_rank}, {self.metric} {fmt(c.search_value)}): "
                    f"mean {fmt(c.mean)} ± {fmt(c.sd)} sd, 95% CI [{fmt(c.mean - c.half_width)}, "
                    f"{fmt(c.mean + c.half_width)}]"
                    + (f", {c.failed} failed" if c.failed else "")
                    + (f", broke a guardrail with {c.broke} of {len(c.values)} seeds" if c.broke else "")
                    + mark
                )
            if chosen is not None:
                best = cands[0]
                change = (
                    "the search's best is also the most stable"
                    if chosen.number == best.number
                    else f"the most stable is trial {chosen.number}, not the search's best (trial {best.number})"
                )
                broke = [c.number for c in cands if c.broke]
                out.append(
                    f"  {change}; {RULE}"
                    + (
                        f"; of the configurations that met every guardrail with every seed (not trial(s) "
                        f"{', '.join(map(str, broke))})"
                        if broke
                        else ""
                    )
                )
            elif any(c.broke for c in cands):
                out.append(
                    "  no configuration met every guardrail with every seed, so none is chosen: the guardrails "
                    "hold on the search's seed only; re-validate more of the top (--revalidate K) or loosen them"
                )
            apart = self._apart_sentence()
            if apart:
                out.append("  " + apart)
            tie = self._tie_sentence()
            if tie:
                out.append("  " + tie)
            if 1 < n < 4:  # Student's t with 1-2 degrees of freedom: 12.7 and 4.3 standard errors
                out.append(
                    f"  with {n} seeds a 95% interval is {fmt(t_quantile(n - 1))} standard errors wide either side, "
                    "so it can pass the metric's range; 5 seeds or more (--seeds 5) tell configurations apart"
                )
        h = self.holdout_report()
        if h is not None:
            out.append(h.sentence())
        return out

    def html(self) -> str:
        esc = html.escape
        parts = []
        cands = self.candidates()
        if cands:
            chosen = self.chosen()
            head = ["trial", "search rank", f"search {self.metric}", "seeds", "mean", "sd", "95% CI"]
            if self.holdout is not None:
                head.append(f"{self.holdout} (mean)")
            rows = []
            for c in cands:
                is_chosen = chosen is not None and c.number == chosen.number
                cells = [
                    f"{c.number}{' ✓' if is_chosen else ''}",
                    str(c.search_rank),
                    fmt(c.search_value),
                    str(len(c.values))
                    + (f" ({c.failed} failed)" if c.failed else "")
                    + (f" ({c.broke} broke a guardrail)" if c.broke else ""),
                    fmt(c.mean),
                    fmt(c.sd),
                    f"[{fmt(c.mean - c.half_width)}, {fmt(c.mean + c.half_width)}]",
                ]
                if self.holdout is not None:
                    shown = self._holdout_shown(c, chosen)
                    cells.append("" if math.isnan(shown) else fmt(shown))
                style = " style='background:rgba(52,168,83,0.2)'" if is_chosen else ""
                rows.append(f"<tr{style}>" + "".join(f"<td>{esc(x)}</td>" for x in cells) + "</tr>")
            parts.append(
                "<p><b>Re-validation across seeds</b> (✓ most stable: " + esc(RULE) + ")</p>"
                "<table class='nbtune-revalidation'><thead><tr>"
                + "".join(f"<th>{esc(h)}</th>" for h in head)
                + "</tr></thead><tbody>"
                + "".join(rows)
                + "</tbody></table>"
            )
            tie = self._tie_sentence()
            if tie:
                parts.append(f"<p class='nbtune-ties'>{esc(tie)}.</p>")
        h = self.holdout_report()
        if h is not None:
            style = "color:#d93025;font-weight:600" if h.warn else ""
            parts.append(f"<p class='nbtune-holdout' style='{style}'>{esc(h.sentence())}</p>")
        return "".join(parts)
