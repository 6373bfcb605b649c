"""Many users at once: the app's server time per step for 1 and 8 sessions, its CPU and its memory.

    python bench/bench_sessions.py [--sessions 1 8] [--tours 2] [--uploads 2] [--skip-memory]
    python bench/bench_sessions.py --workers 1 2 --skip-memory   # `make serve` with 1, then 2 workers
    python bench/bench_sessions.py --url http://127.0.0.1:8501 --skip-memory   # a server already up

It starts the app (``streamlit run app.py``, headless, on a free port) and drives it with a small
client that speaks Streamlit's own websocket protocol (``/_stcore/stream``: protobuf ``BackMsg`` in,
``ForwardMsg`` out), so that no browser competes with the server for the CPU. Each session runs an
ordinary tour: Home, then the heavy pages (a page switch is a rerun with the page's script hash),
and on Feature Maps and Attribution a layer change (a rerun carrying the selectbox's new state).
A step's *server time* runs from the rerun request to the script-finished message.

It prints, per step, the median and the slowest server time with 1 session and with N at once,
the server's CPU use over each phase (cores busy, from ``/proc/PID/stat``) and its resident memory
before and after. Eight CPU-bound sessions on 2 cores cannot do better than 4x one session's time.

Then the memory scenario, on a fresh server: 4 sessions at once each upload ``--uploads`` different
39.7-megapixel PNGs on Attribution (HTTP PUT to ``/_stcore/upload_file/...``, then a rerun carrying
the uploader's state), and the server's peak resident memory (``VmHWM``) is printed; the goal is
under 2.5 GB. Not a test: figures move with the machine's load.

``--workers N [N ...]`` runs the tours through ``make serve``'s stack (deploy/serve.py: N Streamlit
processes behind nginx) once per N, in one run, and sums the CPU and memory of the workers;
sessions reach the workers as browsers do, each keeping the affinity cookie of its first request.
``--url`` drives a server or proxy that is already running (no CPU or memory figures then).
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MEMORY_GOAL_GB = 2.5


# --------------------------------------------------------------------------- the server


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(port: int) -> subprocess.Popen:
    """``streamlit run app.py`` headless on ``port``; XSRF off so that the client may PUT uploads."""
    env = {**os.environ, "TORCH_HOME": os.environ.get("TORCH_HOME", tempfile.mkdtemp())}
    cmd = [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true"]
    cmd += ["--server.address", "127.0.0.1", "--server.port", str(port)]
    cmd += ["--server.enableXsrfProtection", "false", "--browser.gatherUsageStats", "false"]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    for _ in range(600):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=1) as r:
                if r.status == 200:
                    return proc
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("the app did not start")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of the process (all its threads), from /proc/PID/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def memory_gb(pid: int, what: str = "VmRSS") -> float:
    """Resident memory (``VmRSS``) or its peak so far (``VmHWM``), in GB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(what + ":"):
            return int(line.split()[1]) / 1e6
    return float("nan")


# --------------------------------------------------------------------------- the client


