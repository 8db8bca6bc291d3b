"""Intake benchmark: committed ticket submissions per second through the HTTP API, beside the raw
PostgreSQL rate of the same inserts, measured in one run on one machine.

    uv run python bench/intake.py                      # 64 clients, 2 API processes, 20 s
    uv run python bench/intake.py --clients 32 --duration 10 --idempotency-key
    uv run python bench/intake.py --open311 --duration 15 --raw none   # Open311 GeoReport v2 POSTs

What it does:

1. builds a fresh PostgreSQL database (``--db``, default ``qifu_bench``; dropped and recreated):
   Alembic migrations to head, then the seed county (``seeds.loader.load_seeds``);
2. starts ``uvicorn qifu.app:app --workers N`` as a subprocess with ``QIFU_DATABASE_URL`` set
   to it and waits for ``/healthz`` and ``/readyz``;
3. logs the enterprise users ``ent1``..``ent20`` in once (``POST /api/v1/auth/token``); client
   *i* submits as ``ent{i % 20 + 1}`` with that user's Bearer token;
4. runs the load generator in a separate process: one asyncio event loop (uvloop), ``--clients``
   concurrent clients with keep-alive connections, each sending ``POST /api/v1/tickets``
   back-to-back (closed loop); a warm-up, then the measured window (``--duration`` seconds or
   ``--requests`` responses, whichever comes first). ``--client raw`` (default) is a minimal
   HTTP/1.1 client on asyncio streams (about 0.1 ms of CPU per request); ``--client httpx`` uses
   one ``httpx.AsyncClient`` per client (about 1 ms per request, taken from the API on a 2-core
   machine; a single shared ``AsyncClient`` costs several ms per request at 64 connections);
5. stops the API and checks that the ``ticket`` table holds exactly one row per 201 response
   (and one ``submit`` event per ticket);
6. measures the raw PostgreSQL rate of the same work with psycopg and ``--raw-connections``
   threads, each on its own connection: (a) ``tx``: BEGIN; INSERT ticket (number from the year's
   sequence) RETURNING id; INSERT the submit event; COMMIT -- the API's statements without the
   API; (b) ``cte``: the same two inserts as one statement (one round trip, one transaction) --
   the ceiling of this machine;
7. prints a table and the ratio API / raw.

``--open311``: the API phase posts Open311 GeoReport v2 service requests instead
(``POST /open311/v2/requests.json``, form-encoded, ``api_key`` in the body, docs/open311.md): one
API key per enterprise of ``ent1``..``ent20`` (bound to it, made in the database before the
phase); every body differs, so every request makes a ticket (each goes through the derived
Idempotency-Key and the per-key throttle, set high enough not to refuse).

The machine's CPU is shared by the API processes, PostgreSQL and the load generator; the CPU
column says where it went during each measured window (from ``/proc``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

ENTERPRISE_USERS = [f"ent{i}" for i in range(1, 21)]
PASSWORD = "qifu-demo-2026"
CATEGORY = "problem.labour"
DESCRIPTION = "急需焊工50名，希望对接招聘渠道；另需协调员工子女入学。" * 3
CLK_TCK = os.sysconf("SC_CLK_TCK")


# --------------------------------------------------------------------------- results

@dataclass
class Result:
    """One measured phase: rate over the window and latency percentiles (milliseconds)."""

    name: str
    ok: int  # successful (committed) operations in the measured window
    seconds: float
    latencies_ms: list[float] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)
    cpu: dict[str, float] = field(default_factory=dict)  # share of the machine's CPU, in cores

    @property
    def rate(self) -> float:
        return self.ok / self.seconds if self.seconds else 0.0

    def pct(self, q: float) -> float:
        if not self.latencies_ms:
            return float("nan")
        data = sorted(self.latencies_ms)
        return data[min(len(data) - 1, int(q * len(data)))]


# --------------------------------------------------------------------------- CPU accounting

def _proc_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of ``pid`` and its reaped children (0 if it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    utime, stime, cutime, cstime = (int(x) for x in fields[11:15])
    return (utime + stime + cutime + cstime) / CLK_TCK


def _children(pid: int) -> list[int]:
    out: list[int] = []
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            kids = (task / "children").read_text().split()
            for k in kids:
                out.append(int(k))
                out.extend(_children(int(k)))
    except FileNotFoundError:
        pass
    return out


def _postgres_pids(db: str | None = None) -> list[int]:
    """PostgreSQL processes: the backends serving ``db`` (when given), else all of them. The
    server is shared with whatever else runs on the machine (other databases' backends); the
    background writers (WAL writer, checkpointer) are counted in neither."""
    pids = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                if (p / "comm").read_text().strip() not in ("postgres", "postmaster"):
                    continue
                if db is not None:
                    # "postgres: [15/main: ]<user> <db> <host>(<port>) <state>"
                    cmd = (p / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").split()
                    if db not in cmd[2:5]:
                        continue
                pids.append(int(p.name))
            except (FileNotFoundError, ProcessLookupError, PermissionError):
                pass
    return pids


def _total_cpu() -> tuple[float, float]:
    """(busy, total) jiffies of the whole machine."""
    parts = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = parts[3] + parts[4]
    return sum(parts) - idle, sum(parts)


class CpuMeter:
    """CPU seconds spent per group of processes between ``start()`` and ``stop()``.

    Per process: a process that exits inside the window counts for nothing (its last CPU time
    cannot be read), one that starts inside it counts in full.
    """

    def __init__(self, groups: dict[str, Callable[[], list[int]]]) -> None:
        self.groups = groups  # name -> function returning the pids of that group now

    def _sample(self) -> tuple[dict[str, dict[int, float]], tuple[float, float]]:
        per_group = {name: {p: _proc_cpu_seconds(p) for p in pids()} for name, pids in self.groups.items()}
        return per_group, _total_cpu()

    def start(self) -> None:
        self.t0 = time.perf_counter()
        self.s0, self.m0 = self._sample()

    def stop(self) -> dict[str, float]:
        s1, m1 = self._sample()
        dt = time.perf_counter() - self.t0
        out = {}
        for name in self.groups:
            before = self.s0[name]
            out[name] = sum(cpu - before.get(pid, 0.0) for pid, cpu in s1[name].items() if cpu) / dt
        ncpu = os.cpu_count() or 1
        out["machine"] = ncpu * (m1[0] - self.m0[0]) / max(1, m1[1] - self.m0[1])
        out["others"] = max(0.0, out["machine"] - sum(out[name] for name in self.groups))
        return out


# --------------------------------------------------------------------------- database

from tests.scratch_db import build_database, create_database  # noqa: E402,F401  (shared with bench/)


def libpq_url(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def count_rows(url: str) -> tuple[int, int, int]:
    """(tickets, submit events, distinct ticket numbers) in the bench database."""
    import psycopg

    with psycopg.connect(libpq_url(url)) as conn:
        tickets, numbers = conn.execute("SELECT count(*), count(DISTINCT number) FROM ticket").fetchone()
        events = conn.execute("SELECT count(*) FROM ticket_event WHERE action = 'submit'").fetchone()[0]
    return tickets, events, numbers


# --------------------------------------------------------------------------- the API server

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_api(url: str, port: int, workers: int, extra: list[str], env_extra: dict[str, str],
              app: str = "qifu.app:app", server: str = "qifu") -> subprocess.Popen:
    """``qifu serve`` (the production command: a socket per worker, SO_REUSEPORT), or with
    ``server="uvicorn"`` plain ``uvicorn --workers`` (one shared socket) for comparison."""
    env = {**os.environ, "QIFU_DATABASE_URL": url, **env_extra}
    if server == "qifu":
        if app != "qifu.app:app" or extra:
            raise SystemExit("--app and --uvicorn-arg need --server uvicorn")
        cmd = [sys.executable, "-m", "qifu.cli", "serve", "--host", "127.0.0.1", "--port", str(port),
               "--workers", str(workers), "--no-access-log", "--log-level", "warning"]
    else:
        cmd = [sys.executable, "-m", "uvicorn", app, "--host", "127.0.0.1", "--port", str(port),
               "--workers", str(workers), "--no-access-log", "--log-level", "warning", *extra]
    print("$ " + " ".join(cmd[1:]), flush=True)
    return subprocess.Popen(cmd, cwd=ROOT, env=env, start_new_session=True)


def wait_ready(base: str, proc: subprocess.Popen, timeout: float = 60) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the API exited with code {proc.returncode}")
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200 and \
                    httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise SystemExit("the API did not become ready")


def stop_api(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def login_all(base: str) -> dict[str, str]:
    import httpx

    tokens = {}
    with httpx.Client(base_url=base, timeout=30) as client:
        for username in ENTERPRISE_USERS:
            r = client.post("/api/v1/auth/token", data={"username": username, "password": PASSWORD})
            r.raise_for_status()
            tokens[username] = r.json()["access_token"]
    return tokens


# --------------------------------------------------------------------------- load generator

def _body(i: int, n: int, open311_key: str | None = None) -> bytes:
    if open311_key is not None:  # a GeoReport v2 POST Service Request, form-encoded
        from urllib.parse import urlencode

        return urlencode({"api_key": open311_key, "service_code": CATEGORY, "lat": "30.74", "long": "120.95",
                          "description": f"招工难 #{i}-{n}：{DESCRIPTION}"}).encode()
    return json.dumps({"title": f"招工难 #{i}-{n}", "description": DESCRIPTION, "category_code": CATEGORY},
                      ensure_ascii=False).encode()


def open311_keys(url: str) -> list[str]:
    """One Open311 API key per enterprise of ``ent1``..``ent20`` (bound to it), committed."""
    from sqlmodel import Session, select

    from service.auth.actor import Actor
    from service.db import make_engine
    from service.open311 import schemas
    from service.open311 import service as open311
    from service.users.models import User

    engine = make_engine(url)
    keys = []
    with Session(engine) as session:
        for username in ENTERPRISE_USERS:
            enterprise_id = session.exec(select(User.enterprise_id).where(User.username == username)).one()
            _row, raw = open311.create_key(session, Actor.system(), schemas.KeyCreate(
                system_name=f"bench {username}", enterprise_id=enterprise_id))
            keys.append(raw)
        session.commit()
    engine.dispose()
    return keys


async def _httpx_clients(cfg: dict, record) -> None:
    """httpx, one ``AsyncClient`` (one keep-alive connection) per client: a single client shared
    by 64 tasks spends most of its CPU managing its connection pool (several ms per request)."""
    import httpx

    async def one(i: int) -> None:
        limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
        headers = {"Authorization": f"Bearer {cfg['tokens'][i % len(cfg['tokens'])]}",
                   "Content-Type": "application/json"}
        async with httpx.AsyncClient(base_url=cfg["base"], limits=limits, timeout=30) as client:
            n = 0
            while not record.done():
                n += 1
                h = {**headers, "Idempotency-Key": uuid.uuid4().hex} if cfg["idempotency_key"] else headers
                t0 = time.perf_counter()
                try:
                    r = await client.post("/api/v1/tickets", content=_body(i, n), headers=h)
                    status = r.status_code
                except httpx.HTTPError as exc:
                    status = type(exc).__name__
                record.add(t0, time.perf_counter(), status, i)

    await asyncio.gather(*(one(i) for i in range(cfg["clients"])))


async def _raw_clients(cfg: dict, record) -> None:
    """A minimal keep-alive HTTP/1.1 client: write the request, read the status line, headers and
    Content-Length body. Enough for this benchmark; far cheaper per request than httpx."""
    host, port = cfg["host"], cfg["port"]

    async def one(i: int) -> None:
        reader, writer = await asyncio.open_connection(host, port)
        token = cfg["tokens"][i % len(cfg["tokens"])]
        keys = cfg.get("open311_keys")
        n = 0
        while not record.done():
            n += 1
            if keys:
                body = _body(i, n, keys[i % len(keys)])
                head = (f"POST /open311/v2/requests.json HTTP/1.1\r\nHost: {host}:{port}\r\n"
                        "Content-Type: application/x-www-form-urlencoded\r\n"
                        f"Content-Length: {len(body)}\r\n\r\n").encode()
            else:
                body = _body(i, n)
                extra = f"Idempotency-Key: {uuid.uuid4().hex}\r\n" if cfg["idempotency_key"] else ""
                head = (f"POST /api/v1/tickets HTTP/1.1\r\nHost: {host}:{port}\r\n"
                        f"Authorization: Bearer {token}\r\nContent-Type: application/json\r\n{extra}"
                        f"Content-Length: {len(body)}\r\n\r\n").encode()
            t0 = time.perf_counter()
            try:
                writer.write(head + body)
                status_line = await reader.readline()
                status = int(status_line.split()[1])
                length = 0
                while True:
                    line = await reader.readline()
                    if line in (b"\r\n", b"", b"\n"):
                        break
                    k, _, v = line.partition(b":")
                    if k.strip().lower() == b"content-length":
                        length = int(v)
                await reader.readexactly(length)
            except (OSError, asyncio.IncompleteReadError, IndexError, ValueError) as exc:
                record.add(t0, time.perf_counter(), type(exc).__name__, i)
                writer.close()
                reader, writer = await asyncio.open_connection(host, port)
                continue
            record.add(t0, time.perf_counter(), status, i)
        writer.close()

    await asyncio.gather(*(one(i) for i in range(cfg["clients"])))


class _Record:
    """Completed requests: warm-up first, then the measured window."""

    def __init__(self, cfg: dict) -> None:
        self.start = time.perf_counter()
        self.measure_from = self.start + cfg["warmup"]
        self.deadline = self.measure_from + cfg["duration"]
        self.max_requests = cfg["requests"]
        self.rows: list[tuple[float, float, object, int]] = []
        self.measured = 0
        self.created_total = 0
        self.statuses: dict[str, int] = {}

    def done(self) -> bool:
        now = time.perf_counter()
        return now >= self.deadline or (self.max_requests and self.measured >= self.max_requests)

    def add(self, t0: float, t1: float, status, client: int) -> None:
        self.statuses[str(status)] = self.statuses.get(str(status), 0) + 1
        if status == 201:
            self.created_total += 1
        if t0 >= self.measure_from:
            self.rows.append((t0, t1, status, client))
            self.measured += 1


def _pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] if values else 0.0


def _timeline(ok: list[tuple[float, float]], start: float) -> list[tuple[int, int, float, float, float]]:
    """Per second of the window: (second, responses, p50, p99, max latency in ms) by completion."""
    seconds: dict[int, list[float]] = {}
    for t0, t1 in ok:
        seconds.setdefault(int(t1 - start), []).append((t1 - t0) * 1000)
    return [(sec, len(v), _pct(v, 0.5), _pct(v, 0.99), max(v)) for sec, v in sorted(seconds.items())]


def _per_client(rows) -> list[float]:
    """Mean latency (ms) of each client's successful requests: an unequal split of connections
    between the API processes shows as two groups."""
    per: dict[int, list[float]] = {}
    for t0, t1, status, client in rows:
        if status == 201:
            per.setdefault(client, []).append((t1 - t0) * 1000)
    return [sum(v) / len(v) for _, v in sorted(per.items())]


def load_process(cfg: dict, conn) -> None:
    """Entry point of the load-generator process: run the clients, send the results back."""
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover
        pass
    record = _Record(cfg)
    runner = _raw_clients if cfg["client"] == "raw" else _httpx_clients
    conn.send("started")
    asyncio.run(runner(cfg, record))
    measured = record.rows
    ok = [(t0, t1) for t0, t1, s, _ in measured if s == 201]
    window = (max(t1 for _, t1 in ok) - record.measure_from) if ok else 0.0
    conn.send({
        "ok": len(ok), "seconds": window,
        "latencies_ms": [(t1 - t0) * 1000 for t0, t1 in ok],
        "errors": {k: v for k, v in record.statuses.items() if k != "201"},
        "created_total": record.created_total, "statuses": record.statuses,
        "measure_from": record.measure_from,
        "timeline": _timeline(ok, record.measure_from),
        "per_client_ms": _per_client(measured),
    })
    conn.close()


def run_load(cfg: dict, server_pids) -> tuple[Result, int, dict[str, int]]:
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=load_process, args=(cfg, child), daemon=True)
    proc.start()
    assert parent.recv() == "started"
    meter = CpuMeter({"api": server_pids, "postgres": lambda: _postgres_pids(cfg["db"]),
                      "loadgen": lambda: [proc.pid]})
    time.sleep(cfg["warmup"])
    meter.start()
    while not parent.poll(0.5):
        if not proc.is_alive():
            raise SystemExit("the load generator died")
    cpu = meter.stop()
    data = parent.recv()
    proc.join()
    name = "API  POST /open311/v2/requests.json" if cfg.get("open311_keys") else "API  POST /api/v1/tickets"
    res = Result(name, data["ok"], data["seconds"], data["latencies_ms"],
                 data["errors"], cpu)
    if cfg.get("timeline"):
        print("second  responses  p50 ms  p99 ms  max ms")
        for sec, n, p50, p99, top in data["timeline"]:
            print(f"{sec:>6} {n:>10} {p50:>7.1f} {p99:>7.1f} {top:>7.1f}")
        means = sorted(data["per_client_ms"])
        print("mean latency per client, ms (sorted):", " ".join(f"{m:.0f}" for m in means))
    return res, data["created_total"], data["statuses"]


# --------------------------------------------------------------------------- raw PostgreSQL

def _raw_setup(url: str) -> dict:
    import psycopg

    with psycopg.connect(libpq_url(url)) as conn:
        ents = conn.execute(
            "SELECT e.id, e.grid_id, e.officer_id, u.id FROM enterprise e "
            "JOIN user_account u ON u.enterprise_id = e.id AND u.role = 'enterprise' ORDER BY e.id"
        ).fetchall()
        cat_id, service_type = conn.execute(
            "SELECT id, service_type FROM category WHERE code = %s", (CATEGORY,)).fetchone()
        year = datetime.now(ZoneInfo("Asia/Shanghai")).year
        conn.execute(f"CREATE SEQUENCE IF NOT EXISTS ticket_number_{year}")
    return {"enterprises": ents, "category_id": cat_id, "service_type": service_type, "year": year}


_TICKET_COLUMNS = (
    "number, enterprise_id, submitted_by_id, channel, service_type, category_id, title, description, "
    "priority, status, officer_id, grid_id, reopen_count, return_count, escalation_level, remind_count, "
    "version, submitted_at, updated_at")
_TICKET_VALUES = (
    "%(prefix)s || lpad(nextval(%(seq)s::regclass)::text, 6, '0'), %(ent)s, %(user)s, 'web', %(st)s, "
    "%(cat)s, %(title)s, %(desc)s, 'normal', 'submitted', %(officer)s, %(grid)s, 0, 0, 0, 0, 1, %(at)s, %(at)s")
SQL_TICKET = f"INSERT INTO ticket ({_TICKET_COLUMNS}) VALUES ({_TICKET_VALUES}) RETURNING id"
SQL_EVENT = ("INSERT INTO ticket_event (ticket_id, actor_id, actor_role, action, to_status, payload, "
             "visibility, created_at) VALUES (%s, %s, 'enterprise', 'submit', 'submitted', %s, 'public', %s)")
SQL_CTE = (
    f"WITH t AS (INSERT INTO ticket ({_TICKET_COLUMNS}) VALUES ({_TICKET_VALUES}) RETURNING id) "
    "INSERT INTO ticket_event (ticket_id, actor_id, actor_role, action, to_status, payload, visibility, "
    "created_at) SELECT t.id, %(user)s, 'enterprise', 'submit', 'submitted', %(payload)s, 'public', %(at)s "
    "FROM t")


def run_raw(url: str, mode: str, connections: int, duration: float, warmup: float) -> Result:
    """``connections`` threads, each with its own psycopg connection, inserting ticket + submit
    event per transaction for ``duration`` seconds after ``warmup``."""
    import psycopg
    from psycopg.types.json import Jsonb

    setup = _raw_setup(url)
    seq, prefix = f"ticket_number_{setup['year']}", f"QF{setup['year']}-"
    ents = setup["enterprises"]
    start = time.perf_counter()
    measure_from, deadline = start + warmup, start + warmup + duration
    lock = threading.Lock()
    latencies: list[float] = []
    last_done = [measure_from]
    errors: dict[str, int] = {}
    conns = [psycopg.connect(libpq_url(url), autocommit=(mode == "cte")) for _ in range(connections)]
    barrier = threading.Barrier(connections + 1)

    def worker(i: int) -> None:
        conn = conns[i]
        ent_id, grid_id, officer_id, user_id = ents[i % len(ents)]
        mine: list[float] = []
        n = 0
        barrier.wait()
        while True:
            t0 = time.perf_counter()
            if t0 >= deadline:
                break
            n += 1
            at = datetime.now(UTC)
            params = {"prefix": prefix, "seq": seq, "ent": ent_id, "user": user_id, "st": setup["service_type"],
                      "cat": setup["category_id"], "title": f"raw {mode} #{i}-{n}", "desc": DESCRIPTION,
                      "officer": officer_id, "grid": grid_id, "at": at, "payload": Jsonb({"channel": "web"})}
            try:
                if mode == "cte":
                    conn.execute(SQL_CTE, params, prepare=True)
                else:
                    with conn.transaction():
                        ticket_id = conn.execute(SQL_TICKET, params, prepare=True).fetchone()[0]
                        conn.execute(SQL_EVENT, (ticket_id, user_id, Jsonb({"channel": "web"}), at), prepare=True)
            except psycopg.Error as exc:
                with lock:
                    errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
                continue
            t1 = time.perf_counter()
            if t0 >= measure_from:
                mine.append((t1 - t0) * 1000)
        with lock:
            latencies.extend(mine)
            last_done[0] = max(last_done[0], time.perf_counter())

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(connections)]
    for t in threads:
        t.start()
    db = url.rsplit("/", 1)[1]
    meter = CpuMeter({"postgres": lambda: _postgres_pids(db), "loadgen": lambda: [os.getpid()]})
    barrier.wait()
    time.sleep(warmup)
    meter.start()
    for t in threads:
        t.join()
    cpu = meter.stop()
    for c in conns:
        c.close()
    name = {"tx": "raw  psycopg: BEGIN; INSERT; INSERT; COMMIT",
            "cte": "raw  psycopg: one INSERT..INSERT statement"}[mode]
    return Result(name, len(latencies), last_done[0] - measure_from, latencies, errors, cpu)


# --------------------------------------------------------------------------- report

def print_table(results: list[Result], args: argparse.Namespace) -> None:
    print()
    print(f"clients={args.clients} workers={args.workers} raw-connections={args.raw_connections} "
          f"cpus={os.cpu_count()} client={args.client} idempotency-key={args.idempotency_key}")
    header = (f"{'phase':46} {'ok':>7} {'s':>6} {'per s':>8} {'p50 ms':>8} {'p99 ms':>8}  "
              "cpu: cores used in the window (CPU ms per operation)")
    print(header)
    print("-" * len(header))
    for r in results:
        cpu = " ".join(f"{k}={v:.2f}" + (f"({1000 * v / r.rate:.2f})" if r.rate and k not in ("machine", "others")
                                         else "") for k, v in r.cpu.items())
        print(f"{r.name:46} {r.ok:7d} {r.seconds:6.1f} {r.rate:8.0f} {r.pct(0.50):8.1f} {r.pct(0.99):8.1f}  {cpu}")
        if r.errors:
            print(f"{'':46} errors: {r.errors}")
    api = results[0]
    for raw in results[1:]:
        if raw.rate:
            print(f"ratio API / {raw.name.split(':', 1)[1].strip()}: {api.rate / raw.rate:.2f}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clients", type=int, default=64, help="concurrent API clients (default 64)")
    p.add_argument("--workers", type=int, default=2, help="uvicorn worker processes (default 2)")
    p.add_argument("--duration", type=float, default=20, help="measured seconds of the API phase (default 20)")
    p.add_argument("--requests", type=int, default=0, help="stop the API phase after this many responses")
    p.add_argument("--warmup", type=float, default=3, help="warm-up seconds before measuring (default 3)")
    p.add_argument("--pg-url", default=os.environ.get("QIFU_BENCH_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432"),
                   help="PostgreSQL server URL, without database name")
    p.add_argument("--db", default="qifu_bench", help="database to (re)create (default qifu_bench)")
    p.add_argument("--client", choices=["raw", "httpx"], default="raw",
                   help="load generator HTTP client: raw asyncio streams (default, cheapest) or httpx")
    p.add_argument("--idempotency-key", action="store_true", help="send a fresh Idempotency-Key per request")
    p.add_argument("--open311", action="store_true",
                   help="post Open311 GeoReport v2 requests (form-encoded, api_key) instead of the JSON API")
    p.add_argument("--raw-connections", type=int, default=64, help="connections of the raw phase (default 64)")
    p.add_argument("--raw-duration", type=float, default=10, help="measured seconds per raw phase (default 10)")
    p.add_argument("--raw", default="tx,cte", help="raw phases to run: tx, cte, both (tx,cte) or none")
    p.add_argument("--no-api", action="store_true", help="skip the API phase")
    p.add_argument("--uvicorn-arg", action="append", default=[],
                   help="extra uvicorn argument, repeatable (e.g. --uvicorn-arg=--loop=asyncio)")
    p.add_argument("--env", action="append", default=[], help="extra NAME=VALUE for the API processes")
    p.add_argument("--app", default="qifu.app:app", help="ASGI application to serve (default qifu.app:app)")
    p.add_argument("--server", choices=["qifu", "uvicorn"], default="qifu",
                   help="qifu serve (default: a socket per worker) or plain uvicorn --workers (one shared socket)")
    p.add_argument("--port", type=int, default=0, help="port of the API (default: a free one)")
    p.add_argument("--keep", action="store_true", help="keep the database afterwards")
    p.add_argument("--ready-timeout", type=float, default=60,
                   help="seconds to wait for /readyz (default 60; more on a loaded machine, where the API "
                        "processes get a small share of the CPU to start)")
    p.add_argument("--timeline", action="store_true",
                   help="print the API phase per second (responses, p50/p99/max) and each client's mean latency")
    args = p.parse_args(argv)
    if args.open311 and args.client != "raw":
        p.error("--open311 needs --client raw")

    os.environ.setdefault("QIFU_ENVIRONMENT", "development")
    url = create_database(args.pg_url, args.db)
    t = time.perf_counter()
    build_database(url)
    print(f"database {args.db}: migrated and seeded in {time.perf_counter() - t:.1f} s", flush=True)

    results: list[Result] = []
    ok = True
    if not args.no_api:
        port = args.port or free_port()
        base = f"http://127.0.0.1:{port}"
        env_extra = dict(kv.split("=", 1) for kv in args.env)
        if args.open311:  # the per-key throttle runs but does not refuse
            env_extra.setdefault("QIFU_OPEN311_REQUESTS_PER_KEY_PER_MINUTE", "100000000")
        server = start_api(url, port, args.workers, args.uvicorn_arg, env_extra, args.app, args.server)
        try:
            wait_ready(base, server, args.ready_timeout)
            tokens = login_all(base)
            cfg = {"base": base, "host": "127.0.0.1", "port": port, "clients": args.clients,
                   "tokens": [tokens[u] for u in ENTERPRISE_USERS], "duration": args.duration,
                   "requests": args.requests, "warmup": args.warmup, "client": args.client,
                   "idempotency_key": args.idempotency_key, "db": args.db, "timeline": args.timeline,
                   "open311_keys": open311_keys(url) if args.open311 else None}
            print(f"API phase: {args.clients} clients, {args.warmup:g} s warm-up + {args.duration:g} s", flush=True)
            api, created_total, statuses = run_load(cfg, lambda: [server.pid, *_children(server.pid)])
        finally:
            stop_api(server)
        results.append(api)
        tickets, events, numbers = count_rows(url)
        verdict = "OK" if tickets == created_total == events == numbers else "MISMATCH"
        ok = verdict == "OK"
        print(f"responses: {statuses}")
        print(f"check: {created_total} responses 201, {tickets} ticket rows, {events} submit events, "
              f"{numbers} distinct numbers -> {verdict}", flush=True)

    modes = [] if args.raw == "none" else [m for m in args.raw.split(",") if m]
    for mode in modes:
        print(f"raw phase ({mode}): {args.raw_connections} connections, {args.warmup:g} s warm-up "
              f"+ {args.raw_duration:g} s", flush=True)
        before = count_rows(url)[0]
        raw = run_raw(url, mode, args.raw_connections, args.raw_duration, args.warmup)
        results.append(raw)
        after = count_rows(url)[0]
        print(f"  {after - before} ticket rows committed", flush=True)

    if results:
        print_table(results, args)
    if not args.keep:
        import sqlalchemy as sa

        admin = sa.create_engine(f"{args.pg_url}/postgres", isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{args.db}" WITH (FORCE)'))
        admin.dispose()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
