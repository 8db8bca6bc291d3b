"""Serving under load: ``qifu serve --workers N`` (qifu/serve.py) and the single-flight reads
of per-process caches (an expired actor, service/auth/dependencies.py; stale calendar and policy
caches, service/ticketing/intake_pg.py).

The serving tests are Linux-only on purpose: ``SO_REUSEPORT`` missing there is a failure, not a
skip. The single-flight tests fire their requests from one event loop through the ASGI transport
against an application whose sessions are real, committing sessions on a database of this
module's own, and count the reads with a slowed-down wrapper of the reading function.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import multiprocessing
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from http.client import HTTPConnection
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from qifu.serve import (
    QUICK_DEATH,
    STARTUP_FAILURE,
    _exit_status,
    _Worker,
    bind_reuse_port,
    check_address_free,
    reuse_port_supported,
)
from service.db import make_engine
from tests.tickets.test_concurrency import _headers, _real_app

ROOT = Path(__file__).resolve().parents[2]
HOST = "127.0.0.1"
LISTEN, ESTABLISHED = "0A", "01"  # socket states in /proc/net/tcp


# --------------------------------------------------------------------------- helpers

def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def _wait_for(condition: Callable[[], Any], timeout: float, what: str, interval: float = 0.1) -> Any:
    """Poll ``condition()`` until it returns something truthy (returned); fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def _tcp_sockets() -> dict[int, tuple[str, int, int]]:
    """Every TCP socket of this network namespace: inode -> (state, local port, remote port)."""
    sockets = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except FileNotFoundError:
            continue
        for line in lines:
            fields = line.split()
            local, remote, state, inode = fields[1], fields[2], fields[3], int(fields[9])
            sockets[inode] = (state, int(local.rsplit(":", 1)[1], 16), int(remote.rsplit(":", 1)[1], 16))
    return sockets


def _socket_inodes(pid: int) -> set[int]:
    """Inodes of the sockets process ``pid`` has open (empty when it is gone)."""
    inodes = set()
    try:
        fds = list(Path(f"/proc/{pid}/fd").iterdir())
    except (FileNotFoundError, ProcessLookupError):
        return inodes
    for fd in fds:
        try:
            target = os.readlink(fd)
        except OSError:  # closed meanwhile
            continue
        if target.startswith("socket:["):
            inodes.add(int(target[len("socket:["):-1]))
    return inodes


def _listening(pid: int, port: int) -> set[int]:
    tcp = _tcp_sockets()
    return {i for i in _socket_inodes(pid) if i in tcp and tcp[i][0] == LISTEN and tcp[i][1] == port}


def _stat(pid: int) -> tuple[str, int] | None:
    """(state, parent pid) of ``pid``, or None when it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    state, ppid = text.rsplit(")", 1)[1].split()[:2]  # the command name may contain spaces
    return state, int(ppid)


def _workers(supervisor: int) -> set[int]:
    """The live API processes of ``supervisor``: its children started by multiprocessing's spawn
    (not its resource tracker, not a dead worker not yet reaped)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        stat = _stat(int(entry.name))
        if stat is None or stat[1] != supervisor or stat[0] == "Z":
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except (FileNotFoundError, ProcessLookupError):
            continue
        if b"spawn_main" in cmdline:
            found.add(int(entry.name))
    return found


def _gone(pid: int) -> bool:
    stat = _stat(pid)
    return stat is None or stat[0] == "Z"


def _healthz(port: int, timeout: float = 2) -> bool:
    try:
        return httpx.get(f"http://{HOST}:{port}/healthz", timeout=timeout).status_code == 200
    except httpx.HTTPError:
        return False


# --------------------------------------------------------------------------- SO_REUSEPORT

