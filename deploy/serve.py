"""Several Streamlit processes behind nginx, on one public port (`make serve WORKERS=n`).

    python deploy/serve.py [--workers N] [--port 8501] [--address 0.0.0.0] [--run-dir DIR]
                           [--no-restart] [--check]

Why: one Streamlit process runs every session's script under one GIL (plotly figures and
Streamlit's own work are Python), so one process uses about one core however many sessions it
has. N processes use N cores. nginx (the system's package) spreads new visitors over them, keeps
each browser on its worker (a cookie, see deploy/nginx.conf.template), proxies the websockets and
routes around a worker that is down.

What it does: picks N free local ports, writes the nginx config for them into the run folder
(a new temporary folder unless ``--run-dir``), checks it with ``nginx -t``, starts the workers
(``streamlit run app.py`` on 127.0.0.1), waits until each answers ``/_stcore/health``, starts
nginx on ``--address:--port``, then watches: a worker that exits or stops answering its health
check is restarted (unless ``--no-restart``). Ctrl-C or SIGTERM stops nginx and every worker.
``workers.json`` in the run folder lists the ports and pids (the tests read it). ``--check`` only
writes and checks the config, then exits.

The workers share the runs folder (``RESVIZ_RUNS_DIR``, else ``~/.cache/resviz/runs``), the
datasets folder and torch's weight cache, since they inherit this process's environment. Each
gets ``cores / N`` torch threads unless ``RESVIZ_THREADS`` is set, so N workers do not fight
over the cores.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = Path(__file__).with_name("nginx.conf.template")
HEALTH = "/_stcore/health"
FAIL_TIMEOUT_S = 10  # how long nginx leaves a worker alone after a failed connection
HEALTH_EVERY_S = 2.0
# A worker busy with 8 sessions' figures still answers its health check (Streamlit's event loop),
# but slowly under the GIL: restart only one silent for about half a minute (5 misses of 5 s).
HEALTH_TIMEOUT_S = 5.0
HEALTH_MISSES = 5


def cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS
        return os.cpu_count() or 1


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def find_nginx(explicit: str | None = None) -> str | None:
    """The nginx binary: ``explicit``, else on PATH, else Debian's /usr/sbin (not on a user's PATH)."""
    for candidate in (explicit, shutil.which("nginx"), "/usr/sbin/nginx"):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


# --------------------------------------------------------------------------- the config


def render_config(ports: list[int], listen: str, run_dir: Path) -> str:
    """The nginx config for workers on 127.0.0.1:``ports``, public on ``listen`` ("addr:port")."""

    def server(port: int, extra: str = "") -> str:
        return f"        server 127.0.0.1:{port} max_fails=1 fail_timeout={FAIL_TIMEOUT_S}s{extra};"

    names = [f"w{i}" for i in range(len(ports))]
    sticky = []
    for i, port in enumerate(ports):
        backups = [f"        server 127.0.0.1:{p} backup;" for j, p in enumerate(ports) if j != i]
        sticky.append("\n".join([f"    upstream resviz_{names[i]} {{", server(port), *backups, "    }"]))
    fills = {
        "@RUN_DIR@": str(run_dir),
        "@LISTEN@": listen,
        "@POOL_MAP@": "\n".join(f"        {n} resviz_{n};" for n in names),
        "@SERVED_MAP@": "\n".join(
            f'        "~127\\.0\\.0\\.1:{p}$" {n};' for n, p in zip(names, ports, strict=True)
        ),
        "@ANY_SERVERS@": "\n".join(server(p) for p in ports),
        "@STICKY_UPSTREAMS@": "\n".join(sticky),
    }
    text = TEMPLATE.read_text()
    for marker, value in fills.items():
        text = text.replace(marker, value)
    return text


def write_config(ports: list[int], listen: str, run_dir: Path) -> Path:
    run_dir.mkdir(parents=True, exist_ok=True)
    # nginx's workers drop to an unprivileged user when it starts as root: they must reach the run
    # folder (nginx itself creates and hands them the temporary folders inside).
    run_dir.chmod(0o755)
    conf = run_dir / "nginx.conf"
    conf.write_text(render_config(ports, listen, run_dir))
    return conf


def nginx_cmd(nginx: str, conf: Path, *extra: str) -> list[str]:
    # -e: the startup error log goes to the run folder too, not /var/log/nginx (needs no root).
    return [nginx, "-p", str(conf.parent), "-e", str(conf.parent / "error.log"), "-c", str(conf), *extra]


def check_config(nginx: str, conf: Path) -> tuple[bool, str]:
    """nginx's own syntax check (``nginx -t``) of ``conf``: whether it passed, and what it said."""
    proc = subprocess.run(nginx_cmd(nginx, conf, "-t"), capture_output=True, text=True, timeout=30)
    return proc.returncode == 0, (proc.stdout + proc.stderr).strip()


