"""Hot issues (热点问题, the 2020 Teddy Cup problem C task 2; issue 13 "Hot issues"; docs/triage.md
"## Hot issues").

Messages that speak of the same matter at the same place within a time window are grouped, and
the groups are ranked by a heat index:

1. **Text**: the title twice and the first :data:`BODY_CHARS` characters of the body (whitespace
   removed). Features: TF-IDF of character bigrams (scikit-learn ``TfidfVectorizer``,
   sublinear tf, n-grams in at least 2 messages and at most :data:`MAX_DF` of them). Character
   n-grams carry the place names (``A市A5区魅力之城小区``, ``丽发新城``) and the matter
   (``油烟``, ``搅拌站``) without word segmentation, which on a shared 2-core machine costs ~2 ms
   per message with jieba and is the slowest step by far.
2. **Pairs**: cosine similarity ≥ :data:`THRESHOLD` between two messages submitted at most
   :data:`WINDOW_DAYS` days apart (sparse products in blocks of rows; the time condition on the
   pairs found). **Groups**: connected components of that graph (scipy), of at least 2 messages.
3. **Place/crowd** (地点/人群): the most frequent place-like phrase of the group's messages
   (:func:`places`: an anonymised area ``A市``/``A3区``/``K8县`` followed by a name ending in a
   place suffix — 小区, 社区, 路, 街, 村, 镇, 学院 …), **description** (问题描述): the title of the
   group's most central message (highest summed similarity to the others) among those that name
   that place.
4. **Heat index** (热度指数), for a group of M messages from U distinct users (enterprises), with
   L likes (点赞) and D objections (反对) in total, spanning S days::

       H = 10·ln(1+U) + 5·ln(1+M) + 3·ln(1+L) + 1·ln(1+D) + 2·ln(1+S)

   People first (several users count more than one user writing several times), then messages,
   then the public's likes; objections still show attention; a matter raised over weeks is hotter
   than one raised in an afternoon. Ties: more messages, then the latest message first.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

import numpy as np

#: body characters used per message
BODY_CHARS = 120
#: cosine similarity of two messages of one matter
THRESHOLD = 0.45
#: two messages farther apart than this are not paired (a group may still span longer by chaining)
WINDOW_DAYS = 60
#: n-grams in more than this share of the messages are ignored (boilerplate: 您好, 领导, 请问)
MAX_DF = 0.2

_SPACE = re.compile(r"\s+")
_AREA = r"(?:[A-Z]\d{0,2}[市区县])"
_SUFFIX = (r"(?:小区|社区|花园|家园|公寓|大厦|广场|大道|公路|高速|国道|路|街道|街|村|组|镇|乡|学院|大学|中学|小学|"
           r"学校|幼儿园|医院|市场|公园|车站|地铁|园区|产业园|工业园|新城|城|苑|湾)")
_MORE = re.compile(_SUFFIX)
_PLACE = re.compile(rf"({_AREA}*)([\u4e00-\u9fa5A-Za-z0-9]{{1,8}}?{_SUFFIX})")
#: a place name starts after the last of these (function words, verbs of the message's frame)
_CUT = re.compile(r".*(?:[在于的是了和与及对把从向到将让给被为有个]|反映|投诉|建议|请问|咨询|关于|能否|位于)")


@dataclass(frozen=True)
class Message:
    """One message (留言) or ticket: ``at`` is aware (or naive China time)."""

    id: str
    user: str
    title: str
    body: str
    at: datetime
    likes: int = 0
    against: int = 0


@dataclass
class HotGroup:
    """A hot issue: its rank, heat index, period, place/crowd, description and messages."""

    rank: int
    issue_id: int
    heat: float
    date_from: date
    date_to: date
    place: str
    description: str
    messages: int
    users: int
    likes: int
    against: int
    members: list[Message] = field(default_factory=list)

    def as_json(self, with_members: bool = True) -> dict:
        """A JSON-ready dict (dates ISO 8601; members with their times in ISO 8601)."""
        data = {k: getattr(self, k) for k in ("rank", "issue_id", "heat", "place", "description", "messages",
                                               "users", "likes", "against")}
        data.update(date_from=self.date_from.isoformat(), date_to=self.date_to.isoformat())
        if with_members:
            data["members"] = [dict(id=m.id, user=m.user, title=m.title, body=m.body, at=m.at.isoformat(),
                                    likes=m.likes, against=m.against) for m in self.members]
        return data


def heat_index(users: int, messages: int, likes: int, against: int, span_days: float) -> float:
    """The heat index of the module docstring (2 decimals)."""
    return round(10 * math.log1p(users) + 5 * math.log1p(messages) + 3 * math.log1p(max(likes, 0))
                 + math.log1p(max(against, 0)) + 2 * math.log1p(max(span_days, 0.0)), 2)


def places(text: str) -> list[str]:
    """The place-like phrases of ``text`` (area prefix kept; leading function words dropped; a
    suffix followed by another is extended: ``魅力之城`` + ``小区``)."""
    out = []
    for match in _PLACE.finditer(text):
        area, name = match.group(1), match.group(2)
        end = match.end()
        more = _MORE.match(text, end)
        while more is not None and more.end() > end:
            name += more.group(0)
            end = more.end()
            more = _MORE.match(text, end)
        name = _CUT.sub("", name)
        if len(name) >= 3 and not name.startswith(("市", "区", "县")):
            out.append(area + name)
    return out


def _text(m: Message) -> str:
    title = _SPACE.sub("", m.title)
    return f"{title}{title}{_SPACE.sub('', m.body)[:BODY_CHARS]}"


def _pairs(x, days: np.ndarray, threshold: float, window: float, block: int = 512):
    """(i, j, cosine) for i < j with cosine ≥ threshold and |days_i − days_j| ≤ window (rows of
    ``x`` are L2-normalised, so x·xᵀ is the cosine).

    The rows are taken in time order and each block of :data:`block` rows is multiplied only by
    the rows within ``window`` days of it (``searchsorted`` on the sorted days): over 附件3's 962
    days with a 60-day window this is about a sixth of the full product, and the same pairs.
    """
    order = np.argsort(days, kind="stable")
    xs, ds = x[order], days[order]
    rows, cols, vals = [], [], []
    for start in range(0, xs.shape[0], block):
        stop = min(start + block, xs.shape[0])
        hi = int(np.searchsorted(ds, ds[stop - 1] + window, side="right"))
        s = (xs[start:stop] @ xs[start:hi].T).tocoo()
        p, q = s.row + start, s.col + start  # positions in time order
        keep = (q > p) & (s.data >= threshold)
        p, q, v = p[keep], q[keep], s.data[keep]
        near = np.abs(ds[p] - ds[q]) <= window
        i, j = order[p[near]], order[q[near]]
        rows.append(np.minimum(i, j))
        cols.append(np.maximum(i, j))
        vals.append(v[near])
    return np.concatenate(rows), np.concatenate(cols), np.concatenate(vals)


def find_hot_issues(messages: Sequence[Message], *, limit: int = 5, threshold: float = THRESHOLD,
                    window_days: float = WINDOW_DAYS, min_size: int = 2) -> list[HotGroup]:
    """The ``limit`` hottest groups of ``messages`` (see the module docstring), hottest first;
    ``issue_id`` is the rank (1 = hottest) as in the problem statement's tables."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components
    from sklearn.feature_extraction.text import TfidfVectorizer

    n = len(messages)
    if n < min_size:
        return []
    texts = [_text(m) for m in messages]
    try:
        x = TfidfVectorizer(analyzer="char", ngram_range=(2, 2), min_df=2, max_df=MAX_DF if n >= 50 else 1.0,
                            sublinear_tf=True, dtype=np.float32).fit_transform(texts)
    except ValueError:  # no n-gram in two messages: nothing is alike
        return []
    base = min(m.at for m in messages)
    days = np.array([(m.at - base).total_seconds() / 86400 for m in messages])
    i, j, v = _pairs(x.tocsr(), days, threshold, window_days)
    graph = coo_matrix((v, (i, j)), shape=(n, n))
    _count, labels = connected_components(graph, directed=False)
    sizes = Counter(labels.tolist())
    centrality = np.zeros(n)
    np.add.at(centrality, i, v)
    np.add.at(centrality, j, v)

    groups: list[HotGroup] = []
    for label, size in sizes.items():
        if size < min_size:
            continue
        idx = np.flatnonzero(labels == label)
        members = sorted((messages[k] for k in idx), key=lambda m: (m.at, m.id))
        first, last = members[0].at, members[-1].at
        likes = sum(m.likes for m in members)
        against = sum(m.against for m in members)
        users = len({m.user for m in members})
        heat = heat_index(users, size, likes, against, (last - first).total_seconds() / 86400)
        found = Counter(p for m in members for p in dict.fromkeys(places(f"{m.title} {m.body[:BODY_CHARS]}")))
        place = found.most_common(1)[0][0] if found else ""
        # the description: the most central message that names the place (else the most central)
        named = [k for k in idx if place and place in f"{messages[k].title} {messages[k].body[:BODY_CHARS]}"]
        pool = np.array(named) if named else idx
        central = messages[int(pool[np.argmax(centrality[pool])])]
        groups.append(HotGroup(rank=0, issue_id=0, heat=heat, date_from=office_day(first), date_to=office_day(last),
                               place=place, description=central.title, messages=size, users=users,
                               likes=likes, against=against, members=members))
    groups.sort(key=lambda g: (-g.heat, -g.messages, -g.members[-1].at.timestamp()))
    for rank, g in enumerate(groups[:limit], start=1):
        g.rank = g.issue_id = rank
    return groups[:limit]


