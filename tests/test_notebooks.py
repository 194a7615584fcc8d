"""Every tutorial notebook runs end to end, headless, in the environment .ci/setup builds
from the Binder spec, and its outputs are sensible."""

from __future__ import annotations

import shutil
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import nbformat
import pytest

NOTEBOOKS = sorted((Path(__file__).parent.parent / "notebooks").glob("*.ipynb"))
# the longest first, so that two at a time end together (measured: about 50, 40, 35, 30 s for these)
_FIRST = ("03_parallel", "05_pytorch", "02_hyperband", "07_checkpoints_and_pbt")


def _execute(path: Path, work: Path) -> nbformat.NotebookNode:
    import nbclient

    shutil.copytree(path.parent, work, ignore=shutil.ignore_patterns(".nbtune", ".ipynb_checkpoints"))
    nb = nbformat.read(work / path.name, as_version=4)
    nbclient.NotebookClient(
        nb, timeout=300, kernel_name="python3", store_widget_state=True, resources={"metadata": {"path": str(work)}}
    ).execute()
    return nb


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    """Every notebook executed, two at a time, each in its own kernel and its own copy of the folder:
    most of their cells keep one core busy, and one at a time left the other idle (CI's budget)."""
    order = sorted(NOTEBOOKS, key=lambda p: (p.stem not in _FIRST, _FIRST.index(p.stem) if p.stem in _FIRST else 0))
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures: dict[str, Future[nbformat.NotebookNode]] = {
            p.stem: pool.submit(_execute, p, tmp_path_factory.mktemp(p.stem) / "notebooks") for p in order
        }
        yield futures


@pytest.mark.slow
@pytest.mark.timeout(900)  # (it may wait for the notebooks ahead of its own)
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs(path, executed):
    nb = executed[path.stem].result()
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if o["output_type"] == "error"]
    assert not errors, errors
    results = [
        o
        for c in nb.cells
        if c.cell_type == "code"
        for o in c.get("outputs", [])
        if o["output_type"] == "execute_result" and "nbtune study" in o["data"].get("text/plain", "")
    ]
    assert results, "no %%tune result was displayed"
    for o in results:
        # a widget for live front ends, and fallbacks for GitHub / nbconvert
        assert "text/html" in o["data"] and "trials finished" in o["data"]["text/plain"]
    assert len(nbformat.writes(nb)) < 2_000_000
