"""Running the API in several processes with uvicorn, each on its own listening socket.

uvicorn's ``--workers N`` binds one socket in the parent and hands it to every worker. The workers
then race to ``accept()`` on one queue, and the worker that wins takes every connection waiting at
that moment: with long-lived keep-alive connections (a reverse proxy's, or clients like the
intake benchmark's), one process ends up serving twice as many as the other and its requests wait
twice as long (measured: 20 and 44 of 64 connections, mean latencies 31 and 71 ms;
docs/performance.md). Known upstream: Kludex/uvicorn#2472 (open) and Kludex/uvicorn-worker#34.

On Linux each worker here binds its own socket to the same address with ``SO_REUSEPORT`` instead,
and the kernel spreads new connections over the workers by a hash of the connection. This is what
nginx's ``reuseport`` does. The HTTP server in each worker is still uvicorn's; the supervisor below
only starts the workers, replaces one that dies (with a growing pause, and gives up when one
fails to start the application), and stops them all on SIGINT/SIGTERM. Elsewhere (no
``SO_REUSEPORT``, or port 0), it is plain ``uvicorn.run(workers=N)``. A single process and the
``SO_REUSEPORT`` workers freeze what they loaded before serving (:func:`_loaded_config`);
uvicorn's own workers in the fallback do not.
"""

from __future__ import annotations

import gc
import logging
import multiprocessing
import signal
import socket
import threading
import time
from typing import Any

log = logging.getLogger("qifu.serve")
APP = "qifu.app:app"
STARTUP_FAILURE = 3  # uvicorn's exit code when the application fails to start (lifespan, import)
QUICK_DEATH = 5.0  # seconds: a worker dying sooner than this after it began to serve died "quickly"
MAX_QUICK_DEATHS = 5  # consecutive quick deaths after which the supervisor gives up


def reuse_port_supported() -> bool:
    """True on Linux, where ``SO_REUSEPORT`` spreads connections over the sockets of a group."""
    import sys

    return sys.platform.startswith("linux") and hasattr(socket, "SO_REUSEPORT")


def bind_reuse_port(host: str, port: int, backlog: int = 2048) -> socket.socket:
    """A listening TCP socket on ``(host, port)`` in the ``SO_REUSEPORT`` group of that address.

    Raises:
        OSError: the address cannot be bound (in use by a socket without ``SO_REUSEPORT``, ...).
    """
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                         flags=socket.AI_PASSIVE)[0]
    sock = socket.socket(family, kind, proto)  # proto = IPPROTO_TCP: accepted sockets get TCP_NODELAY
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)
        sock.listen(backlog)
        sock.set_inheritable(True)
    except OSError:
        sock.close()
        raise
    return sock


class ServingFailed(RuntimeError):
    """The API could not be served or kept running: the application failed to start (import
    error or lifespan start-up; ``exit_code`` 3, uvicorn's ``STARTUP_FAILURE``), or workers died
    before serving or within ``QUICK_DEATH`` seconds of it, ``MAX_QUICK_DEATHS`` times in a row
    (``exit_code`` is the last worker's, 128 + N when killed by signal N)."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def _loaded_config(host: str, port: int, options: dict[str, Any], app: str = APP):
    """uvicorn's config with the application imported, and everything loaded so far frozen.

    The modules, models and routes live as long as the process: ``gc.freeze()`` moves them out of
    the collector's reach, so a full collection scans only what requests created. Without it, a
    full collection walked ~175,000 objects in 150-200 ms, which made the slowest 1 % of
    submissions (docs/performance.md). This is the use the CPython documentation gives for it.

    Raises:
        ServingFailed: the application cannot be imported (exit code ``STARTUP_FAILURE``).
    """
    import uvicorn

    config = uvicorn.Config(app, host=host, port=port, **options)
    try:
        config.load()
    except SystemExit:  # uvicorn logs an import error it recognises, then exits
        raise ServingFailed("应用无法导入，见上方日志", STARTUP_FAILURE) from None
    except Exception as exc:
        log.exception("API cannot start")
        raise ServingFailed(f"应用无法导入：{exc}", STARTUP_FAILURE) from exc
    gc.collect()
    gc.freeze()
    return config


def _run(server, sockets=None) -> None:
    """Run a uvicorn ``server`` until it is stopped.

    Raises:
        ServingFailed: it never started serving (lifespan start-up or bind failed; uvicorn's exit
            code, ``STARTUP_FAILURE`` when it gave none).
    """
    try:
        server.run(sockets=sockets)
    except SystemExit as exc:  # uvicorn exits 3 (STARTUP_FAILURE) when the lifespan or the bind fails
        code = exc.code if isinstance(exc.code, int) else 1
        raise ServingFailed(f"应用未能启动（退出码 {code}），见上方日志", code) from None
    if not server.started:
        raise ServingFailed("应用未能启动，见上方日志", STARTUP_FAILURE)


def _worker(host: str, port: int, options: dict[str, Any], app: str = APP, ready: Any = None) -> None:
    """One API process of the ``SO_REUSEPORT`` group. Sets ``ready`` (a multiprocessing event)
    once it serves; exits with ``ServingFailed.exit_code`` when it cannot get there: the
    application cannot be imported, the socket cannot be bound, or the lifespan start-up fails."""
    import sys

    import uvicorn

    class _Server(uvicorn.Server):
        async def startup(self, sockets=None) -> None:
            await super().startup(sockets)
            if self.started and ready is not None:
                ready.set()

    try:
        config = _loaded_config(host, port, options, app)
        # bound only now that the application is loaded: a socket in the group gets its share of
        # new connections at once, and a worker still importing (at start, or replacing one that
        # died) would hold them unanswered meanwhile
        try:
            sock = bind_reuse_port(host, port)
        except OSError as exc:
            raise ServingFailed(f"无法监听 {host}:{port}：{exc}", STARTUP_FAILURE) from exc
        _run(_Server(config), [sock])
    except ServingFailed as exc:
        log.error("API process cannot start: %s", exc)
        sys.exit(exc.exit_code)


def check_address_free(host: str, port: int) -> None:
    """Raise :class:`OSError` (``EADDRINUSE``) when anything listens on ``(host, port)``.

    The probe binds *without* ``SO_REUSEPORT``: such a bind fails beside any listening socket,
    including another server's ``SO_REUSEPORT`` group (which a probe with the option would
    silently join, and the kernel would then split the connections between the two servers).
    ``SO_REUSEADDR`` lets the probe pass connections of an earlier run left in TIME_WAIT.
    """
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                         flags=socket.AI_PASSIVE)[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind(address)


class _Worker:
    """A supervised API process: its ``ready`` event is set once it serves, and ``ready_at`` is
    when the supervisor first saw that (monotonic seconds)."""

    def __init__(self, process: multiprocessing.Process, ready: Any) -> None:
        self.process, self.ready = process, ready
        self.ready_at: float | None = None

    def note_ready(self) -> None:
        if self.ready_at is None and self.ready.is_set():
            self.ready_at = time.monotonic()

    def died_quickly(self) -> bool:
        """Dead before it served, or within ``QUICK_DEATH`` seconds of serving: however slowly the
        host imports the application, a worker that crashes while starting counts as quick."""
        self.note_ready()
        return self.ready_at is None or time.monotonic() - self.ready_at < QUICK_DEATH


def _exit_status(exitcode: int | None) -> int:
    """A process's exit code as a shell reports it: killed by signal N (``-N``) is 128 + N."""
    if exitcode is None:
        return 1
    return 128 - exitcode if exitcode < 0 else exitcode


