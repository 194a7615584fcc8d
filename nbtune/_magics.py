"""``%%tune``, ``%tune_show`` and ``%tune_validate``: a thin layer over :func:`nbtune.tune`.

In a Jupyter kernel a ``%%tune`` cell is run as an *async* cell (an input transformer
rewrites it to ``await ...``): the search runs on a background thread while the cell
awaits it, so the kernel keeps handling widget messages (Stop, Stop now, +N trials work
while trials run), Interrupt cancels the await and is turned into a graceful "stop now",
and Run All still waits for the search before running the next cell.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import warnings
from collections.abc import Iterator
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, cell_magic, line_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments, parse_argstring

from nbtune._compat import is_asyncio_runner
from nbtune._config import TuneConfig, config_from_args, magic_arguments_from_config
from nbtune.exceptions import ONE_METRIC, NbtuneError, NbtuneWarning, TrialsFailedError

__all__ = ["TuneMagics", "load", "unload"]


def _transformer(shell: Any) -> Any:
    tm = getattr(shell, "input_transformer_manager", None)
    if tm is None:
        return None

    def transform(cell: str) -> str:
        if "!" not in cell and "%" not in cell and "?" not in cell:  # (a help line: 'Ridge?')
            return cell
        # IPython drops leading blank lines; put them back so line numbers still match.
        lines = cell.splitlines(True)
        n_blank = 0
        while n_blank < len(lines) and not lines[n_blank].strip():
            n_blank += 1
        body: str = tm.transform_cell("".join(lines[n_blank:]))
        return "\n" * n_blank + body

    return transform


@contextlib.contextmanager
def _plain_warnings(where: str = "%%tune") -> Iterator[None]:
    """nbtune's warnings as one line about the cell ("%%tune: NbtuneWarning: ..."), not a path
    into nbtune's source and a line of it; other warnings pass through as they were. A warning a
    trial raises (on its thread in the kernel) is written where its prints go: kept with the trial."""
    from nbtune.run.output import captured_output

    caught: list[warnings.WarningMessage] = []

    def show(message: Any, category: Any, filename: str, lineno: int, file: Any = None, line: Any = None) -> None:
        if captured_output.active() and not issubclass(category, NbtuneWarning):  # the cell's, not nbtune's
            sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))
        else:
            caught.append(warnings.WarningMessage(message, category, filename, lineno, file, line))

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("always", NbtuneWarning)
            warnings.showwarning = show
            yield
    finally:
        for w in caught:
            if issubclass(w.category, NbtuneWarning):
                warnings.warn_explicit(w.message, w.category, where, 1, module="nbtune")
            else:
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno, source=w.source)


def _report(e: NbtuneError) -> UsageError:
    if isinstance(e, TrialsFailedError) and e.traceback:
        print("Traceback of the first failed trial:\n" + e.traceback, file=sys.stderr)
    return UsageError(str(e))


# Optuna's words for what %%tune calls otherwise: an unknown flag among them gets the option to use.
_OPTUNA_WORDS = {
    "--pruner": "--scheduler (asha, hyperband, median, pbt, none)",
    "--n-trials": "-n/--trials N",
    "--n_trials": "-n/--trials N",
    "--direction": "--maximize NAME or --minimize NAME",
    "--study-name": "--name NAME",
    "--study_name": "--name NAME",
    "--storage": "--store PATH_OR_URL",
    "--n-jobs": "--jobs N",
    "--n_jobs": "--jobs N",
    "--metric": "--maximize NAME or --minimize NAME",
    "--objective": "--maximize NAME or --minimize NAME",
    "--monitor": "--maximize NAME or --minimize NAME",
    "--directions": f"for several metrics: {ONE_METRIC}, with --maximize NAME or --minimize NAME for the one",
    "--n-startup-trials": "not an option: the default TPE sets its own start",
    "--callbacks": "not an option: read the study as it runs, nbtune.load_study(NAME)",
    "--timeout-per-trial": "--trial-timeout T",
    "--per-trial-timeout": "--trial-timeout T",
    "--max-trial-time": "--trial-timeout T",
    # Ray Tune's and W&B's (found trying nbtune as a new user, coming from them)
    "--num-samples": "-n/--trials N",
    "--num_samples": "-n/--trials N",
    "--count": "-n/--trials N",
    "--mode": "--maximize NAME or --minimize NAME",
    "--method": "--sampler (tpe, the default, is W&B's bayes; random, grid)",
    "--search-alg": "--sampler (tpe, random, grid, ...)",
    "--scheduler-name": "--scheduler (asha, hyperband, median, pbt, none)",
    "--early-terminate": "--scheduler (asha, the default, or hyperband)",
    "--early_terminate": "--scheduler (asha, the default, or hyperband)",
    "--grace-period": "--min-epochs N",
    "--grace_period": "--min-epochs N",
    "--reduction-factor": "--eta N",
    "--max-t": "--max-epochs N",
    "--time-budget-s": "--timeout T",
    "--max-concurrent-trials": "--jobs N",
    # scikit-learn's (found trying nbtune as a new user): cross-validation is an annotation
    "--cv": "not an option: cross-validation is an annotation in the cell, 'fold = 0  # tune: folds(5)', the fold "
    "variable choosing each fold's split (see the README, Cross-validation)",
    "--folds": "not an option: cross-validation is an annotation in the cell, 'fold = 0  # tune: folds(5)', the fold "
    "variable choosing each fold's split (see the README, Cross-validation)",
    "--scoring": "--maximize NAME or --minimize NAME (the cell's variable that holds the score)",
    "--kfold": "not an option: cross-validation is an annotation in the cell, 'fold = 0  # tune: folds(5)', the fold "
    "variable choosing each fold's split (see the README, Cross-validation)",
    "--k-fold": "not an option: cross-validation is an annotation in the cell, 'fold = 0  # tune: folds(5)', the "
    "fold variable choosing each fold's split (see the README, Cross-validation)",
    "--epochs": "not an option: the epochs loop is marked in the cell, 'for epoch in range(20):  # tune: epochs' "
    "(--max-epochs N gives its length when nbtune cannot read it; --min-epochs N the first rung)",
    "--iterations": "-n/--trials N",
    "--iters": "-n/--trials N",
    "--n-iter": "-n/--trials N",
    "--n_iter": "-n/--trials N",
    "--random-state": "--seed N (the search's draws; the cell's own random_state is a '# tune: seed' variable)",
    "--random_state": "--seed N (the search's draws; the cell's own random_state is a '# tune: seed' variable)",
    # argparse's own (the magic's help is IPython's '?', which shows the options, annotations and examples)
    "--help": "not an option: IPython's ? after the magic's name shows its help",
    "-h": "not an option: IPython's ? after the magic's name shows its help",
    # hyperopt's
    "--max-evals": "-n/--trials N",
    "--max_evals": "-n/--trials N",
    "--algo": "--sampler (tpe, the default; random)",
}


def _parse(magic: Any, line: str) -> Any:
    """The magic's arguments; a line shlex cannot split is one UsageError line, not a traceback."""
    called = "%%tune" if magic.__name__ == "tune" else "%" + magic.__name__
    see = f"(see {called}?)"
    # IPython leaves a line magic's ';' (show no output) in its line: '%tune_show NAME;' read 'NAME;'
    line = line.rstrip().removesuffix(";")
    _unexpanded(line)  # (first: what it left split at its spaces would read as stray words)
    try:
        args = parse_argstring(magic, line)
    except ValueError as e:  # shlex: "No closing quotation", "No escaped character"
        raise UsageError(f"cannot read the %%tune line ({e}): check its quotes; got {line.strip()!r}") from None
    except UsageError as e:
        words = str(e).split()
        flags = {w.split("=", 1)[0] for w in words}  # ('--cv=5': the flag before its value)
        hints = [f"{word} is {use}" for word, use in _OPTUNA_WORDS.items() if word in flags]
        if hints:
            raise UsageError(f"{e}; in {called}, {'; '.join(hints)} {see}") from None
        if "invalid" in words and "value:" in words:  # '--seed abc': the flag is right, its value is not
            kind = {"int": "a whole number", "float": "a number"}.get(
                words[words.index("invalid") + 1], "another value"
            )
            raise UsageError(f"{e}: give {kind} {see}") from None
        if "ignored explicit argument" in str(e):  # '--stop-only=yes'
            flag = words[1].rstrip(":")
            raise UsageError(f"{e}: {flag} takes no value; write {flag} alone {see}") from None
        if "expected one argument" in str(e):  # '--seed' at the end, or before another option
            flag = words[1].rstrip(":").split("/")[-1]
            raise UsageError(f"{e}: give its value after it ({flag} VALUE) {see}") from None
        close = _close_flags(magic, words)
        if close:
            raise UsageError(f"{e}; did you mean {' or '.join(close)}? {see}") from None
        hint = _stray_words_hint(str(e), line)
        if hint:
            raise UsageError(f"{e}; {hint} {see}") from None
        raise
    _given_once(magic, line)
    return args