def test_bind_reuse_port_spreads_connections_over_the_group():
    """Two sockets bound to one address with ``SO_REUSEPORT`` both listen, and the kernel hands
    each some of 64 new connections (by a hash of the connection: all 64 to one socket would
    happen once in 2**63 runs)."""
    assert reuse_port_supported(), "SO_REUSEPORT must be available on Linux"
    port = _free_port()
    group = [bind_reuse_port(HOST, port), bind_reuse_port(HOST, port)]
    clients: list[socket.socket] = []
    accepted: list[list[socket.socket]] = [[], []]
    try:
        for sock in group:
            assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN) == 1
            assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT) == 1
            assert sock.getsockname() == (HOST, port)
            sock.setblocking(False)
        for _ in range(64):
            clients.append(socket.create_connection((HOST, port), timeout=5))

        def accept_all() -> bool:
            for sock, conns in zip(group, accepted, strict=True):
                while True:
                    try:
                        conn, _ = sock.accept()
                    except BlockingIOError:
                        break
                    conns.append(conn)
            return sum(map(len, accepted)) >= 64

        _wait_for(accept_all, 5, "64 connections to be accepted", interval=0.01)
        counts = [len(conns) for conns in accepted]
        assert sum(counts) == 64, counts
        assert all(n > 0 for n in counts), f"the kernel gave every connection to one socket: {counts}"
        assert all(conn.getsockname()[1] == port for conns in accepted for conn in conns)
    finally:
        for sock in (*clients, *group, *accepted[0], *accepted[1]):
            sock.close()


def test_bind_reuse_port_refuses_an_address_held_without_it():
    """An address a socket without ``SO_REUSEPORT`` listens on cannot join a group: OSError
    (EADDRINUSE), and the socket is not leaked; once that socket is closed, binding works."""
    plain = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        plain.bind((HOST, 0))
        plain.listen()
        port = plain.getsockname()[1]
        with pytest.raises(OSError) as raised:
            bind_reuse_port(HOST, port)
        assert raised.value.errno == errno.EADDRINUSE
    finally:
        plain.close()
    bind_reuse_port(HOST, port).close()


def test_address_check_sees_another_servers_reuse_port_group():
    """A group of ``SO_REUSEPORT`` sockets already listening (another server) makes the start-up
    check fail with EADDRINUSE, although a socket of our own with the option could join it."""
    group = bind_reuse_port(HOST, 0)
    port = group.getsockname()[1]
    try:
        with pytest.raises(OSError) as raised:
            check_address_free(HOST, port)
        assert raised.value.errno == errno.EADDRINUSE
        bind_reuse_port(HOST, port).close()  # what the check is there to stop
    finally:
        group.close()
    check_address_free(HOST, port)


def _serve_in_subprocess(port: int, workers: int, app: str) -> subprocess.CompletedProcess:
    """Run :func:`qifu.serve.serve` in a fresh interpreter (it freezes the collector and sets
    up uvicorn's logging, neither of which belongs in the test process); its exit code is
    ``ServingFailed.exit_code``, or 0 when ``serve`` returned."""
    code = ("import sys\n"
            "from qifu.serve import ServingFailed, serve\n"
            "try:\n"
            f"    serve({HOST!r}, {port}, workers={workers}, app={app!r}, log_level='critical')\n"
            "except ServingFailed as exc:\n"
            "    print(exc, file=sys.stderr)\n"
            "    sys.exit(exc.exit_code)\n")
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.parametrize("app", ["tests.serving_apps:failing_startup", "tests.serving_apps:no_such_app",
                                 "tests.serving_broken_import:app"])
def test_serve_gives_up_when_the_application_cannot_start(app: str, workers: int):
    """An application that fails to start (lifespan error, an import string naming nothing, a
    module raising on import) is not restarted in a loop: :func:`serve` raises ``ServingFailed``
    with exit code 3 (uvicorn's STARTUP_FAILURE), at the first failure, and leaves nothing
    listening on the port."""
    port = _free_port()
    began = time.monotonic()
    done = _serve_in_subprocess(port, workers, app)
    assert done.returncode == STARTUP_FAILURE, done.stderr
    assert time.monotonic() - began < 20, "restarted instead of giving up"
    check_address_free(HOST, port)


