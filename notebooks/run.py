"""Execute a tutorial notebook headless (as CI and Binder users run it) and print its results.

    python notebooks/run.py notebooks/01_quickstart.ipynb [--out executed.ipynb]

The kernel starts in the notebook's folder, so its store is ``notebooks/.nbtune/``.
Prints every cell's text output; exits non-zero if a cell raised.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import nbclient
import nbformat


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("notebook", type=Path)
    ap.add_argument("--out", type=Path, help="also save the executed notebook here")
    ap.add_argument("--timeout", type=int, default=600, help="seconds per cell")
    args = ap.parse_args()
    nb = nbformat.read(args.notebook, as_version=4)
    client = nbclient.NotebookClient(
        nb,
        timeout=args.timeout,
        kernel_name="python3",
        store_widget_state=True,
        resources={"metadata": {"path": str(args.notebook.parent.resolve())}},
    )
    t0 = time.perf_counter()
    failed = False
    try:
        client.execute()
    except nbclient.exceptions.CellExecutionError as e:
        print(e, file=sys.stderr)
        failed = True
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        for out in cell.get("outputs", []):
            text = out.get("text") or out.get("data", {}).get("text/plain")
            if text and text.strip():
                print(f"[{i}] {text.rstrip()}")
    print(
        f"\n{args.notebook.name}: executed in {time.perf_counter() - t0:.1f} s" + (" with an error" if failed else "")
    )
    if args.out:
        nbformat.write(nb, args.out)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