def _unexpanded(line: str) -> None:
    """A ``$var`` or ``{expr}`` IPython could not expand stays in the line as written, and an option
    that takes any text took it ('--holdout $UNDEF' was said as a bad variable name): said as such."""
    m = re.search(r"(?:^|\s)(\$[A-Za-z_]\w*|\{[^{}]*\}?)", line)
    if m is None:
        return
    text = m.group(1)
    what = (
        f"the notebook has no variable {text[1:]!r}"
        if text.startswith("$")
        else "the expression in braces could not be evaluated in the notebook"
    )
    raise UsageError(f"{text} was not expanded: {what}")


def _options_below(cell: str) -> None:
    """Options written on the cell's first lines instead of the %%tune line ('%%tune' alone, then
    '-n 4 --maximize val_acc'): said as such, not as "no metric was given" or an invalid syntax
    (found trying nbtune as a new user)."""
    for i, text in enumerate(cell.splitlines()):
        if not text.strip() or text.lstrip().startswith("#"):
            continue
        if re.match(r"\s*--?[A-Za-z][\w-]*(\s|=|$)", text) and not re.match(r"\s*-\s+\w", text):
            raise UsageError(
                f"line {i + 2} of the %%tune cell: {text.strip()!r} looks like options: they go on the %%tune line "
                "itself (one line: %%tune -n 20 --maximize val_acc ...)"
            )
        return  # (the first line of code decides)


