"""Real files of each kind, made here (no binary fixtures in the repository): a PNG and a GIF
drawn pixel by pixel, a JPEG and a WebP header, a PDF, DOCX/PPTX as OOXML packages, an XLSX
written by openpyxl, legacy Office files as OLE2 compound files (a minimal writer of the
[MS-CFB] format, version 3), and the things that must be refused."""

from __future__ import annotations

import io
import struct
import zipfile
import zlib

from openpyxl import Workbook


def png(width: int = 2, height: int = 2, seed: int = 0) -> bytes:
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    rows = b"".join(b"\x00" + bytes((seed + x + y) % 256 for x in range(width * 3)) for y in range(height))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


def gif() -> bytes:
    return (b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff!\xf9\x04\x01\x00\x00\x00\x00"
            b",\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;")


def jpeg() -> bytes:
    return b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00" + b"\x00" * 64 + b"\xff\xd9"


def webp() -> bytes:
    body = b"WEBPVP8 " + struct.pack("<I", 10) + b"\x00" * 10
    return b"RIFF" + struct.pack("<I", len(body)) + body


def pdf() -> bytes:
    return (b"%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\n2 0 obj<</Type/Pages/Kids[]/Count 0>>endobj\n"
            b"trailer<</Root 1 0 R>>\n%%EOF\n")


_MAIN = {
    "word": "application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml",
    "ppt": "application/vnd.openxmlformats-officedocument.presentationml.presentation.main+xml",
    "word_macro": "application/vnd.ms-word.document.macroEnabled.main+xml",
}
_PART = {"word": "word/document.xml", "ppt": "ppt/presentation.xml", "word_macro": "word/document.xml"}


def ooxml(kind: str = "word", *, extra: dict[str, bytes] | None = None) -> bytes:
    """A DOCX (``word``), PPTX (``ppt``) or DOCM (``word_macro``) package."""
    part = _PART[kind]
    types = ('<?xml version="1.0" encoding="UTF-8"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/'
             'content-types"><Default Extension="xml" ContentType="application/xml"/>'
             f'<Override PartName="/{part}" ContentType="{_MAIN[kind]}"/></Types>')
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("[Content_Types].xml", types)
        z.writestr("_rels/.rels", "<Relationships/>")
        z.writestr(part, "<document>企业服务</document>")
        for name, body in (extra or {}).items():
            z.writestr(name, body)
    return buf.getvalue()


def xlsx() -> bytes:
    wb = Workbook()
    wb.active["A1"] = "用工缺口"
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


def zip_archive() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("setup.exe", b"MZ" + b"\x00" * 100)
        z.writestr("readme.txt", "hello")
    return buf.getvalue()


_END, _FREE, _FATSECT, _NOSTREAM = 0xFFFFFFFE, 0xFFFFFFFF, 0xFFFFFFFD, 0xFFFFFFFF


def ole2(streams: dict[str, bytes], storages: tuple[str, ...] = ()) -> bytes:
    """An OLE2 compound file (MS-CFB v3, 512-byte sectors) with ``streams`` (each padded to at
    least 4,096 bytes, so no mini stream is needed) and empty ``storages`` at the root."""
    padded = {name: data.ljust(4096, b"\x00") for name, data in streams.items()}
    entries = [(name, 2, data) for name, data in padded.items()] + [(name, 1, b"") for name in storages]
    n_dir = (len(entries) + 1 + 3) // 4
    sector = 1 + n_dir  # after the FAT sector and the directory
    fat = [_FATSECT] + [_END if i == n_dir - 1 else 1 + i + 1 for i in range(n_dir)]
    starts, body = [], b""
    for _name, kind, data in entries:
        if kind != 2:
            starts.append(_END)
            continue
        count = (len(data) + 511) // 512
        starts.append(sector)
        fat += [sector + i + 1 if i < count - 1 else _END for i in range(count)]
        body += data.ljust(count * 512, b"\x00")
        sector += count
    assert len(fat) <= 128, "one FAT sector"
    fat += [_FREE] * (128 - len(fat))

    def entry(name: str, kind: int, child: int, right: int, start: int, size: int) -> bytes:
        raw = name.encode("utf-16-le") + b"\x00\x00"
        return (raw.ljust(64, b"\x00") + struct.pack("<HBB", len(raw), kind, 1)
                + struct.pack("<III", _NOSTREAM, right, child) + b"\x00" * 16 + b"\x00" * 4 + b"\x00" * 16
                + struct.pack("<IQ", start, size))

    dirs = entry("Root Entry", 5, 1 if entries else _NOSTREAM, _NOSTREAM, _END, 0)
    for i, (name, kind, data) in enumerate(entries):
        right = i + 2 if i + 1 < len(entries) else _NOSTREAM
        dirs += entry(name, kind, _NOSTREAM, right, starts[i], len(data))
    dirs = dirs.ljust(n_dir * 512, b"\x00")
    difat = [0] + [_FREE] * 108
    header = (bytes.fromhex("D0CF11E0A1B11AE1") + b"\x00" * 16 + struct.pack("<HHHHH", 0x3E, 3, 0xFFFE, 9, 6)
              + b"\x00" * 6 + struct.pack("<IIIIIIIII", 0, 1, 1, 0, 4096, _END, 0, _END, 0)
              + struct.pack("<109I", *difat))
    assert len(header) == 512
    return header + struct.pack("<128I", *fat) + dirs + body


def doc() -> bytes:
    return ole2({"WordDocument": b"\xec\xa5" + b"word"})


def xls() -> bytes:
    return ole2({"Workbook": b"\x09\x08" + b"book"})


def doc_with_macros() -> bytes:
    return ole2({"WordDocument": b"\xec\xa5"}, storages=("Macros",))


def msi() -> bytes:
    return ole2({"SummaryInformation": b"installer"})


EXE = b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff\x00\x00" + b"\x00" * 48 + b"PE\x00\x00" + b"\x00" * 64
ELF = b"\x7fELF\x02\x01\x01\x00" + b"\x00" * 8 + b"\x02\x00\x3e\x00" + b"\x00" * 100
HTML = b"<!DOCTYPE html><html><body><script>alert(document.cookie)</script></body></html>"
SVG = b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"></svg>'
SCRIPT = b"#!/bin/sh\nrm -rf /\n"