def test_quick_deaths_are_counted_from_serving_and_signals_map_to_shell_codes():
    """A worker counts as dying quickly when it dies before it served, however long its start
    took, or within ``QUICK_DEATH`` seconds of serving; a kill by signal N is exit status 128 + N."""
    ready = multiprocessing.get_context("spawn").Event()
    worker = _Worker(process=None, ready=ready)  # type: ignore[arg-type]
    assert worker.died_quickly()  # never served
    ready.set()
    assert worker.died_quickly()  # served just now
    worker.ready_at = time.monotonic() - QUICK_DEATH - 1
    assert not worker.died_quickly()
    assert _exit_status(-signal.SIGKILL) == 137 and _exit_status(-signal.SIGTERM) == 143
    assert _exit_status(3) == 3 and _exit_status(None) == 1


@pytest.mark.parametrize("workers", [1, 2])
def test_qifu_serve_exits_non_zero_on_an_address_in_use(workers: int):
    """``qifu serve`` on a port another server listens on: exit code 1 and a message naming the
    address, before anything starts."""
    holder = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        holder.bind((HOST, 0))
        holder.listen()
        port = holder.getsockname()[1]
        done = subprocess.run([sys.executable, "-m", "qifu.cli", "serve", "--workers", str(workers),
                               "--port", str(port)], cwd=ROOT, capture_output=True, text=True,
                              timeout=60)
    finally:
        holder.close()
    assert done.returncode == 1, done.stderr
    assert f"{HOST}:{port}" in done.stderr


# --------------------------------------------------------------------------- qifu serve --workers 2

def test_serve_two_workers_each_with_its_own_socket(tmp_path: Path):
    """``qifu serve --workers 2``: two API processes, each with a listening socket of its own;
    40 keep-alive connections are answered by both; a worker killed with SIGKILL is replaced and
    the API keeps answering; SIGTERM to the supervisor stops it and every worker."""
    port = _free_port()
    env = {**os.environ, "QIFU_DATABASE_URL": f"sqlite:///{tmp_path / 'serve.db'}", "QIFU_ENVIRONMENT": "test"}
    log_path = tmp_path / "serve.log"
    command = [sys.executable, "-m", "qifu.cli", "serve", "--host", HOST, "--port", str(port),
               "--workers", "2", "--log-level", "warning"]
    clients: list[HTTPConnection] = []
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)

    def output() -> str:
        return log_path.read_text(errors="replace")

    def two_listening_workers() -> dict[int, set[int]] | None:
        assert proc.poll() is None, f"qifu serve exited with {proc.returncode}:\n{output()}"
        listening = {pid: _listening(pid, port) for pid in _workers(proc.pid)}
        return listening if len(listening) == 2 and all(listening.values()) else None

    try:
        _wait_for(lambda: proc.poll() is not None or _healthz(port), 30, "GET /healthz to answer 200")
        assert proc.poll() is None, f"qifu serve exited with {proc.returncode}:\n{output()}"
        listening = _wait_for(two_listening_workers, 30, "two workers listening")
        assert all(len(inodes) == 1 for inodes in listening.values()), listening
        first, second = (next(iter(inodes)) for inodes in listening.values())
        assert first != second, "the workers share one listening socket"
        assert not _listening(proc.pid, port), "the supervisor must not keep a listening socket"

        # 40 keep-alive connections, each with an answered request, kept open
        for _ in range(40):
            client = HTTPConnection(HOST, port, timeout=10)
            client.request("GET", "/healthz")
            response = client.getresponse()
            assert response.status == 200 and response.read() == b'{"status":"ok"}'
            assert not response.will_close
            clients.append(client)
        client_ports = {c.sock.getsockname()[1] for c in clients}
        tcp = _tcp_sockets()
        served = {pid: sum(1 for i in _socket_inodes(pid)
                           if i in tcp and tcp[i][0] == ESTABLISHED and tcp[i][1] == port
                           and tcp[i][2] in client_ports)
                  for pid in listening}
        assert sum(served.values()) == 40, served
        assert all(n > 0 for n in served.values()), f"one worker served every connection: {served}"
        for client in clients:
            client.close()
        clients.clear()

        # a worker that dies is replaced, and the API keeps answering
        killed = min(listening)
        os.kill(killed, signal.SIGKILL)
        _wait_for(lambda: _gone(killed), 5, f"worker {killed} to die")
        replaced = _wait_for(lambda: (w := two_listening_workers()) and killed not in w and w, 15,
                             "the killed worker to be replaced")
        assert set(replaced) - set(listening), replaced
        # a worker joins the group only when it can answer: none of 20 new connections (about
        # half of them go to the new worker) waits for it to finish loading the application
        # (~2 s here), which would leave requests unanswered while the other worker is idle
        answered = [_healthz(port, timeout=1) for _ in range(20)]
        assert all(answered), f"{answered.count(False)} of 20 requests unanswered after 1 s"
        assert "restarting" in output()

        # SIGTERM stops the supervisor and all its workers
        os.kill(proc.pid, signal.SIGTERM)
        try:
            returncode = proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pytest.fail(f"qifu serve did not stop within 30 s of SIGTERM:\n{output()}")
        assert returncode == 0, output()
        workers = set(listening) | set(replaced)
        _wait_for(lambda: all(_gone(pid) for pid in workers), 5, "every worker to exit")
        assert not any(state == LISTEN and local == port for state, local, _ in _tcp_sockets().values())
    finally:
        for client in clients:
            client.close()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # the supervisor's session: it and every worker
        proc.wait(timeout=10)


