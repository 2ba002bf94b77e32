"""Taking a complete body apart into the parts that can be scanned: `iter_parts` and `extract_parts`.

Owns walking a body: multipart/form-data parts, URL-encoded form values, JSON strings, text in
the charsets of swg.dlp, ZIP archives (nested, within `ExtractionLimits`), the text of Office Open
XML packages and PDFs (via documents), and every file met on the way as bytes for the malware
signatures. It must not decide anything (verdict does) and reads nothing but the bytes given.

Bad input never raises. When a limit is passed or a container cannot be read, the walk stops with
an `Unscannable` (a machine reason, the path, a sentence) as its last item: what was not read may
hold anything, so the caller blocks (fail closed).

Zip bombs. The member count is bounded before the central directory is parsed (by counting its
entry signatures); each member's declared size is checked against the member and total limits
and its ratio to the compressed size, before it is read; the read itself is bounded (zipfile
also stops at the declared size and then checks the CRC); nesting is bounded by `max_depth`.
"""

from __future__ import annotations

import html
import io
import json
import lzma
import struct
import urllib.parse
import zipfile
import zlib
from collections.abc import Generator, Iterator
from dataclasses import dataclass

from swg.content.documents import (
    TOTAL_EXCEEDED,
    DocumentError,
    inert_parts,
    is_ooxml_text_part,
    pdf_content,
    xml_text,
)
from swg.content.limits import ExtractionLimits
from swg.content.multipart import MultipartError, parse_media_type, split_multipart
from swg.dlp.scan import decode_text
from swg.filetypes import FILE_TYPES, HEAD_BYTES, FileType, detect_file_type, ooxml_kind

ROOT = "body"
# Machine reasons of an Unscannable (besides those of documents).
NESTING_TOO_DEEP = "nesting-too-deep"
TOO_MANY_MEMBERS = "too-many-members"
RATIO_EXCEEDED = "compression-ratio-exceeded"
MEMBER_TOO_LARGE = "member-too-large"
ARCHIVE_CORRUPT = "archive-corrupt"
ARCHIVE_ENCRYPTED = "archive-encrypted"
ARCHIVE_UNSUPPORTED = "archive-unsupported"
MULTIPART_CORRUPT = "multipart-corrupt"
OFFICE_ENCRYPTED = "office-encrypted"
INTERNAL_ERROR = "internal-error"

_TEXT_KINDS = frozenset({"text", "json", "html", "script"})
_OLE2_KINDS = frozenset({"ole2", "doc", "xls", "ppt"})
# An encrypted Office Open XML file is an OLE2 file holding this stream (MS-OFFCRYPTO 2.3.4).
_ENCRYPTED_PACKAGE = "EncryptedPackage".encode("utf-16-le")
_CENTRAL_ENTRY = b"PK\x01\x02"
_END_OF_DIRECTORY = b"PK\x05\x06"
_MAX_COMMENT_BYTES = 65_535
_ZIP_UTF8_FLAG = 0x800
_MAX_NAME_CHARS = 200
_ARCHIVE_ERRORS = (zipfile.BadZipFile, zlib.error, lzma.LZMAError, EOFError, OSError, ValueError,
                   RuntimeError, KeyError, OverflowError, struct.error)


@dataclass(frozen=True)
class Part:
    """One scannable thing: a file met in the body (its bytes, for the malware signatures) and,
    when it has any, the text a person reads in it (for DLP).

    `path` is where it sits ("report.zip/inner.docx/word/document.xml"); `document` the file a
    person knows it as ("report.zip/inner.docx"); `depth` the containers opened to reach it.
    """

    path: str
    document: str
    file_type: FileType
    data: bytes
    text: str | None
    depth: int


@dataclass(frozen=True)
class Unscannable:
    """Why the body could not be read to the end: `reason` for machines, `detail` for people."""

    reason: str
    path: str
    detail: str


@dataclass(frozen=True)
class Extraction:
    parts: tuple[Part, ...]
    unscannable: Unscannable | None


def iter_parts(data: bytes, filename: str | None = None, content_type: str | None = None,
               limits: ExtractionLimits | None = None) -> Generator[Part | Unscannable, None, None]:
    """The parts of a complete body, the body itself first (for a multipart body, its parts);
    an Unscannable, if any, comes last and ends the walk."""
    walker = _Walker(limits or ExtractionLimits())
    root = clean_name(filename.replace("\\", "/").rsplit("/", 1)[-1]) if filename else ""
    root = root or ROOT
    try:
        yield from walker.body(bytes(data), root, content_type)
    except DocumentError as exc:
        yield Unscannable(exc.reason, exc.path or root, exc.detail)
    except RecursionError:
        yield Unscannable(INTERNAL_ERROR, root, f"{root} is nested too deeply to be read")
    except Exception as exc:   # fail closed on our own bugs too; the caller logs the detail
        yield Unscannable(INTERNAL_ERROR, root, f"reading {root} failed ({type(exc).__name__}: {exc})"[:300])