def serve(host: str = "127.0.0.1", port: int = 8000, workers: int = 1, *, app: str = APP,
          **options: Any) -> None:
    """Serve ``app`` (an import string, Qifu's API by default) on ``host:port`` with ``workers``
    processes; ``options`` go to :class:`uvicorn.Config` (``log_level``, ``access_log``, ...).
    Returns when stopped by SIGINT/SIGTERM.

    With several workers on Linux, a supervisor keeps them running: a worker that dies is
    replaced, after a pause that doubles with each quick death in a row (0.5 s up to 8 s; a
    death before the worker served, or within ``QUICK_DEATH`` seconds of it, is quick).

    Raises:
        OSError: the address is in use (checked once, before anything starts; not for port 0).
        ServingFailed: a worker failed to start the application, or workers kept dying at once.
    """
    import uvicorn

    if port != 0:
        check_address_free(host, port)
    if workers <= 1:
        _run(uvicorn.Server(_loaded_config(host, port, options, app)))
        return
    if port == 0 or not reuse_port_supported():  # uvicorn's own supervisor; nothing frozen here
        uvicorn.run(app, host=host, port=port, workers=workers, **options)
        return
    ctx = multiprocessing.get_context("spawn")
    stopping = threading.Event()

    def start() -> _Worker:
        ready = ctx.Event()
        process = ctx.Process(target=_worker, args=(host, port, options, app, ready), name="qifu-api")
        process.start()
        return _Worker(process, ready)

    def stop(_sig, _frame) -> None:
        stopping.set()

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    processes = [start() for _ in range(workers)]
    quick_deaths = 0
    log.info("API: %d processes on %s:%d (SO_REUSEPORT)", workers, host, port)
    try:
        while not stopping.wait(0.5):
            for i, worker in enumerate(processes):
                if worker.process.is_alive():
                    worker.note_ready()
                    continue
                code = _exit_status(worker.process.exitcode)
                if code == STARTUP_FAILURE:
                    raise ServingFailed(f"API 进程未能启动应用（退出码 {code}），见上方日志", code)
                quick_deaths = quick_deaths + 1 if worker.died_quickly() else 0
                if quick_deaths >= MAX_QUICK_DEATHS:
                    raise ServingFailed(f"API 进程连续 {quick_deaths} 次启动后即退出（退出码 {code}）", code or 1)
                pause = min(0.5 * 2 ** max(quick_deaths - 1, 0), 8.0) if quick_deaths else 0.0
                log.warning("API process %s exited with %s; restarting in %.1f s", worker.process.pid, code, pause)
                if stopping.wait(pause):
                    break
                processes[i] = start()
    finally:
        for worker in processes:
            if worker.process.is_alive():
                worker.process.terminate()  # SIGTERM: uvicorn finishes the requests in flight
        for worker in processes:
            worker.process.join(timeout=30)
            if worker.process.is_alive():
                worker.process.kill()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