@dataclass
class Session:
    """One browser tab's worth of protocol: a websocket, the pages, the widgets last drawn."""

    base: str  # http://host:port of the server or the proxy
    ws: object = None
    cookie: str = ""  # the proxy's affinity cookie: websocket and uploads must reach one worker
    session_id: str = ""
    pages: dict[str, str] = field(default_factory=dict)  # url path ("" for Home) -> script hash
    page: str = ""
    widgets: dict[str, object] = field(default_factory=dict)  # user key -> the widget's proto
    errors: list[str] = field(default_factory=list)
    pending: list = field(default_factory=list)  # ForwardMsgs read while waiting for another

    async def connect(self) -> float:
        import websockets

        self.cookie = await asyncio.to_thread(_affinity_cookie, self.base)
        self.ws = await websockets.connect(
            self.base.replace("http", "ws", 1) + "/_stcore/stream",
            subprotocols=["streamlit"],
            max_size=None,
            ping_interval=None,
            additional_headers={"Cookie": self.cookie} if self.cookie else None,
        )
        return await self.rerun("")

    async def rerun(self, page: str, states: list | None = None) -> float:
        """Run ``page`` (a url path) with these widget states; seconds until the script finished."""
        from streamlit.proto.BackMsg_pb2 import BackMsg

        msg = BackMsg()
        cs = msg.rerun_script
        cs.page_script_hash = self.pages.get(page, "")
        cs.page_name = page
        cs.widget_states.widgets.extend(states or [])
        if page != self.page:
            self.widgets.clear()
        self.page = page
        start = time.perf_counter()
        await self.ws.send(msg.SerializeToString())
        await self._until(lambda fm: fm.WhichOneof("type") == "script_finished" and fm.script_finished != 2)
        return time.perf_counter() - start

    async def _until(self, done) -> object:
        from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

        while True:
            fm = ForwardMsg()
            fm.ParseFromString(await asyncio.wait_for(self.ws.recv(), timeout=600))
            self._note(fm)
            if done(fm):
                return fm

    def _note(self, fm) -> None:
        kind = fm.WhichOneof("type")
        if kind == "new_session":
            self.session_id = fm.new_session.initialize.session_id
        elif kind == "navigation":
            for p in fm.navigation.app_pages:
                self.pages[p.url_pathname] = p.page_script_hash
        elif kind == "delta" and fm.delta.WhichOneof("type") == "new_element":
            el = fm.delta.new_element
            what = el.WhichOneof("type")
            proto = getattr(el, what)
            if what == "exception":
                where = proto.stack_trace[-1].strip().splitlines()[0] if proto.stack_trace else ""
                self.errors.append(f"{self.page}: exception {proto.message} ({where})")
            elif what == "alert" and proto.format == 1:  # st.error
                self.errors.append(f"{self.page}: error {proto.body}")
            widget_id = getattr(proto, "id", "")
            if widget_id.startswith("$$ID-"):
                self.widgets[widget_id.split("-", 2)[2]] = proto

    async def select(self, key: str, step: int) -> float:
        """Pick another option of selectbox ``key`` (the ``step``-th after the current one)."""
        from streamlit.proto.WidgetStates_pb2 import WidgetState

        box = self.widgets.get(key)
        if box is None:  # the page failed before drawing it (its error is reported): just rerun
            self.errors.append(f"{self.page}: no widget {key!r} to change")
            return await self.rerun(self.page)
        options = list(box.options)
        current = box.raw_value if box.HasField("raw_value") else options[box.default[0]]
        state = WidgetState(id=box.id, string_value=options[(options.index(current) + step) % len(options)])
        return await self.rerun(self.page, [state])

    async def upload(self, key: str, name: str, data: bytes) -> float:
        """Upload one file into uploader ``key`` as the browser does; seconds to the finished rerun."""
        from streamlit.proto.BackMsg_pb2 import BackMsg
        from streamlit.proto.Common_pb2 import UploadedFileInfo
        from streamlit.proto.WidgetStates_pb2 import WidgetState

        start = time.perf_counter()
        msg = BackMsg()
        msg.file_urls_request.request_id = uuid.uuid4().hex
        msg.file_urls_request.file_names.append(name)
        msg.file_urls_request.session_id = self.session_id
        await self.ws.send(msg.SerializeToString())
        reply = await self._until(lambda fm: fm.WhichOneof("type") == "file_urls_response")
        urls = reply.file_urls_response.file_urls[0]
        await asyncio.to_thread(_put_multipart, f"{self.base}{urls.upload_url}", name, data, self.cookie)
        state = WidgetState(id=self.widgets[key].id)
        info = UploadedFileInfo(name=name, size=len(data), file_id=urls.file_id)
        info.file_urls.CopyFrom(urls)
        state.file_uploader_state_value.uploaded_file_info.append(info)
        await self.rerun(self.page, [state])
        return time.perf_counter() - start

    async def close(self) -> None:
        await self.ws.close()


def _affinity_cookie(base: str) -> str:
    """What a browser's first request gets from the proxy (``resviz_worker=wN``); "" without one."""
    with urllib.request.urlopen(f"{base}/_stcore/health", timeout=30) as r:
        for header in r.headers.get_all("Set-Cookie") or []:
            if header.startswith("resviz_worker="):
                return header.split(";", 1)[0]
    return ""


def _put_multipart(url: str, name: str, data: bytes, cookie: str = "") -> None:
    boundary = uuid.uuid4().hex
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
        "Content-Type: image/png\r\n\r\n"
    ).encode()
    body = head + data + f"\r\n--{boundary}--\r\n".encode()
    req = urllib.request.Request(url, data=body, method="PUT")
    req.add_header("Content-Type", f"multipart/form-data; boundary={boundary}")
    if cookie:
        req.add_header("Cookie", cookie)
    with urllib.request.urlopen(req, timeout=120) as r:
        if r.status not in (200, 204):
            raise RuntimeError(f"upload refused: HTTP {r.status}")


