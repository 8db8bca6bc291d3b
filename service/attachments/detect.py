"""What a file is, judged on its bytes and never on its name (issue 12; docs/attachments.md).

:func:`detect` names the content type of an upload or refuses it (415). The signature of the
simple formats is identified by ``puremagic`` (a maintained, pure-Python magic-number database)
and confirmed at offset 0; the container formats are opened and their structure checked, because
a ZIP or an OLE2 compound file can hold anything:

- OOXML (DOCX, XLSX, PPTX): a ZIP whose ``[Content_Types].xml`` declares the main part of a
  Word document, Excel workbook or PowerPoint presentation and whose ``word/``, ``xl/`` or
  ``ppt/`` part exists; macro-enabled documents (a ``vbaProject.bin``, a ``macroEnabled`` main
  part) and any other ZIP (an archive renamed ``.docx``) are refused;
- legacy Office (DOC, XLS, PPT): an OLE2 file with a ``WordDocument``, ``Workbook``/``Book`` or
  ``PowerPoint Document`` stream (``olefile``); VBA macros and other OLE2 files (MSI installers,
  Outlook messages) are refused;
- plain text: UTF-8 (or GB18030) without control characters, not beginning like markup (``<``:
  HTML, SVG, XML) or a script (``#!``).

Everything else is refused: executables (PE, ELF, Mach-O), HTML, SVG, scripts, archives. The
accepted set is narrowed further by the ``attachment_types`` setting.
"""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass

import olefile
import puremagic

from service.errors import UnsupportedFileType

JPEG, PNG, GIF, WEBP, PDF = "image/jpeg", "image/png", "image/gif", "image/webp", "application/pdf"
DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
PPTX = "application/vnd.openxmlformats-officedocument.presentationml.presentation"
DOC, XLS, PPT = "application/msword", "application/vnd.ms-excel", "application/vnd.ms-powerpoint"
TEXT = "text/plain"

#: The file name extensions of each type; the first is added to a name that has none of them.
EXTENSIONS: dict[str, tuple[str, ...]] = {
    JPEG: (".jpg", ".jpeg", ".jpe", ".jfif"), PNG: (".png",), GIF: (".gif",), WEBP: (".webp",), PDF: (".pdf",),
    DOCX: (".docx",), XLSX: (".xlsx",), PPTX: (".pptx",), DOC: (".doc",), XLS: (".xls",), PPT: (".ppt",),
    TEXT: (".txt", ".text", ".log", ".csv"),
}

#: Signatures at offset 0 that confirm puremagic's answer for the simple formats.
_SIGNATURES: dict[str, tuple[bytes, ...]] = {
    JPEG: (b"\xff\xd8\xff",), PNG: (b"\x89PNG\r\n\x1a\n",), GIF: (b"GIF87a", b"GIF89a"), PDF: (b"%PDF-",),
}
_ZIP = (b"PK\x03\x04", b"PK\x05\x06")
_OLE2 = bytes.fromhex("D0CF11E0A1B11AE1")

#: The main part of each OOXML document type in ``[Content_Types].xml`` and its folder.
_OOXML_MAIN = {
    DOCX: ("application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml", "word/"),
    XLSX: ("application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml", "xl/"),
    PPTX: ("application/vnd.openxmlformats-officedocument.presentationml.presentation.main+xml", "ppt/"),
}
_MAX_ZIP_ENTRIES = 10_000
_MAX_CONTENT_TYPES_BYTES = 1024 * 1024
#: OLE2 streams of the legacy Office formats, and the storages that hold VBA macros.
_OLE_STREAMS = (("WordDocument", DOC), ("Workbook", XLS), ("Book", XLS), ("PowerPoint Document", PPT))
_OLE_MACROS = frozenset({"macros", "_vba_project_cur", "vba", "_vba_project"})
#: Text control characters allowed in plain text (tab, line feed, form feed, carriage return).
_TEXT_CONTROLS = frozenset("\t\n\f\r")


@dataclass(frozen=True)
class Detected:
    """A detected type: ``content_type`` (``text/plain; charset=...`` for text), ``base`` (without
    parameters, the allowlist's key) and the name ``extensions`` of the type."""

    content_type: str
    base: str

    @property
    def extensions(self) -> tuple[str, ...]:
        return EXTENSIONS[self.base]


