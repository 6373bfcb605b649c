"""Helpers for the real-browser tests (headless Chromium driven by Playwright)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


def find_chromium() -> str | None:
    for candidate in (os.environ.get("CHROMIUM_PATH"), "/usr/bin/chromium", shutil.which("chromium")):
        if candidate and Path(candidate).exists():
            return candidate
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


LIVE: list[AppServer] = []  # servers started and not yet stopped: what a timed-out step diagnoses


class AppServer:
    """``streamlit run app.py`` on 127.0.0.1 and a free port; stopped by its pid."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, **env}
        self.log = log
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 90.0) -> AppServer:
        cmd = [
            sys.executable,
            "-m",
            "streamlit",
            "run",
            str(ROOT / "app.py"),
            "--server.address",
            "127.0.0.1",
            "--server.port",
            str(self.port),
            "--server.headless",
            "true",
            "--browser.gatherUsageStats",
            "false",
            "--server.fileWatcherType",
            "none",
            "--server.runOnSave",
            "false",
        ]
        self._log = self.log.open("w")
        self.proc = subprocess.Popen(
            cmd,
            cwd=ROOT,
            env=self.env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        LIVE.append(self)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"streamlit exited early: {self.log.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{self.url}/_stcore/health", timeout=2) as r:
                    if r.read().strip() == b"ok":
                        return self
            except OSError:
                time.sleep(0.2)
        self.stop()
        raise TimeoutError(f"streamlit not healthy after {timeout}s")

    def diagnose(self, lines: int = 120) -> str:
        """The server log's last ``lines``, after asking the server for a stack dump of every thread
        (app.py registers faulthandler on SIGUSR1): what a timed-out step prints."""
        if self.proc is not None and self.proc.poll() is None and hasattr(signal, "SIGUSR1"):
            os.kill(self.proc.pid, signal.SIGUSR1)
            time.sleep(1.0)  # faulthandler writes at once; give the log a moment to reach the file
        self._log.flush()
        tail = self.log.read_text(errors="replace").splitlines()[-lines:]
        return f"--- {self.url}: server log tail and thread stacks ---\n" + "\n".join(tail)

    def stop(self) -> None:
        if self in LIVE:
            LIVE.remove(self)
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
        self._log.close()


def wait_idle(page, timeout: float = 120.0) -> None:
    """Wait until the app has drawn and its script has stopped running."""
    # The first paint shows the pages/ folder's default nav before the script has run: wait for
    # an element the script drew, then for the "running" status widget to stay away for a second.
    page.wait_for_selector(
        '[data-testid="stMain"] [data-testid="stElementContainer"]', timeout=timeout * 1000
    )
    deadline = time.monotonic() + timeout
    quiet_since = None
    while time.monotonic() < deadline:
        running = page.locator('[data-testid="stStatusWidget"]').count() > 0
        if running:
            quiet_since = None
        elif quiet_since is None:
            quiet_since = time.monotonic()
        elif time.monotonic() - quiet_since > 1.0:
            return
        page.wait_for_timeout(200)
    raise TimeoutError("the app was still running after the timeout")


def exceptions_on(page) -> list[str]:
    """Texts of Streamlit exception boxes on the page (each one is a bug)."""
    return page.locator('[data-testid="stException"]').all_inner_texts()


def wait_count(page, selector: str, at_least: int, timeout: float = 120.0) -> int:
    """Wait until ``selector`` matches ``at_least`` elements; return how many it matches.

    Plotly charts are drawn by a lazily loaded plotly.js: on a slow machine the script can be
    done (``wait_idle``) well before the charts exist, so count them only once they can be there.
    """
    page.wait_for_function(
        "([sel, n]) => document.querySelectorAll(sel).length >= n",
        arg=[selector, at_least],
        timeout=timeout * 1000,
    )
    return page.locator(selector).count()


def use_random_weights(page) -> None:
    """Leave the first-visit default (the bundled demo run) for random weights of the sidebar's variant."""
    page.locator('[data-testid="stSidebar"]').get_by_text("Random initialization").click()
    wait_idle(page, timeout=180)