def _given_once(magic: Any, line: str) -> None:
    """An option that takes one value, given twice: the last one won without a word ('-n 4 -n 6';
    '--holdout test_acc --holdout train_acc' sealed the other score; found trying nbtune as a new
    user). Options that collect (--record, --subject-to) and flags said twice are fine."""
    import argparse

    from IPython.utils.process import arg_split  # type: ignore[attr-defined]  # (what parse_argstring splits with)

    actions = magic.parser._option_string_actions
    seen: dict[Any, list[str]] = {}
    words = arg_split(line)
    for i, word in enumerate(words):
        flag, eq, value = word.partition("=")
        if word.startswith("-") and not word.startswith("--") and len(word) > 2 and word[:2] in actions:
            flag, eq, value = word[:2], "=", word[2:]  # '-n4', '-oa': the short option's value attached
        action = actions.get(flag) if word.startswith("-") else None
        if action is None or not isinstance(action, argparse._StoreAction):
            continue
        seen.setdefault(action, []).append(value if eq else (words[i + 1] if i + 1 < len(words) else ""))
    for action, values in seen.items():
        if len(values) > 1:
            name = "/".join(action.option_strings)
            raise UsageError(
                f"{name} is given {len(values)} times ({', '.join(map(repr, values))}): it takes one value; keep "
                "the one you mean"
            )


def _shown_once(shell: Any, result: Any, magic: str) -> Any:
    """``result`` as a line magic's value, for ``res = %tune_show NAME`` (it was None: found trying
    nbtune as a new user). When the magic is the cell's last line, whose value the cell's output
    shows, that output does not show it again (the magic showed it already, or was told not to);
    ``display(r)`` or ``r`` later in the cell of ``r = %tune_show NAME`` shows it as any result
    (it showed nothing: found trying nbtune as a new user), and so does any later cell."""
    events = getattr(shell, "events", None)
    if events is None or not _is_the_cells_shown_value(shell, magic):
        return result

    def _ipython_display_() -> None:  # this cell's output: shown above
        pass

    def cell_ran(*_: Any) -> None:
        with contextlib.suppress(AttributeError):
            del result._ipython_display_
        with contextlib.suppress(ValueError):
            events.unregister("post_run_cell", cell_ran)

    try:
        result._ipython_display_ = _ipython_display_
    except AttributeError:  # (an object that takes no attributes: the magic's value is None, as before)
        return None
    events.register("post_run_cell", cell_ran)
    return result


