"""Issue 21, section 3: a fresh server with its warm-up on, met by several sessions at once, and
what a timed-out step can read about the server (its log tail and every thread's stack)."""

from __future__ import annotations

import threading

import pytest

from tests.app.browser import AppServer, exceptions_on, wait_idle

PAGES = ("architecture", "feature_maps", "gradient_flow", "attribution")


@pytest.mark.browser
def test_sessions_meeting_the_warm_up_on_a_fresh_server(_browser, tmp_path):
    """Home starts the warm-up (torch, captum, pandas imported in the background); four more
    sessions open a page each while it runs. None may see an exception, and the warm-up may not
    fail (a page importing pandas while the warm-up did gave a half-imported module once)."""
    env = {
        "TORCH_HOME": str(tmp_path / "torch"),
        "RESVIZ_RUNS_DIR": str(tmp_path / "runs"),
        "RESVIZ_WARMUP": "1",
        "RESVIZ_THREADS": "1",
    }
    server = AppServer(env, tmp_path / "server.log").start()
    contexts = []
    try:
        home = _browser.new_context(viewport={"width": 1280, "height": 800}).new_page()
        contexts.append(home.context)
        home.goto(server.url)
        home.wait_for_selector('[data-testid="stMain"] h1', timeout=120_000)  # Home drawn: warm-up started
        pages = []
        for name in PAGES:  # opened together: their scripts run while the warm-up imports
            page = _browser.new_context(viewport={"width": 1280, "height": 800}).new_page()
            contexts.append(page.context)
            page.goto(f"{server.url}/{name}", wait_until="commit")
            pages.append((name, page))
        for name, page in [("home", home), *pages]:
            wait_idle(page, timeout=400)
            assert exceptions_on(page) == [], name
            heading = page.locator('[data-testid="stMain"] h1').first.inner_text()
            assert heading, name
        log = (tmp_path / "server.log").read_text()
        assert "partially initialized" not in log
        assert "warm-up step" not in log, log[-3000:]  # "warm-up step X failed"
        assert "Traceback" not in log, log[-3000:]
    finally:
        for context in contexts:
            context.close()
        server.stop()


@pytest.mark.browser
def test_a_server_dumps_every_threads_stack_when_asked(_browser, tmp_path):
    """What the conftest hook prints when a browser step times out: the log tail with a stack per
    thread (app.py registers faulthandler on SIGUSR1 on its first run)."""
    import urllib.request

    server = AppServer({"RESVIZ_RUNS_DIR": str(tmp_path / "runs")}, tmp_path / "server.log").start()
    try:
        page = _browser.new_page()
        page.goto(server.url)  # app.py registers the handler on a session's first script run
        wait_idle(page)
        page.close()
        text = server.diagnose()
        assert "server log tail and thread stacks" in text
        assert "Thread 0x" in text and 'File "' in text  # faulthandler's dump, one block per thread
        assert text.count("Thread 0x") >= 2  # the main thread and Streamlit's others, not one
        with urllib.request.urlopen(f"{server.url}/_stcore/health", timeout=5) as r:
            assert r.read().strip() == b"ok"  # the dump does not stop the server
    finally:
        server.stop()


def test_pages_wait_for_the_warm_ups_imports(monkeypatch):
    """While the warm-up thread imports, a page waits (a bounded time); when it is done, at once."""
    from ui import warmup

    done = threading.Event()
    monkeypatch.setattr(warmup, "_imports_done", done)
    monkeypatch.setattr(warmup, "_thread", threading.current_thread())  # "a warm-up is running"
    assert warmup.wait_for_imports(timeout=0.05) is False  # gave up: still importing
    threading.Timer(0.1, done.set).start()
    assert warmup.wait_for_imports(timeout=10) is True
    monkeypatch.setattr(warmup, "_thread", None)  # off (the test suite): never waits
    monkeypatch.setattr(warmup, "_imports_done", threading.Event())
    assert warmup.wait_for_imports(timeout=0) is True