def office_day(at: datetime) -> date:
    """The office's calendar day of ``at`` (naive = already office time)."""
    from service.clock import office_zone

    return (at.astimezone(office_zone()) if at.tzinfo else at).date()


def _ensure_window(date_from: date | None, date_to: date | None, today: date, default_days: int = 30):
    date_to = date_to or today
    date_from = date_from or (date_to - timedelta(days=default_days - 1))
    return date_from, date_to


# ------------------------------------------------------------------ the Teddy Cup file (附件3)

#: the two tables of the problem statement (表1 热点问题表, 表2 热点问题留言明细表)
HOT_TABLE = ("热度排名", "问题ID", "热度指数", "时间范围", "地点/人群", "问题描述")
DETAIL_TABLE = ("问题ID", "留言编号", "留言用户", "留言主题", "留言时间", "留言详情", "点赞数", "反对数")


def write_xlsx(groups: Sequence[HotGroup], path) -> None:
    """Write the 热点问题表 and 热点问题留言明细表 sheets (the layouts of the problem statement:
    时间范围 ``YYYY/MM/DD 至 YYYY/MM/DD``, 留言时间 ``YYYY/MM/DD HH:MM:SS`` in China time)."""
    from openpyxl import Workbook

    from service.clock import office_zone

    wb = Workbook()
    hot = wb.active
    hot.title = "热点问题表"
    hot.append(HOT_TABLE)
    for g in groups:
        hot.append((g.rank, g.issue_id, g.heat, f"{g.date_from:%Y/%m/%d} 至 {g.date_to:%Y/%m/%d}", g.place,
                    g.description))
    detail = wb.create_sheet("热点问题留言明细表")
    detail.append(DETAIL_TABLE)
    for g in groups:
        for m in g.members:
            local = m.at.astimezone(office_zone()) if m.at.tzinfo else m.at
            detail.append((g.issue_id, _maybe_int(m.id), m.user, m.title, f"{local:%Y/%m/%d %H:%M:%S}", m.body,
                           m.likes, m.against))
    wb.save(path)