def _is_the_cells_shown_value(shell: Any, magic: str) -> bool:
    """Whether the running cell's last statement is the line magic ``magic`` alone, whose value
    IPython's output shows (not ``r = %magic``, not ``%magic;``). Unsure (no cell known): True."""
    import ast

    try:
        raw = shell.displayhook.exec_result.info.raw_cell
        last = ast.parse(shell.transform_cell(raw)).body[-1]
    except (AttributeError, IndexError, SyntaxError, ValueError):
        return True
    call = last.value if isinstance(last, ast.Expr) else None
    return (
        isinstance(call, ast.Call)
        and isinstance(call.func, ast.Attribute)
        and call.func.attr == "run_line_magic"
        and bool(call.args)
        and isinstance(call.args[0], ast.Constant)
        and call.args[0].value == magic
        and not shell.displayhook.quiet()
    )


def _stray_words_hint(message: str, line: str = "") -> str | None:
    """What words argparse could not place usually are: a metric without its flag (``%%tune
    val_acc``), a trial count (``%%tune 20``), a guardrail split by its spaces, names after
    ``--record`` or ``--state`` separated by spaces instead of commas."""
    if "unrecognized arguments:" not in message:
        return None
    stray = message.split("unrecognized arguments:", 1)[1].split()
    words = line.split()
    for flag in ("--record", "--state"):  # '--record model_kb latency_ms' (found trying nbtune as a new user)
        for i, word in enumerate(words[:-2]):
            if word != flag:
                continue
            names = [words[i + 1]]
            for more in words[i + 2 :]:
                if not (more in stray and more.strip(",").isidentifier()):
                    break
                names.append(more)
            names = [n for word in names for n in word.split(",") if n]  # ('--record a, b': not 'a,,b')
            if len(names) > 1:
                return f"{flag} takes its names separated by commas: {flag} {','.join(names)}"
    if "0x" in "".join(stray) and any(w.startswith("object") or w.endswith(">") for w in stray):
        # '--scheduler $my_pruner': an object's text, split at its spaces
        return "a $variable holding a Python object gives its text: give the option's name"
    if stray and stray[0] in ("s", "m", "h", "sec", "min"):
        return f"a duration is one word: {stray[0]} goes with the number before it (90s, 10m)"
    if any(w in ("<=", ">=", "<", ">") or w.startswith(("<=", ">=")) for w in stray):
        return "a guardrail with spaces is one argument: quote it, --subject-to 'latency_ms <= 20'"
    if stray and stray[0].isidentifier():
        return f"name the metric with its direction: --maximize {stray[0]} or --minimize {stray[0]}"
    if stray and stray[0].isdigit():
        return f"the number of trials is -n {stray[0]}"
    return None


def _close_flags(magic: Any, words: list[str]) -> list[str]:
    """The magic's flags spelled nearly like the unknown ones in an argparse error (--maximise)."""
    import difflib

    parser = getattr(magic, "parser", None)
    options = [f for action in getattr(parser, "_actions", ()) for f in action.option_strings]
    flags = [f for f in options if f.startswith("--")]
    words = [w.rstrip(":,;").split("=", 1)[0] for w in words]  # ('--n=4')
    unknown = [w for w in words if w.startswith("--") and w not in flags]
    # '-maximize' with one dash is '--maximize'
    unknown += [
        "-" + w for w in words if w.startswith("-") and not w.startswith("--") and len(w) > 2 and w[1].isalpha()
    ]
    out: list[str] = []
    for w in dict.fromkeys(unknown):
        if w[1:] in options:  # '--n' for -n
            out.append(w[1:])
            continue
        started = [f for f in flags if f.startswith(w)]  # a prefix: '--sa' (argparse no longer guesses it)
        out += started[:3] if 0 < len(started) <= 3 else difflib.get_close_matches(w, flags, n=1, cutoff=0.75)
    return list(dict.fromkeys(out))


def _check_out(args: Any) -> None:
    if args.out and not args.out.isidentifier():
        raise UsageError(f"-o/--out takes a variable name; got {args.out!r}")


def _bind(shell: Any, args: Any, result: Any) -> Any:
    if args.out:
        shell.user_ns[args.out] = result
    return result


def _failed(shell: Any, args: Any, e: NbtuneError) -> UsageError:
    """The error's one line. A search stopped once it had begun (its first trials all failed, a
    lost cluster or database: ``e.result``) shows and binds the trials so far first, failed ones
    included, as an interrupted search does."""
    if e.result is not None:
        from IPython.display import display

        display(_bind(shell, args, e.result))
    return _report(e)


