"""Every option of a search, once: its name, default, type, help, ``%%tune`` flag and check.

:class:`TuneConfig` is the one place an option is declared. :func:`nbtune.tune` and
:func:`nbtune.tune_async` take its fields as keyword arguments (their signatures and the
``Args`` of their docstrings are generated from it), and the ``%%tune`` magic's argparse
arguments (and so ``%%tune?``) are generated from the same fields. Adding an option is one
field here, its check in :meth:`TuneConfig.check`, and its use.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any

from nbtune.exceptions import ONE_METRIC, ConfigError

__all__ = ["TuneConfig", "parse_constraint", "parse_timeout", "with_config_signature", "magic_arguments_from_config"]

DEFAULT_TRIALS = 20  # configurations per search when neither -n nor --timeout says otherwise
ETA_DEFAULT = 3  # successive halving's reduction factor when --eta does not say otherwise
HEARTBEAT_DEFAULT = 5.0  # seconds between a database store's lease renewals when --heartbeat does not say otherwise
_TIMEOUT_RE = re.compile(r"^\s*(?P<n>\d+(?:\.\d*)?)\s*(?P<u>s|sec|m|min|h)?\s*$")
_TIMEOUT_PARTS = re.compile(r"^\s*(?:(?P<h>\d+)\s*h)?\s*(?:(?P<m>\d+)\s*(?:m|min))?\s*(?:(?P<s>\d+)\s*(?:s|sec))?\s*$")


def _opt(
    default: Any,
    help: str,
    *flags: str,
    metavar: str | None = None,
    type: Any = None,
    flag_help: str | None = None,
    action: str | None = None,
) -> Any:
    """A dataclass field with what the API docs and the magic need to know about it.

    ``flags`` are the magic's option strings (none: an API-only option); ``type`` the
    argparse type; ``flag_help`` the magic's wording when it differs from the API's.
    """
    return field(
        default=default,
        metadata={
            "help": help,
            "flags": flags,
            "metavar": metavar,
            "type": type,
            "flag_help": flag_help or help,
            "action": action,
        },
    )


@dataclass
class TuneConfig:
    """The options of one search (see ``%%tune?`` or ``help(nbtune.tune)``)."""

    maximize: str | None = _opt(
        None,
        "the variable to maximise (exactly one of ``maximize``/``minimize``).",
        "--maximize",
        metavar="NAME",
        flag_help="the cell variable to maximise (its value when the cell ends).",
        action="append",  # given twice is an error (config_from_args), not the last one silently
    )
    minimize: str | None = _opt(
        None,
        "the variable to minimise.",
        "--minimize",
        metavar="NAME",
        flag_help="the cell variable to minimise. Give exactly one of the two.",
        action="append",
    )
    n_trials: int | None = _opt(
        None,
        "target number of configurations tried (finished trials: complete, stopped early or failed; a paused trial "
        "and the trial that continued it count once, though Optuna lists both); re-running continues the study up "
        "to it. Default 20; with ``timeout`` and no ``n_trials``, as many as the time allows.",
        "-n",
        "--trials",
        metavar="N",
        type=int,
        flag_help="target number of configurations tried in the study (finished trials: complete, stopped early or "
        "failed; a paused trial and the trial that continued it count once, though Optuna lists both); re-running "
        "continues the study up to N. Default 20; with --timeout and no -n, as many as the time allows.",
    )
    timeout: str | float | None = _opt(
        None,
        'how long the study searches in all (seconds, or ``"90s"``, ``"10m"``, ``"2h"``, ``"1m30s"``): no trial '
        "starts after it, running ones finish, and re-running continues until the study's trials have run this "
        "long (a kernel restart or an Interrupt loses none of it). Alone, it is the only limit; with "
        "``n_trials``, whichever comes first.",
        "--timeout",
        metavar="T",
        flag_help="how long the study searches in all: seconds, or 90s, 10m, 2h, 1m30s. No trial starts after it; "
        "re-running continues until the study has searched T (raise T to search longer). Alone it is the only "
        "limit; with -n, whichever comes first.",
    )
    trial_timeout: str | float | None = _opt(
        None,
        "how long one trial may run (seconds or a duration, as ``timeout``): a trial that runs past it is stopped "
        "at its last epoch (or fold), whose value stands, or fails if it reported none (the default sampler then "
        "takes its configuration for a bad one); the search goes on. The limit reaches the cell's Python code at "
        "once; a single call into compiled code (one long ``fit``) is cut when it returns, or, in worker processes "
        "(``--jobs 2`` or more), 5 s (a quarter of the limit, if longer) past the limit by ending its process, "
        "which is replaced. Default: none.",
        "--trial-timeout",
        metavar="T",
        flag_help="how long one trial may run (90s, 10m, ...): one that runs past it stops at its last epoch, "
        "whose value stands, or fails if it had none; the search goes on. The cell's Python code is cut at once, a "
        "single call into compiled code (one long fit) when it returns, or under --jobs 2+ by ending its worker "
        "process 5 s later. Default: none.",
    )
    sampler: str = _opt(
        "tpe",
        "``tpe`` (default), ``random``, ``grid``, ``gp``, ``cmaes`` or ``qmc``. The default is Optuna's "
        "multivariate TPE fitted as BOHB fits its model: on the largest epoch that enough configurations "
        "reached, each valued there, so early finishers do not pass for the best.",
        "--sampler",
        metavar="S",
        flag_help="tpe (default: multivariate TPE fitted at the largest epoch enough trials reached, as BOHB), "
        "random, grid, gp, cmaes or qmc (Optuna's samplers).",
    )
    seed: int | None = _opt(
        None,
        "seed of the sampler; the same seed gives the same configurations with one job.",
        "--seed",
        metavar="N",
        type=int,
        flag_help="sampler seed: the same seed gives the same configurations (1 job).",
    )
    name: str | None = _opt(
        None, "study name; by default derived from the metric and the tuned variables.", "--name", metavar="NAME"
    )
    note: str | None = _opt(
        None,
        "a note kept with the study (what this sweep is for: 'baseline before the new features'), shown by "
        "nbtune.studies() and nbtune.compare(); a later run's note replaces it.",
        "--note",
        metavar="TEXT",
    )
    store: str | Path | None = _opt(
        None,
        "the store: a folder (default ``.nbtune/`` beside the notebook) or a database URL "
        "(``postgresql://user@host/db``; the ``NBTUNE_STORE`` environment variable's by default when set).",
        "--store",
        metavar="DIR|URL",
        flag_help="store folder (default .nbtune/ beside the notebook), or a database URL, e.g. "
        "postgresql://user@host/db, for workers on several machines (default: $NBTUNE_STORE when set).",
    )
    artifacts: str | Path | None = _opt(
        None,
        "where checkpoint files go (``# tune: state``): an object store every machine reaches "
        "(``s3://bucket/prefix``, S3 or S3-compatible, through Optuna's ``Boto3ArtifactStore``) or a folder "
        "(default: ``artifacts/`` in the store folder; ``NBTUNE_ARTIFACTS`` when set).",
        "--artifacts",
        metavar="URL|DIR",
        flag_help="where checkpoints go: s3://bucket/prefix (workers on several machines) or a folder. "
        "Default: artifacts/ in the store ($NBTUNE_ARTIFACTS when set).",
    )
    fresh: bool = _opt(
        False,
        "start a new version of the study, keeping the old one.",
        "--fresh",
        flag_help="start a new version of the study; the old one is kept.",
    )
    resume: bool = _opt(
        False,
        "continue the latest version of the study with this search space even if the cell's code, "
        "notebook or data changed (by default those start a new version).",
        "--resume",
        flag_help="continue the study even if the cell's code, notebook or data changed since it ran "
        "(by default a new version starts and the output says what changed).",
    )
    apply: bool = _opt(
        False,
        "afterwards, run the cell in ``user_ns`` with the best values.",
        "--apply",
        flag_help="after the search, run the cell in the notebook with the best values.",
    )
    vary_seed: bool = _opt(
        False,
        "give the ``# tune: seed`` variable a different value in each trial (the cell's value plus the "
        "trial number) instead of the cell's value in every trial.",
        "--vary-seed",
        flag_help="give the '# tune: seed' variable a different value in each trial (cell value + trial "
        "number); by default every trial uses the cell's value, so trials differ only by their hyperparameters.",
    )
    revalidate: int = _opt(
        0,
        "after the search, run the top K configurations again with ``seeds`` other seeds each (needs a "
        "``# tune: seed`` variable), and pick the most stable: the best lower 95% confidence bound of the mean.",
        "--revalidate",
        metavar="K",
        type=int,
        flag_help="after the search, re-run the top K configurations with --seeds other seeds each (needs "
        "'seed = 0  # tune: seed' in the cell); reports mean, sd and a 95%% confidence interval each, and picks "
        "the best lower bound. Runs are kept with the study (in NAME@check), never shown to the sampler.",
    )
    seeds: int | None = _opt(
        None,
        "seeds per configuration in re-validation (``revalidate``; None: 5).",
        "--seeds",
        metavar="S",
        type=int,
        flag_help="seeds per configuration when re-validating. Default 5.",
    )
    holdout: str | None = _opt(
        None,
        "a cell variable holding a score on held-out data. It is sealed: the statements assigning it "
        "never run in a search trial; it is computed once after the search, for the chosen configuration "
        "(and the re-validated ones), and compared with the metric.",
        "--holdout",
        metavar="NAME",
        flag_help="a cell variable with the score on held-out data, e.g. test_acc. Sealed: the lines that "
        "assign it never run during the search; after it, nbtune runs the chosen configuration once with them, "
        "reports metric - holdout and warns when the gap exceeds --holdout-gap.",
    )
    holdout_gap: float | None = _opt(
        None,
        "warn when the chosen configuration's metric beats its holdout score by more than this "
        "(None: 0.02, 2 percentage points of accuracy, for a score maximised within [-1, 1]; 10% of the holdout's size "
        "for a metric on another scale, such as an MSE).",
        "--holdout-gap",
        metavar="G",
        type=float,
        flag_help="warn when the metric beats the holdout by more than G. Default 0.02 (2 points of accuracy) for a "
        "score maximised within [-1, 1], 10%% of the holdout for an error minimised or a metric on another scale (an MSE).",
    )
    subject_to: list[str] | str | None = _opt(
        None,
        "guardrails: ``'latency_ms <= 20'`` or a list of them (a cell variable, ``<=`` or ``>=``, a number). "
        "The best trial is the best one that meets them all, and the sampler learns where they hold "
        "(Optuna's constraints).",
        "--subject-to",
        metavar="'VAR <= C'",
        action="append",
        flag_help="a guardrail, e.g. --subject-to 'latency_ms <= 20' (repeat for more; >= works too): the best "
        "trial is the best feasible one, the sampler learns the feasible region, the dashboard marks the rest.",
    )
    record: list[str] | str | None = _opt(
        None,
        "more cell variables to keep per trial (names, or one comma-separated string): columns in the table "
        "and the DataFrame, and a plot against the metric.",
        "--record",
        metavar="VARS",
        action="append",
        flag_help="more cell variables to keep per trial, comma-separated, e.g. --record train_acc,latency_ms: "
        "shown in the table, the DataFrame (record_*) and plotted against the metric.",
    )
    state: list[str] | str | None = _opt(
        None,
        "cell variables that make up a trial's state (names, or one comma-separated string), as "
        "``# tune: state`` marks them: saved with every complete trial, so ``res.best_state()`` and "
        "``apply`` get the best model back without retraining.",
        "--state",
        metavar="VARS",
        action="append",
        flag_help="cell variables saved with each complete trial (a checkpoint), comma-separated, e.g. --state "
        "model,opt (or mark them '# tune: state'): res.best_state() and --apply get the best model back "
        "without retraining.",
    )
    keep_checkpoints: int = _opt(
        3,
        "checkpoints kept: those of the best K complete trials (the others' files are deleted).",
        "--keep-checkpoints",
        metavar="K",
        type=int,
        flag_help="keep the checkpoints of the best K complete trials. Default 3.",
    )
    heartbeat: float = _opt(
        HEARTBEAT_DEFAULT,
        "with a database store: seconds between a worker's lease renewals (its heartbeat).",
        "--heartbeat",
        metavar="S",
        type=float,
        flag_help="with a database --store: seconds between a running trial's lease renewals. Default 5.",
    )
    lease_grace: float | None = _opt(
        None,
        "with a database store: seconds without a renewal after which a trial's worker counts as gone and the "
        "trial runs again (default 4 heartbeats).",
        "--lease-grace",
        metavar="S",
        type=float,
        flag_help="with a database --store: seconds without a lease renewal before a trial counts as cut and "
        "runs again. Default 4 x --heartbeat.",
    )
    n_jobs: int = _opt(
        1,
        "parallel workers (-1: all cores).",
        "-j",
        "--jobs",
        metavar="N",
        type=int,
        flag_help="parallel workers; -1 = all cores. Default 1.",
    )
    backend: str = _opt(
        "auto",
        "``auto`` (the kernel for 1 job, loky processes for more), ``threading``, ``loky``, ``dask`` or ``ray``.",
        "--backend",
        metavar="B",
        flag_help="auto (the kernel for 1 job, processes for more), threading, loky, dask or ray.",
    )
    scheduler: str | None = _opt(
        None,
        "``asha`` (default with an epochs loop: successive halving at epochs r, r*eta, ..., with "
        "pause-and-promote), ``hyperband`` (several brackets: hedges against late bloomers), ``median``, ``pbt`` "
        "(population-based training) or ``none``.",
        "--scheduler",
        metavar="S",
        flag_help="asha (default with an epochs loop), hyperband (hedges against late bloomers), median, pbt "
        "(population-based training) or none.",
    )
    stop_only: bool = _opt(
        False,
        "Hyperband and ASHA *pause* a trial that is not (yet) in the top 1/eta at a rung and promote it "
        "later if it ranks there once more trials arrive (pause-and-promote): it continues from the variables "
        "its worker kept in memory (``NBTUNE_KEEP_PAUSED``, default 8 per worker), else from its checkpoint "
        "with ``# tune: state``, else it trains again from the start. ``stop_only`` stops such trials for "
        "good instead, as Optuna's pruners do (and lets the first arrivals at a rung through).",
        "--stop-only",
        flag_help="Hyperband/ASHA pause a trial that is not yet in the top 1/eta at a rung and promote it if it "
        "ranks there once more trials arrive (from its worker's memory, else its checkpoint with '# tune: "
        "state', else retrained from the start); --stop-only stops such trials for good instead (Optuna's "
        "pruners).",
    )
    population: int | None = _opt(
        None,
        "PBT (``scheduler='pbt'``): the members that train side by side (the number of configurations).",
        "--population",
        metavar="N",
        type=int,
        flag_help="with --scheduler pbt: members training side by side (replaces --trials). Default 8.",
    )
    interval: int | None = _opt(
        None,
        "PBT: epochs between exploit/explore decisions (default: a quarter of the epochs loop).",
        "--interval",
        metavar="K",
        type=int,
        flag_help="with --scheduler pbt: epochs between exploit/explore decisions. Default R/4.",
    )
    min_epochs: int | None = _opt(
        None,
        "r, the epochs before the first comparison (default: where the search's N configurations, "
        "``n_trials`` less the baseline, can fill every rung, ⌈R / eta**⌊log_eta N⌋⌉: 3 for 20 trials over a "
        "27-epoch loop, 1 from 28 trials).",
        "--min-epochs",
        metavar="r",
        type=int,
        flag_help="epochs before the first comparison (r). Default: where the search's N configurations (-n less "
        "the baseline, trial 0) can fill every rung, R/eta^floor(log_eta N) rounded up, at least one rung "
        "(3 for -n 20 over 27 epochs, so rungs at 3 and 9; 1 from -n 28).",
    )
    eta: int = _opt(
        ETA_DEFAULT,
        "the reduction factor (1/eta of trials continue at each rung).",
        "--eta",
        type=int,
        flag_help="reduction factor: 1/eta of trials go on at each rung. Default 3.",
    )
    max_epochs: int | None = _opt(
        None,
        "R, the epochs of a full trial, when the epochs loop's length cannot be read before it runs.",
        "--max-epochs",
        metavar="R",
        type=int,
        flag_help="epochs of a full trial, when the loop's length cannot be read before it runs (nbtune reads "
        "range(27), range(EPOCHS), range(cfg['epochs']), tqdm(...), pbar = tqdm(...) before the loop, "
        "enumerate(loader) itself); notebook "
        "values work in the line: --max-epochs $EPOCHS or {cfg['epochs']}. A trial whose loop runs longer "
        "fails, saying so.",
    )
    user_ns: dict[str, Any] | None = _opt(None, "the namespace whose globals the cell reads (the notebook's).")
    transform: Callable[[str], str] | None = _opt(
        None, "IPython's ``transform_cell`` for ``!cmd`` and ``%magic`` lines."
    )
    view: Any = _opt(
        "auto",
        '``"auto"`` (widgets in a notebook, text elsewhere; the ``NBTUNE_VIEW`` environment variable\'s when set), '
        '``"widget"``, ``"text"`` (progress lines), None or ``"none"`` (silent), or a factory '
        "``(run: RunInfo, search) -> BaseView``.",
        "--view",
        metavar="V",
        flag_help="auto (widgets in a notebook, text elsewhere; $NBTUNE_VIEW when set), widget, text (a progress line "
        "every few seconds: for jupyter execute, nbconvert or a front end without widgets) or none.",
    )
    line_offset: int = _opt(
        0,
        "lines above the cell's first line where it was written, for messages (1 in a notebook: the ``%%tune`` line).",
    )

    # derived ---------------------------------------------------------------------------
    @property
    def metric(self) -> str:
        return self.maximize or self.minimize or ""

    @property
    def direction(self) -> str:
        return "maximize" if self.maximize else "minimize"

    @property
    def n_seeds(self) -> int:
        """Seeds per configuration when re-validating."""
        return self.seeds if self.seeds is not None else 5

    @property
    def gap(self) -> float | None:
        """The holdout gap that warns (None: 0.02 for a score in [-1, 1], else 10% of the holdout)."""
        return float(self.holdout_gap) if self.holdout_gap is not None else None

    @property
    def seconds(self) -> float | None:
        return parse_timeout(self.timeout)

    @property
    def trial_seconds(self) -> float | None:
        return parse_timeout(self.trial_timeout, "--trial-timeout")

    @property
    def trials(self) -> int:
        """The target number of configurations: ``n_trials``, else 20, or with only a timeout no
        limit but the time (``NO_LIMIT``)."""
        from nbtune.store.attrs import NO_LIMIT

        if self.n_trials is not None:
            return self.n_trials
        return NO_LIMIT if self.timeout is not None else DEFAULT_TRIALS

    def check(self) -> TuneConfig:
        """Validate every option before anything runs (each error names the option and the fix).

        The cell-dependent checks (sampler vs space, scheduler vs epochs loop) and the
        registries' (sampler, scheduler, backend names) run when the cell is compiled.

        Raises:
            ConfigError: the first bad option.
        """
        if self.fresh and self.resume:  # (--fresh had won, silently; found trying nbtune as a new user)
            raise ConfigError(
                "--fresh starts a new version of the study and --resume continues the latest one: give one of them"
            )
        for option in ("maximize", "minimize"):
            value = getattr(self, option)
            if value is not None and (not isinstance(value, str) or not value.isidentifier()):
                several = (isinstance(value, str) and all(w.strip().isidentifier() for w in value.split(","))) or (
                    isinstance(value, (list, tuple)) and len(value) > 1
                )
                raise ConfigError(
                    f"--{option} takes the name of the cell variable to optimise, e.g. val_acc; got {value!r}"
                    + (f"; {ONE_METRIC}" if several else "")
                )
        if (self.maximize is None) == (self.minimize is None):
            both = "both --maximize and --minimize were given" if self.maximize else "no metric was given"
            raise ConfigError(
                f"{both}; pass exactly one of --maximize NAME or --minimize NAME (the cell variable to optimise)"
                + (f"; {ONE_METRIC}" if self.maximize else "")
            )
        # names, as Optuna's classes spell them too: TPE (a view's name: view_factory, which runs first)
        for option in ("sampler", "scheduler", "backend"):
            value = getattr(self, option)
            if isinstance(value, str):
                setattr(self, option, value.strip().lower())
        if hasattr(self.sampler, "sample_independent"):
            cls = type(self.sampler).__name__
            name = _OPTUNA_SAMPLERS.get(cls)
            raise ConfigError(
                f"--sampler takes a name, not an Optuna {cls} object"
                + (f": use {name!r}" if name else "")
                + "; nbtune makes the sampler itself (seeded by --seed, one per worker, TPE fitted on the rungs)"
                + (f"; {ONE_METRIC}" if cls.startswith(("NSGA", "MOTPE")) else "")
            )
        if self.n_trials is not None and (not _whole(self.n_trials) or self.n_trials < 1):
            raise ConfigError(f"--trials must be a whole number >= 1; got {self.n_trials!r}")
        parse_timeout(self.timeout)
        parse_timeout(self.trial_timeout, "--trial-timeout")
        if self.seed is not None and (not _whole(self.seed) or self.seed < 0):
            raise ConfigError(f"--seed must be a whole number >= 0; got {self.seed!r}")
        if not _whole(self.revalidate) or self.revalidate < 0:
            raise ConfigError(
                f"--revalidate takes how many of the top configurations to re-run (0: none); got {self.revalidate!r}"
            )
        if self.seeds is not None and (not _whole(self.seeds) or self.seeds < 2):
            raise ConfigError(f"--seeds must be a whole number >= 2 (a spread needs two runs); got {self.seeds!r}")
        if self.seeds is not None and not self.revalidate:
            raise ConfigError(
                f"--seeds {self.seeds} sets the seeds of re-validation, which is not asked for: add --revalidate K "
                "(the top K configurations to re-run), or drop --seeds"
            )
        if self.holdout is not None and (not isinstance(self.holdout, str) or not self.holdout.isidentifier()):
            raise ConfigError(
                f"--holdout takes the name of the cell variable holding the holdout score; got {self.holdout!r}"
            )
        if self.holdout_gap is not None and self.holdout is None:
            raise ConfigError(
                "--holdout-gap sets when the sealed holdout warns, but there is no --holdout VAR; add it or drop "
                "--holdout-gap"
            )
        if self.holdout_gap is not None and (
            isinstance(self.holdout_gap, bool)
            or not isinstance(self.holdout_gap, (int, float))
            or not self.holdout_gap > 0
        ):
            raise ConfigError(f"--holdout-gap must be a positive number, e.g. 0.02; got {self.holdout_gap!r}")
        self.subject_to = [parse_constraint(c)[3] for c in _as_list(self.subject_to, "--subject-to", split=False)]
        self.record = _names(self.record, "--record", "train_acc,latency_ms")
        self.state = _names(self.state, "--state", "model,opt")
        if not (isinstance(self.heartbeat, (int, float)) and self.heartbeat > 0):
            raise ConfigError(f"--heartbeat must be a positive number of seconds; got {self.heartbeat!r}")
        if self.lease_grace is not None and not (
            isinstance(self.lease_grace, (int, float)) and self.lease_grace > self.heartbeat
        ):
            raise ConfigError(
                f"--lease-grace must be longer than --heartbeat ({self.heartbeat} s); got {self.lease_grace!r}"
            )
        if self.population is not None and (not _whole(self.population) or self.population < 2):
            raise ConfigError(f"--population must be a whole number >= 2; got {self.population!r}")
        if self.interval is not None and (not _whole(self.interval) or self.interval < 1):
            raise ConfigError(f"--interval must be a whole number of epochs >= 1; got {self.interval!r}")
        if not _whole(self.keep_checkpoints) or self.keep_checkpoints < 1:
            raise ConfigError(f"--keep-checkpoints must be a whole number >= 1; got {self.keep_checkpoints!r}")
        if self.max_epochs is not None and self.max_epochs < 1:
            raise ConfigError(f"--max-epochs must be >= 1; got {self.max_epochs}")
        if self.name is not None:
            from nbtune.store.base import check_name

            check_name(self.name)
        return self


# Optuna's sampler classes, by the --sampler name that makes them
_OPTUNA_SAMPLERS = {
    "TPESampler": "tpe",
    "RandomSampler": "random",
    "GridSampler": "grid",
    "GPSampler": "gp",
    "CmaEsSampler": "cmaes",
    "QMCSampler": "qmc",
}

_CONSTRAINT_RE = re.compile(
    r"^\s*(?P<name>[A-Za-z_]\w*)\s*(?P<op><=|>=)\s*(?P<bound>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*$"
)


def parse_constraint(text: Any) -> tuple[str, str, float, str]:
    """``"latency_ms <= 20"`` -> ``("latency_ms", "<=", 20.0, "latency_ms <= 20")``.

    Raises:
        ConfigError: anything else (the message shows the form).
    """
    if isinstance(text, str) and len(text) > 1 and text[0] == text[-1] and text[0] in "'\"":
        text = text[1:-1]  # IPython's magic line keeps the quotes of a quoted argument
    m = _CONSTRAINT_RE.match(text) if isinstance(text, str) else None
    if m is None:
        raise ConfigError(
            "--subject-to takes a cell variable, <= or >=, and a number, e.g. --subject-to 'latency_ms <= 20' "
            f"(quote it on the %%tune line); got {text!r}"
        )
    bound = float(m.group("bound"))
    return m.group("name"), m.group("op"), bound, f"{m.group('name')} {m.group('op')} {m.group('bound')}"


def _as_list(value: Any, option: str, split: bool) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{option} takes a string or a list of strings; got {value!r}")
    if split:
        return [part.strip() for v in value for part in v.split(",") if part.strip()]
    return list(value)


def _names(value: Any, option: str, example: str) -> list[str]:
    """Cell variable names, from a list or comma-separated strings."""
    names = _as_list(value, option, split=True)
    for name in names:
        if not name.isidentifier():
            raise ConfigError(f"{option} takes cell variable names separated by commas, e.g. {example}; got {name!r}")
    return names


def _whole(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def parse_timeout(value: str | float | int | None, option: str = "--timeout") -> float | None:
    """Seconds from ``90``, ``"90s"``, ``"10m"``, ``"2h"``, or ``"1m30s"``, ``"1h30m"``
    (``option``: the flag the value was given to, which the error names).

    Raises:
        ConfigError: anything else.
    """
    if value is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    else:
        m = _TIMEOUT_RE.match(str(value))
        parts = None if m else _TIMEOUT_PARTS.match(str(value))
        if m:
            seconds = float(m.group("n")) * {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, None: 1}[m.group("u")]
        elif parts and any(parts.groups()):
            seconds = sum(float(parts.group(k) or 0) * f for k, f in (("h", 3600), ("m", 60), ("s", 1)))
        else:
            raise ConfigError(f"{option} takes seconds or a duration such as 90s, 10m, 2h or 1m30s; got {value!r}")
    if seconds <= 0:
        raise ConfigError(f"{option} must be positive; got {value!r}")
    return seconds


def config_from(kwargs: dict[str, Any], caller: str) -> TuneConfig:
    """A :class:`TuneConfig` from keyword arguments, refusing unknown ones as Python would."""
    names = {f.name for f in fields(TuneConfig)}
    unknown = sorted(set(kwargs) - names)
    if unknown:
        hint = _OPTUNA_KEYWORDS.get(unknown[0])
        raise TypeError(f"{caller}() got an unexpected keyword argument {unknown[0]!r}" + (f"; {hint}" if hint else ""))
    return TuneConfig(**kwargs)


# Optuna's keywords that nbtune spells otherwise
_OPTUNA_KEYWORDS = {
    "direction": "in nbtune it is maximize='VAR' or minimize='VAR' (the cell variable to optimise)",
    "directions": "nbtune tunes one metric, maximize='VAR' or minimize='VAR': keep the others as guardrails "
    "(subject_to=['n_coef <= 100']) or records (record=['n_coef'])",
    "n_startup_trials": "it is not an option: the default TPE sets its own start (see sampler=)",
    "callbacks": "it is not an option: read the study as it runs, nbtune.load_study(NAME)",
    "pruner": "in nbtune it is scheduler= (asha, hyperband, median, pbt, none)",
    "study_name": "in nbtune it is name=",
    "storage": "in nbtune it is store= (a folder or a database URL)",
    "timeout_seconds": "in nbtune it is timeout=",
}


def with_config_signature(func: Callable[..., Any]) -> Callable[..., Any]:
    """Give ``func(cell, **options)`` the signature and the ``Args`` that TuneConfig declares,
    so ``help()``, ``?`` and IDEs show every option with its default."""
    sig = inspect.signature(func)
    cell = next(iter(sig.parameters.values()))
    params = [cell] + [
        inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=f.default, annotation=f.type)
        for f in fields(TuneConfig)
    ]
    func.__signature__ = sig.replace(parameters=params)  # type: ignore[attr-defined]
    args = "\n".join(f"        {f.name}: {f.metadata['help']}" for f in fields(TuneConfig))
    if func.__doc__ and "{options}" in func.__doc__:
        func.__doc__ = func.__doc__.replace("{options}", args.lstrip())
    return func


def magic_arguments_from_config(func: Callable[..., Any]) -> Callable[..., Any]:
    """Apply IPython's ``@argument`` for every option that has a ``%%tune`` flag, in field order."""
    from IPython.core.magic_arguments import argument

    for f in reversed(fields(TuneConfig)):
        flags = f.metadata.get("flags")
        if not flags:
            continue
        kw: dict[str, Any] = {"help": f.metadata["flag_help"]}
        if f.type in ("bool", bool):
            kw["action"] = "store_true"
        else:
            if f.default is not MISSING and f.default is not None:
                kw["default"] = f.default
            if f.metadata.get("metavar"):
                kw["metavar"] = f.metadata["metavar"]
            if f.metadata.get("type") is not None:
                kw["type"] = f.metadata["type"]
            if f.metadata.get("action"):
                kw["action"] = f.metadata["action"]
        kw["dest"] = f.name
        func = argument(*flags, **kw)(func)
    return func


