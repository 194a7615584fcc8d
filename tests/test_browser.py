"""The dashboard for a person: JupyterLab and Notebook 7 in Debian's Chromium through Playwright.

Runs a notebook with a %%tune cell of slow trials, watches rows appear and change while
trials run, finds a stopped trial with its reason, presses "+ trials" and Stop while the
cell runs, and checks that the search stopped early, its finished trials were kept, the
next cell of Run All saw the result, ``res.show()`` brings the dashboard back, and the saved
notebook, reopened with a new kernel, shows the results (not "model not found").
Saves screenshots in tests/artifacts/.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import nbformat
import pytest

playwright = pytest.importorskip("playwright.sync_api")
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not os.path.exists(CHROMIUM), reason="Debian's chromium is not installed (.ci/setup installs it)"
    ),
]

TOKEN = "nbtune-e2e"
CHROME_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]
KERNEL = "window.jupyterapp?.shell.currentWidget?.sessionContext?.session?.kernel"
ARTIFACTS = Path(__file__).parent / "artifacts"

CELLS = [
    "%load_ext nbtune",
    "import time\n\ndef learn(q, epoch):\n    time.sleep(0.12)\n    return q * (1 - 0.6 ** (epoch + 1))",
    "%%tune --trials 60 --maximize acc --seed 0 --sampler random -o res\n"
    "q = 0.5            # tune: uniform(0.0, 1.0)\n"
    "width = 16         # tune: logint(4, 256)\n"
    "for epoch in range(9):   # tune: epochs\n"
    "    acc = learn(q, epoch) + 0.002 * width ** 0.5\n",
    "after = (res.n_finished, sum(t.state.name == 'RUNNING' for t in res.study.trials), res.n_trials)\nafter",
    "res.show()",
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


APPS = {
    # app: (python -m module, app-specific options, path of a notebook)
    "jupyterlab": (
        "jupyterlab",
        ["--LabApp.expose_app_in_browser=True", "--LabApp.news_url=None", "--LabApp.extension_manager=readonly"],
        "lab/tree",
    ),
    "notebook7": ("notebook", ["--JupyterNotebookApp.expose_app_in_browser=True"], "notebooks"),
}


@pytest.fixture(scope="module", params=sorted(APPS))
def lab(request, tmp_path_factory):
    module, options, tree = APPS[request.param]
    pytest.importorskip(module)
    root = tmp_path_factory.mktemp(request.param)
    nb = nbformat.v4.new_notebook(
        cells=[nbformat.v4.new_code_cell(c) for c in CELLS],
        metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
    )
    nbformat.write(nb, root / "search.ipynb")
    settings = root / ".settings" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True)
    (settings / "notification.jupyterlab-settings").write_text('{"fetchNews": "false"}')
    env = dict(
        os.environ,
        JUPYTER_RUNTIME_DIR=str(root / ".rt"),
        JUPYTERLAB_SETTINGS_DIR=str(root / ".settings"),
        JUPYTERLAB_WORKSPACES_DIR=str(root / ".ws"),
    )
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            module,
            "--no-browser",
            "--allow-root",
            "--ServerApp.ip=127.0.0.1",
            f"--ServerApp.port={port}",
            "--ServerApp.port_retries=0",
            f"--IdentityProvider.token={TOKEN}",
            f"--ServerApp.root_dir={root}",
            *options,
        ],
        env=env,
        cwd=root,
        stdout=open(root / "server.log", "wb"),  # noqa: SIM115 - the server writes to it until it stops
        stderr=subprocess.STDOUT,
    )
    t0 = time.time()
    try:
        while True:
            assert proc.poll() is None, (root / "server.log").read_text()
            assert time.time() - t0 < 90, "JupyterLab did not start"
            try:
                urllib.request.urlopen(f"{base}/api/status?token={TOKEN}", timeout=1)
                break
            except OSError:
                time.sleep(0.2)
        yield base, root, tree, request.param
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def page():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROME_ARGS)
        yield browser.new_page(viewport={"width": 1400, "height": 1000})
        browser.close()


def _kernel_expr(page, expr):
    return page.evaluate(
        f"""async (expr) => {{
        const f = {KERNEL}.requestExecute({{code: '', silent: true, store_history: false, user_expressions: {{x: expr}}}});
        const r = (await f.done).content.user_expressions.x;
        return r.status === 'ok' ? r.data['text/plain'] : r.ename + ': ' + r.evalue; }}""",
        expr,
    )


def _states(page):
    return page.eval_on_selector_all(
        ".nbtune-trials tr.nbtune-row", "rows => rows.map(r => r.dataset.trial + ':' + r.dataset.state)"
    )


def test_live_table_decisions_and_stop_while_trials_run(lab, page):
    from playwright.sync_api import expect

    base, root, tree, app = lab
    page.goto(f"{base}/{tree}/search.ipynb?token={TOKEN}&reset")
    page.wait_for_function(f"() => {KERNEL}?.status === 'idle'", timeout=90_000)
    page.evaluate("() => { window.jupyterapp.commands.execute('notebook:run-all-cells'); }")

    view = page.locator(".nbtune-view")
    expect(view).to_be_visible(timeout=60_000)
    expect(page.locator(".nbtune-trials tr.nbtune-row").first).to_be_visible(timeout=30_000)
    first = _states(page)
    # rows appear and change while the cell is still running
    page.wait_for_function(
        "(first) => { const now = [...document.querySelectorAll('.nbtune-trials tr.nbtune-row')]"
        ".map(r => r.dataset.trial + ':' + r.dataset.state); return now.join() !== first.join() && now.length >= 3; }",
        arg=first,
        timeout=30_000,
    )
    assert page.locator(".nbtune-trials tr[data-state=running]").count() >= 1
    # a paused trial (successive halving's default), with its reason as the state's tooltip and in
    # the decisions tab
    pruned = page.locator(".nbtune-trials tr[data-state=paused] span[title*='paused at epoch']").first
    expect(pruned).to_be_attached(timeout=60_000)
    page.locator(".lm-TabBar-tab", has_text="Stopped").click()  # "Stopped/paused (N)" while trials pause
    decision = page.locator(".nbtune-decision").first
    expect(decision).to_contain_text("paused at epoch")
    expect(decision).to_contain_text("only the top")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"browser_decisions_{app}.png"), full_page=True)
    page.locator(".lm-TabBar-tab", has_text="Trials").click()
    page.screenshot(path=str(ARTIFACTS / f"browser_running_{app}.png"), full_page=True)

    # "+ trials" is handled while the cell runs
    page.locator(".nbtune-more-n input").fill("5")
    page.locator(".nbtune-more").click()
    expect(page.locator(".nbtune-status")).to_contain_text("/65 finished", timeout=10_000)

    # Stop: no new trials; the running one finishes; the cell ends early
    t_click = time.time()
    page.locator(".nbtune-stop").click()
    # the live dashboard gives way to the static result, which renders after a reopen too
    summary = page.locator(".jp-OutputArea-output .nbtune-summary").first
    expect(summary).to_be_visible(timeout=20_000)
    stopped_in = time.time() - t_click
    expect(summary).to_contain_text("stopped by the user")
    page.wait_for_function(f"() => {KERNEL}?.status === 'idle'", timeout=30_000)
    page.wait_for_function(
        "() => { const i = document.querySelector('.nbtune-summary img'); "
        "return i && i.complete && i.naturalWidth > 400; }",
        timeout=10_000,
    )
    ARTIFACTS.mkdir(exist_ok=True)
    summary.scroll_into_view_if_needed()
    page.screenshot(path=str(ARTIFACTS / f"browser_result_{app}.png"), full_page=True)

    # res.show() (the last cell) brings the dashboard back, in its final state
    expect(page.locator(".nbtune-status")).to_contain_text("/65 finished · 0 running", timeout=20_000)
    page.screenshot(path=str(ARTIFACTS / f"browser_dashboard_{app}.png"), full_page=True)

    # the plots tab shows the final figure (best so far, learning curves, importance)
    page.locator(".lm-TabBar-tab", has_text="Plots").click()
    plot = page.locator(".nbtune-plot")
    expect(plot).to_be_visible(timeout=10_000)
    page.wait_for_function(
        "() => { const i = document.querySelector('img.nbtune-plot'); "
        "return i && i.complete && i.naturalWidth > 400; }",
        timeout=10_000,
    )
    page.screenshot(path=str(ARTIFACTS / f"browser_plots_{app}.png"), full_page=True)

    # the chooser: learning curves coloured by a parameter, then Optuna's parallel coordinates
    def choose(selector, **option):
        before = page.eval_on_selector("img.nbtune-plot", "i => i.src")
        page.locator(f"{selector} select").select_option(**option)
        page.wait_for_function(
            "(before) => { const i = document.querySelector('img.nbtune-plot'); "
            "return i.src !== before && i.complete && i.naturalWidth >= 880; }",
            arg=before,
            timeout=20_000,
        )

    choose(".nbtune-plot-view", label="learning curves")
    expect(page.locator(".nbtune-color-by")).to_be_visible()
    expect(page.locator(".nbtune-plot-params")).to_be_hidden()
    choose(".nbtune-color-by", label="width")
    page.locator("img.nbtune-plot").scroll_into_view_if_needed()
    page.screenshot(path=str(ARTIFACTS / f"browser_curves_{app}.png"), full_page=True)
    choose(".nbtune-plot-view", label="parallel coordinates")
    expect(page.locator(".nbtune-plot-params")).to_be_visible()
    page.screenshot(path=str(ARTIFACTS / f"browser_parallel_{app}.png"), full_page=True)
    # every tab's label is shown whole (a cut "Stopped early (0) · fa" hid the failures)
    labels = page.eval_on_selector_all(
        ".nbtune-view .lm-TabBar-tabLabel, .nbtune-view .widget-tab .lm-TabBar-tab",
        "els => els.map(e => [e.textContent, e.scrollWidth <= e.clientWidth + 1])",
    )
    assert {text for text, _ in labels} >= {"Trials", "Failed (0)", "Plots"}, labels
    assert all(whole for _, whole in labels), labels

    # the next cell of Run All saw the final result
    after = _kernel_expr(page, "after")
    n_finished, running, target = (int(x) for x in after.strip("()").split(","))
    assert 3 <= n_finished < 40, after
    assert running == 0 and target == 65
    assert stopped_in < 10
    assert _kernel_expr(page, "res.messages[-1]").startswith("'stopped by the user")
    import nbtune
    from nbtune.store.attrs import finished_count

    study = nbtune.load_study(store=root / ".nbtune")
    assert finished_count(study.trials) == n_finished  # a paused trial and its continuation count once
    # the widget shows the final state
    expect(page.locator(".nbtune-status")).to_contain_text(f"{n_finished}/65 finished")

    # save, let the kernel go, reopen: the results are there, not "Error displaying widget"
    page.evaluate("() => window.jupyterapp.commands.execute('docmanager:save')")
    page.wait_for_function("() => !window.jupyterapp.shell.currentWidget.context.model.dirty", timeout=20_000)
    page.evaluate("async () => { await window.jupyterapp.shell.currentWidget.sessionContext.shutdown(); }")
    page.goto(f"{base}/{tree}/search.ipynb?token={TOKEN}&reset")
    page.wait_for_function(f"() => {KERNEL}?.status === 'idle'", timeout=90_000)
    reopened = page.locator(".jp-Cell").nth(2).locator(".jp-OutputArea")
    expect(reopened.locator(".nbtune-summary")).to_be_visible(timeout=30_000)
    expect(reopened.locator(".nbtune-summary")).to_contain_text(f"{n_finished}/65 trials finished")
    assert "Error displaying widget" not in reopened.inner_text()
    page.wait_for_function(
        "() => { const i = document.querySelector('.nbtune-summary img'); "
        "return i && i.complete && i.naturalWidth > 400; }",
        timeout=10_000,
    )
    reopened.scroll_into_view_if_needed()
    page.screenshot(path=str(ARTIFACTS / f"browser_reopened_{app}.png"), full_page=True)