def extract_parts(data: bytes, filename: str | None = None, content_type: str | None = None,
                  limits: ExtractionLimits | None = None) -> Extraction:
    """All of `iter_parts` at once (tests and small bodies; the verdict streams)."""
    parts: list[Part] = []
    for item in iter_parts(data, filename, content_type, limits):
        if isinstance(item, Unscannable):
            return Extraction(tuple(parts), item)
        parts.append(item)
    return Extraction(tuple(parts), None)


def unpack_zip(data: bytes, path: str, limits: ExtractionLimits | None = None
               ) -> list[tuple[zipfile.ZipInfo, bytes]]:
    """Every member of one ZIP with its bytes, within the same limits as the walk (used by
    sanitise, which rewrites packages); DocumentError when a limit is passed or it is unreadable."""
    walker = _Walker(limits or ExtractionLimits())
    archive, infos = walker.open_zip(data, path)
    with archive:
        return [(info, walker.read_member(archive, info, f"{path}/{_member_name(info)}")) for info in infos]


def zip_names(data: bytes, path: str, limits: ExtractionLimits | None = None) -> list[str]:
    """The member names of one ZIP (its directory only, within the member limit); DocumentError
    when unreadable."""
    archive, infos = _Walker(limits or ExtractionLimits()).open_zip(data, path)
    archive.close()
    return [info.filename for info in infos]


def clean_name(name: str) -> str:
    """A name safe to show and log: no control characters, at most _MAX_NAME_CHARS characters."""
    shown = "".join(char if char.isprintable() else "?" for char in name.strip("/"))
    return shown if len(shown) <= _MAX_NAME_CHARS else shown[:_MAX_NAME_CHARS - 1] + "…"


