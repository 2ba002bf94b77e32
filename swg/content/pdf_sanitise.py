"""Removing active content from a PDF (無害化): `strip_pdf_active_content`.

Owns what counts as active in a PDF and taking it out with pypdf: the document's /OpenAction and
additional actions (/AA: catalog, pages, annotations, form fields), the /JavaScript and
/EmbeddedFiles name trees (and a portfolio's /Collection), XFA forms, file attachment and rich
media annotations, and every action other than /GoTo, /URI and /Named wherever one sits (links,
outline items), with chained /Next actions. The document is cloned and written anew without the
objects nothing refers to any more, so a removed script or file is gone from the bytes, not only
unreachable. It must not decide whether a file may pass (the policy does) and reads nothing but
the bytes given. Failures are `DocumentError`s (sanitise turns them into "sanitise-failed").
"""

from __future__ import annotations

import io
from collections import Counter

from pypdf import PasswordType, PdfReader, PdfWriter
from pypdf.generic import ArrayObject, DictionaryObject, PdfObject

from swg.content.documents import PDF_CORRUPT, PDF_ENCRYPTED, DocumentError

SAFE_ACTIONS = frozenset({"/GoTo", "/URI", "/Named"})
REMOVED_ANNOTATIONS = frozenset({"/FileAttachment", "/RichMedia", "/Movie", "/Sound"})
MAX_OUTLINE_ITEMS = 100_000
MAX_FIELD_DEPTH = 64
MAX_PAGE_TREE_NODES = 1_000_000


def strip_pdf_active_content(data: bytes, where: str) -> tuple[bytes, tuple[str, ...]]:
    """(new PDF, what was removed); the input unchanged and () when it holds nothing active."""
    try:
        reader = PdfReader(io.BytesIO(data), strict=False)
        encrypted = reader.is_encrypted
        if encrypted and reader.decrypt("") == PasswordType.NOT_DECRYPTED:
            raise DocumentError(PDF_ENCRYPTED, f"{where} is encrypted with a password", where)
        removed = _Removals()
        # Unlinked in the reader's (cached) objects, then cloned: the clone copies only what the
        # catalog still reaches, so the scripts and files just unlinked are not written at all.
        # reader.pages are copies of the page dictionaries: the tree is walked instead.
        _clean_catalog(reader.root_object, removed)
        for number, page in enumerate(_page_tree(reader.root_object), start=1):
            _clean_page(page, number, removed)
        if not removed.counts:
            return data, ()
        if encrypted:
            removed.note("removed the encryption (it opened without a password)")
        writer = PdfWriter(clone_from=reader, keep_initial_header=True)
        out = io.BytesIO()
        writer.write(out)
        result = out.getvalue()
        len(PdfReader(io.BytesIO(result), strict=False).pages)   # what we wrote must read back
    except DocumentError:
        raise
    except Exception as exc:   # pypdf raises many kinds on crafted input: all mean "cannot read"
        raise DocumentError(PDF_CORRUPT, f"{where} cannot be rewritten as a PDF ({type(exc).__name__}: "
                                         f"{' '.join(str(exc).split())[:120]})", where) from None
    return result, removed.actions()


class _Removals:
    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()

    def note(self, action: str) -> None:
        self.counts[action] += 1

    def actions(self) -> tuple[str, ...]:
        return tuple(action if count == 1 else f"{action} (x{count})"
                     for action, count in self.counts.items())


def _resolve(value: PdfObject | None) -> PdfObject | None:
    return value.get_object() if value is not None else None


def _dictionary(value: PdfObject | None) -> DictionaryObject | None:
    resolved = _resolve(value)
    return resolved if isinstance(resolved, DictionaryObject) else None


def _drop(holder: DictionaryObject, key: str, removed: _Removals, action: str) -> None:
    if key in holder:
        del holder[key]
        removed.note(action)