def _maybe_int(value: str):
    return int(value) if value.isdigit() else value


# ------------------------------------------------------------------ over tickets (API, beat task)

#: at most this many tickets (the latest) are grouped per request
MAX_TICKETS = 20_000
#: a period of at most this many days may be asked for
MAX_PERIOD_DAYS = 366
#: a stored run younger than this (seconds) answers a request for the default period
STORED_MAX_AGE = 26 * 3600
#: the default period (days, ending today): the beat task's and the API's
DEFAULT_DAYS = 30


def office_today() -> date:
    from service import clock

    return clock.now().astimezone(clock.office_zone()).date()


def period(date_from: date | None, date_to: date | None) -> tuple[date, date]:
    """The period asked for (default: the :data:`DEFAULT_DAYS` days up to today).

    Raises:
        FieldError (422): ``date_to`` before ``date_from``; a period longer than :data:`MAX_PERIOD_DAYS`.
    """
    from service.errors import FieldError

    date_from, date_to = _ensure_window(date_from, date_to, office_today(), DEFAULT_DAYS)
    if date_to < date_from:
        raise FieldError("date_to", "结束日期不能早于开始日期")
    if (date_to - date_from).days + 1 > MAX_PERIOD_DAYS:
        raise FieldError("date_from", f"时间范围不能超过 {MAX_PERIOD_DAYS} 天")
    return date_from, date_to


