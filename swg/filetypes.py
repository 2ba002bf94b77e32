"""File types by magic bytes, OOXML kinds from an archive listing, and extension mismatches.

Owns `detect_file_type`: what the first bytes of a body (at most `HEAD_BYTES` are looked at) say
the file is, whatever its name or Content-Type claims; `ooxml_kind`: which Office Open XML
document a ZIP is, from its member names (the shell lists the archive, this module never opens
one); and `extension_mismatch`: whether a file name claims a type the bytes contradict. It must
not read files, unpack archives or decide access: the policy decides what a type means.
"""

from __future__ import annotations

import codecs
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

HEAD_BYTES = 4096
PDF_SEARCH_BYTES = 1024   # Acrobat accepts "%PDF-" anywhere in the first KiB: junk before it evades


@dataclass(frozen=True)
class FileType:
    kind: str
    mime: str
    executable: bool
    archive: bool


def _types(*rows: tuple[str, str, bool, bool]) -> Mapping[str, FileType]:
    return MappingProxyType({kind: FileType(kind, mime, executable, archive)
                             for kind, mime, executable, archive in rows})


_OOXML = "application/vnd.openxmlformats-officedocument."
FILE_TYPES: Mapping[str, FileType] = _types(
    ("pdf", "application/pdf", False, False),
    ("zip", "application/zip", False, True),
    ("docx", _OOXML + "wordprocessingml.document", False, False),
    ("xlsx", _OOXML + "spreadsheetml.sheet", False, False),
    ("pptx", _OOXML + "presentationml.presentation", False, False),
    ("docm", "application/vnd.ms-word.document.macroEnabled.12", False, False),
    ("xlsm", "application/vnd.ms-excel.sheet.macroEnabled.12", False, False),
    ("pptm", "application/vnd.ms-powerpoint.presentation.macroEnabled.12", False, False),
    ("ole2", "application/x-ole-storage", False, False),
    ("doc", "application/msword", False, False),
    ("xls", "application/vnd.ms-excel", False, False),
    ("ppt", "application/vnd.ms-powerpoint", False, False),
    ("msg", "application/vnd.ms-outlook", False, False),
    ("pe", "application/vnd.microsoft.portable-executable", True, False),
    ("elf", "application/x-executable", True, False),
    ("macho", "application/x-mach-binary", True, False),
    ("script", "text/x-shellscript", True, False),
    ("gzip", "application/gzip", False, True),
    ("7z", "application/x-7z-compressed", False, True),
    ("rar", "application/vnd.rar", False, True),
    ("jpeg", "image/jpeg", False, False),
    ("png", "image/png", False, False),
    ("gif", "image/gif", False, False),
    ("webp", "image/webp", False, False),
    ("mp4", "video/mp4", False, False),
    ("html", "text/html", False, False),
    ("json", "application/json", False, False),
    ("text", "text/plain", False, False),
    ("empty", "application/x-empty", False, False),
    ("unknown", "application/octet-stream", False, False),
)

# Prefix magics, checked in order. ZIP: a local file header, an empty archive's end record, and
# the two markers a split/spanned archive starts with (APPNOTE.TXT 8.5.3-8.5.4).
_MAGICS: tuple[tuple[bytes, str], ...] = (
    (b"PK\x03\x04", "zip"), (b"PK\x05\x06", "zip"), (b"PK\x07\x08", "zip"), (b"PK00PK\x03\x04", "zip"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "ole2"),
    (b"\x7fELF", "elf"),
    (b"\xfe\xed\xfa\xce", "macho"), (b"\xfe\xed\xfa\xcf", "macho"),
    (b"\xce\xfa\xed\xfe", "macho"), (b"\xcf\xfa\xed\xfe", "macho"),
    # Any "MZ" is treated as an executable (DOS programs have no PE header): fail closed.
    (b"MZ", "pe"),
    (b"\x1f\x8b", "gzip"),
    (b"7z\xbc\xaf\x27\x1c", "7z"),
    (b"Rar!\x1a\x07\x00", "rar"), (b"Rar!\x1a\x07\x01\x00", "rar"),
    (b"\xff\xd8\xff", "jpeg"),
    (b"\x89PNG\r\n\x1a\n", "png"),
    (b"GIF87a", "gif"), (b"GIF89a", "gif"),
)
_SHEBANG = re.compile(rb"#![ \t]*/")
_HTML = re.compile(rb"(?:\xef\xbb\xbf)?[ \t\r\n\x0c]*<(?:!doctype[ \t\r\n\x0c]+html|html)"
                   rb"(?:[ \t\r\n\x0c>]|\Z)", re.IGNORECASE)
