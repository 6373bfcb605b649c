"""Click-to-chart latency of the app in headless Chromium, step by step, against the issue's goals.

Each repetition starts a fresh server (so first visits are really first), opens Home, stays there
for ``--read-home`` seconds as a visitor reading it would (the server warms up meanwhile), visits
every page once, then switches to ResNet-18 (random weights) and drives a fixed tour: layer switches,
a channel click, an upload and its Grad-CAM, a depth change, an input-size change, ResNet-152.
A step's time runs from the click on an option (dropdowns are opened and typed into before the
clock starts) until its expected text is on the page and the app has stayed idle (no status
widget, spinner or undrawn plotly chart) for a moment. Beside it, the server's own script time
for the same step (``RESVIZ_SCRIPT_LOG``, see ui/timing.py): the difference is transport and
drawing in the browser.

    python bench/bench_browser.py [--reps 3] [--json out.json]

Needs Chromium (``make browser-deps``) and Playwright (requirements-dev.txt); skips without them.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# step -> goal in seconds (median; the slowest where a second number is given)
GOALS: dict[str, tuple[float, float | None]] = {
    "home, first load": (1.5, None),
    "first visit: Architecture": (1.5, None),
    "first visit: Feature Maps": (1.0, None),
    "first visit: Gradient Flow": (1.0, None),
    "first visit: Attribution": (1.0, None),
    "feature maps: switch layer (resnet18)": (0.2, 0.5),
    "feature maps: click a channel": (0.2, 0.5),
    "attribution: switch grad-cam layer": (0.2, 0.4),
    "attribution: upload, then grad-cam": (1.0, None),
    "gradient flow: change depth": (1.0, None),
    "architecture: change input size": (1.0, None),
    "feature maps: resnet152": (3.0, None),
}
BUSY = """() => !!document.querySelector('[data-testid="stStatusWidget"]') ||
  !!document.querySelector('[data-testid="stSpinner"]') ||
  [...document.querySelectorAll('[data-testid="stPlotlyChart"]')].some(c => !c.querySelector('.main-svg'))"""
QUIET_S = 1.0  # idle this long after the last busy moment: the step is over


class Tour:
    """One browser session against one server; records (step, click-to-chart s, script s)."""

    def __init__(self, page, base: str, script_log: Path) -> None:
        self.page, self.base, self.log = page, base, script_log
        self.rows: list[tuple[str, float, float]] = []

    def timed(self, step: str, action, until: str | None = None, timeout: float = 300.0) -> float:
        """Run ``action`` and wait until ``until`` is shown and the app is idle; record the step."""
        page = self.page
        wall0, t0 = time.time(), time.monotonic()
        action()
        last, seen = t0, until is None
        while time.monotonic() - t0 < timeout:
            now = time.monotonic()
            if not seen and page.get_by_text(until, exact=False).count() > 0:
                seen, last = True, max(last, now)
            if not seen or page.evaluate(BUSY):
                last = now
            elif now - last > QUIET_S:
                break
            page.wait_for_timeout(25)
        else:
            raise TimeoutError(f"{step}: still busy or no {until!r} after {timeout:.0f} s")
        elapsed = last - t0
        self.rows.append((step, elapsed, self._script_seconds(wall0, wall0 + elapsed + 0.2)))
        return elapsed

    def _script_seconds(self, start: float, end: float) -> float:
        """Server script time of the runs that ended within [start, end] (unix seconds)."""
        if not self.log.exists():
            return float("nan")
        runs = [json.loads(line) for line in self.log.read_text().splitlines() if line.strip()]
        runs = [r for r in runs if start <= r["end"] <= end]
        # A fragment also runs inside a whole run: count fragments only when nothing else ran.
        whole = [r["seconds"] for r in runs if not r.get("fragment")]
        return sum(whole) if whole else sum(r["seconds"] for r in runs)

    def nav(self, title: str):
        link = self.page.locator('[data-testid="stSidebarNav"] a', has_text=title).first
        return link.click

    def pick(self, label: str, text: str, where: str = "main"):
        """Open the select box called ``label`` and type ``text`` (untimed); return the option's click."""
        page = self.page
        root = page.locator(f'[data-testid="st{where.capitalize()}"]')
        box = root.locator('[data-testid="stSelectbox"]').filter(has=page.locator("label", has_text=label))
        box.first.locator("input").click()
        page.wait_for_timeout(150)
        page.keyboard.type(text)
        page.wait_for_timeout(250)
        options = page.locator('[role="option"]')
        for i in range(min(options.count(), 60)):
            if options.nth(i).inner_text().strip().startswith(text):
                return options.nth(i).click
        page.keyboard.press("Escape")
        raise RuntimeError(f"no option {text!r} in {label!r}")

    def settle(self, action=None, until: str | None = None) -> None:
        """An untimed step: do it and wait until the app is idle."""
        self.timed("(untimed)", action or (lambda: None), until=until)
        self.rows.pop()