def _clean_catalog(root: DictionaryObject, removed: _Removals) -> None:
    _drop(root, "/OpenAction", removed, "removed /OpenAction")
    _drop(root, "/AA", removed, "removed /AA (additional actions) from the document")
    names = _dictionary(root.get("/Names"))
    if names is not None:
        _drop(names, "/JavaScript", removed, "removed the /JavaScript name tree")
        _drop(names, "/EmbeddedFiles", removed, "removed the /EmbeddedFiles name tree (attached files)")
        if not names:
            del root["/Names"]
    _drop(root, "/Collection", removed, "removed the /Collection (portfolio)")
    form = _dictionary(root.get("/AcroForm"))
    if form is not None:
        _drop(form, "/XFA", removed, "removed the XFA form")
        _drop(form, "/AA", removed, "removed /AA from the form")
        fields = _resolve(form.get("/Fields"))
        if isinstance(fields, ArrayObject):
            _clean_fields(fields, removed, 0, set())
    _drop(root, "/NeedsRendering", removed, "removed /NeedsRendering (XFA)")
    _clean_outline(root, removed)


def _clean_fields(fields: ArrayObject, removed: _Removals, depth: int, seen: set[int]) -> None:
    if depth > MAX_FIELD_DEPTH:
        return
    for item in fields:
        field = _dictionary(item)
        if field is None or id(field) in seen:
            continue
        seen.add(id(field))
        _drop(field, "/AA", removed, "removed /AA from a form field")
        _clean_action(field, removed, "a form field")
        kids = _resolve(field.get("/Kids"))
        if isinstance(kids, ArrayObject):
            _clean_fields(kids, removed, depth + 1, seen)


def _clean_outline(root: DictionaryObject, removed: _Removals) -> None:
    outlines = _dictionary(root.get("/Outlines"))
    pending = [outlines.get("/First")] if outlines is not None else []
    seen: set[int] = set()
    while pending and len(seen) < MAX_OUTLINE_ITEMS:
        item = _dictionary(pending.pop())
        if item is None or id(item) in seen:
            continue
        seen.add(id(item))
        _clean_action(item, removed, "an outline item")
        pending.extend(value for value in (item.get("/Next"), item.get("/First")) if value is not None)


def _page_tree(root: DictionaryObject) -> list[DictionaryObject]:
    """The page dictionaries in document order (as they are cached by the reader)."""
    pages: list[DictionaryObject] = []
    pending = [root.get("/Pages")]
    seen: set[int] = set()
    while pending and len(seen) < MAX_PAGE_TREE_NODES:
        node = _dictionary(pending.pop())
        if node is None or id(node) in seen:
            continue
        seen.add(id(node))
        kids = _resolve(node.get("/Kids"))
        if isinstance(kids, ArrayObject) and str(node.get("/Type", "/Pages")) != "/Page":
            pending.extend(reversed(kids))
        else:
            pages.append(node)
    return pages


def _clean_page(page: DictionaryObject, number: int, removed: _Removals) -> None:
    _drop(page, "/AA", removed, f"removed /AA from page {number}")
    annotations = _resolve(page.get("/Annots"))
    if not isinstance(annotations, ArrayObject):
        return
    kept = ArrayObject()
    for reference in annotations:
        annotation = _dictionary(reference)
        if annotation is None:
            kept.append(reference)
            continue
        subtype = str(annotation.get("/Subtype", ""))
        if subtype in REMOVED_ANNOTATIONS:
            removed.note(f"removed a {subtype[1:]} annotation from page {number}")
            continue
        _drop(annotation, "/AA", removed, f"removed /AA from an annotation on page {number}")
        _clean_action(annotation, removed, f"a {subtype[1:] or 'n'} annotation on page {number}")
        kept.append(reference)
    if len(kept) != len(annotations):
        annotations.clear()
        annotations.extend(kept)


def _clean_action(holder: DictionaryObject, removed: _Removals, place: str) -> None:
    action = _resolve(holder.get("/A"))
    if not isinstance(action, DictionaryObject):
        return                                  # absent, or a destination array
    kind = str(action.get("/S", ""))
    if kind not in SAFE_ACTIONS:
        del holder["/A"]
        removed.note(f"removed a {kind or 'untyped'} action from {place}")
    elif "/Next" in action:
        del action["/Next"]
        removed.note(f"removed actions chained after a {kind} action in {place}")