_JSON_START = re.compile(rb'\s*(?:\{\s*(?:"|\}|\Z)|\[\s*(?:[\[{"\-0-9\]]|\Z))')
# Directory entry names (UTF-16LE) of each OLE2 application's main stream; msg first, as a
# message's attachments may hold a Word stream of their own.
_OLE2_STREAMS: tuple[tuple[bytes, str], ...] = (
    ("__substg1.0_".encode("utf-16-le"), "msg"),
    ("WordDocument".encode("utf-16-le"), "doc"),
    ("PowerPoint Document".encode("utf-16-le"), "ppt"),
    ("Workbook".encode("utf-16-le"), "xls"),
)

_TEXT_FAMILY = frozenset({"txt", "text", "csv", "tsv", "log", "md", "json", "xml", "html", "htm", "xhtml",
                          "svg", "sh", "bash", "zsh", "ksh", "py", "pl", "rb", "js", "css", "ini", "cfg",
                          "conf", "yaml", "yml", "toml", "command"})
_ACCEPTED: Mapping[str, frozenset[str]] = MappingProxyType({
    "pdf": frozenset({"pdf"}),
    "zip": frozenset({"zip", "docx", "dotx", "xlsx", "xltx", "pptx", "potx", "ppsx",
                      "docm", "dotm", "xlsm", "xltm", "pptm", "potm", "ppsm", "jar", "apk", "odt", "ods",
                      "odp", "epub"}),
    "docx": frozenset({"docx", "dotx"}), "docm": frozenset({"docm", "dotm"}),
    "xlsx": frozenset({"xlsx", "xltx"}), "xlsm": frozenset({"xlsm", "xltm"}),
    "pptx": frozenset({"pptx", "potx", "ppsx"}), "pptm": frozenset({"pptm", "potm", "ppsm"}),
    "doc": frozenset({"doc", "dot"}), "xls": frozenset({"xls", "xlt"}),
    "ppt": frozenset({"ppt", "pps", "pot"}), "msg": frozenset({"msg"}),
    "ole2": frozenset({"doc", "dot", "xls", "xlt", "ppt", "pps", "pot", "msg", "msi"}),
    "pe": frozenset({"exe", "dll", "sys", "scr", "cpl", "ocx", "drv", "efi", "com", "mui"}),
    "elf": frozenset({"so", "elf", "ko"}),
    "macho": frozenset({"dylib", "bundle", "macho"}),
    "gzip": frozenset({"gz", "tgz"}),
    "7z": frozenset({"7z"}),
    "rar": frozenset({"rar"}),
    "jpeg": frozenset({"jpg", "jpeg", "jpe", "jfif"}),
    "png": frozenset({"png"}),
    "gif": frozenset({"gif"}),
    "webp": frozenset({"webp"}),
    "mp4": frozenset({"mp4", "m4a", "m4v", "mov", "3gp", "heic", "heif", "avif"}),
    **{kind: _TEXT_FAMILY for kind in ("script", "html", "json", "text")},
})
_CLAIMED: frozenset[str] = frozenset().union(*_ACCEPTED.values())


