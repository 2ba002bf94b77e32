"""File sanitising (無害化): `sanitise` takes active content out of a file, bytes to bytes.

Owns what is removed from Office Open XML packages (VBA projects with their signatures and data,
Word's macro key maps and toolbars, ActiveX controls) and turning a macro-enabled package into
its macro-free type (docm → docx, xlsm → xlsx, pptm → pptx and the templates and shows), and
dispatching PDFs to pdf_sanitise. Anything else passes unchanged. It must not decide whether a
file may pass: a `SanitiseResult` says what was done, or that it could not be done
("sanitise-failed": the caller blocks, fail closed).

Packages are edited at the byte level (relationships, content types, the control elements that
point at removed parts) rather than re-serialised, because Office is strict about namespace
prefixes (mc:Ignorable names them) that an XML library would rename; every edited part is parsed
afterwards and must be well-formed.
"""

from __future__ import annotations

import html
import posixpath
import re
import urllib.parse
import zipfile
from dataclasses import dataclass
from io import BytesIO

from swg.content.documents import DocumentError, xml_text
from swg.content.extract import clean_name, unpack_zip, zip_names
from swg.content.limits import ExtractionLimits
from swg.content.pdf_sanitise import strip_pdf_active_content
from swg.filetypes import HEAD_BYTES, detect_file_type, ooxml_kind

SANITISE_FAILED = "sanitise-failed"

_OOXML = "application/vnd.openxmlformats-officedocument."
# Macro-enabled main part content type (lower-case) → (macro-free one, extension, file MIME type).
_MACRO_FREE: dict[str, tuple[str, str, str]] = {
    "application/vnd.ms-word.document.macroenabled.main+xml":
        (_OOXML + "wordprocessingml.document.main+xml", "docx", _OOXML + "wordprocessingml.document"),
    "application/vnd.ms-word.template.macroenabledtemplate.main+xml":
        (_OOXML + "wordprocessingml.template.main+xml", "dotx", _OOXML + "wordprocessingml.template"),
    "application/vnd.ms-excel.sheet.macroenabled.main+xml":
        (_OOXML + "spreadsheetml.sheet.main+xml", "xlsx", _OOXML + "spreadsheetml.sheet"),
    "application/vnd.ms-excel.template.macroenabled.main+xml":
        (_OOXML + "spreadsheetml.template.main+xml", "xltx", _OOXML + "spreadsheetml.template"),
    "application/vnd.ms-excel.addin.macroenabled.main+xml":
        (_OOXML + "spreadsheetml.sheet.main+xml", "xlsx", _OOXML + "spreadsheetml.sheet"),
    "application/vnd.ms-powerpoint.presentation.macroenabled.main+xml":
        (_OOXML + "presentationml.presentation.main+xml", "pptx", _OOXML + "presentationml.presentation"),
    "application/vnd.ms-powerpoint.template.macroenabled.main+xml":
        (_OOXML + "presentationml.template.main+xml", "potx", _OOXML + "presentationml.template"),
    "application/vnd.ms-powerpoint.slideshow.macroenabled.main+xml":
        (_OOXML + "presentationml.slideshow.main+xml", "ppsx", _OOXML + "presentationml.slideshow"),
    "application/vnd.ms-powerpoint.addin.macroenabled.main+xml":
        (_OOXML + "presentationml.presentation.main+xml", "pptx", _OOXML + "presentationml.presentation"),
}
# Relationship types (their last segment) whose targets are macros or ActiveX controls.
_ACTIVE_RELATIONSHIPS = frozenset({"vbaproject", "wordvbadata", "vbaprojectsignature",
                                   "vbaprojectsignatureagile", "vbaprojectsignaturev3",
                                   "keymapcustomizations", "attachedtoolbars", "control",
                                   "activexcontrolbinary"})
_ACTIVE_DEFAULTS = frozenset({"application/vnd.ms-office.vbaproject", "application/vnd.ms-office.activex",
                              "application/vnd.ms-office.activex+xml",
                              "application/vnd.ms-office.vbaprojectsignature"})
_MACRO_SHEETS = frozenset({"application/vnd.ms-excel.macrosheet+xml",
                           "application/vnd.ms-excel.intlmacrosheet+xml"})