# --------------------------------------------------------------------------- the processes


def healthy(port: int, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{HEALTH}", timeout=timeout) as r:
            return r.read().strip() == b"ok"
    except OSError:
        return False


@dataclass
class Worker:
    index: int
    port: int
    env: dict[str, str]
    log: Path
    proc: subprocess.Popen | None = None
    misses: int = 0  # consecutive failed health checks
    answered: bool = False  # has answered a health check since its last start
    restarts: int = 0
    given_up: bool = False  # dead, and not to be restarted

    def start(self) -> None:
        cmd = [sys.executable, "-m", "streamlit", "run", str(ROOT / "app.py")]
        cmd += ["--server.address", "127.0.0.1", "--server.port", str(self.port)]
        cmd += ["--server.headless", "true", "--browser.gatherUsageStats", "false"]
        with self.log.open("a") as log:
            # Its own process group: Ctrl-C in the terminal reaches serve.py, which stops the
            # workers in order, rather than every process at once.
            self.proc = subprocess.Popen(
                cmd, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        self.misses, self.answered = 0, False

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


def stop_process(proc: subprocess.Popen | None, timeout: float = 10.0) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@dataclass
class Serve:
    """N workers and nginx in front of them; ``start()``, then ``watch()`` or ``stop()``."""

    workers: int
    port: int
    address: str = "0.0.0.0"
    run_dir: Path | None = None
    restart: bool = True
    nginx: str | None = None
    pool: list[Worker] = field(default_factory=list)
    proxy: subprocess.Popen | None = None

    def __post_init__(self) -> None:
        self.nginx = find_nginx(self.nginx)
        if self.nginx is None:
            raise SystemExit(
                "nginx is not installed: `make setup-dev` (or apt-get install nginx) installs it."
            )
        self.run_dir = Path(self.run_dir or tempfile.mkdtemp(prefix="resviz-serve-"))
        self.run_dir.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ)
        env.setdefault("RESVIZ_THREADS", str(max(1, cores() // self.workers)))
        # One cookie secret for all: Streamlit signs its XSRF cookie with it, so an upload still
        # passes the check after a visitor has been moved to another worker.
        env.setdefault("STREAMLIT_SERVER_COOKIE_SECRET", secrets.token_hex(16))
        self.pool = [
            Worker(i, free_port(), env, self.run_dir / f"worker{i}.log") for i in range(self.workers)
        ]

    @property
    def host(self) -> str:
        """Where this machine reaches the public port ("all addresses" includes the loopback)."""
        return "127.0.0.1" if self.address in ("0.0.0.0", "::", "[::]") else self.address

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def write_and_check(self) -> Path:
        conf = write_config([w.port for w in self.pool], f"{self.address}:{self.port}", self.run_dir)
        ok, said = check_config(self.nginx, conf)
        if not ok:
            raise SystemExit(f"nginx refused the generated config {conf}:\n{said}")
        return conf

    def start(self, timeout: float = 180.0) -> Serve:
        conf = self.write_and_check()
        for w in self.pool:
            w.start()
        deadline = time.monotonic() + timeout
        for w in self.pool:
            while not healthy(w.port):
                if not w.alive():
                    self.stop()
                    raise SystemExit(f"worker {w.index} exited at start; see {w.log}")
                if time.monotonic() > deadline:
                    self.stop()
                    raise SystemExit(f"worker {w.index} not healthy after {timeout:.0f} s; see {w.log}")
                time.sleep(0.2)
        # Its own session too: Ctrl-C reaches serve.py alone, which stops nginx, then the workers.
        self.proxy = subprocess.Popen(nginx_cmd(self.nginx, conf), cwd=self.run_dir, start_new_session=True)
        while not self._proxy_up():
            if self.proxy.poll() is not None:
                self.stop()
                raise SystemExit(f"nginx exited at start; see {self.run_dir / 'error.log'}")
            time.sleep(0.1)
        self._write_state()
        return self

    def _proxy_up(self) -> bool:
        try:
            with socket.create_connection((self.host, self.port), timeout=1):
                return True
        except OSError:
            return False

    def _write_state(self) -> None:
        state = {
            "url": self.url,
            "proxy_pid": self.proxy.pid if self.proxy else None,
            "workers": [{"name": f"w{w.index}", "port": w.port, "pid": w.proc.pid} for w in self.pool],
        }
        (self.run_dir / "workers.json").write_text(json.dumps(state, indent=1))

    def check_once(self) -> None:
        """One round of the active health check: restart what died or stopped answering."""
        for w in self.pool:
            if w.alive():
                if healthy(w.port, HEALTH_TIMEOUT_S):
                    w.answered, w.misses = True, 0
                    continue
                # A worker still importing torch does not answer yet: count only after its first answer.
                w.misses += w.answered
                if w.misses < HEALTH_MISSES:
                    continue
                print(f"worker {w.index} (:{w.port}) stopped answering {HEALTH}", flush=True)
                stop_process(w.proc)
            elif w.given_up:
                continue
            else:
                print(f"worker {w.index} (:{w.port}) exited with {w.proc.returncode}", flush=True)
            if self.restart:
                w.restarts += 1
                print(f"restarting worker {w.index} (restart {w.restarts})", flush=True)
                w.start()
                self._write_state()
            else:
                w.given_up = True  # nginx routes around it

    def watch(self) -> int:
        """Until nginx exits or a signal asks to stop; then stop everything."""
        stop = {"asked": False}

        def asked(signum, _frame) -> None:
            stop["asked"] = True

        signal.signal(signal.SIGTERM, asked)
        signal.signal(signal.SIGINT, asked)
        try:
            while not stop["asked"]:
                if self.proxy.poll() is not None:
                    print(f"nginx exited with {self.proxy.returncode}; stopping", flush=True)
                    return 1
                self.check_once()
                time.sleep(HEALTH_EVERY_S)
            return 0
        finally:
            self.stop()

    def stop(self) -> None:
        stop_process(self.proxy)
        for w in self.pool:
            stop_process(w.proc)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=cores(), help="Streamlit processes (default: cores)")
    parser.add_argument("--port", type=int, default=8501, help="the public port (default 8501)")
    parser.add_argument("--address", default="0.0.0.0", help="the public address (default: all)")
    parser.add_argument("--run-dir", type=Path, help="config, logs and pids (default: a new temp folder)")
    parser.add_argument("--nginx", help="the nginx binary (default: on PATH or /usr/sbin/nginx)")
    parser.add_argument("--no-restart", action="store_true", help="leave a dead worker dead")
    parser.add_argument("--check", action="store_true", help="write and check the config, then exit")
    args = parser.parse_args(argv)
    if args.workers < 1:
        print("--workers must be at least 1.", file=sys.stderr)
        return 2
    serve = Serve(args.workers, args.port, args.address, args.run_dir, not args.no_restart, args.nginx)
    if args.check:
        conf = serve.write_and_check()
        print(f"nginx accepts {conf}")
        return 0
    serve.start()
    print(
        f"resviz: {args.workers} worker(s) behind nginx at {serve.url} "
        f"(ports {', '.join(str(w.port) for w in serve.pool)}; logs in {serve.run_dir}); Ctrl-C stops",
        flush=True,
    )
    return serve.watch()


if __name__ == "__main__":
    raise SystemExit(main())
