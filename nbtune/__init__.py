"""nbtune: hyperparameter tuning native to the Jupyter notebook.

Add ``%load_ext nbtune``, put ``%%tune --maximize val_acc`` on a training cell and
``# tune:`` comments on its hyperparameters; the cell becomes an Optuna study kept in
``.nbtune/`` beside the notebook. :func:`tune` is the same search as a plain function.

Heavy libraries (optuna, pandas, matplotlib, ipywidgets) are imported on first use,
so ``import nbtune`` and ``%load_ext nbtune`` stay fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from nbtune.exceptions import (
    AnnotationError,
    CellError,
    ConfigError,
    NbtuneError,
    NbtuneWarning,
    StoreError,
    StudyNotFound,
    TrialsFailedError,
)

if TYPE_CHECKING:
    from nbtune._config import TuneConfig
    from nbtune._tune import load_result, tune, tune_async
    from nbtune.store.journal import Store, load_study
    from nbtune.view.base import BaseView, RunInfo
    from nbtune.view.compare import compare
    from nbtune.view.listing import studies
    from nbtune.view.result import TuneResult

__version__ = "0.1.0"

__all__ = [
    "tune",
    "tune_async",
    "load_study",
    "load_result",
    "studies",
    "compare",
    "TuneResult",
    "TuneConfig",
    "Store",
    "BaseView",
    "RunInfo",
    "NbtuneError",
    "AnnotationError",
    "CellError",
    "ConfigError",
    "StoreError",
    "StudyNotFound",
    "TrialsFailedError",
    "NbtuneWarning",
    "load_ipython_extension",
    "unload_ipython_extension",
    "__version__",
]

_LAZY = {
    "tune": "nbtune._tune",
    "tune_async": "nbtune._tune",
    "load_study": "nbtune.store.journal",
    "load_result": "nbtune._tune",
    "studies": "nbtune.view.listing",
    "compare": "nbtune.view.compare",
    "Store": "nbtune.store.journal",
    "TuneResult": "nbtune.view.result",
    "TuneConfig": "nbtune._config",
    "BaseView": "nbtune.view.base",
    "RunInfo": "nbtune.view.base",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'nbtune' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext nbtune``: register ``%%tune``, ``%tune_show`` and ``%tune_validate``."""
    from nbtune._magics import load

    load(ipython)


def unload_ipython_extension(ipython: Any) -> None:
    from nbtune._magics import unload

    unload(ipython)