# --------------------------------------------------------------------------- the tour

# (step name, page url path, selectbox key to change or None for a page load)
TOUR = (
    ("Home", "", None),
    ("Feature Maps", "feature_maps", None),
    ("Feature Maps: layer", "feature_maps", "feat_layer"),
    ("Attribution", "attribution", None),
    ("Attribution: layer", "attribution", "attr_layer"),
    ("Gradient Flow", "gradient_flow", None),
    ("Architecture", "architecture", None),
)


async def tour(s: Session, times: dict[str, list[float]], n: int) -> None:
    for name, page, key in TOUR:
        t = await (s.select(key, 1 + n) if key else s.rerun(page))
        times.setdefault(name, []).append(t)


async def phase(base: str, sessions: int, tours: int) -> dict[str, list[float]]:
    """``sessions`` clients at once, each connecting and running ``tours`` tours."""
    times: dict[str, list[float]] = {}
    clients = [Session(base) for _ in range(sessions)]
    await asyncio.gather(*(c.connect() for c in clients))

    async def one(c: Session) -> None:
        for n in range(tours):
            await tour(c, times, n)

    await asyncio.gather(*(one(c) for c in clients))
    for c in clients:
        for e in dict.fromkeys(c.errors):
            print(f"  page error: {e[:160]}")
        await c.close()
    return times


@dataclass
class Target:
    """What the sessions drive: a URL, the server processes behind it, and how to stop them."""

    label: str
    base: str
    pids: list[int]
    stop: Callable[[], None]


def direct_target() -> Target:
    port = free_port()
    server = start_server(port)

    def stop() -> None:
        server.terminate()
        server.wait(timeout=30)

    return Target("1 process", f"http://127.0.0.1:{port}", [server.pid], stop)


def serve_target(workers: int) -> Target:
    """``make serve``'s stack (deploy/serve.py) with ``workers`` workers, on a free port."""
    sys.path.insert(0, str(ROOT))
    from deploy.serve import Serve

    # As start_server: XSRF off so that the client may PUT uploads; a fresh torch cache.
    os.environ["STREAMLIT_SERVER_ENABLE_XSRF_PROTECTION"] = "false"
    os.environ.setdefault("TORCH_HOME", tempfile.mkdtemp())
    serve = Serve(workers, free_port(), "127.0.0.1", restart=False).start()
    return Target(
        f"{workers} worker(s) behind nginx", serve.url, [w.proc.pid for w in serve.pool], serve.stop
    )


def url_target(url: str) -> Target:
    return Target(url, url.rstrip("/"), [], lambda: None)


def cpu_total(pids: list[int]) -> float:
    return sum(cpu_seconds(p) for p in pids)


def rss_total(pids: list[int]) -> float:
    return sum(memory_gb(p) for p in pids) if pids else float("nan")


def measure(target: Target, sessions: int, tours: int) -> tuple[dict[str, list[float]], float, float]:
    """Times per step, cores busy on average (NaN without pids), wall seconds."""
    cpu0, t0 = cpu_total(target.pids), time.perf_counter()
    times = asyncio.run(phase(target.base, sessions, tours))
    wall = time.perf_counter() - t0
    cores = (cpu_total(target.pids) - cpu0) / wall if target.pids else float("nan")
    return times, cores, wall


def tours_report(args: argparse.Namespace) -> None:
    if args.url:
        targets = [lambda: url_target(args.url)]
    elif args.workers:
        targets = [lambda n=n: serve_target(n) for n in args.workers]
    else:
        targets = [direct_target]
    summary = []
    for make in targets:
        target = make()
        try:
            summary.append((target.label, *tours_of(target, args)))
        finally:
            target.stop()
    if len(summary) > 1:
        print(f"\n{args.sessions[-1]} sessions at once, in one run:")
        for label, ratio, cores in summary:
            print(f"  {label:<28} median step {ratio:.1f}x one session's; {cores:.2f} cores busy")