# "_VBA_PROJECT" as an OLE2 directory entry name: a legacy .doc/.xls/.ppt with macros.
_OLE2_VBA = "_VBA_PROJECT".encode("utf-16-le")
_OLE2_ENCRYPTED = "EncryptedPackage".encode("utf-16-le")

_P = rb"(?:[\w.-]+:)?"      # any namespace prefix
_ATTRIBUTE = re.compile(rb"""([\w:.-]+)\s*=\s*(?:"([^"]*)"|'([^']*)')""")
_RELATIONSHIP = re.compile(rb"<" + _P + rb"Relationship\b[^>]*?(?:/>|>\s*</" + _P + rb"Relationship\s*>)")
_TYPE_ENTRY = re.compile(rb"<" + _P + rb"(Override|Default)\b[^>]*?(?:/>|>\s*</" + _P
                         + rb"(?:Override|Default)\s*>)")
_CONTENT_TYPE_VALUE = re.compile(rb"""(ContentType\s*=\s*)(["'])[^"']*\2""")
_CONTROL = re.compile(rb"<(?P<p>" + _P + rb")control\b(?P<a>[^>]*?)(?:/>|>.*?</(?P=p)control\s*>)", re.DOTALL)
_EMPTY_WRAPPERS = (
    re.compile(rb"<(?P<p>" + _P + rb")controls\b[^>]*>\s*</(?P=p)controls\s*>"),
    re.compile(rb"<(?P<p>" + _P + rb")AlternateContent\b[^>]*>(?:\s*<" + _P + rb"(?:Choice|Fallback)\b[^>]*?"
               rb"(?:/>|>\s*</" + _P + rb"(?:Choice|Fallback)\s*>))*\s*</(?P=p)AlternateContent\s*>"),
)


@dataclass(frozen=True)
class SanitiseResult:
    """`data` is the sanitised file (the input itself when `actions` is empty). `new_filename`
    and `content_type` are set when the file changed type (report.docm → report.docx).
    failed: nothing could be done safely (`reason` SANITISE_FAILED, `detail` says why, `data`
    empty): block the file."""

    data: bytes
    actions: tuple[str, ...] = ()
    new_filename: str | None = None
    content_type: str | None = None
    failed: bool = False
    reason: str | None = None
    detail: str = ""


def sanitise(data: bytes, filename: str | None = None,
             limits: ExtractionLimits | None = None) -> SanitiseResult:
    """Remove macros and ActiveX from an Office Open XML file and active content from a PDF."""
    where = clean_name((filename or "").replace("\\", "/").rsplit("/", 1)[-1]) or "file"
    kind = detect_file_type(data[:HEAD_BYTES], filename).kind
    try:
        if kind == "zip":
            return _sanitise_package(bytes(data), filename, where, limits or ExtractionLimits())
        if kind == "pdf":
            out, actions = strip_pdf_active_content(bytes(data), where)
            return SanitiseResult(out, actions)
        if kind in ("ole2", "doc", "xls", "ppt") and (_OLE2_VBA in data or _OLE2_ENCRYPTED in data):
            return _failed(f"{where} is a legacy or encrypted Office file that may hold macros; "
                           f"they cannot be removed from it")
        return SanitiseResult(data)
    except DocumentError as exc:
        return _failed(exc.detail)
    except Exception as exc:   # fail closed on our own bugs too; the caller logs the detail
        return _failed(f"sanitising {where} failed ({type(exc).__name__}: {exc})"[:300])


def _failed(detail: str) -> SanitiseResult:
    return SanitiseResult(b"", failed=True, reason=SANITISE_FAILED, detail=detail)


def _attributes(tag: bytes) -> dict[str, str]:
    found: dict[str, str] = {}
    for match in _ATTRIBUTE.finditer(tag):
        value = match.group(2) if match.group(2) is not None else match.group(3)
        found[match.group(1).decode("ascii", "replace")] = html.unescape(value.decode("utf-8", "replace"))
    return found


def _part_name(name: str) -> str:
    """OPC part names compare case-insensitively, without the leading "/"."""
    return urllib.parse.unquote(name).replace("\\", "/").lstrip("/").lower()


def _rels_of(part: str) -> str:
    folder, _, base = part.rpartition("/")
    return f"{folder}/_rels/{base}.rels" if folder else f"_rels/{base}.rels"