def _end(shell: Any, args: Any, result: Any) -> Any:
    """Bind the result; after an Interrupt, show it and end the cell with an error, so that
    Run All stops here as it does at any interrupted cell (one line, no traceback)."""
    _bind(shell, args, result)
    if not getattr(result, "interrupted", False):
        return result
    from IPython.display import display

    display(result)
    raise UsageError(
        f"interrupted: {result.n_finished} finished {'trial is' if result.n_finished == 1 else 'trials are'} kept in "
        f"{result.study.study_name!r}; "
        "re-run the cell to resume"
    )


def _cell_magic_usage(func: Any) -> Any:
    """``%%tune?`` shows ``%%tune [options]``: IPython's magic_arguments writes one ``%`` before the
    name it is given, whatever kind of magic it is."""
    func.argcmd_name = "%" + func.__name__
    return func


@magics_class
class TuneMagics(Magics):
    """The nbtune magics."""

    @magic_arguments()
    @magic_arguments_from_config
    @argument("-o", "--out", metavar="VAR", help="bind the result object to VAR.")
    @_cell_magic_usage
    @cell_magic
    def tune(self, line: str, cell: str) -> Any:
        """Turn this cell into a hyperparameter search; every trial is kept beside the notebook.

        Annotate simple assignments with ``# tune:`` comments; without the magic the cell is
        plain Python and runs with its defaults. Trial 0 runs the defaults (the baseline).

        Annotations (the arguments are Python literals)::

            lr = 1e-3        # tune: loguniform(1e-5, 1e-1)
            dropout = 0.2    # tune: uniform(0.0, 0.5)          (step= allowed)
            layers = 2       # tune: int(1, 4)                  (inclusive; step= allowed)
            hidden = 64      # tune: logint(16, 256)
            act = "relu"     # tune: choice("relu", "tanh", "gelu")
            for epoch in range(27):   # tune: epochs   (the budget axis; see below)
            seed = 0         # tune: seed        (not searched: fixed in the search, varied by --revalidate)
            fold = 0         # tune: folds(5)    (cross-validation: the cell runs once per fold, the mean counts)
            outer = 0        # tune: outer(5)    (nested CV: one search per outer fold; needs --holdout)
            model = Net()    # tune: state       (saved with each trial: res.best_state(); a cut trial resumes)

        Validation discipline: --revalidate K re-runs the top K configurations with --seeds S
        other seeds and picks the most stable (best lower end of the 95% interval); --holdout
        VAR seals a score on held-out data (its lines never run during the search; the chosen
        configuration is scored once, with a warning when the metric beats it by more than
        --holdout-gap); --subject-to 'VAR <= C' adds a guardrail; --record VARS keeps more
        variables per trial. res.revalidation(), res.holdout() and res.diagnose() (diverged,
        did not learn, over/underfitting) report on them.

        The metric (``--maximize NAME`` or ``--minimize NAME``) is that variable's value when
        the cell ends. With an epochs loop it is read after every epoch, and the default
        search is successive halving (ASHA) with pause-and-promote: trials are compared at
        rungs of r, r*eta, r*eta**2 ... epochs (the header shows them; by default r is where the
        -n configurations can fill every rung, see --min-epochs), only the top 1/eta of the
        trials that reached a rung go on, and the others pause, to go on later if more
        arrivals leave them in the top 1/eta. Each pause is explained ("trial 4 paused at
        epoch 3 (rung 0): val_acc 0.62 ranks 3 of 4, only the top 1 go on for now; ...").
        The configurations come from multivariate TPE fitted as BOHB fits its model (each
        configuration valued at the largest epoch enough of them reached). --stop-only
        stops instead of pausing; --scheduler hyperband, median, pbt or none changes the
        rule; --sampler random, gp, cmaes, qmc or grid the proposals. In the Optuna study a
        paused trial is PRUNED and its continuation a new trial with the same parameters; -n
        counts them as one configuration.

        Annotations are top-level with literal ranges, so the space is the same in every trial:
        for a conditional parameter, declare it at the top and read it under the condition
        (each trial still draws it). choice() takes the values themselves, not a list.

        Example::

            %%tune --trials 40 --maximize val_acc --seed 0
            lr = 1e-3          # tune: loguniform(1e-5, 1e-1)
            hidden = 64        # tune: logint(16, 256)
            act = "relu"       # tune: choice("relu", "tanh", "gelu")
            val_acc = train_and_score(lr, hidden, act)

        Trials read the notebook's globals but never rebind them (only ``--out`` and
        ``--apply`` do); one changed in place (``X -= 1``) is named after the search. The
        study lives in ``.nbtune/<name>.journal`` (Optuna journal storage): re-running the
        cell resumes it, a kernel restart loses no finished trial,
        ``nbtune.load_study(name)`` or ``optuna.load_study`` opens it, and
        ``optuna-dashboard .nbtune/<name>.journal`` browses it. When the cell's code, the
        notebook or the notebook data it reads changed since the study ran, a new version
        starts and the output says what changed (``--resume`` continues instead). Interrupt
        stops the search gracefully, keeps every finished trial, shows the partial result and
        ends the cell with one error line, so Run All stops there.

        The result (returned, and bound by ``--out``): ``.study`` (the optuna.Study),
        ``.best_params``, ``.best_value``, ``.chosen_params`` (the re-validation's pick, else
        the best), ``.best_state()`` (the saved model of ``# tune:
        state``), ``.n_finished``, ``.counts()``, ``.messages`` (the notes and what changed),
        ``.trials_dataframe()`` (pandas, with the stop reasons and errors), ``.decisions()``
        (why each trial stopped, as sentences), ``.diagnose()``, ``.revalidation()``,
        ``.holdout()``, ``.lineage()`` (PBT), ``.show()`` (the live dashboard again) and
        ``.plot(view)`` with view one of "overview", "learning curves", "slice", "contour",
        "parallel coordinates", "importance", "recorded", "EDF", "timeline", "lineage". With
        ``# tune: outer(k)`` the result is a NestedResult instead: ``.estimate()``,
        ``.frame()``, ``.summary()``, and ``.folds``, one such result per outer fold.
        ``%tune_show [NAME]`` shows a stored study again (after a restart, in another
        notebook; NAME:v2 a version); ``%tune_validate`` re-validates it: its top
        configurations with other seeds. From Python or a script, ``nbtune.tune(cell_source,
        maximize="val_acc", n_trials=40, ...)`` runs the same search (the options as keyword
        arguments).
        """
        args, cfg = self._config(line, cell)
        from nbtune._tune import tune

        try:
            with _plain_warnings():
                result = tune(cell, **vars(cfg))
        except NbtuneError as e:
            raise _failed(self.shell, args, e) from None
        return _end(self.shell, args, result)

    def _config(self, line: str, cell: str = "") -> tuple[Any, TuneConfig]:
        """The parsed line, and the search's options (the notebook's namespace, IPython syntax);
        for both ways a %%tune cell runs (run_cell_magic, and the kernel's async cell)."""
        _options_below(cell)
        args = _parse(self.tune, line)
        _check_out(args)
        shell = self.shell
        assert shell is not None  # magics are registered on a shell
        try:
            return args, config_from_args(args, user_ns=shell.user_ns, transform=_transformer(shell))
        except NbtuneError as e:
            raise _report(e) from None

    @magic_arguments()
    @argument(
        "name",
        nargs="?",
        help="the study name (as %%%%tune printed it); default: the only study in the store (with several, "
        "a table of them, one row per version, as nbtune.studies() gives it).",
    )
    @argument("--store", metavar="DIR", help="store folder; default .nbtune/ beside the notebook.")
    @argument("-o", "--out", metavar="VAR", help="bind the result object to VAR.")
    @argument(
        "--view",
        choices=("auto", "widget", "text", "none"),
        default="auto",
        help="auto (the live dashboard in a kernel; $NBTUNE_VIEW when set), widget, text (the static summary "
        "with its plot, which a notebook saved or executed headless keeps without widget state), or none (only "
        "-o's binding).",
    )
    @line_magic
    def tune_show(self, line: str) -> Any:
        """Show a stored study (trial table, stopped-early log, plots) without running trials.

        The name of a nested cross-validation (``# tune: outer(k)``) shows its outer folds'
        table (``NAME.outer`` when a plain search has the same name); ``NAME.outer0`` ... one
        outer fold's search.

        Example::

            %tune_show val_acc-3f9a2c
        """
        args = _parse(self.tune_show, line)
        _check_out(args)
        if args.name is None and not args.out:  # a store of several studies: what it holds, to pick one
            from nbtune.store.base import base_name, is_check_study
            from nbtune.store.journal import open_store
            from nbtune.view.listing import studies

            names = open_store(args.store, self.shell.user_ns if self.shell else None).study_names()
            if len({base_name(n) for n in names if not is_check_study(n)}) > 1:
                from IPython.display import display

                print("the store holds these studies; %tune_show NAME opens one (nbtune.studies() is this table):")
                display(studies(args.store))
                return
        result = self._stored(args)
        from IPython.display import display

        from nbtune.view.widgets import in_kernel

        _bind(self.shell, args, result)
        # shown wherever the magic sits in the cell: the live dashboard in a kernel, else the summary
        # (a nested cross-validation: its table of outer folds, as the cell showed it); the summary
        # too with --view text or NBTUNE_VIEW=text (a report executed headless kept 200 kB of widget
        # state per %tune_show; found trying nbtune as a new user)
        view = args.view if args.view != "auto" else os.environ.get("NBTUNE_VIEW", "auto").strip().lower()
        if view != "none":
            live = in_kernel() and hasattr(result, "show") and view in ("auto", "widget")
            display(result.show() if live else result)
        return _shown_once(self.shell, result, "tune_show")

    def _stored(self, args: Any, nested: bool = True) -> Any:
        """The stored study ``args.name`` as a result that can re-run its cell in this notebook
        (with ``nested``, a nested cross-validation's outer folds as one result). nbtune's warnings
        (several versions of the name) are one line, not a line of nbtune's source."""
        with _plain_warnings("%tune_show" if nested else "%tune_validate"):
            return self._stored_result(args, nested)

    def _stored_result(self, args: Any, nested: bool) -> Any:
        from nbtune._tune import stored_nested, stored_result
        from nbtune.store.base import CHECK_SUFFIX, OUTER, base_name, is_check_study
        from nbtune.store.journal import load_study, open_store

        shell = self.shell
        assert shell is not None
        store = open_store(args.store, shell.user_ns)
        name = args.name
        # NAME.outer: the nested cross-validation named NAME, even where a plain search has its name
        asked_nested = nested and name is not None and name.endswith(OUTER)
        if asked_nested:
            name = name[: -len(OUTER)]
        bases = {base_name(n) for n in store.study_names()} if name is not None else set()
        plain = name is not None and base_name(name) in bases  # a plain search of that name
        nested_too = name is not None and any(b.startswith(base_name(name) + OUTER) for b in bases)
        if nested and (asked_nested or not plain):
            folds = stored_nested(name, store, shell.user_ns, _transformer(shell))
            if folds is not None:
                return folds
            if asked_nested:
                raise UsageError(f"no nested cross-validation named {name!r} in {store.location(name)}")
        try:
            study = load_study(name, store=args.store)
        except KeyError as e:
            raise UsageError(str(e.args[0])) from None
        result = stored_result(study, store, shell.user_ns, _transformer(shell))
        if nested and plain and nested_too:  # (the plain search hid it, or it the plain one)
            result.messages.append(
                f"{base_name(name)!r} also names a nested cross-validation (a cell with '# tune: outer(k)' that tunes "
                f"the same names for the same metric): %tune_show {base_name(name)}{OUTER} shows its outer folds"
            )
        if name is not None and is_check_study(name):  # (its "best" is one lucky seed's: found trying nbtune)
            searched = name.removesuffix(CHECK_SUFFIX)
            result.messages.insert(
                0,
                f"{name!r} holds the checks of {searched!r}: re-validation runs (a configuration with one seed each) "
                f"and holdout runs, not a search; its best trial is one seed's luck. %tune_show {searched} compares "
                "them per configuration (res.revalidation())",
            )
        return result

    @magic_arguments()
    @argument("name", nargs="?", help="the study name (as %%%%tune printed it); default: the only study in the store.")
    @argument("--top", type=int, default=3, metavar="K", help="re-validate the K best configurations. Default 3.")
    @argument("--seeds", type=int, default=5, metavar="S", help="seeds per configuration. Default 5.")
    @argument("-j", "--jobs", type=int, default=1, metavar="N", help="parallel workers; -1 = all cores. Default 1.")
    @argument("--backend", default="auto", metavar="B", help="auto, threading, loky, dask or ray.")
    @argument("--store", metavar="DIR", help="store folder; default .nbtune/ beside the notebook.")
    @argument("-o", "--out", metavar="VAR", help="bind the result object to VAR.")
    @line_magic
    def tune_validate(self, line: str) -> Any:
        """Re-validate a stored study: re-run its top configurations with other seeds.

        The study's cell must mark its seed variable (``seed = 0  # tune: seed``); the runs use
        the notebook's current variables (data, functions), are kept with the study (in
        ``NAME@check``) and are never run twice, so the magic can be re-run after an Interrupt.
        Shows per configuration the mean, standard deviation and 95% confidence interval over
        seeds, the rank change against the search, and the most stable choice.

        Example::

            %tune_validate val_acc-3f9a2c --top 3 --seeds 5
        """
        args = _parse(self.tune_validate, line)
        _check_out(args)
        for option, value in (("--top", args.top), ("--seeds", args.seeds)):  # (not %%tune's words for them)
            if value < 1:
                what = "of the study's best configurations to re-run" if option == "--top" else "seeds to run each with"
                raise UsageError(f"{option} takes how many {what}, 1 or more; got {value}")
        result = self._stored(args, nested=False)
        try:
            result.revalidate(top=args.top, seeds=args.seeds, n_jobs=args.jobs, backend=args.backend)
        except NbtuneError as e:
            raise _report(e) from None
        _bind(self.shell, args, result)
        return _end(self.shell, args, result)