def detect_file_type(head: bytes, filename: str | None = None) -> FileType:
    """The type the first bytes say; `filename` only names an OLE2 file whose directory is not in `head`."""
    head = bytes(head[:HEAD_BYTES])
    if not head:
        return FILE_TYPES["empty"]
    for magic, kind in _MAGICS:
        if head.startswith(magic):
            return _ole2_type(head, filename) if kind == "ole2" else FILE_TYPES[kind]
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return FILE_TYPES["webp"]
    if head[4:8] == b"ftyp":
        return FILE_TYPES["mp4"]
    if b"%PDF-" in head[:PDF_SEARCH_BYTES]:
        return FILE_TYPES["pdf"]
    if _SHEBANG.match(head):
        return FILE_TYPES["script"]
    if _HTML.match(head):
        return FILE_TYPES["html"]
    text = _utf8_text(head)
    if text is None:
        return FILE_TYPES["unknown"]
    return FILE_TYPES["json"] if _looks_like_json(text, head) else FILE_TYPES["text"]


def ooxml_kind(names: Iterable[str]) -> str | None:
    """docx/xlsx/pptx (docm/xlsm/pptm when a VBA project is there) from a ZIP's member names, else None."""
    mains: set[str] = set()
    macros = False
    for name in names:
        # OPC part names are case-insensitive (ECMA-376 part 2, 9.1.1.1); some writers add a "/".
        part = name.replace("\\", "/").lstrip("/").lower()
        if part in _OOXML_MAIN_PARTS:
            mains.add(_OOXML_MAIN_PARTS[part])
        elif part.rsplit("/", 1)[-1] == "vbaproject.bin":
            macros = True
    for kind in ("docx", "xlsx", "pptx"):   # a fixed order when a crafted archive holds several
        if kind in mains:
            return kind[:-1] + "m" if macros else kind
    return None


_OOXML_MAIN_PARTS = {"word/document.xml": "docx", "xl/workbook.xml": "xlsx", "ppt/presentation.xml": "pptx"}


def extension_mismatch(file_type: FileType, filename: str | None) -> bool:
    """True when `filename`'s extension belongs to a known type other than `file_type` (`.pdf` on a PE)."""
    extension = file_extension(filename)
    if extension is None or extension not in _CLAIMED or file_type.kind not in _ACCEPTED:
        return False
    return extension not in _ACCEPTED[file_type.kind]


def file_extension(filename: str | None) -> str | None:
    """The lower-case extension of a path's last component, as Windows reads it ("a.exe. " is exe)."""
    if not filename:
        return None
    base = filename.replace("\\", "/").rsplit("/", 1)[-1].rstrip(" .")
    stem, dot, extension = base.rpartition(".")
    if not dot or not stem or not extension:
        return None
    return extension.lower()


def _ole2_type(head: bytes, filename: str | None) -> FileType:
    for stream, kind in _OLE2_STREAMS:
        if stream in head:
            return FILE_TYPES[kind]
    extension = file_extension(filename)
    for kind in ("doc", "xls", "ppt", "msg"):
        if extension in _ACCEPTED[kind]:
            return FILE_TYPES[kind]
    return FILE_TYPES["ole2"]


def _utf8_text(head: bytes) -> str | None:
    if b"\x00" in head:
        return None
    try:
        # final=False: the head may end inside a multi-byte character cut at HEAD_BYTES.
        return codecs.getincrementaldecoder("utf-8-sig")().decode(head, final=False)
    except UnicodeDecodeError:
        return None


def _looks_like_json(text: str, head: bytes) -> bool:
    if text.lstrip()[:1] not in ("{", "["):   # "12" or "true" alone is text, not a JSON document
        return False
    try:
        json.loads(text)
    except (ValueError, RecursionError):
        # A head cut short is not valid JSON: accept a document that opens like one.
        return len(head) == HEAD_BYTES and _JSON_START.match(head.removeprefix(b"\xef\xbb\xbf")) is not None
    return True
