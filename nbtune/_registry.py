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

    def __init__(self, option: str) -> None:
        super().__init__()
        self.option = option

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
        """The error for a name that is not among the choices."""
        return ConfigError(f"{self.option} must be one of {', '.join(self.choices())}; got {name!r}")