def ticket_messages(session, actor, date_from: date, date_to: date) -> list[Message]:
    """The tickets submitted in the period (office dates, inclusive) that ``actor`` may see (SPEC
    §1; ``actor=None``: all), as messages: id = number, user = enterprise; the latest
    :data:`MAX_TICKETS` at most."""
    import sqlalchemy as sa

    from service import clock
    from service.tickets.models import Ticket
    from service.tickets.visibility import ticket_visibility

    zone = clock.office_zone()
    start = datetime.combine(date_from, datetime.min.time(), zone)
    end = datetime.combine(date_to + timedelta(days=1), datetime.min.time(), zone)
    stmt = (sa.select(Ticket.number, Ticket.enterprise_id, Ticket.title, Ticket.description, Ticket.submitted_at)
            .where(Ticket.submitted_at >= start, Ticket.submitted_at < end)
            .order_by(Ticket.submitted_at.desc()).limit(MAX_TICKETS))
    if actor is not None:
        stmt = stmt.where(ticket_visibility(session, actor))
    return [Message(id=r.number, user=str(r.enterprise_id), title=r.title, body=r.description, at=r.submitted_at)
            for r in session.execute(stmt)]


def refresh_latest(session, *, days: int = DEFAULT_DAYS, limit: int = 20):
    """Compute the hot issues of the last ``days`` days over every ticket and store them as the
    latest :class:`~service.triage.search_models.HotIssueRun` (older runs are deleted). The Celery
    beat task ``triage.refresh_hot_issues``; returns the run."""
    import sqlalchemy as sa

    from service import clock
    from service.triage.search_models import HotIssueRun

    date_to = office_today()
    date_from = date_to - timedelta(days=days - 1)
    messages = ticket_messages(session, None, date_from, date_to)
    groups = find_hot_issues(messages, limit=limit)
    run = HotIssueRun(computed_at=clock.now(), date_from=date_from, date_to=date_to, tickets=len(messages),
                      groups=[g.as_json() for g in groups])
    session.execute(sa.delete(HotIssueRun))
    session.add(run)
    session.flush()
    return run


def latest_run(session, date_from: date, date_to: date):
    """The stored run of exactly this period if it is fresh (:data:`STORED_MAX_AGE`), else None."""
    import sqlalchemy as sa

    from service import clock
    from service.triage.search_models import HotIssueRun

    run = session.execute(sa.select(HotIssueRun).where(HotIssueRun.date_from == date_from,
                                                       HotIssueRun.date_to == date_to)
                          .order_by(HotIssueRun.computed_at.desc()).limit(1)).scalar()
    if run is None or (clock.now() - run.computed_at).total_seconds() > STORED_MAX_AGE:
        return None
    return run