async def run_async(line: str, cell: str) -> Any:
    """What a ``%%tune`` cell becomes in a kernel: the search, awaited."""
    from IPython.core.getipython import get_ipython

    shell = get_ipython()
    if shell is None:  # the input transformer only rewrites cells inside a running IPython
        raise UsageError("%%tune runs inside IPython or a Jupyter kernel; use nbtune.tune() elsewhere")
    magics = shell.magics_manager.registry["TuneMagics"]
    # As run_cell_magic would: {var} and $var in the %%tune line take notebook values.
    args, cfg = magics._config(shell.var_expand(line), cell)
    from nbtune._tune import tune_async

    try:
        with _plain_warnings():
            result = await tune_async(cell, **vars(cfg))
    except NbtuneError as e:
        raise _failed(shell, args, e) from None
    return _end(shell, args, result)


def _async_rewrite(lines: list[str]) -> list[str]:
    """Input transformer: a ``%%tune`` cell becomes ``await nbtune._magics.run_async(...)``."""
    if not lines:
        return lines
    first = lines[0]
    if not first.startswith("%%tune") or first.rstrip().endswith("?"):
        return lines
    rest = first[len("%%tune") :]
    if rest and not rest[0].isspace():
        return lines  # another magic whose name starts with "tune"
    from IPython.core.getipython import get_ipython

    shell = get_ipython()
    if shell is None or getattr(shell, "kernel", None) is None or not shell.autoawait:
        return lines
    if not is_asyncio_runner(shell) or _inside_another_cell_magic():
        return lines
    body = "".join(lines[1:])
    return [f"await __import__('nbtune._magics', fromlist=['run_async']).run_async({rest.strip()!r}, {body!r})\n"]