class _Walker:
    def __init__(self, limits: ExtractionLimits) -> None:
        self.limits = limits
        self.total_bytes = 0

    def body(self, data: bytes, root: str, content_type: str | None) -> Iterator[Part]:
        media, params = parse_media_type(content_type)
        if media.startswith("multipart/"):
            # The envelope itself is not a file: its boundary is random, no signature can match.
            yield from self.multipart(data, root, params, 0)
        else:
            yield from self.blob(data, root, root, root, content_type, 0)

    def multipart(self, data: bytes, path: str, params: dict[str, str], depth: int) -> Iterator[Part]:
        try:
            preamble, parts, epilogue = split_multipart(data, params.get("boundary", ""))
        except MultipartError as exc:
            raise DocumentError(MULTIPART_CORRUPT, f"{path}: {exc}", path) from None
        for index, extra in ((0, preamble), (1, epilogue)):
            if extra.strip():
                where = f"{path} ({'preamble' if index == 0 else 'epilogue'})"
                yield from self.blob(extra, where, where, where, "text/plain", depth)
        # A nested multipart (multipart/mixed in old clients) is a container of its own.
        for number, part in enumerate(parts, start=1):
            label = clean_name(part.filename or "") or clean_name(f"field {part.name or number}")
            where = label if path == ROOT else f"{path}/{label}"
            media, inner = parse_media_type(part.content_type)
            if media.startswith("multipart/"):
                self.deeper(where, depth)
                yield from self.multipart(part.body, where, inner, depth + 1)
            else:
                yield from self.blob(part.body, part.filename or "", where, where, part.content_type, depth)

    def blob(self, data: bytes, name: str, path: str, document: str, content_type: str | None,
             depth: int) -> Iterator[Part]:
        """One file: its type by magic bytes (never by name or label), then what it holds."""
        file_type = detect_file_type(data[:HEAD_BYTES], name or None)
        media, params = parse_media_type(content_type)
        charset = params.get("charset")
        if file_type.kind == "zip":
            yield from self.archive(data, path, document, file_type, depth)
        elif file_type.kind == "pdf":
            yield from self.pdf(data, path, document, file_type, depth)
        elif media == "application/x-www-form-urlencoded" and file_type.kind in _TEXT_KINDS:
            yield Part(path, document, file_type, data, _form_text(data, charset), depth)
        elif file_type.kind in _TEXT_KINDS or (file_type.kind == "unknown" and _legacy_text(data, media)):
            yield Part(path, document, file_type, data, _text(data, file_type, media, charset), depth)
        else:
            yield Part(path, document, file_type, data, None, depth)
            if file_type.kind in _OLE2_KINDS and _ENCRYPTED_PACKAGE in data:
                raise DocumentError(OFFICE_ENCRYPTED, f"{path} is an encrypted Office document", path)

    def deeper(self, path: str, depth: int) -> None:
        if depth + 1 > self.limits.max_depth:
            raise DocumentError(NESTING_TOO_DEEP, f"{path} is nested more than {self.limits.max_depth} "
                                                  f"containers deep", path)

    def archive(self, data: bytes, path: str, document: str, file_type: FileType,
                depth: int) -> Iterator[Part]:
        try:
            archive, infos = self.open_zip(data, path)
        except DocumentError:
            yield Part(path, document, file_type, data, None, depth)   # hashed even when unreadable
            raise
        kind = ooxml_kind(info.filename for info in infos)
        yield Part(path, document, FILE_TYPES[kind] if kind else file_type, data, None, depth)
        if infos:
            self.deeper(path, depth)
        inert = self.inert_parts(archive, infos, path) if kind else frozenset()
        with archive:
            for info in infos:
                if info.is_dir():
                    continue
                name = _member_name(info)
                where = f"{path}/{name}"
                content = self.read_member(archive, info, where)
                if kind is None:
                    yield from self.blob(content, name, where, where, None, depth + 1)
                elif _is_package_metadata(info.filename) or info.filename.lower() in inert:
                    yield Part(where, path, FILE_TYPES["text"], content, None, depth + 1)
                elif is_ooxml_text_part(info.filename):
                    text = xml_text(content, info.filename, where)
                    yield Part(where, path, FILE_TYPES["text"], content, text, depth + 1)
                else:   # media, embedded workbooks and objects, vbaProject.bin: files of their own
                    yield from self.blob(content, name, where, where, None, depth + 1)

    def inert_parts(self, archive: zipfile.ZipFile, infos: list[zipfile.ZipInfo],
                    path: str) -> frozenset[str]:
        for info in infos:
            if info.filename.lower() == "[content_types].xml":
                # Read twice (here and in the walk): small, and counted only once.
                content = self.read_member(archive, info, f"{path}/{info.filename}")
                self.total_bytes -= len(content)
                return inert_parts(content)
        return frozenset()

    def open_zip(self, data: bytes, path: str) -> tuple[zipfile.ZipFile, list[zipfile.ZipInfo]]:
        limit = self.limits.max_members
        if _directory_entries(data) > limit:
            raise DocumentError(TOO_MANY_MEMBERS, f"{path} has more than {limit} members", path)
        try:
            archive = zipfile.ZipFile(io.BytesIO(data))
        except _ARCHIVE_ERRORS as exc:
            raise DocumentError(ARCHIVE_CORRUPT, f"{path} is not a readable ZIP archive ({exc})",
                                path) from None
        infos = archive.infolist()
        if len(infos) > limit:
            archive.close()
            raise DocumentError(TOO_MANY_MEMBERS, f"{path} has {len(infos)} members, more than {limit}", path)
        return archive, infos

    def read_member(self, archive: zipfile.ZipFile, info: zipfile.ZipInfo, where: str) -> bytes:
        limits = self.limits
        if info.flag_bits & 0x1:
            raise DocumentError(ARCHIVE_ENCRYPTED, f"{where} is encrypted", where)
        size = info.file_size
        if size > limits.max_member_bytes:
            raise DocumentError(MEMBER_TOO_LARGE, f"{where} unpacks to {size} bytes, more than the "
                                                  f"{limits.max_member_bytes} allowed for one member", where)
        ratio_bound = max(limits.ratio_grace_bytes, limits.max_ratio * info.compress_size)
        if size > ratio_bound:
            raise DocumentError(RATIO_EXCEEDED, f"{where} unpacks to {size} bytes from {info.compress_size}: "
                                                f"more than {limits.max_ratio} times (a zip bomb?)", where)
        room = limits.max_total_bytes - self.total_bytes
        if size > room:
            raise DocumentError(TOTAL_EXCEEDED, f"{where} would take the unpacked total over "
                                                f"{limits.max_total_bytes} bytes", where)
        try:
            with archive.open(info) as member:
                # One byte more than declared (and allowed): a longer member is caught here
                # whatever zipfile does, and inflating never runs far past the declared size.
                content = member.read(size + 1)
        except NotImplementedError as exc:
            raise DocumentError(ARCHIVE_UNSUPPORTED, f"{where} uses an unsupported ZIP feature ({exc})",
                                where) from None
        except _ARCHIVE_ERRORS as exc:
            raise DocumentError(ARCHIVE_CORRUPT, f"{where} cannot be unpacked ({type(exc).__name__}: {exc})",
                                where) from None
        if len(content) > size:   # the header lied about the size: the bounded read caught it
            raise DocumentError(RATIO_EXCEEDED, f"{where} unpacks to more than its declared size", where)
        self.total_bytes += len(content)
        return content

    def pdf(self, data: bytes, path: str, document: str, file_type: FileType, depth: int) -> Iterator[Part]:
        room = self.limits.max_total_bytes - self.total_bytes
        try:
            content = pdf_content(data, path, self.limits.max_pdf_pages, room)
        except DocumentError:
            yield Part(path, document, file_type, data, None, depth)
            raise
        self.total_bytes += len(content.text) + sum(len(blob) for _name, blob in content.attachments)
        yield Part(path, document, file_type, data, content.text, depth)
        if content.attachments:
            self.deeper(path, depth)
        for name, blob in content.attachments:
            shown = clean_name(name) or "attachment"
            where = f"{path}/{shown}"
            yield from self.blob(blob, name, where, where, None, depth + 1)


