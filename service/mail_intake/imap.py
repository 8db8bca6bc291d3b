"""Polling the office's IMAP mailbox (RFC 9051 / RFC 3501) with IMAPClient, a maintained client
library. docs/mail_intake.md "Exactly once".

A poll takes the messages of ``QIFU_MAIL_IMAP_FOLDER`` that do not carry the keyword
:data:`KEYWORD`, oldest UID first, fetches them in batches with ``BODY.PEEK[]`` (reading does
not mark them seen), gives each to :func:`service.mail_intake.service.intake_message` in a
transaction of its own, and after the batch's commits flags the processed ones ``\\Seen`` and
:data:`KEYWORD`. A worker that dies between a commit and the flag leaves messages unflagged: the
next poll finds their keys stored, skips them and flags them. The keyword (not ``\\Seen``) decides
what is pending, so a person reading the mailbox with a mail client takes nothing from the intake.
"""

from __future__ import annotations

import logging
import ssl
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field

from imapclient import IMAPClient
from sqlmodel import Session

from service.config import Settings, get_settings
from service.db import session_scope
from service.errors import IllegalTransition, VersionConflict, database_unavailable
from service.mail_intake import service as intake

log = logging.getLogger("qifu.mail")

#: The IMAP keyword (RFC 9051 §2.3.2 flag keyword) put on every message the intake has processed.
KEYWORD = b"$QifuIntake"
SEEN = b"\\Seen"
#: Errors after which a message is left unflagged for the next poll (someone changed the ticket
#: at the same moment; the attachment store could not be written); anything else unexpected is
#: recorded as ``failed`` (not retried forever).
TRANSIENT = (VersionConflict, IllegalTransition, OSError)

UnitOfWork = Callable[[], AbstractContextManager[Session]]


@dataclass
class PollResult:
    """What one poll did: messages ``fetched``; ``states`` counts the new ledger rows by state;
    ``skipped`` were stored before (flagged now); ``deferred`` were left for the next poll;
    ``seconds`` wall time."""

    fetched: int = 0
    states: Counter = field(default_factory=Counter)
    skipped: int = 0
    deferred: int = 0
    pending_after: int = 0
    seconds: float = 0.0

    def as_dict(self) -> dict:
        return {"fetched": self.fetched, "states": dict(self.states), "skipped": self.skipped,
                "deferred": self.deferred, "seconds": round(self.seconds, 3)}


@contextmanager
def open_mailbox(settings: Settings | None = None) -> Iterator[IMAPClient]:
    """A logged-in IMAP connection with the intake folder selected (read-write).

    Raises:
        ValueError: no ``QIFU_MAIL_IMAP_HOST``.
        imapclient.exceptions.IMAPClientError / OSError: the server refused or is unreachable.
    """
    settings = settings or get_settings()
    if not settings.mail_imap_host:
        raise ValueError("QIFU_MAIL_IMAP_HOST 未设置")
    context = ssl.create_default_context() if (settings.mail_imap_tls or settings.mail_imap_starttls) else None
    client = IMAPClient(settings.mail_imap_host, port=settings.mail_imap_port, ssl=settings.mail_imap_tls,
                        ssl_context=context if settings.mail_imap_tls else None,
                        timeout=settings.mail_timeout_seconds)
    try:
        if settings.mail_imap_starttls and not settings.mail_imap_tls:
            client.starttls(context)
        client.login(settings.mail_imap_user, settings.mail_imap_password)
        client.qifu_keywords = keywords_allowed(client.select_folder(settings.mail_imap_folder))
        yield client
    finally:
        try:
            client.logout()
        except Exception:  # noqa: BLE001 - the connection may be gone already
            client.shutdown() if hasattr(client, "shutdown") else None


def keywords_allowed(select_response: dict) -> bool:
    """Whether the selected folder keeps new keywords (``PERMANENTFLAGS`` lists ``\\*``, RFC 9051
    §7.1). Servers that do not (some gateways) get ``\\Seen`` alone as the processed mark."""
    return b"\\*" in tuple(select_response.get(b"PERMANENTFLAGS", ()))


def marks(client: IMAPClient) -> tuple[list[bytes], list[str]]:
    """``(flags set on a processed message, SEARCH criteria of the pending ones)`` for the folder
    selected by :func:`open_mailbox`: :data:`KEYWORD` and ``\\Seen``, pending = without the
    keyword; where keywords are not kept, ``\\Seen`` alone and pending = ``UNSEEN``."""
    if getattr(client, "qifu_keywords", True):
        return [SEEN, KEYWORD], ["NOT", "KEYWORD", KEYWORD.decode()]
    return [SEEN], ["UNSEEN"]


