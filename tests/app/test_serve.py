"""`make serve`: two Streamlit workers behind a real nginx (deploy/serve.py), driven by Chromium.

A session stays on its worker, a run saved in the shared runs folder shows on both workers, and a
dead worker costs only its own sessions. Skipped where nginx is not installed (`make setup-dev`
installs it).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from deploy.serve import find_nginx
from tests.app.browser import ROOT, free_port, wait_idle

if find_nginx() is None:
    pytest.skip("nginx is not installed (make setup-dev installs it).", allow_module_level=True)

TOGGLE = '[data-testid="stSidebar"] [data-testid="stCheckbox"]'  # st.toggle: "Plain twin"


def test_generated_config_passes_nginx_own_check(tmp_path):
    out = subprocess.run(
        [sys.executable, "deploy/serve.py", "--check", "--workers", "3", "--run-dir", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    conf = (tmp_path / "nginx.conf").read_text()
    # Three sticky upstreams, each with its own worker first and the two others as backups.
    assert conf.count("upstream resviz_w") == 3 and conf.count(" backup;") == 6
    assert "proxy_set_header Upgrade $http_upgrade;" in conf and "@" not in conf.split("http {")[1]


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """`deploy/serve.py --workers 2` on a free port, workers not restarted (a test kills one)."""
    base = tmp_path_factory.mktemp("serve")
    env = {
        **os.environ,
        "RESVIZ_RUNS_DIR": str(base / "runs"),
        "TORCH_HOME": str(base / "torch"),
        "RESVIZ_THREADS": "1",
        "RESVIZ_WARMUP": "0",
    }
    port = free_port()
    cmd = [sys.executable, "deploy/serve.py", "--workers", "2", "--port", str(port)]
    cmd += ["--address", "127.0.0.1", "--run-dir", str(base / "run"), "--no-restart"]
    log = (base / "serve.log").open("w")
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    state = base / "run" / "workers.json"
    deadline = time.monotonic() + 120
    while not state.exists():
        assert proc.poll() is None, (base / "serve.log").read_text()
        assert time.monotonic() < deadline, "serve.py did not start in 120 s"
        time.sleep(0.2)
    info = json.loads(state.read_text())
    yield {"url": info["url"], "workers": info["workers"], "runs": base / "runs", "run_dir": base / "run"}
    proc.send_signal(signal.SIGTERM)
    proc.wait(30)
    log.close()
    for w in info["workers"]:  # serve.py stopped every worker it started
        with pytest.raises(ProcessLookupError):
            os.kill(w["pid"], 0)


def open_session(browser, url: str, worker: str | None = None):
    """A new browser (its own cookies) on Home with random weights; ``worker`` presets the cookie."""
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    if worker:
        context.add_cookies([{"name": "resviz_worker", "value": worker, "url": url}])
    page = context.new_page()
    page.sockets = []
    page.on("websocket", lambda ws: page.sockets.append(ws))
    page.goto(url)
    wait_idle(page, timeout=120)
    page.locator('[data-testid="stSidebar"]').get_by_text("Random initialization").click()
    settle(page)
    return context, page


def served_by(page) -> str:
    return next(c["value"] for c in page.context.cookies() if c["name"] == "resviz_worker")


def upstreams_of(stack, worker: str) -> set[str]:
    """The workers (host:port) that nginx sent the requests carrying cookie ``worker`` to."""
    lines = (stack["run_dir"] / "access.log").read_text().splitlines()
    return {ln.rsplit("upstream=", 1)[1] for ln in lines if f" cookie={worker} " in ln}


def settle(page, quiet: float = 0.3, timeout: float = 60.0) -> None:
    """Until the script has stopped running for ``quiet`` seconds (reruns of Home are short)."""
    deadline = time.monotonic() + timeout
    since = None
    while time.monotonic() < deadline:
        if page.locator('[data-testid="stStatusWidget"]').count():
            since = None
        elif since is None:
            since = time.monotonic()
        elif time.monotonic() - since >= quiet:
            return
        page.wait_for_timeout(50)
    raise TimeoutError("the app was still running")


def flip_and_check(page, times: int, start: bool) -> bool:
    """Flip the sidebar's plain-twin toggle ``times`` times; each time the server's answer must keep
    the session's state: the toggle where it was put and the weights still random."""
    toggle = page.locator(TOGGLE).filter(has_text="Plain twin")
    value = start
    for _ in range(times):
        toggle.locator("label").click()
        value = not value
        settle(page)
        assert toggle.locator("input").is_checked() == value
        assert page.get_by_role("radio", name="Random initialization").is_checked()
    return value


@pytest.mark.browser
def test_a_session_stays_on_its_worker_for_20_interactions(_browser, stack):
    context, page = open_session(_browser, stack["url"])
    try:
        first = served_by(page)
        assert first in {w["name"] for w in stack["workers"]}
        flip_and_check(page, 20, start=False)
        # One websocket the whole time: a move to another worker would have opened a second one.
        assert len(page.sockets) == 1 and not page.sockets[0].is_closed()
        assert served_by(page) == first
        # Every request that named this worker (the page's scripts, styles, the websocket) reached it.
        port = next(w["port"] for w in stack["workers"] if w["name"] == first)
        assert upstreams_of(stack, first) == {f"127.0.0.1:{port}"}
    finally:
        context.close()


@pytest.mark.browser
def test_a_run_saved_in_the_shared_folder_shows_on_both_workers(_browser, stack):
    from resviz.runs import save_run
    from tests.test_weights import fake_trained

    run = save_run(fake_trained("plain8"), stack["runs"])
    for w in stack["workers"]:
        context = _browser.new_context(accept_downloads=True)
        context.add_cookies([{"name": "resviz_worker", "value": w["name"], "url": stack["url"]}])
        page = context.new_page()
        try:
            page.goto(f"{stack['url']}/runs")
            wait_idle(page, timeout=120)
            # The table is drawn on a canvas: read its CSV, which that same worker serves (/media).
            with page.expect_download() as download:
                page.get_by_role("button", name="Runs table (CSV)").click()
            assert run.name in Path(download.value.path()).read_text()
            assert served_by(page) == w["name"]
        finally:
            context.close()


@pytest.mark.browser
def test_a_dead_worker_leaves_the_other_sessions_alone(_browser, stack):
    """Runs last in this module: it kills worker w0 for good (serve.py runs with --no-restart)."""
    sessions = {w["name"]: open_session(_browser, stack["url"], w["name"]) for w in stack["workers"]}
    try:
        assert {name: served_by(page) for name, (_, page) in sessions.items()} == {"w0": "w0", "w1": "w1"}
        on_w1 = flip_and_check(sessions["w1"][1], 1, start=False)
        dead = stack["workers"][0]
        os.kill(dead["pid"], signal.SIGKILL)
        with pytest.raises(OSError):  # refused, or reset while the process dies
            urllib.request.urlopen(f"http://127.0.0.1:{dead['port']}/_stcore/health", timeout=5)
        # The session on w1 goes on as it was: same websocket, same state.
        page = sessions["w1"][1]
        flip_and_check(page, 3, start=on_w1)
        assert len(page.sockets) == 1 and not page.sockets[0].is_closed()
        # New visitors, and the one whose cookie names the dead worker, are served by the live one.
        for worker in (None, "w0"):
            context, fresh = open_session(_browser, stack["url"], worker)
            try:
                assert served_by(fresh) == "w1"
                flip_and_check(fresh, 1, start=False)
            finally:
                context.close()
    finally:
        for context, _ in sessions.values():
            context.close()
