"""Views by name: ``tune(view="auto" | "widget" | "text")``, and :func:`register_view` for more."""

from __future__ import annotations

from nbtune.exceptions import ConfigError
from nbtune.view.base import ViewFactory
from nbtune.view.text import TextView
from nbtune.view.widgets import auto_view, widget_view

__all__ = ["VIEWS", "register_view", "view_factory"]

VIEWS: dict[str, ViewFactory] = {"auto": auto_view, "widget": widget_view, "text": TextView}


def register_view(name: str, factory: ViewFactory) -> ViewFactory:
    """Make ``view=name`` use ``factory`` (``(run: RunInfo, search: Search) -> BaseView``)."""
    VIEWS[name] = factory
    return factory


def view_factory(view: str | ViewFactory | None) -> ViewFactory | None:
    """The factory for ``tune(view=...)``: a registered name, a callable, or None (no view).

    Raises:
        ConfigError: an unknown name.
    """
    if view is None or callable(view):
        return view
    factory = VIEWS.get(view)
    if factory is None:
        raise ConfigError(f"view must be one of {', '.join(repr(v) for v in VIEWS)}, a factory, or None; got {view!r}")
    return factory