def _source_of(rels: str) -> tuple[str, str]:
    """(source part, its folder) of a relationships part; ("", "") for the package's own."""
    folder, _, file = rels.rpartition("/")
    base = folder[:-len("_rels")].rstrip("/") if folder.split("/")[-1] == "_rels" else folder
    source = posixpath.join(base, file[:-len(".rels")]) if file != ".rels" else ""
    return source, base


def _target(base: str, target: str) -> str:
    target = urllib.parse.unquote(target.split("#", 1)[0]).replace("\\", "/")
    joined = target.lstrip("/") if target.startswith("/") else posixpath.join(base, target)
    return posixpath.normpath(joined).lstrip("/").lower()


def _is_active_name(part: str) -> bool:
    base = part.rsplit("/", 1)[-1]
    return base.startswith("vbaproject") or base == "vbadata.xml" or "/activex/" in f"/{part}"


def _require_utf8(content: bytes, where: str) -> None:
    if content.startswith((b"\xff\xfe", b"\xfe\xff")) or b"\x00" in content[:64]:
        raise DocumentError(SANITISE_FAILED, f"{where} is not UTF-8 XML, which is not edited", where)


class _Package:
    def __init__(self, members: list[tuple[zipfile.ZipInfo, bytes]], where: str) -> None:
        self.where = where
        self.members = members
        self.parts: dict[str, bytes] = {}
        for info, content in members:
            name = _part_name(info.filename)
            if name in self.parts:
                raise DocumentError(SANITISE_FAILED, f"{where} has two parts named {clean_name(name)}", where)
            self.parts[name] = content
        if "[content_types].xml" not in self.parts:
            raise DocumentError(SANITISE_FAILED, f"{where} has no [Content_Types].xml", where)
        self.edited: dict[str, bytes] = {}
        self.actions: list[str] = []

    def relationships(self, rels: str) -> list[tuple[re.Match[bytes], dict[str, str], str]]:
        _source, base = _source_of(rels)
        found = []
        for match in _RELATIONSHIP.finditer(self.parts[rels]):
            attributes = _attributes(match.group())
            external = attributes.get("TargetMode", "").lower() == "external"
            found.append((match, attributes, "" if external else _target(base, attributes.get("Target", ""))))
        return found

    def active_parts(self) -> set[str]:
        removed = {name for name in self.parts if _is_active_name(name)}
        rels_parts = [name for name in self.parts if name.endswith(".rels")]
        changed = True
        while changed:         # a removed part's own relationships go, and what only they reach
            changed = False
            for rels in rels_parts:
                source, _base = _source_of(rels)
                if rels in removed:
                    continue
                if source and source in removed:
                    removed.add(rels)
                    changed = True
                    continue
                for _match, attributes, target in self.relationships(rels):
                    kind = attributes.get("Type", "").rstrip("/").rsplit("/", 1)[-1].lower()
                    if (target and kind in _ACTIVE_RELATIONSHIPS and target in self.parts
                            and target not in removed):
                        removed.add(target)
                        changed = True
        return removed | {_rels_of(name) for name in removed if _rels_of(name) in self.parts}

    def drop_relationships(self, removed: set[str]) -> None:
        for rels in [name for name in self.parts if name.endswith(".rels") and name not in removed]:
            content = self.parts[rels]
            dropped: set[str] = set()
            for match, attributes, target in reversed(self.relationships(rels)):
                kind = attributes.get("Type", "").rstrip("/").rsplit("/", 1)[-1].lower()
                if target in removed or (target and kind in _ACTIVE_RELATIONSHIPS):
                    content = content[:match.start()] + content[match.end():]
                    dropped.add(attributes.get("Id", ""))
            if dropped:
                self.edit(rels, content)
                source, _base = _source_of(rels)
                if source in self.parts and source not in removed:
                    self.drop_controls(source, dropped)

    def drop_controls(self, source: str, ids: set[str]) -> None:
        """The control elements (w:control, control, p:control) that name a dropped relationship,
        then the wrappers left empty; Office refuses a part naming a relationship that is gone."""
        content = self.parts[source]
        _require_utf8(content, f"{self.where}/{source}")

        def unless_dropped(match: re.Match[bytes]) -> bytes:
            names = {value for key, value in _attributes(match.group("a")).items() if key.endswith(":id")}
            return b"" if names & ids else match.group()

        edited = _CONTROL.sub(unless_dropped, content)
        if edited == content:
            return
        previous = b""
        while previous != edited:
            previous = edited
            for wrapper in _EMPTY_WRAPPERS:
                edited = wrapper.sub(b"", edited)
        self.edit(source, edited)
        self.actions.append(f"removed ActiveX controls from {source}")

    def fix_content_types(self, removed: set[str]) -> tuple[str, str] | None:
        """Drops the removed parts' entries and makes the main part macro-free; the new
        (extension, MIME type) when the document changed type."""
        content = self.parts["[content_types].xml"]
        _require_utf8(content, f"{self.where}/[Content_Types].xml")
        overridden = set()
        entries = list(_TYPE_ENTRY.finditer(content))
        for match in entries:
            attributes = _attributes(match.group())
            if match.group(1) == b"Override":
                overridden.add(_part_name(attributes.get("PartName", "")))
                if attributes.get("ContentType", "").lower() in _MACRO_SHEETS:
                    raise DocumentError(SANITISE_FAILED, f"{self.where} has Excel 4.0 macro sheets, which "
                                                         f"cannot be removed safely", self.where)
        kept = [name for name in self.parts if name not in removed]
        changed_type: tuple[str, str] | None = None
        for match in reversed(entries):
            tag = match.group()
            attributes = _attributes(tag)
            content_type = attributes.get("ContentType", "").lower()
            if match.group(1) == b"Override":
                if _part_name(attributes.get("PartName", "")) in removed:
                    replacement = b""
                elif content_type in _MACRO_FREE:
                    plain, extension, mime = _MACRO_FREE[content_type]
                    value = b'"' + plain.encode() + b'"'
                    replacement = _CONTENT_TYPE_VALUE.sub(lambda m: m.group(1) + value, tag)
                    changed_type = (extension, mime)
                    self.actions.append(f"changed the main part's content type to the macro-free "
                                        f"{extension} type")
                else:
                    continue
            else:
                extension = "." + attributes.get("Extension", "").lower()
                if content_type not in _ACTIVE_DEFAULTS or any(
                        name.endswith(extension) and name not in overridden for name in kept):
                    continue
                replacement = b""
            content = content[:match.start()] + replacement + content[match.end():]
        if content != self.parts["[content_types].xml"]:
            self.edit("[content_types].xml", content)
        return changed_type

    def edit(self, name: str, content: bytes) -> None:
        xml_text(content, name, f"{self.where}/{name}")   # still well-formed, still no DTD
        self.parts[name] = content
        self.edited[name] = content

    def write(self, removed: set[str]) -> bytes:
        out = BytesIO()
        with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
            for info, _content in self.members:
                name = _part_name(info.filename)
                if name in removed:
                    continue
                copy = zipfile.ZipInfo(info.filename, date_time=info.date_time)
                copy.compress_type = zipfile.ZIP_DEFLATED
                copy.external_attr = info.external_attr
                archive.writestr(copy, self.parts[name])
        return out.getvalue()