def detect(data: bytes, *, field: str = "file", allowed: frozenset[str] | set[str] | None = None) -> Detected:
    """The type of ``data`` (the whole file), judged on the bytes.

    Args:
        field: the field named in a refusal (e.g. ``files[0]``).
        allowed: the base content types accepted (the ``attachment_types`` setting); ``None`` =
            every type this module knows.

    Raises:
        UnsupportedFileType (415, naming ``field``): unknown, dangerous (executable, HTML, SVG,
            script, macro), an archive, damaged, or not in ``allowed``.
    """
    if data.startswith(_ZIP):
        found = _ooxml(data, field)
    elif data.startswith(_OLE2):
        found = _ole2(data, field)
    else:
        found = _simple(data, field)
    if allowed is not None and found.base not in allowed:
        raise UnsupportedFileType(field, f"不接受该类型的文件（{found.base}）")
    return found


def _refuse(field: str, what: str) -> UnsupportedFileType:
    return UnsupportedFileType(
        field, f"{what}；只接受图片（JPEG、PNG、GIF、WebP）、PDF、Office 文档（DOCX、XLSX、PPTX、DOC、XLS、PPT）和纯文本")


def _simple(data: bytes, field: str) -> Detected:
    try:
        matches = puremagic.magic_string(data)
    except (puremagic.PureError, ValueError):
        matches = []
    best = max((m.confidence for m in matches), default=0)
    top = [m for m in matches if m.confidence == best]
    for m in top:
        base = m.mime_type
        if base == WEBP and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
            return Detected(base, base)
        if base in _SIGNATURES and data.startswith(_SIGNATURES[base]):
            return Detected(base, base)
    text = _text(data)
    if text is not None:
        return text
    named = next((m.mime_type or m.extension for m in top if m.mime_type or m.extension), "")
    raise _refuse(field, f"不接受该类型的文件（检测为 {named}）" if named else "无法识别的文件类型")


def _text(data: bytes) -> Detected | None:
    for charset in ("utf-8", "gb18030"):
        try:
            text = data.decode(charset)
        except UnicodeDecodeError:
            continue
        body = text.lstrip("\ufeff \t\r\n")
        if body.startswith(("<", "#!")):  # markup (HTML, SVG, XML) or a script
            return None
        if any(ord(ch) < 32 and ch not in _TEXT_CONTROLS or ord(ch) == 127 for ch in text):
            return None
        return Detected(f"{TEXT}; charset={charset}", TEXT)
    return None


def _ooxml(data: bytes, field: str) -> Detected:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            infos = archive.infolist()
            if len(infos) > _MAX_ZIP_ENTRIES:
                raise _refuse(field, "压缩包条目过多")
            names = [i.filename for i in infos]
            if any(n.lower().endswith("vbaproject.bin") for n in names):
                raise _refuse(field, "不接受含宏的 Office 文档")
            types = next((i for i in infos if i.filename == "[Content_Types].xml"), None)
            if types is None or types.file_size > _MAX_CONTENT_TYPES_BYTES:
                raise _refuse(field, "不接受压缩包（ZIP 等）")
            with archive.open(types) as fh:
                declared = fh.read(_MAX_CONTENT_TYPES_BYTES + 1).decode("utf-8", "replace")
    except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, RuntimeError, OSError, EOFError) as exc:
        raise _refuse(field, "文件已损坏或无法读取（ZIP 结构无效）") from exc
    if "macroenabled" in declared.lower():
        raise _refuse(field, "不接受含宏的 Office 文档")
    for content_type, (main, folder) in _OOXML_MAIN.items():
        if main in declared and any(n.startswith(folder) for n in names):
            return Detected(content_type, content_type)
    raise _refuse(field, "不接受压缩包或该类 Office 文件")


def _ole2(data: bytes, field: str) -> Detected:
    try:
        with olefile.OleFileIO(data) as ole:
            entries = ole.listdir(streams=True, storages=True)
    except Exception as exc:  # noqa: BLE001 - olefile raises many kinds on damaged input
        raise _refuse(field, "文件已损坏或无法读取（OLE2 结构无效）") from exc
    if any(part.lower() in _OLE_MACROS for entry in entries for part in entry):
        raise _refuse(field, "不接受含宏的 Office 文档")
    top = {entry[0] for entry in entries if len(entry) == 1}
    for stream, content_type in _OLE_STREAMS:
        if stream in top:
            return Detected(content_type, content_type)
    raise _refuse(field, "不接受该类复合文档（如 MSI 安装包、邮件文件）")
