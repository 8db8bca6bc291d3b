"""Chinese word segmentation shared by every triage feature (one tokenizer, so that a model, a
duplicate index and a search index built from the same text agree).

Segmentation uses jieba (a maintained library; its dictionary ships inside the package, so nothing
is fetched at run time). :func:`tokens` is the only entry point: it normalises the text (NFKC, lower
case), segments it in jieba's precise mode, and drops whitespace, punctuation, single ASCII
characters and the stop words of :data:`STOP_WORDS`.
"""

from __future__ import annotations

import logging
import re
import threading
import unicodedata
from functools import lru_cache

import jieba

#: Function words and office boilerplate that carry no topic (企业诉求常见套话).
_STOP_TEXT = """
的 了 和 与 及 或 是 在 有 我 我们 你 你们 他 她 它 他们 这 那 这个 那个 一个 一些 什么 怎么 如何 为什么
吗 呢 吧 啊 呀 也 都 就 还 又 再 很 非常 比较 已经 没有 不 没 会 能 可以 可能 需要 希望 请 请问 您好 你好
谢谢 感谢 麻烦 问题 情况 反映 关于 对于 由于 因为 所以 但是 而且 如果 以及 等 等等 目前 现在 一直 进行
相关 有关 予以 给予 要求 建议 咨询 我司 公司 企业 本 该 其 之 为 对 从 向 把 被 让 给 到 上 下 中 里
"""
STOP_WORDS = frozenset(_STOP_TEXT.split())

_PUNCT = re.compile(r"^[\W_]+$", re.UNICODE)
_lock = threading.Lock()
_ready = False


def warm_up() -> None:
    """Load jieba's dictionary now (about 1 s, once per process) instead of on the first request."""
    global _ready
    if _ready:
        return
    with _lock:
        if not _ready:
            jieba.setLogLevel(logging.WARNING)
            jieba.initialize()
            _ready = True


def normalise(text: str) -> str:
    """NFKC (full-width letters and digits to half-width) and lower case."""
    return unicodedata.normalize("NFKC", text or "").lower()


@lru_cache(maxsize=4096)
def _cut(text: str) -> tuple[str, ...]:
    warm_up()
    return tuple(jieba.lcut(text, HMM=True))


def tokens(text: str) -> list[str]:
    """The content words of ``text`` in order (may repeat).

    >>> tokens("请问高新技术企业认定需要哪些材料？")  # doctest: +SKIP
    ['高新技术', '认定', '哪些', '材料']
    """
    out = []
    for word in _cut(normalise(text)):
        w = word.strip()
        if not w or w in STOP_WORDS or _PUNCT.match(w) or (len(w) == 1 and w.isascii()):
            continue
        out.append(w)
    return out