def tours_of(target: Target, args: argparse.Namespace) -> tuple[float, float]:
    """The table for one target; returns (median over steps of the N/1 ratio, cores busy with N)."""
    print(f"\n== {target.label} at {target.base}: pids {target.pids}, {os.cpu_count()} CPUs")
    print(f"RSS at start {rss_total(target.pids):.2f} GB")
    # One warm-up session per server process (the proxy spreads new sessions): imports, models.
    measure(target, max(1, len(target.pids)), 1)
    print(f"RSS after a warm-up tour {rss_total(target.pids):.2f} GB")
    results, cores = {}, float("nan")
    for n in args.sessions:
        rss0 = rss_total(target.pids)
        times, cores, wall = measure(target, n, args.tours)
        results[n] = times
        print(
            f"{n} session(s) x {args.tours} tours: {wall:.1f} s wall, {cores:.2f} cores busy, "
            f"RSS {rss0:.2f} -> {rss_total(target.pids):.2f} GB"
        )
    head = "".join(f" | {n} sess. median / max" for n in args.sessions)
    print(f"\n{'step':<22}{head} | ratio of medians")
    ratios = []
    for name, _, _ in TOUR:
        cells = [results[n][name] for n in args.sessions]
        row = "".join(f" | {statistics.median(c):>7.2f} / {max(c):5.2f} s  " for c in cells)
        ratio = statistics.median(cells[-1]) / statistics.median(cells[0])
        ratios.append(ratio)
        print(f"{name:<22}{row} | {ratio:.1f}x")
    return statistics.median(ratios), cores


# --------------------------------------------------------------------------- memory


def big_png(seed: int) -> bytes:
    """A 39.7-megapixel PNG (8000 x 4960), mostly flat so that it compresses to a small file."""
    from PIL import Image, ImageDraw

    im = Image.new("RGB", (8000, 4960), (40 + seed * 20 % 200, 120, 200))
    draw = ImageDraw.Draw(im)
    for i in range(12):
        x = (seed * 997 + i * 611) % 7000
        draw.ellipse((x, 300 * i, x + 900, 300 * i + 900), fill=(255 - i * 15, 30 * (seed % 8), 90))
    buf = io.BytesIO()
    im.save(buf, "PNG", compress_level=1)
    return buf.getvalue()


async def upload_sessions(base: str, sessions: int, uploads: int, files: list[bytes]) -> list[float]:
    clients = [Session(base) for _ in range(sessions)]
    await asyncio.gather(*(c.connect() for c in clients))
    await asyncio.gather(*(c.rerun("attribution") for c in clients))
    times: list[float] = []

    async def one(i: int, c: Session) -> None:
        for j in range(uploads):
            times.append(await c.upload("attr_images_upload", f"big{i}_{j}.png", files[i * uploads + j]))

    await asyncio.gather(*(one(i, c) for i, c in enumerate(clients)))
    for c in clients:
        for e in dict.fromkeys(c.errors):
            print(f"  page error: {e[:160]}")
        await c.close()
    return times


def memory_report(args: argparse.Namespace, sessions: int = 4) -> None:
    files = [big_png(k) for k in range(sessions * args.uploads)]
    kb = len(files[0]) / 1e3
    print(f"\nmemory: {sessions} sessions x {args.uploads} uploads of 8000 x 4960 PNGs ({kb:.0f} KB)")
    port = free_port()
    server = start_server(port)
    pid = server.pid
    try:
        base = f"http://127.0.0.1:{port}"
        asyncio.run(phase(base, 1, 1))  # the same warm server as in the tours
        print(f"RSS after a warm-up tour {memory_gb(pid):.2f} GB (peak so far {memory_gb(pid, 'VmHWM'):.2f})")
        times = asyncio.run(upload_sessions(base, sessions, args.uploads, files))
        peak = memory_gb(pid, "VmHWM")
        print(
            f"upload + rerun: median {statistics.median(times):.2f} s, max {max(times):.2f} s; "
            f"RSS now {memory_gb(pid):.2f} GB, peak {peak:.2f} GB (goal < {MEMORY_GOAL_GB} GB: "
            f"{'met' if peak < MEMORY_GOAL_GB else 'NOT met'})"
        )
    finally:
        server.terminate()
        server.wait(timeout=30)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--tours", type=int, default=2, help="tours per session")
    parser.add_argument("--uploads", type=int, default=2, help="40 MP uploads per session (memory)")
    parser.add_argument("--workers", type=int, nargs="+", help="through make serve's nginx, per count")
    parser.add_argument("--url", help="drive this server or proxy (already running) instead")
    parser.add_argument("--skip-tours", action="store_true")
    parser.add_argument("--skip-memory", action="store_true")
    args = parser.parse_args()
    if not args.skip_tours:
        tours_report(args)
    if not args.skip_memory:
        memory_report(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
