"""Text out of document formats: Office Open XML parts (`xml_text`) and PDF (`pdf_content`).

Owns reading the text a person sees (and some they do not: deleted revisions, field codes,
comments, form field values, PDF attachments) out of one document, safely. It must not walk
archives or apply size limits other than those passed in (extract does), nor decide anything.
Failures are `DocumentError`s carrying a machine reason; the extractor turns them into an
unscannable outcome.

XML is read with expat (the parser under xml.etree) directly, with the care defusedxml takes: a
document type declaration (and so any entity declaration: billion laughs, external entities) is
refused, first by looking for "<!DOCTYPE"/"<!ENTITY" in the bytes (also UTF-16), then by expat
handlers that stop the parse. Expat handlers rather than an ElementTree: no tree is built (memory
stays at the text), and they measured faster than ElementTree's C parser on Word's XML.
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from xml.parsers import expat

from pypdf import PasswordType, PdfReader
from pypdf.errors import PdfReadError
from pypdf.generic import ArrayObject, DictionaryObject, PdfObject, StreamObject

from ztcore.errors import ZTError

XML_FORBIDDEN = "xml-forbidden-dtd"
XML_CORRUPT = "xml-corrupt"
PDF_CORRUPT = "pdf-corrupt"
PDF_ENCRYPTED = "pdf-encrypted"
PDF_TOO_MANY_PAGES = "pdf-too-many-pages"
TOTAL_EXCEEDED = "total-size-exceeded"

_FORBIDDEN_MARKUP = tuple(marker.encode(codec) for marker in ("<!DOCTYPE", "<!ENTITY")
                          for codec in ("ascii", "utf-16-le", "utf-16-be"))
# What an element means for the text, by local name. TEXT: its character data is text a
# reader sees: w:t (runs), w:delText (deleted revisions, still in the file), w:instrText (field
# codes), a:t (DrawingML), t (spreadsheet strings). VALUE: v, cell and chart values (in a cell
# of type "s" an index into the shared strings, not text). SKIP: rPh, a phonetic guide (the
# reading of a string), whose text would join the digits around it.
_NOTHING, _TEXT, _VALUE, _CELL, _CELL_END, _LINE_END, _BREAK, _TAB, _SKIP = range(9)
_KINDS = {"t": _TEXT, "delText": _TEXT, "instrText": _TEXT, "delInstrText": _TEXT, "v": _VALUE,
          "c": _CELL, "tc": _CELL_END, "is": _CELL_END, "br": _BREAK, "cr": _BREAK, "tab": _TAB,
          "rPh": _SKIP, **dict.fromkeys(("p", "si", "row", "tr", "txBody", "comment", "text"), _LINE_END)}
_INERT_TYPES = tuple(f".{name}+xml".encode() for name in (
    "styles", "styleswitheffects", "theme", "themeoverride", "settings", "websettings", "fonttable",
    "numbering", "calcchain", "presprops", "viewprops", "tablestyles", "customxmlproperties"))
_OVERRIDE = re.compile(rb'<(?:[\w.-]+:)?Override\s+(?:PartName="([^"]*)"\s+ContentType="([^"]*)"'
                       rb'|ContentType="([^"]*)"\s+PartName="([^"]*)")')
# docProps/core.xml, app.xml, custom.xml: every element's text (title, author, company, ...).
_PROPERTIES = re.compile(r"docprops/[^/]+\.xml")


class DocumentError(ZTError):
    """A document we cannot read safely; `reason` is a machine reason, the message a sentence."""

    def __init__(self, reason: str, detail: str, path: str = "") -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail
        self.path = path


def is_ooxml_text_part(name: str) -> bool:
    """Every XML part of a package is read for text: Word, Excel and PowerPoint find their
    parts through relationships, not names, so a document body may sit in any part."""
    return name.lower().endswith(".xml")


def inert_parts(content_types: bytes) -> frozenset[str]:
    """Parts (lower-case names, no leading "/") whose declared content type holds no text the
    extractor reads (styles, themes, settings, fonts, numbering, ...): skipped for speed only,
    since their elements carry attributes and no character data in text elements."""
    inert = set()
    for match in _OVERRIDE.finditer(content_types):
        part_name, content_type = match.group(1) or match.group(4), match.group(2) or match.group(3)
        if content_type.lower().endswith(_INERT_TYPES):
            inert.add(part_name.decode("utf-8", "replace").lstrip("/").lower())
    return frozenset(inert)


def refuse_dtd(data: bytes, where: str) -> None:
    """DocumentError(XML_FORBIDDEN) when the bytes hold a document type or entity declaration."""
    if any(marker in data for marker in _FORBIDDEN_MARKUP):
        raise DocumentError(XML_FORBIDDEN, f"{where} declares a DTD or entities, which are refused", where)


def xml_text(data: bytes, part_name: str, where: str) -> str:
    """The visible text of one OOXML part: runs of a paragraph joined as displayed, a line per
    paragraph, row or shared string, a tab between cells."""
    refuse_dtd(data, where)
    collector: _TextCollector | _AllText = (_AllText() if _PROPERTIES.fullmatch(part_name.lower())
                                            else _TextCollector())
    parser = expat.ParserCreate()
    parser.buffer_text = True
    parser.buffer_size = 65_536
    parser.ordered_attributes = True
    parser.StartElementHandler = collector.start
    parser.EndElementHandler = collector.end
    parser.CharacterDataHandler = (collector.out.append if isinstance(collector, _AllText)
                                   else collector.characters)
    parser.StartDoctypeDeclHandler = _refuse(where)
    parser.EntityDeclHandler = _refuse(where)
    parser.UnparsedEntityDeclHandler = _refuse(where)
    parser.ExternalEntityRefHandler = _refuse(where)
    try:
        parser.Parse(data, True)
    except expat.ExpatError as exc:
        raise DocumentError(XML_CORRUPT, f"{where} is not well-formed XML ({expat.ErrorString(exc.code)}, "
                                         f"line {exc.lineno})", where) from None
    return "".join(collector.out)


def _refuse(where: str) -> Callable[..., Any]:
    def handler(*_args: object) -> Any:
        raise DocumentError(XML_FORBIDDEN, f"{where} declares a DTD or entities, which are refused", where)
    return handler


class _TextCollector:
    """Expat handlers, called for every element: kept to a dictionary lookup for the elements
    that do not matter (most of them), the kind of each name computed once."""

    def __init__(self) -> None:
        self.out: list[str] = []
        self._kinds: dict[str, int] = {}
        self._capturing = False
        self._skipped = 0
        self._shared_cell = False

    def _kind(self, name: str) -> int:
        kind = self._kinds.get(name)
        if kind is None:
            kind = self._kinds[name] = _KINDS.get(name.rpartition(":")[2], _NOTHING)
        return kind

    def start(self, name: str, attributes: list[str]) -> None:
        kind = self._kind(name)
        if not kind:
            return
        if kind == _SKIP:
            self._skipped += 1
        elif self._skipped:
            return
        elif kind == _TEXT:
            self._capturing = True
        elif kind == _VALUE:
            self._capturing = not self._shared_cell
        elif kind == _CELL:
            self._shared_cell = any(attributes[index] == "t" and attributes[index + 1] == "s"
                                    for index in range(0, len(attributes) - 1, 2))
        elif kind == _BREAK:
            self.out.append("\n")
        elif kind == _TAB and not attributes:     # w:tab in a run; w:tabs/w:tab (a tab stop) has w:val
            self.out.append("\t")

    def end(self, name: str) -> None:
        kind = self._kinds.get(name, _NOTHING)
        if not kind:
            return
        if kind == _SKIP:
            self._skipped -= 1
        elif self._skipped:
            return
        elif kind == _TEXT or kind == _VALUE:
            self._capturing = False
        elif kind == _LINE_END:
            self.out.append("\n")
        elif kind == _CELL or kind == _CELL_END:
            self.out.append("\t")

    def characters(self, text: str) -> None:
        if self._capturing and not self._skipped:
            self.out.append(text)


class _AllText:
    """Every element's character data, a line each (document properties)."""

    def __init__(self) -> None:
        self.out: list[str] = []

    def start(self, _name: str, _attributes: list[str]) -> None:
        pass

    def end(self, _name: str) -> None:
        self.out.append("\n")


