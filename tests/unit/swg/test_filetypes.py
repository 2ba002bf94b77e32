"""swg/filetypes.py: magic bytes on real sample heads built with the stdlib, OOXML kinds from real
ZIP listings, extension mismatches, and Hypothesis checks that no input makes detection raise."""

from __future__ import annotations

import gzip
import io
import struct
import zipfile
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from swg.filetypes import (
    FILE_TYPES,
    HEAD_BYTES,
    FileType,
    detect_file_type,
    extension_mismatch,
    file_extension,
    ooxml_kind,
)

OLE2_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"


def zip_bytes(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def zip_names(data: bytes) -> list[str]:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return archive.namelist()


def png_bytes() -> bytes:
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    header = struct.pack(">IIBBBBB", 1, 1, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00\x00"))
            + chunk(b"IEND", b""))


def ole2_head(stream: str | None) -> bytes:
    head = OLE2_MAGIC + bytes(504)   # 512-byte header, then the directory sector
    if stream is not None:
        head += stream.encode("utf-16-le") + bytes(64 - 2 * len(stream))
    return head


CONTENT_TYPES = {"[Content_Types].xml": b"<Types/>", "_rels/.rels": b"<Relationships/>"}
DOCX = zip_bytes({**CONTENT_TYPES, "word/document.xml": b"<w:document/>"})
DOCM = zip_bytes({**CONTENT_TYPES, "word/document.xml": b"<w:document/>", "word/vbaProject.bin": b"\x00"})


@pytest.mark.parametrize("head,kind", [
    (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n", "pdf"),
    (b"junk before the header\r\n%PDF-1.4\n", "pdf"),
    (bytes(2000) + b"%PDF-1.4\n", "unknown"),        # beyond the first KiB: readers refuse it too
    (zip_bytes({"a.txt": b"hello"}), "zip"),
    (zip_bytes({}), "zip"),                            # an empty archive is only its end record
    (b"PK\x07\x08" + bytes(12) + b"PK\x03\x04", "zip"),
    (b"PK00PK\x03\x04", "zip"),
    (DOCX, "zip"),                                     # OOXML needs the listing: see ooxml_kind
    (OLE2_MAGIC + bytes(504), "ole2"),
    (ole2_head("WordDocument"), "doc"),
    (ole2_head("Workbook"), "xls"),
    (ole2_head("PowerPoint Document"), "ppt"),
    (ole2_head("__substg1.0_0037001F"), "msg"),
    (b"MZ\x90\x00\x03\x00\x00\x00\x04\x00" + bytes(50) + b"PE\x00\x00", "pe"),
    (b"\x7fELF\x02\x01\x01\x00", "elf"),
    (b"\xfe\xed\xfa\xce\x00\x00\x00\x12", "macho"),
    (b"\xfe\xed\xfa\xcf\x01\x00\x00\x07", "macho"),
    (b"\xce\xfa\xed\xfe\x07\x00\x00\x00", "macho"),
    (b"\xcf\xfa\xed\xfe\x07\x00\x00\x01", "macho"),
    (b"#!/bin/sh\necho hi\n", "script"),
    (b"#! /usr/bin/env python3\nprint(1)\n", "script"),
    (b"#!not a path\n", "text"),
    (gzip.compress(b"hello", mtime=0), "gzip"),
    (b"7z\xbc\xaf\x27\x1c\x00\x04", "7z"),
    (b"Rar!\x1a\x07\x00\xcf\x90", "rar"),
    (b"Rar!\x1a\x07\x01\x00\x33\x92", "rar"),
    (b"\xff\xd8\xff\xe0\x00\x10JFIF\x00", "jpeg"),
    (png_bytes(), "png"),
    (b"GIF87a\x01\x00\x01\x00", "gif"),
    (b"GIF89a\x01\x00\x01\x00", "gif"),
    (b"RIFF\x24\x00\x00\x00WEBPVP8 ", "webp"),
    (b"RIFF\x24\x00\x00\x00WAVEfmt ", "unknown"),
    (b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00", "mp4"),
    (b"<!DOCTYPE html>\n<html lang=ja>", "html"),
    (b"<!doctype HTML><title>x</title>", "html"),
    (b"\xef\xbb\xbf \r\n\t<HTML>\n<body>", "html"),
    (b"<html", "html"),
    (b"<htmlx>not html</htmlx>", "text"),
    (b"<!-- comment --><html>", "text"),
    (b'{"user": "\xe9\x88\xb4\xe6\x9c\xa8", "n": [1, 2]}', "json"),
    (b'\xef\xbb\xbf  [1, 2, {"a": null}]\n', "json"),
    (b"[section]\nkey = value\n", "text"),
    (b"12345", "text"),
    (b"true", "text"),
    (b'{"a": 1', "text"),                              # short and invalid: not a cut-off document
    (b'{"a": "' + b"x" * (HEAD_BYTES + 10), "json"),   # cut off at HEAD_BYTES: opens like JSON
    (b"[" * (HEAD_BYTES + 10), "json"),                # too deep for json.loads: must not raise
    ("こんにちは、世界\n".encode(), "text"),
    (b"a" * (HEAD_BYTES - 1) + "あ".encode(), "text"),  # a character cut at the head's end
    (b"plain text\x00with a NUL", "unknown"),
    (b"\xff\xfe\x00invalid utf-8", "unknown"),
    (b"\xc3\x28", "unknown"),
    (b"", "empty"),
])
def test_detect_file_type(head: bytes, kind: str) -> None:
    file_type = detect_file_type(head)
    assert file_type.kind == kind
    assert file_type == FILE_TYPES[kind]


@pytest.mark.parametrize("kind,mime,executable,archive", [
    ("pdf", "application/pdf", False, False),
    ("zip", "application/zip", False, True),
    ("pe", "application/vnd.microsoft.portable-executable", True, False),
    ("elf", "application/x-executable", True, False),
    ("macho", "application/x-mach-binary", True, False),
    ("script", "text/x-shellscript", True, False),
    ("gzip", "application/gzip", False, True),
    ("7z", "application/x-7z-compressed", False, True),
    ("rar", "application/vnd.rar", False, True),
    ("docm", "application/vnd.ms-word.document.macroEnabled.12", False, False),
    ("png", "image/png", False, False),
    ("unknown", "application/octet-stream", False, False),
])
def test_file_type_flags(kind: str, mime: str, executable: bool, archive: bool) -> None:
    assert FILE_TYPES[kind] == FileType(kind, mime, executable, archive)


def test_only_the_head_is_read() -> None:
    assert detect_file_type(b"a" * HEAD_BYTES + b"\x00").kind == "text"


@pytest.mark.parametrize("filename,kind", [
    ("report.doc", "doc"), ("Book1.XLS", "xls"), ("deck.pps", "ppt"), ("mail.msg", "msg"),
    ("setup.msi", "ole2"), (None, "ole2"), ("noext", "ole2"),
])
def test_ole2_without_directory_in_head_takes_the_kind_from_the_name(filename: str | None, kind: str) -> None:
    assert detect_file_type(ole2_head(None), filename).kind == kind


def test_ole2_directory_wins_over_the_name() -> None:
    assert detect_file_type(ole2_head("WordDocument"), "budget.xls").kind == "doc"


def test_the_name_never_changes_other_kinds() -> None:
    assert detect_file_type(b"MZ\x90\x00", "invoice.pdf").kind == "pe"


@pytest.mark.parametrize("members,kind", [
    (DOCX, "docx"),
    (DOCM, "docm"),
    (zip_bytes({**CONTENT_TYPES, "xl/workbook.xml": b"", "xl/worksheets/sheet1.xml": b""}), "xlsx"),
    (zip_bytes({**CONTENT_TYPES, "xl/workbook.xml": b"", "xl/vbaProject.bin": b""}), "xlsm"),
    (zip_bytes({**CONTENT_TYPES, "ppt/presentation.xml": b"", "ppt/slides/slide1.xml": b""}), "pptx"),
    (zip_bytes({**CONTENT_TYPES, "ppt/presentation.xml": b"", "ppt/vbaProject.bin": b""}), "pptm"),
    (zip_bytes({"word/document.xml": b""}), "docx"),           # no [Content_Types].xml needed
    (zip_bytes({"a.txt": b"", "vbaProject.bin": b""}), None),   # macros alone are no document
    (zip_bytes({"a.txt": b"", "b/c.xml": b""}), None),
    (zip_bytes({"docs/word/document.xml": b""}), None),
])
def test_ooxml_kind_from_a_real_zip_listing(members: bytes, kind: str | None) -> None:
    assert detect_file_type(members).kind == "zip"
    assert ooxml_kind(zip_names(members)) == kind


@pytest.mark.parametrize("names,kind", [
    (["/Word/Document.xml"], "docx"),
    (["word\\document.xml", "word\\VBAPROJECT.BIN"], "docm"),
    (["ppt/presentation.xml", "xl/workbook.xml", "word/document.xml"], "docx"),
    ([], None),
])
def test_ooxml_kind_part_names(names: list[str], kind: str | None) -> None:
    assert ooxml_kind(iter(names)) == kind


@pytest.mark.parametrize("kind,filename,mismatch", [
    ("pe", "invoice.pdf", True),
    ("pe", "setup.exe", False),
    ("pe", "C:\\Users\\x\\evil.exe. ", False),
    ("pe", "photo.jpg", True),
    ("pe", "readme.txt", True),
    ("pe", "data.bin", False),                    # an extension no type claims says nothing
    ("pe", "noextension", False),
    ("pe", None, False),
    ("pe", ".pdf", False),                        # a dot file, not an extension
    ("pdf", "report.PDF", False),
    ("pdf", "report.pdf.exe", True),
    ("zip", "report.docx", False),
    ("docm", "report.docx", True),                # the macro-enabled document under a docx name
    ("docx", "report.docx", False),
    ("xlsx", "sheet.docx", True),
    ("ole2", "old.xls", False),
    ("doc", "old.xls", True),
    ("elf", "lib/libc.so", False),
    ("script", "install.sh", False),
    ("script", "notes.txt", False),
    ("text", "notes.txt", False),
    ("json", "data.json", False),
    ("html", "index.htm", False),
    ("html", "index.exe", True),
    ("png", "image.gif", True),
    ("unknown", "a.pdf", False),
    ("empty", "a.pdf", False),
])
def test_extension_mismatch(kind: str, filename: str | None, mismatch: bool) -> None:
    assert extension_mismatch(FILE_TYPES[kind], filename) is mismatch


@pytest.mark.parametrize("filename,extension", [
    ("a.PDF", "pdf"), ("dir.d/file", None), ("x/y\\z.tar.gz", "gz"), ("a.exe...", "exe"),
    (".bashrc", None), ("a.", None), ("", None), (None, None),
])
def test_file_extension(filename: str | None, extension: str | None) -> None:
    assert file_extension(filename) == extension


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=HEAD_BYTES + 64), st.one_of(st.none(), st.text(max_size=40)))
def test_arbitrary_bytes_never_raise(head: bytes, filename: str | None) -> None:
    file_type = detect_file_type(head, filename)
    assert file_type in FILE_TYPES.values()
    assert isinstance(extension_mismatch(file_type, filename), bool)


@settings(max_examples=200, deadline=None)
@given(st.sampled_from([b"%PDF-", b"PK\x03\x04", OLE2_MAGIC, b"MZ", b"\x7fELF", b"<html>", b"{", b"#!/"]),
       st.binary(max_size=256))
def test_magic_prefixes_with_arbitrary_tails_never_raise(prefix: bytes, tail: bytes) -> None:
    assert detect_file_type(prefix + tail) in FILE_TYPES.values()


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(max_size=30), max_size=20))
def test_ooxml_kind_never_raises(names: list[str]) -> None:
    assert ooxml_kind(names) in (None, "docx", "xlsx", "pptx", "docm", "xlsm", "pptm")
