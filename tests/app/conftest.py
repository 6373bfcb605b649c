"""Fixtures for app tests: AppTest (no browser) and a real app server + headless Chromium."""

from __future__ import annotations

import os

import pytest

from tests.app.browser import CHROMIUM_ARGS, LIVE, ROOT, AppServer, find_chromium, wait_idle

APP = str(ROOT / "app.py")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """A browser step that timed out: add every live server's log tail and thread stacks to the
    report, so that a hang (issue 21: once in 26 fresh starts) can be read rather than guessed."""
    outcome = yield
    report = outcome.get_result()
    if call.excinfo is None or report.when != "call" or not LIVE:
        return
    if "Timeout" not in call.excinfo.typename:  # ours, the builtin, and Playwright's TimeoutError
        return
    for server in list(LIVE):
        try:
            report.sections.append(("server at timeout", server.diagnose()))
        except OSError as exc:  # the server is gone: say so rather than hide the test's own error
            report.sections.append(("server at timeout", f"could not read the server: {exc}"))


@pytest.fixture(autouse=True)
def _no_demo_default(request, monkeypatch):
    """AppTests start on random weights, as they were written; a test marked ``demo_default`` sees
    the first-visit default of a real user (the bundled trained ResNet-56)."""
    if "demo_default" not in request.keywords:
        import ui.models

        monkeypatch.setattr(ui.models, "DEMO_MODEL", None)


@pytest.fixture
def app_test():
    """A fresh AppTest of the whole app, already run once (Home page). Use ``switch_page``."""
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(APP, default_timeout=180)
    at.run()
    return at


@pytest.fixture
def open_page():
    """``open_page("pages/x.py", model_name="resnet20")``: a fresh AppTest on that page, run once.

    Session state is preset before the first run: the quickest way to put a page in a given state.
    (AppTest resets Streamlit's pages/-folder fallback before every run, so each page script first
    reruns itself through app.py, see ui.shell; a button's click is therefore seen by its on_click
    callback, not by the ``if st.button(...)`` of that first pass.)
    """
    from streamlit.testing.v1 import AppTest

    def _open(page: str, **session_state):
        at = AppTest.from_file(APP, default_timeout=300)
        for key, value in session_state.items():
            at.session_state[key] = value
        at.switch_page(page)
        return at.run()

    return _open


@pytest.fixture(scope="session")
def app_url(tmp_path_factory):
    """Base URL of a real ``streamlit run app.py`` serving for the whole session."""
    base = tmp_path_factory.mktemp("server")
    env = {"TORCH_HOME": str(base / "torch"), "RESVIZ_RUNS_DIR": str(base / "runs"), "RESVIZ_THREADS": "1"}
    server = AppServer(env, base / "streamlit.log").start()
    yield server.url
    server.stop()


@pytest.fixture(scope="session")
def _browser():
    chromium = find_chromium()
    if chromium is None:
        if os.environ.get("CI"):
            pytest.fail("Chromium is missing in CI: `make test` installs it (see Makefile browser-deps).")
        pytest.skip("Chromium is not installed (make browser-deps installs it).")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def browser_page(_browser, app_url):
    """A fresh browser tab (1400x1000). ``page.errors`` collects uncaught page errors.

    Navigate with ``page.goto(f"{app_url}/feature_maps")`` then ``wait_idle(page)`` from
    ``tests.app.browser``.
    """
    context = _browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.errors = []
    page.on("pageerror", lambda exc: page.errors.append(str(exc)))
    yield page
    context.close()


__all__ = ["wait_idle"]
