"""The view contract: what a live view of a running search is given, and what it must do.

``tune(..., view=...)`` takes a name (``"auto"``, ``"widget"``, ``"text"``) or a factory
``(run: RunInfo, search: Search) -> BaseView``. The driver creates the view after the
study is prepared and before the workers start, calls :meth:`BaseView.update` from the
kernel's main thread about ten times a second while trials run, and :meth:`BaseView.close`
once at the end. Views only read: the study, the result, and the search's control flags
(which their buttons may set).
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import optuna

    from nbtune.cell.program import CellProgram
    from nbtune.run.coordinator import Search
    from nbtune.run.schedulers import SchedulerSpec
    from nbtune.view.result import TuneResult

__all__ = ["BaseView", "RunInfo", "ViewFactory"]


@dataclass(frozen=True)
class RunInfo:
    """What a view knows about the run it shows.

    Attributes:
        study: the study (read it; never write).
        metric: the metric's variable name; direction: ``"maximize"`` or ``"minimize"``.
        sampler: the sampler's name; scheduler: how trials are stopped early.
        program: the compiled cell (its parameters are ``program.params``).
        n_jobs: the number of workers; backend: where they run.
        notes: what nbtune found before the first trial (a tuned variable the cell never reads, a
            resumed study or a new version, state built afresh): shown as the run starts, not
            only in the summary after it.
    """

    study: optuna.Study
    metric: str
    direction: str
    sampler: str
    scheduler: SchedulerSpec
    program: CellProgram
    n_jobs: int = 1
    backend: str = "inline"
    notes: tuple[str, ...] = ()


class BaseView(abc.ABC):
    """A live view of one search.

    Contract:
        * :meth:`update` is called about ten times a second while trials run; it throttles
          itself (redraw at most a few times a second) and must not raise.
        * :meth:`close` is called exactly once, with the final result; ``handover`` is False
          when the search ends in an error and no result will be displayed.
        * :attr:`widget`: the ipywidget the view draws into (what ``res.show()`` returns), or
          None for a view without one. The result's own display never embeds it, so saved
          notebooks reopen without needing the kernel's widget models.
    """

    widget: Any = None

    @abc.abstractmethod
    def update(self) -> None: ...

    def close(self, result: TuneResult, handover: bool = True) -> None:
        """The search ended: draw the final state."""


ViewFactory = Callable[["RunInfo", "Search"], BaseView]
