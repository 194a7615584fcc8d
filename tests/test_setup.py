"""The environment is the pinned one: what CI passed with is what a fresh machine gets."""

from __future__ import annotations

import os
from importlib import metadata
from pathlib import Path

import pytest
from packaging.markers import Marker
from packaging.utils import canonicalize_name

ROOT = Path(__file__).parent.parent


def _pins(path: Path) -> dict[str, str]:
    """name -> version for the lines of a pip-compile output that apply to this interpreter."""
    out = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith(("#", "-")):
            continue
        req, _, marker = line.partition(";")
        if marker.strip() and not Marker(marker.strip()).evaluate():
            continue
        name, _, version = req.strip().partition("==")
        out[canonicalize_name(name.split("[")[0])] = version.strip()
    return out


@pytest.mark.skipif(bool(os.environ.get("NBTUNE_UNPINNED")), reason=".ci/latest runs against the newest releases")
def test_installed_versions_are_the_pinned_ones():
    pins = _pins(ROOT / "requirements" / "ci.txt")
    assert len(pins) > 100
    wrong = {}
    for name, version in pins.items():
        try:
            installed = metadata.version(name)
        except metadata.PackageNotFoundError:
            wrong[name] = (version, "not installed")
            continue
        if installed != version:
            wrong[name] = (version, installed)
    assert not wrong, f"not the pinned versions (pinned, installed): {wrong}; run bash .ci/setup"


def test_binder_pins_agree_with_ci():
    ci = _pins(ROOT / "requirements" / "ci.txt") | _pins(ROOT / "requirements" / "torch.txt")
    binder = {n: v.removesuffix("+cpu") for n, v in _pins(ROOT / "binder" / "requirements.txt").items()}
    assert {"optuna", "ipywidgets", "jupyterlab", "ipykernel"} <= set(binder)
    differ = {n: (v, ci.get(n)) for n, v in binder.items() if ci.get(n) != v}
    assert not differ, f"binder/requirements.txt and requirements/ci.txt disagree: {differ}; run bash .ci/lock"


@pytest.mark.skipif(bool(os.environ.get("NBTUNE_UNPINNED")), reason=".ci/latest runs against the newest releases")
def test_torch_is_the_pinned_cpu_build():
    """PyTorch comes apart from the lock (requirements/torch.txt): its pins, and no CUDA."""
    torch = pytest.importorskip("torch")
    pins = _pins(ROOT / "requirements" / "torch.txt")
    installed = {name: metadata.version(name).split("+")[0] for name in pins}
    assert installed == pins, "run bash .ci/setup"
    assert torch.version.cuda is None, "a CUDA build of torch: several GB where the CPU build does"
    binder = (ROOT / "binder" / "requirements.txt").read_text()
    assert f"torch=={pins['torch']}+cpu" in binder and "https://download.pytorch.org/whl/cpu" in binder