def _member_name(info: zipfile.ZipInfo) -> str:
    """The member's name as its writer meant it: Japanese Windows tools write CP932 names
    without the UTF-8 flag, which zipfile decodes as CP437."""
    name = info.filename
    if not name.isascii() and not info.flag_bits & _ZIP_UTF8_FLAG:
        try:
            name = name.encode("cp437").decode("cp932")
        except (UnicodeEncodeError, UnicodeDecodeError):
            pass
    return clean_name(name.replace("\\", "/")) or "unnamed"


def _is_package_metadata(name: str) -> bool:
    lowered = name.lower()
    return lowered.endswith(".rels") or lowered == "[content_types].xml"


def _directory_entries(data: bytes) -> int:
    """An upper bound of the entries zipfile would parse, without parsing them: the central
    directory signatures in the directory the end record points at (zipfile finds it the same
    way), or in the whole archive when that record is absent or a ZIP64 one."""
    count = data.count(_CENTRAL_ENTRY)
    end = data.rfind(_END_OF_DIRECTORY, max(0, len(data) - 22 - _MAX_COMMENT_BYTES))
    if end < 0 or len(data) < end + 22:
        return count
    directory_bytes = int.from_bytes(data[end + 12:end + 16], "little")
    if directory_bytes == 0xFFFFFFFF:
        return count
    return data.count(_CENTRAL_ENTRY, max(0, end - directory_bytes), end)


def _legacy_text(data: bytes, media: str) -> bool:
    """Text that is not UTF-8: Shift_JIS (CP932) and EUC-JP files are common in Japanese offices."""
    if b"\x00" in data[:HEAD_BYTES]:
        return False
    if media.startswith("text/"):
        return True
    for codec in ("cp932", "euc_jp"):
        try:
            data.decode(codec)
        except UnicodeDecodeError:
            continue
        return True
    return False


def _text(data: bytes, file_type: FileType, media: str, charset: str | None) -> str:
    text, _codec = decode_text(data, charset)
    if file_type.kind == "json" or media == "application/json" or media.endswith("+json"):
        return _json_text(text)
    if file_type.kind == "html" or text.lstrip()[:1] == "<":
        return html.unescape(text)   # &#49; is a "1" to whoever reads the page
    return text


def _json_text(text: str) -> str:
    """Keys, strings and numbers of a JSON document a line each (escapes like \\u0031 undone);
    the text unchanged when it is not JSON."""
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        return text
    lines: list[str] = []
    stack: list[object] = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            for key, inner in reversed(list(item.items())):
                stack.append(inner)
                stack.append(key)
        elif isinstance(item, list):
            stack.extend(reversed(item))
        elif isinstance(item, str):
            lines.append(item)
        elif isinstance(item, (int, float)) and not isinstance(item, bool):
            lines.append(repr(item))
    return "\n".join(lines)


def _form_text(data: bytes, charset: str | None) -> str:
    """Names and values of an application/x-www-form-urlencoded body a line each, percent-escapes
    and "+" undone, in the form's charset (Shift_JIS forms are still around)."""
    pairs = urllib.parse.parse_qsl(data.decode("latin-1"), keep_blank_values=True, encoding="latin-1")
    raw = b"\n".join(field.encode("latin-1") for pair in pairs for field in pair)
    text, _codec = decode_text(raw, charset)
    return text
