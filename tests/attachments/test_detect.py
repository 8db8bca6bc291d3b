"""Type detection on the bytes, never the name (issue 12): every accepted kind, and what must be
refused (executables, markup, scripts, archives, macros, other compound files)."""

from __future__ import annotations

import pytest

from service.attachments import detect as d
from service.errors import FieldError, UnsupportedFileType
from tests.attachments import samples as s

ACCEPTED = [
    ("png", s.png(), d.PNG), ("jpeg", s.jpeg(), d.JPEG), ("gif", s.gif(), d.GIF), ("webp", s.webp(), d.WEBP),
    ("pdf", s.pdf(), d.PDF), ("docx", s.ooxml("word"), d.DOCX), ("pptx", s.ooxml("ppt"), d.PPTX),
    ("xlsx", s.xlsx(), d.XLSX), ("doc", s.doc(), d.DOC), ("xls", s.xls(), d.XLS),
    ("utf8 text", "企业用工需求：焊工50名\r\n".encode(), d.TEXT),
    ("gb18030 text", "企业用工需求：焊工50名\n".encode("gb18030"), d.TEXT),
]

REFUSED = [
    ("exe", s.EXE), ("elf", s.ELF), ("html", s.HTML), ("svg", s.SVG), ("script", s.SCRIPT),
    ("zip", s.zip_archive()), ("docm", s.ooxml("word_macro")),
    ("docx with vbaProject.bin", s.ooxml("word", extra={"word/vbaProject.bin": b"\x00" * 10})),
    ("doc with macros", s.doc_with_macros()), ("msi", s.msi()),
    ("damaged zip", b"PK\x03\x04" + b"\x00" * 40), ("damaged ole2", bytes.fromhex("D0CF11E0A1B11AE1") + b"\x01" * 600),
    ("binary noise", bytes(range(256)) * 4), ("utf-16 text", "你好".encode("utf-16")),
]


@pytest.mark.parametrize(("name", "data", "expected"), ACCEPTED, ids=[a[0] for a in ACCEPTED])
def test_accepted_kinds(name, data, expected):
    found = d.detect(data)
    assert found.base == expected
    assert found.content_type.startswith(expected)


@pytest.mark.parametrize(("name", "data"), REFUSED, ids=[r[0] for r in REFUSED])
def test_refused_kinds_name_the_field(name, data):
    with pytest.raises(UnsupportedFileType) as info:
        d.detect(data, field="files[2]")
    problem = info.value.to_problem()
    assert info.value.status == 415 and isinstance(info.value, FieldError)
    assert problem["errors"][0]["field"] == "files[2]"
    assert problem["type"] == "/problems/unsupported-file-type"


def test_allowlist_narrows_the_kinds():
    assert d.detect(s.png(), allowed={d.PNG}).base == d.PNG
    with pytest.raises(UnsupportedFileType, match="text/plain"):
        d.detect(b"plain words\n", allowed={d.PNG, d.PDF})


def test_a_signature_later_in_the_file_is_not_a_type():
    """A PDF header past offset 0 (puremagic scans a window) does not make a file a PDF."""
    with pytest.raises(UnsupportedFileType):
        d.detect(b"\x00\x01garbage %PDF-1.4 trailing" + bytes(range(32)))
