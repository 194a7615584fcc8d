"""Views by name: ``tune(view="auto" | "widget" | "text")``, and :func:`register_view` for more."""

from __future__ import annotations

import os

from nbtune._registry import Registry
from nbtune.view.base import ViewFactory
from nbtune.view.text import TextView
from nbtune.view.widgets import auto_view, widget_view

__all__ = ["VIEWS", "register_view", "view_factory"]

VIEWS: Registry[ViewFactory] = Registry("--view")


def register_view(name: str, factory: ViewFactory) -> ViewFactory:
    """Make ``view=name`` use ``factory`` (``(run: RunInfo, search: Search) -> BaseView``)."""
    return VIEWS.register(name, factory)


register_view("auto", auto_view)
register_view("widget", widget_view)
register_view("text", TextView)
register_view("none", lambda run, search: None)  # type: ignore[arg-type,return-value]  # (silent)


def view_factory(view: str | ViewFactory | None) -> ViewFactory | None:
    """The factory for ``tune(view=...)``: a registered name, a callable, or None (no view).

    Raises:
        ConfigError: an unknown name.
    """
    if view is None or callable(view):
        return view
    view = view.strip().lower() if isinstance(view, str) else view
    if view == "auto" and os.environ.get("NBTUNE_VIEW"):  # e.g. text for every run of a notebook executed headless
        view = os.environ["NBTUNE_VIEW"].strip().lower()
    return VIEWS.lookup(view)
