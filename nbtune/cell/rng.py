"""The process's shared random generators, carried with a trial across a pause or a cut.

A cell that draws from a shared generator (PyTorch's dropout and weight initialisation,
``np.random``, ``random``) after seeding it (``torch.manual_seed(seed)``) is reproducible when
it runs straight through. A trial that pauses and goes on later, or is cut and resumed, would
otherwise continue from whatever state the other trials left the generators in, or from the
start again when its code before the loop re-seeds them: it would not be the model a straight
run of its configuration trains. Their states are saved with the trial's variables (in the
worker's memory or in its checkpoint) under :data:`KEY` and restored when the epochs loop goes
on, after the code before the loop ran again.

Only generators already imported are saved (nbtune never imports numpy or torch for this);
a CUDA generator only if CUDA is in use. Under ``--backend threading`` the trials of a process
share these generators, so there the restored state is only as good as the sharing allows.
"""

from __future__ import annotations

import random
import sys
from collections.abc import Iterable
from typing import Any

__all__ = ["KEY", "capture", "is_generator", "restore"]

KEY = "__nbtune_rng__"

# NumPy's generators and bit generators, and PyTorch's (by module: a GAN's model class called
# Generator is a model, not a generator)
_GENERATOR_TYPES = {"Generator", "RandomState", "BitGenerator", "PCG64", "PCG64DXSM", "MT19937", "Philox", "SFC64"}


def is_generator(value: Any) -> bool:
    """A random generator object a cell made (``np.random.default_rng(seed)``, ``random.Random``,
    ``torch.Generator()``): its state moves on with every draw. The one place nbtune decides it:
    the data fingerprint takes such a variable by its type, and an epoch's checkpoint keeps it."""
    kind = type(value)
    return isinstance(value, random.Random) or (
        kind.__name__ in _GENERATOR_TYPES and kind.__module__.split(".")[0] in ("numpy", "torch")
    )


def _loader_generators(loader: Any) -> list[Any]:
    """The ``torch.Generator`` objects a PyTorch ``DataLoader`` shuffles and seeds its workers
    with (its own, its sampler's, its batch sampler's sampler's; each once)."""
    if not any(c.__name__ == "DataLoader" and c.__module__.startswith("torch.") for c in type(loader).__mro__):
        return []
    sampler = getattr(loader, "sampler", None)
    inner = getattr(getattr(loader, "batch_sampler", None), "sampler", None)
    out: list[Any] = []
    for g in (
        getattr(loader, "generator", None),
        getattr(sampler, "generator", None),
        getattr(inner, "generator", None),
    ):
        if callable(getattr(g, "get_state", None)) and all(g is not h for h in out):
            out.append(g)
    return out


def capture(ns: dict[str, Any] | None = None, names: Iterable[str] = ()) -> dict[str, Any]:
    """The states of the shared generators loaded in this process; and of the generators of the data
    loaders among ``names`` in ``ns`` (the variables one epoch hands to the next): a loader made
    with ``generator=torch.Generator().manual_seed(seed)`` holds the only reference to it, so a
    trial that went on from a pause or a cut made the loader again, and shuffled from the seed
    again, not as a straight run goes on (found trying nbtune as a new user)."""
    state: dict[str, Any] = {"random": random.getstate()}
    if ns is not None:
        loaders = {n: [g.get_state() for g in gens] for n in names if (gens := _loader_generators(ns.get(n)))}
        if loaders:
            state["loaders"] = loaders
    np = sys.modules.get("numpy")
    if np is not None:
        state["numpy"] = np.random.get_state()
    torch = sys.modules.get("torch")
    if torch is not None:
        state["torch"] = torch.get_rng_state()
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore(state: dict[str, Any], ns: dict[str, Any] | None = None) -> None:
    """Set the shared generators back to ``state`` (those it has and this process loaded), and the
    generators of the data loaders in ``ns`` that it has (made again by the code before the loop)."""
    for name, saved in state.get("loaders", {}).items():
        gens = _loader_generators((ns or {}).get(name))
        if len(gens) == len(saved):
            for g, s in zip(gens, saved, strict=True):
                g.set_state(s)
    if "random" in state:
        random.setstate(state["random"])
    np = sys.modules.get("numpy")
    if np is not None and "numpy" in state:
        np.random.set_state(state["numpy"])
    torch = sys.modules.get("torch")
    if torch is not None and "torch" in state:
        torch.set_rng_state(state["torch"])
        if "cuda" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda"])