def tour(tr: Tour, upload: Path, read_home: float) -> None:
    """The fixed tour of the issue's table; every step is recorded by ``tr``."""
    page = tr.page
    tr.timed("home, first load", lambda: page.goto(tr.base + "/"), until="A short tour")
    page.wait_for_timeout(read_home * 1000)  # a visitor reads Home; the server warms up meanwhile
    for title, text in (
        ("Architecture", "ResNet among its peers"),
        ("Feature Maps", ": "),
        ("Gradient Flow", "Shortcut or branch?"),
        ("Attribution", "Grad-CAM at"),
    ):
        tr.timed(f"first visit: {title}", tr.nav(title), until=text)

    # The rest on ResNet-18 with random weights, as in the table.
    tr.settle(page.locator('[data-testid="stSidebar"]').get_by_text("Random initialization").click)
    tr.settle(tr.nav("Feature Maps"), until="layer")
    for layer in ("layer2.1", "layer3.0", "layer4.1", "layer1.0", "layer3.1", "layer4.0"):
        tr.timed("feature maps: switch layer (resnet18)", tr.pick("Layer", layer), until=f"{layer}: ")
    for channel in ("5", "9", "2"):
        click = tr.pick("Channel shown large", channel)
        tr.timed("feature maps: click a channel", click, until=f"channel {channel}")

    tr.settle(tr.nav("Attribution"), until="Grad-CAM at")
    for layer in ("layer3", "layer2", "layer4", "layer1"):
        tr.timed("attribution: switch grad-cam layer", tr.pick("Layer", layer), until=f"at {layer} ")
    uploader = page.locator('[data-testid="stMain"] input[type="file"]').first
    tr.timed(
        "attribution: upload, then grad-cam",
        lambda: uploader.set_input_files(str(upload)),
        until=f"{upload.name}: Grad-CAM at",
    )

    tr.settle(tr.nav("Gradient Flow"), until="Shortcut or branch?")
    for depth in ("56", "110", "20"):
        tr.timed("gradient flow: change depth", tr.pick("Depth", depth), until=f"plain{depth}")

    tr.settle(tr.nav("Architecture"), until="ResNet among its peers")
    slider = page.locator('[data-testid="stMain"] [data-testid="stSliderThumbValue"]').first
    for key in ("ArrowRight", "ArrowLeft"):
        tr.timed("architecture: change input size", lambda k=key: _slide(page, slider, k))

    tr.settle(tr.nav("Feature Maps"), until=": ")
    variant = tr.pick("Variant", "resnet152", where="sidebar")
    tr.timed("feature maps: resnet152", variant, until="ResNet-152 (ImageNet")


def _slide(page, thumb, key: str) -> None:
    thumb.locator("xpath=..").click()
    page.keyboard.press(key)


def _sample_upload(folder: Path) -> Path:
    """A real photograph (skimage's astronaut) as the user's upload."""
    from PIL import Image
    from skimage import data

    path = folder / "astronaut.png"
    Image.fromarray(data.astronaut()).save(path)
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3, help="fresh servers, one tour each")
    parser.add_argument("--json", help="also write the table here")
    parser.add_argument(
        "--read-home",
        type=float,
        default=10.0,
        help="seconds spent on Home before the first click (default 10, a visitor reading it; the "
        "server's warm-up runs meanwhile, see ui/warmup.py); 0 clicks on at once",
    )
    args = parser.parse_args()

    from tests.app.browser import CHROMIUM_ARGS, AppServer, find_chromium

    chromium = find_chromium()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        chromium = None
    if chromium is None:
        print("skipped: needs Chromium and Playwright (make setup-dev)")
        return 0

    folder = Path(tempfile.mkdtemp(prefix="resviz-bench-browser-"))
    upload = _sample_upload(folder)
    times: dict[str, list[float]] = defaultdict(list)
    script: dict[str, list[float]] = defaultdict(list)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        for rep in range(args.reps):
            log = folder / f"script-{rep}.jsonl"
            env = {"RESVIZ_SCRIPT_LOG": str(log), "RESVIZ_RUNS_DIR": str(folder / f"runs-{rep}")}
            server = AppServer(env, folder / f"server-{rep}.log").start()
            context = browser.new_context(viewport={"width": 1440, "height": 900})
            try:
                tr = Tour(context.new_page(), server.url, log)
                try:
                    tour(tr, upload, args.read_home)
                except Exception as exc:  # report the steps done; say where the tour stopped
                    print(f"the tour stopped: {exc}", flush=True)
                    if isinstance(exc, TimeoutError) or "Timeout" in type(exc).__name__:
                        print(server.diagnose(), flush=True)  # log tail + every server thread's stack
                    tr.page.screenshot(path=str(folder / f"stopped-{rep}.png"))
                for step, seconds, in_script in tr.rows:
                    times[step].append(seconds)
                    script[step].append(in_script)
            finally:
                context.close()
                server.stop()
            print(f"repetition {rep + 1} of {args.reps} done", flush=True)
        browser.close()
    print(f"Home was read for {args.read_home:g} s before the first visit.")
    return _report(times, script, args.json)


def _report(times: dict[str, list[float]], script: dict[str, list[float]], out: str | None) -> int:
    print(f"\n{'step':40s} {'median':>7s} {'slowest':>8s} {'script':>7s}  goal")
    table = {}
    for step, values in times.items():
        median, slowest = statistics.median(values), max(values)
        in_script = statistics.median(script[step])
        goal, goal_max = GOALS.get(step, (float("nan"), None))
        met = median <= goal and (goal_max is None or slowest <= goal_max)
        goal_text = f"<= {goal:g} s" + (f", slowest <= {goal_max:g} s" if goal_max else "")
        print(
            f"{step:40s} {median:6.2f}s {slowest:7.2f}s {in_script:6.2f}s  {goal_text}"
            f" {'met' if met else 'NOT met'} (n={len(values)})"
        )
        table[step] = {"median_s": median, "max_s": slowest, "script_s": in_script, "n": len(values)}
    if out:
        Path(out).write_text(json.dumps(table, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