def pending_uids(client: IMAPClient) -> list[int]:
    """UIDs of the selected folder's pending messages (:func:`marks`), ascending."""
    return sorted(client.search(marks(client)[1]))


def poll(settings: Settings | None = None, *, unit_of_work: UnitOfWork = session_scope,
         limit: int | None = None, workers: int | None = None) -> PollResult:
    """Take the pending messages of the intake mailbox (at most ``limit``, default
    ``QIFU_MAIL_MAX_MESSAGES_PER_POLL``), each in a transaction of its own
    (``unit_of_work()`` commits on success), flagging each batch after its commits.

    The messages of a fetched batch are processed by ``workers`` threads (default
    ``QIFU_MAIL_WORKERS``; 1 on SQLite, which has one writer), each transaction on a connection
    of its own: the unique claim keeps each message to one of them.

    Raises:
        MailConfigError: the default category does not exist (nothing is taken).
        IMAP or socket errors: the server is unreachable or refused the login.
        The database's errors when it is unavailable (the rest waits for the next poll).
    """
    settings = settings or get_settings()
    workers = workers or (1 if settings.is_sqlite else settings.mail_workers)
    started = time.monotonic()
    result = PollResult()
    with unit_of_work() as session:
        intake.check_settings(session, settings)
        directory = intake.SenderDirectory.load(session)
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="qifu-mail") if workers > 1 else None
    try:
        with open_mailbox(settings) as client:
            uids = pending_uids(client)
            take = uids[: limit or settings.mail_max_messages_per_poll]
            for start in range(0, len(take), settings.mail_batch_size):
                batch = take[start:start + settings.mail_batch_size]
                done = _take_batch(client, batch, directory, settings, unit_of_work, result, pool)
                if done:
                    client.add_flags(done, marks(client)[0], silent=True)
            result.pending_after = len(uids) - len(take) + result.deferred
    finally:
        if pool is not None:
            pool.shutdown(wait=True)
    result.seconds = time.monotonic() - started
    log.info("mail poll", extra={"mail": result.as_dict()})
    return result


def _take_batch(client: IMAPClient, batch: list[int], directory: intake.SenderDirectory, settings: Settings,
                unit_of_work: UnitOfWork, result: PollResult, pool: ThreadPoolExecutor | None) -> list[int]:
    """Process one fetched batch; returns the UIDs to flag."""
    sizes = {uid: data.get(b"RFC822.SIZE", 0) for uid, data in client.fetch(batch, ["RFC822.SIZE"]).items()}
    small = [uid for uid in batch if uid in sizes and sizes[uid] <= settings.mail_max_message_bytes]
    large = [uid for uid in batch if uid in sizes and uid not in small]
    raws = {uid: data.get(b"BODY[]") or b"" for uid, data in (client.fetch(small, ["BODY.PEEK[]"]) if small else {}).items()}
    if large:  # only their headers: recorded as too large
        raws.update({uid: data.get(b"BODY[HEADER]") or b""
                     for uid, data in client.fetch(large, ["BODY.PEEK[HEADER]"]).items()})
    uids = [uid for uid in batch if uid in raws]  # the others were expunged meanwhile
    result.fetched += len(uids)

    def take(uid: int) -> str:
        return _take_one(raws[uid], uid, sizes[uid], directory, settings, unit_of_work)

    outcomes = list(pool.map(take, uids)) if pool is not None else [take(uid) for uid in uids]
    done: list[int] = []
    for uid, outcome in zip(uids, outcomes, strict=True):
        if outcome == "deferred":
            result.deferred += 1
            continue
        if outcome == "skipped":
            result.skipped += 1
        else:
            result.states[outcome] += 1
        done.append(uid)
    return done


def _take_one(raw: bytes, uid: int, size: int, directory: intake.SenderDirectory, settings: Settings,
              unit_of_work: UnitOfWork) -> str:
    """One message in its own transaction: its new state, ``"skipped"`` (stored before) or
    ``"deferred"`` (left unflagged for the next poll)."""
    folder = settings.mail_imap_folder
    try:
        with unit_of_work() as session:
            outcome = intake.intake_message(session, raw, directory=directory, folder=folder, uid=uid,
                                            size=size, settings=settings)
    except TRANSIENT as exc:
        log.warning("mail uid %s deferred: %s", uid, exc)
        return "deferred"
    except Exception as exc:
        if database_unavailable(exc):
            raise
        log.exception("mail uid %s failed", uid)
        with unit_of_work() as session:
            outcome = intake.record_failure(session, raw, exc, folder=folder, uid=uid)
    return "skipped" if outcome is None else outcome.state
