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
only starts the workers, restarts one that dies, and stops them all on SIGINT/SIGTERM.
Elsewhere (no ``SO_REUSEPORT``, or port 0), it is plain ``uvicorn.run(workers=N)``. Every process
freezes what it loaded before serving (:func:`_loaded_config`).
"""

from __future__ import annotations

import gc
import logging
import multiprocessing
import signal
import socket
import threading
from typing import Any

log = logging.getLogger("qifu.serve")
APP = "service.app:app"


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


def _loaded_config(host: str, port: int, options: dict[str, Any]):
    """uvicorn's config with the application imported, and everything loaded so far frozen.

    The modules, models and routes live as long as the process: ``gc.freeze()`` moves them out of
    the collector's reach, so a full collection scans only what requests created. Without it, a
    full collection walked ~175,000 objects in 150-200 ms, which made the slowest 1 % of
    submissions (docs/performance.md). This is the use the CPython documentation gives for it.
    """
    import uvicorn

    config = uvicorn.Config(APP, host=host, port=port, **options)
    config.load()
    gc.collect()
    gc.freeze()
    return config


def _worker(host: str, port: int, options: dict[str, Any]) -> None:
    import uvicorn

    config = _loaded_config(host, port, options)
    # bound only now that the application is loaded: a socket in the group gets its share of new
    # connections at once, and a worker still importing (at start, or replacing one that died)
    # would hold them unanswered meanwhile
    sock = bind_reuse_port(host, port)
    uvicorn.Server(config).run(sockets=[sock])


def serve(host: str = "127.0.0.1", port: int = 8000, workers: int = 1, **options: Any) -> None:
    """Serve the API on ``host:port`` with ``workers`` processes; ``options`` go to
    :class:`uvicorn.Config` (``log_level``, ``access_log``, ...). Returns when stopped."""
    import uvicorn

    if workers <= 1:
        uvicorn.Server(_loaded_config(host, port, options)).run()
        return
    if port == 0 or not reuse_port_supported():
        uvicorn.run(APP, host=host, port=port, workers=workers, **options)
        return
    bind_reuse_port(host, port).close()  # fail here, once, when the address is taken
    ctx = multiprocessing.get_context("spawn")
    stopping = threading.Event()

    def start() -> multiprocessing.Process:
        process = ctx.Process(target=_worker, args=(host, port, options), name="qifu-api")
        process.start()
        return process

    def stop(_sig, _frame) -> None:
        stopping.set()

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    processes = [start() for _ in range(workers)]
    log.info("API: %d processes on %s:%d (SO_REUSEPORT)", workers, host, port)
    try:
        while not stopping.wait(0.5):
            for i, process in enumerate(processes):
                if not process.is_alive():  # restart a worker that died, as uvicorn's supervisor does
                    log.warning("API process %s exited with %s; restarting", process.pid, process.exitcode)
                    processes[i] = start()
    finally:
        for process in processes:
            if process.is_alive():
                process.terminate()  # SIGTERM: uvicorn finishes the requests in flight
        for process in processes:
            process.join(timeout=30)
            if process.is_alive():
                process.kill()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
