"""A named registry of plug-ins (samplers, schedulers, backends, views, annotation kinds).

Each extension point of nbtune is one :class:`Registry`: adding a plug-in is one
``register`` call, and an unknown name fails with the option's name and every valid choice.
"""

from __future__ import annotations

from typing import Generic, TypeVar

from nbtune.exceptions import ConfigError

__all__ = ["Registry"]

T = TypeVar("T")


class Registry(dict[str, T], Generic[T]):
    """``name -> plug-in``, in registration order.

    Args:
        option: how users choose a plug-in, for error messages (``"--sampler"``).
    """

    def __init__(self, option: str, hints: dict[str, str] | None = None, aliases: dict[str, str] | None = None) -> None:
        super().__init__()
        self.option = option
        self.hints = hints or {}  # a name that is not a plug-in (or part of one) -> what to do instead
        self.aliases = aliases or {}  # another library's word (in a class name) -> the plug-in's name

    def register(self, name: str, item: T) -> T:
        """Make ``item`` available as ``name`` (replacing a plug-in of that name)."""
        self[name] = item
        return item

    def choices(self) -> list[str]:
        return list(self)

    def lookup(self, name: str) -> T:
        """The plug-in called ``name``.

        Raises:
            ConfigError: no such plug-in; the message lists the choices.
        """
        if not isinstance(name, str) or name not in self:
            raise self.unknown(name)
        return self[name]

    def unknown(self, name: object) -> ConfigError:
        """The error for a name that is not among the choices: an object passed for its name (an
        Optuna pruner, or its text through ``$var`` in a magic: 'tpesampler') is told the name."""
        choices = f"{self.option} must be one of {', '.join(self.choices())}"
        if not isinstance(name, str):
            kind = type(name).__name__
            return ConfigError(f"{self.option} takes a name, not a {kind} object{self._use(kind)}")
        hint = next((h for key, h in self.hints.items() if key in name.lower()), None)
        if hint is None and (name.lower().endswith(("sampler", "pruner")) or "(" in name):
            return ConfigError(f"{choices}; got {name!r}: it takes a name{self._use(name)}")
        return ConfigError(f"{choices}; got {name!r}" + (f": {hint}" if hint else ""))

    def _use(self, text: str) -> str:
        """``": use 'median'"`` for a class name or its text that holds one of the choices."""
        folded = text.lower().replace("_", "")
        named = [c for word, c in self.aliases.items() if word in folded]
        named += [c for c in self.choices() if c != "none" and c in folded]
        named = [c for c in named if not any(c != d and c in d for d in named)]  # 'tpe' beside 'tpesampler'
        return f": use {named[0]!r} (nbtune makes it itself; its settings are not taken)" if named else ""