# --------------------------------------------------------------------------- single-flight reads

@pytest.fixture(scope="module")
def serving_engine(worker_id: str) -> Iterator[Engine]:
    """A migrated and seeded database of this module's own (these tests commit tickets and
    deactivate a user for a moment), with its own engine; dropped at the end."""
    from tests.conftest import PG_SERVER
    from tests.scratch_db import scratch_database

    with scratch_database(PG_SERVER, f"qifu_serving_{worker_id}_{os.getpid()}", enterprises=40) as url:
        engine = make_engine(url)
        yield engine
        engine.dispose()


class _InFlight:
    """ASGI wrapper counting the HTTP requests in progress."""

    def __init__(self, app) -> None:
        self.app, self.now = app, 0

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        self.now += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.now -= 1


class _SlowCounted:
    """Wraps a blocking read: counts the calls, takes ``delay`` seconds longer, and notes how many
    requests were in flight when each call finished."""

    def __init__(self, fn: Callable[..., Any], delay: float, in_flight: _InFlight) -> None:
        self.fn, self.delay, self.in_flight = fn, delay, in_flight
        self.calls = 0
        self.in_flight_at_end: list[int] = []

    def __call__(self, *args: Any) -> Any:
        self.calls += 1
        time.sleep(self.delay)
        try:
            return self.fn(*args)
        finally:
            self.in_flight_at_end.append(self.in_flight.now)


def _client(app) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://qifu.test")


def _run(coro_fn: Callable[[], Any]) -> Any:
    """Run ``coro_fn()`` on a new event loop inside an application lifespan's async pools."""
    from service.db import close_async_pools, open_async_pools

    async def main() -> Any:
        await open_async_pools()
        try:
            return await asyncio.wait_for(coro_fn(), timeout=30)
        finally:
            await close_async_pools()

    return asyncio.run(main())


def test_expired_actor_is_read_once_for_concurrent_requests(serving_engine: Engine,
                                                            monkeypatch: pytest.MonkeyPatch):
    """The cached actor of a user expires; 10 requests of that user arriving together wait for
    one read of ``user_account`` (not one each), and all succeed."""
    from service.auth import dependencies as auth_deps

    ttl = 0.5
    monkeypatch.setattr(auth_deps, "ACTOR_TTL_SECONDS", ttl)
    app = _InFlight(_real_app(serving_engine))
    reads = _SlowCounted(auth_deps._load_actor, 0.2, app)
    monkeypatch.setattr(auth_deps, "_load_actor", reads)
    headers = _headers(serving_engine, "ent1")
    auth_deps.clear_actor_cache()

    async def scenario() -> list[httpx.Response]:
        async with _client(app) as client:
            first = await client.get("/api/v1/me", headers=headers)
            assert first.status_code == 200, first.text
            assert reads.calls == 1
            await asyncio.sleep(ttl * 1.1)  # the cached actor has expired
            return await asyncio.gather(*(client.get("/api/v1/me", headers=headers) for _ in range(10)))

    responses = _run(scenario)
    assert [r.status_code for r in responses] == [200] * 10, [r.text for r in responses]
    assert {r.json()["username"] for r in responses} == {"ent1"}
    assert reads.calls == 2, f"{reads.calls - 1} reads of the expired actor for 10 concurrent requests"
    assert reads.in_flight_at_end[1] == 10, "the requests did not overlap the read: the test proves nothing"


