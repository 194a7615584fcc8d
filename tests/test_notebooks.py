"""Every tutorial notebook runs end to end, headless, in the environment .ci/setup builds
from the Binder spec, and its outputs are sensible."""

from __future__ import annotations

import shutil
from pathlib import Path

import nbformat
import pytest

NOTEBOOKS = sorted((Path(__file__).parent.parent / "notebooks").glob("*.ipynb"))


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs(path, tmp_path):
    import nbclient

    work = tmp_path / "notebooks"
    shutil.copytree(path.parent, work, ignore=shutil.ignore_patterns(".nbtune", ".ipynb_checkpoints"))
    nb = nbformat.read(work / path.name, as_version=4)
    nbclient.NotebookClient(
        nb, timeout=300, kernel_name="python3", store_widget_state=True, resources={"metadata": {"path": str(work)}}
    ).execute()
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