def _inside_another_cell_magic() -> bool:
    """The cell is the body of another cell magic (``%%time``, ``%%timeit``, ``%%capture`` above
    ``%%tune``), which transforms and runs it itself: synchronously, so it cannot await. Its
    ``%%tune`` then runs as a plain magic call (the kernel stays busy until the search ends); the
    awaiting form raised "'await' outside function" or "This event loop is already running"
    (found trying nbtune as a new user)."""
    import sys

    frame: Any = sys._getframe(1)
    for _ in range(40):
        if frame is None:
            return False
        if frame.f_code.co_name == "run_cell_magic":
            return True
        frame = frame.f_back
    return False


def _misplaced(line: str) -> None:
    """``%%tune`` below the cell's first line: IPython reads it as a line magic named ``%tune``."""
    raise UsageError(
        "%%tune must be the first line of the cell: a comment, blank line or import above it makes IPython read it "
        "as a line magic; move it to the top (comments can go below it)"
    )


# An option's prefix is not that option: '--n 4' was read as '--name 4' (found trying nbtune as a new
# user). IPython's parser takes no allow_abbrev; argparse reads the attribute when it parses.
for _magic in (TuneMagics.tune, TuneMagics.tune_show, TuneMagics.tune_validate):
    _magic.parser.allow_abbrev = False


def load(shell: Any) -> None:
    from nbtune.store.journal import remember_loaded_in

    remember_loaded_in()
    shell.register_magics(TuneMagics)
    shell.register_magic_function(_misplaced, "line", "%tune")
    cleanup = shell.input_transformer_manager.cleanup_transforms
    if _async_rewrite not in cleanup:
        cleanup.append(_async_rewrite)


def unload(shell: Any) -> None:
    cleanup = shell.input_transformer_manager.cleanup_transforms
    if _async_rewrite in cleanup:
        cleanup.remove(_async_rewrite)
