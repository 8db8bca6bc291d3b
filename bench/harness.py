"""Private servers for the reliability runs (tests/reliability/test_reliability.py and bench/reliability.py):
a PostgreSQL cluster of our own that may be restarted, a ``qifu serve`` subprocess, free ports.

The shared PostgreSQL on 5432 and Redis on 6379 are never stopped or restarted: a run that breaks
a server starts its own (``initdb`` into a temporary directory, ``pg_ctl`` on a free port).
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(predicate: Callable[[], bool], timeout: float = 30.0, interval: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


def pg_bin_dir() -> Path:
    """The newest ``/usr/lib/postgresql/<major>/bin`` (``QIFU_PG_BIN`` overrides)."""
    if os.environ.get("QIFU_PG_BIN"):
        return Path(os.environ["QIFU_PG_BIN"])
    dirs = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name))
    if not dirs:
        raise RuntimeError("no PostgreSQL binaries under /usr/lib/postgresql/*/bin")
    return Path(dirs[-1])


class PrivatePostgres:
    """A PostgreSQL cluster in a temporary directory on a free port (trust authentication, user
    ``postgres``). Run as the ``postgres`` system user when this process is root (initdb refuses
    root). ``restart()`` is a fast shutdown and start: every connection is cut."""

    def __init__(self) -> None:
        self.bin = pg_bin_dir()
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="qifu-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self.server_url = f"postgresql+psycopg://postgres@127.0.0.1:{self.port}"
        self._as_root = os.geteuid() == 0
        if self._as_root:
            shutil.chown(self.root, "postgres", "postgres")
        self.root.chmod(0o700)

    def _run(self, *args: str, timeout: float = 120) -> None:
        cmd = [str(self.bin / args[0]), *args[1:]]
        if self._as_root:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        subprocess.run(cmd, check=True, timeout=timeout, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def _options(self) -> str:
        return (f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={self.root} "
                "-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200 "
                "-c shared_buffers=64MB")

    def start(self) -> PrivatePostgres:
        if not self.data.exists():
            self._run("initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust", "-E", "UTF8",
                      "--locale=C.UTF-8", "--no-sync")
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", self._options(), "-w", "-t", "60",
                  "start")
        return self

    def restart(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", self._options(), "-m", "fast",
                  "-w", "-t", "60", "restart")

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")

    def cleanup(self) -> None:
        try:
            self.stop()
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


class ApiServer:
    """``qifu serve`` in a subprocess (the production command), its output kept in ``lines``."""

    def __init__(self, env: dict[str, str], workers: int = 2, port: int | None = None,
                 access_log: bool = False) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, "QIFU_ENVIRONMENT": "test", **env}
        self.workers = workers
        self.access_log = access_log
        self.lines: list[str] = []
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 90) -> ApiServer:
        cmd = [sys.executable, "-c", "import sys; from qifu.cli import app; sys.argv[0] = 'qifu'; app()",
               "serve", "--port", str(self.port), "--workers", str(self.workers), "--log-level", "warning"]
        if not self.access_log:
            cmd.append("--no-access-log")
        else:
            cmd[-1] = "info"
        self.proc = subprocess.Popen(cmd, cwd=ROOT, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True, start_new_session=True)
        threading.Thread(target=self._read, daemon=True).start()

        def ready() -> bool:
            if self.proc.poll() is not None:
                raise RuntimeError("qifu serve exited:\n" + "".join(self.lines))
            try:
                return httpx.get(self.url + "/readyz", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        if not wait_until(ready, timeout=timeout, interval=0.2):
            self.stop()
            raise RuntimeError("qifu serve not ready:\n" + "".join(self.lines))
        return self

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line)

    def rss_kib(self) -> dict[int, int]:
        """Resident memory (KiB) of the server and each of its child processes, by pid."""
        out = {}
        pids = [self.proc.pid]
        try:
            children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text().split()
            pids += [int(p) for p in children]
        except OSError:
            pass
        for pid in pids:
            try:
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        out[pid] = int(line.split()[1])
            except OSError:
                continue
        return out

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=40)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, 9)
                self.proc.wait(timeout=10)