@dataclass(frozen=True)
class PdfContent:
    text: str                                   # pages, then form field values
    attachments: tuple[tuple[str, bytes], ...]   # (name, bytes): name tree and annotation files
    pages: int


def pdf_content(data: bytes, where: str, max_pages: int, max_chars: int) -> PdfContent:
    """The text of a PDF's pages and form fields and its embedded files. An encrypted PDF is
    read when it opens with the empty user password (restrictions only); otherwise refused."""
    try:
        reader = PdfReader(io.BytesIO(data), strict=False)
        if reader.is_encrypted and reader.decrypt("") == PasswordType.NOT_DECRYPTED:
            raise DocumentError(PDF_ENCRYPTED, f"{where} is encrypted with a password", where)
        pages = len(reader.pages)
        if pages > max_pages:
            raise DocumentError(PDF_TOO_MANY_PAGES, f"{where} has {pages} pages, more than the "
                                                    f"{max_pages} whose text is extracted", where)
        texts: list[str] = []
        size = 0
        for page in reader.pages:
            text = page.extract_text()
            size += len(text)
            if size > max_chars:
                raise DocumentError(TOTAL_EXCEEDED, f"{where} holds more text than the extraction limit",
                                    where)
            texts.append(text)
        fields = reader.get_form_text_fields() or {}
        texts.extend(f"{name}\n{value}" for name, value in fields.items() if value is not None)
        attachments: list[tuple[str, bytes]] = []
        files = [(str(name), content) for name, contents in reader.attachments.items()
                 for content in contents]
        for name, content in files + _annotation_files(reader):
            size += len(content)
            if size > max_chars:
                raise DocumentError(TOTAL_EXCEEDED, f"{where} holds more embedded data than "
                                                    f"the extraction limit", where)
            attachments.append((name, bytes(content)))
    except DocumentError:
        raise
    except PdfReadError as exc:
        raise DocumentError(PDF_CORRUPT, f"{where} is not a readable PDF ({_short(exc)})", where) from None
    except Exception as exc:   # pypdf raises many kinds on crafted input: all mean "cannot read"
        raise DocumentError(PDF_CORRUPT, f"{where} is not a readable PDF ({type(exc).__name__}: "
                                         f"{_short(exc)})", where) from None
    return PdfContent("\n".join(texts), tuple(attachments), pages)


def _annotation_files(reader: PdfReader) -> list[tuple[str, bytes]]:
    """Files in FileAttachment annotations (a paper clip on a page): not in the name tree."""
    found: list[tuple[str, bytes]] = []
    for page in reader.pages:
        annotations = page.get("/Annots")
        annotations = annotations.get_object() if annotations is not None else None
        if not isinstance(annotations, ArrayObject):
            continue
        for reference in annotations:
            annotation = reference.get_object()
            if (not isinstance(annotation, DictionaryObject)
                    or annotation.get("/Subtype") != "/FileAttachment"):
                continue
            spec = _resolved(annotation.get("/FS"))
            embedded = _resolved(spec.get("/EF")) if isinstance(spec, DictionaryObject) else None
            if isinstance(embedded, DictionaryObject):
                stream = _resolved(embedded.get("/F") or embedded.get("/UF"))
                if isinstance(stream, StreamObject):
                    assert isinstance(spec, DictionaryObject)
                    found.append((str(spec.get("/UF") or spec.get("/F") or "attachment"), stream.get_data()))
    return found


def _resolved(value: PdfObject | None) -> PdfObject | None:
    return value.get_object() if value is not None else None


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text[:120] + ("…" if len(text) > 120 else "")