def _unquote(value: Any) -> Any:
    """IPython's magic line keeps the quotes of a quoted argument (``--name 'run a'``)."""
    if isinstance(value, list):
        return [_unquote(v) for v in value]
    if isinstance(value, str) and len(value) > 1 and value[0] == value[-1] and value[0] in "'\"":
        return value[1:-1]
    return value


def config_from_args(args: Any, **api_only: Any) -> TuneConfig:
    """The config of a parsed ``%%tune`` line (plus the options only the API passes)."""
    values = {f.name: _unquote(getattr(args, f.name)) for f in fields(TuneConfig) if f.metadata.get("flags")}
    for option in ("maximize", "minimize"):
        given = values[option]
        if isinstance(given, list):
            if len(set(given)) == 1 and len(given) > 1:
                raise ConfigError(
                    f"--{option} is given {len(given)} times ({', '.join(map(str, given))}): give it once"
                )
            if len(given) > 1:
                other = next(g for g in given if g != given[0])
                raise ConfigError(
                    f"--{option} is given {len(given)} times ({', '.join(map(str, given))}): nbtune tunes one "
                    f"metric; keep the other as a guardrail (--subject-to '{other} <= ...') or a record "
                    f"(--record {other})"
                )
            values[option] = given[0]
    api_only.setdefault("line_offset", 1)  # the %%tune line above the body
    return TuneConfig(**values, **api_only)
