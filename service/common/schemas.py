"""Shared request-model building blocks: trimmed, length-limited text."""

from __future__ import annotations

from typing import Annotated

from pydantic import StringConstraints

#: A required, stripped, single-purpose short text (titles, names), 1-200 characters.
ShortText = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
#: A required, stripped long text (descriptions, replies), 1-20,000 characters.
LongText = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=20_000)]
#: A required reason, 1-2,000 characters.
ReasonText = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=2_000)]
#: An optional note, up to 2,000 characters.
NoteText = Annotated[str, StringConstraints(strip_whitespace=True, max_length=2_000)]