def _sanitise_package(data: bytes, filename: str | None, where: str,
                      limits: ExtractionLimits) -> SanitiseResult:
    if ooxml_kind(zip_names(data, where, limits)) is None:
        return SanitiseResult(data)      # a plain archive: its members are not rewritten
    members = unpack_zip(data, where, limits)
    package = _Package(members, where)
    removed = package.active_parts()
    if any(name.startswith("xl/macrosheets/") for name in package.parts):
        raise DocumentError(SANITISE_FAILED, f"{where} has Excel 4.0 macro sheets, which cannot be "
                                             f"removed safely", where)
    package.drop_relationships(removed)
    changed_type = package.fix_content_types(removed)
    if not removed and not package.edited:
        return SanitiseResult(data)
    actions = [f"removed {info.filename}" for info, _content in members
               if _part_name(info.filename) in removed]
    out = package.write(removed)
    if (ooxml_kind(zipfile.ZipFile(BytesIO(out)).namelist()) or "").endswith("m"):
        raise DocumentError(SANITISE_FAILED, f"{where} still holds a VBA project after sanitising", where)
    new_filename = content_type = None
    if changed_type is not None:
        extension, content_type = changed_type
        if filename:
            stem, dot, old = filename.rpartition(".")
            if old.lower() != extension:
                new_filename = f"{stem if dot else filename}.{extension}"
    return SanitiseResult(out, tuple(actions + package.actions), new_filename, content_type)