def test_failed_actor_read_answers_every_waiting_request_401(serving_engine: Engine,
                                                             monkeypatch: pytest.MonkeyPatch):
    """The one read of an expired actor finds the user deactivated (by another process): every
    request that waited for it is answered 401, none 500, and none reads more than once."""
    from service.auth import dependencies as auth_deps

    ttl = 0.5
    monkeypatch.setattr(auth_deps, "ACTOR_TTL_SECONDS", ttl)
    app = _InFlight(_real_app(serving_engine))
    reads = _SlowCounted(auth_deps._load_actor, 0.2, app)
    monkeypatch.setattr(auth_deps, "_load_actor", reads)
    username = "ent2"
    headers = _headers(serving_engine, username)
    auth_deps.clear_actor_cache()

    def set_active(active: bool) -> None:  # a plain connection: as another process would
        with serving_engine.connect() as conn:
            conn.execute(sa.text("UPDATE user_account SET is_active = :a WHERE username = :u"),
                         {"a": active, "u": username})
            conn.commit()

    async def scenario() -> list[httpx.Response]:
        async with _client(app) as client:
            first = await client.get("/api/v1/me", headers=headers)
            assert first.status_code == 200, first.text
            await asyncio.to_thread(set_active, False)
            await asyncio.sleep(ttl * 1.1)
            return await asyncio.gather(*(client.get("/api/v1/me", headers=headers) for _ in range(10)))

    try:
        responses = _run(scenario)
    finally:
        set_active(True)
        auth_deps.clear_actor_cache()
    assert [r.status_code for r in responses] == [401] * 10, [(r.status_code, r.text) for r in responses]
    assert all(r.headers["content-type"].startswith("application/problem+json") for r in responses)
    assert reads.in_flight_at_end[1] == 10, "the requests did not overlap the read: the test proves nothing"
    assert 2 <= reads.calls <= 11, reads.calls  # the first request, then at most one per request


def test_stale_reference_caches_are_refreshed_once_for_concurrent_submissions(
        serving_engine: Engine, monkeypatch: pytest.MonkeyPatch):
    """With the calendar and policy caches stale, 8 submissions arriving together on the
    one-statement path (intake_pg) wait for one refresh; all are created."""
    from service.calendar.service import clear_cache as clear_calendar
    from service.sla.policy import clear_cache as clear_policies
    from service.ticketing import intake_pg

    app = _InFlight(_real_app(serving_engine))
    reads = _SlowCounted(intake_pg._read_caches, 0.2, app)
    monkeypatch.setattr(intake_pg, "_read_caches", reads)
    headers = _headers(serving_engine, "ent1")
    tag = uuid.uuid4().hex[:8]
    n = 8

    async def scenario() -> list[httpx.Response]:
        async with _client(app) as client:
            clear_calendar()
            clear_policies()
            return await asyncio.gather(*(
                client.post("/api/v1/tickets", headers=headers,
                            json={"title": f"缓存刷新 {tag} {i}", "description": "多个提交同时发现缓存过期",
                                  "category_code": "problem.labour"})
                for i in range(n)))

    responses = _run(scenario)
    assert [r.status_code for r in responses] == [201] * n, [r.text for r in responses]
    assert len({r.json()["number"] for r in responses}) == n
    assert {r.json()["title"] for r in responses} == {f"缓存刷新 {tag} {i}" for i in range(n)}
    assert reads.calls == 1, f"{reads.calls} refreshes of the reference caches for {n} concurrent submissions"
    assert reads.in_flight_at_end == [n], "the requests did not overlap the refresh: the test proves nothing"
