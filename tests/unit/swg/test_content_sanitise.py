"""swg/content/sanitise.py and pdf_sanitise.py: 無害化 of Office files and PDFs.

A docm/xlsm/pptm loses its VBA project and opens as a docx/xlsx (checked with python-docx and
openpyxl, independent readers that refuse a macro-enabled main part or would choke on a broken
package); ActiveX controls go with the elements that point at them. A PDF loses its scripts,
launch actions and attachments, and poppler (pdfinfo, pdftotext) still reads it. Clean files
come back unchanged; unreadable ones fail (the caller blocks).
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Callable

import docx
import openpyxl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pypdf import PdfReader, PdfWriter
from pypdf.generic import StreamObject

from swg.content.extract import extract_parts
from swg.content.sanitise import SANITISE_FAILED, SanitiseResult, sanitise
from swg.filetypes import detect_file_type, ooxml_kind
from tests.unit.swg.content_samples import (
    MS_RELS,
    OLE2,
    XML,
    active_pdf,
    build_pdf,
    decompressed_streams,
    docx_with,
    make_macro_enabled,
    poppler,
    pptx_with,
    relationships,
    stream,
    xlsx_with,
    zip_of,
)

OOXML = "application/vnd.openxmlformats-officedocument."
WORD_MAIN = OOXML + "wordprocessingml.document.main+xml"
WORD_MACRO = "application/vnd.ms-word.document.macroEnabled.main+xml"
EXCEL_MAIN = OOXML + "spreadsheetml.sheet.main+xml"
EXCEL_MACRO = "application/vnd.ms-excel.sheet.macroEnabled.main+xml"
POWERPOINT_MAIN = OOXML + "presentationml.presentation.main+xml"
POWERPOINT_MACRO = "application/vnd.ms-powerpoint.presentation.macroEnabled.main+xml"
R = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"


def docm(*paragraphs: str) -> bytes:
    return make_macro_enabled(docx_with(*paragraphs), "word/document.xml", WORD_MAIN, WORD_MACRO, "word")


def xlsm() -> bytes:
    return make_macro_enabled(xlsx_with(("氏名", "点数"), ("山田", 90)), "xl/workbook.xml", EXCEL_MAIN,
                              EXCEL_MACRO, "xl")


def pptm() -> bytes:
    return make_macro_enabled(pptx_with("quarterly slides"), "ppt/presentation.xml", POWERPOINT_MAIN,
                              POWERPOINT_MACRO, "ppt")


def members(package: bytes) -> dict[str, bytes]:
    archive = zipfile.ZipFile(io.BytesIO(package))
    return {name: archive.read(name) for name in archive.namelist()}


def edited(package: bytes, changes: dict[str, Callable[[bytes], bytes]], added: dict[str, bytes]) -> bytes:
    parts = members(package)
    for name, change in changes.items():
        parts[name] = change(parts[name])
    parts.update(added)
    return zip_of(parts)


def assert_sanitised(result: SanitiseResult) -> None:
    assert not result.failed and result.reason is None and result.actions
    assert ooxml_kind(zipfile.ZipFile(io.BytesIO(result.data)).namelist()) in ("docx", "xlsx", "pptx")


def test_docm_loses_its_vba_project_and_opens_as_docx() -> None:
    original = docm("議事録", "本文です")
    with pytest.raises(ValueError, match="not a Word file"):
        docx.Document(io.BytesIO(original))             # python-docx refuses the macro-enabled type
    result = sanitise(original, "議事録.docm")
    assert_sanitised(result)
    assert result.actions == ("removed word/vbaProject.bin", "removed word/_rels/vbaProject.bin.rels",
                              "removed word/vbaData.xml",
                              "changed the main part's content type to the macro-free docx type")
    assert result.new_filename == "議事録.docx"
    assert result.content_type == OOXML + "wordprocessingml.document"
    parts = members(result.data)
    assert not any("vba" in name.lower() for name in parts)
    types = parts["[Content_Types].xml"].decode()
    assert WORD_MAIN in types and "macroEnabled" not in types and "vbaProject" not in types
    assert b"vbaProject" not in parts["word/_rels/document.xml.rels"]
    assert [p.text for p in docx.Document(io.BytesIO(result.data)).paragraphs] == ["議事録", "本文です"]


def test_xlsm_loses_its_vba_project_and_opens_as_xlsx() -> None:
    original = xlsm()
    assert ooxml_kind(members(original)) == "xlsm"
    result = sanitise(original, "成績.xlsm")
    assert_sanitised(result)
    assert "removed xl/vbaProject.bin" in result.actions and result.new_filename == "成績.xlsx"
    parts = members(result.data)
    assert "xl/vbaProject.bin" not in parts
    types = parts["[Content_Types].xml"].decode()
    assert EXCEL_MAIN in types and "macroEnabled" not in types and "vbaProject" not in types
    workbook = openpyxl.load_workbook(io.BytesIO(result.data))
    sheet = workbook.active
    assert sheet is not None and [list(row) for row in sheet.iter_rows(values_only=True)] == [["氏名", "点数"],
                                                                                                ["山田", 90]]


def test_pptm_becomes_pptx() -> None:
    result = sanitise(pptm(), "slides.pptm")
    assert_sanitised(result)
    assert result.new_filename == "slides.pptx"
    assert result.content_type == OOXML + "presentationml.presentation"
    types = members(result.data)["[Content_Types].xml"].decode()
    assert POWERPOINT_MAIN in types and "macroEnabled" not in types
    assert extract_parts(result.data, "slides.pptx").parts[0].file_type.kind == "pptx"


def test_vba_in_a_file_named_docx_is_removed_without_renaming() -> None:
    result = sanitise(docm("x"), "looks-harmless.docx")
    assert_sanitised(result)
    assert result.new_filename is None and result.content_type == OOXML + "wordprocessingml.document"
    assert sanitise(docm("x"), None).new_filename is None


ACTIVEX = "http://schemas.microsoft.com/office/2006/activeX"


def activex_docx() -> bytes:
    """A docx with one ActiveX check box, as Word writes it: the control element in a w:object,
    its relationship, the activeX part with its binary, and their content types."""
    control = (b'<w:r><w:object w:dxaOrig="225" w:dyaOrig="225"><w:control r:id="rId901" '
               b'w:name="CheckBox1" w:shapeid="_x0000_i1025"/></w:object></w:r></w:p>')
    relationship = f'<Relationship Id="rId901" Type="{R}/control" Target="activeX/activeX1.xml"/>'
    types = ('<Default Extension="bin" ContentType="application/vnd.ms-office.activeX"/><Override '
             'PartName="/word/activeX/activeX1.xml" ContentType="application/vnd.ms-office.activeX+xml"/>')
    return edited(docx_with("before the control", "after"), {
        "word/document.xml": lambda xml: xml.replace(b"</w:p>", control, 1),
        "word/_rels/document.xml.rels": lambda xml: xml.replace(b"</Relationships>",
                                                                 f"{relationship}</Relationships>".encode()),
        "[Content_Types].xml": lambda xml: xml.replace(b"</Types>", f"{types}</Types>".encode()),
    }, {
        "word/activeX/activeX1.xml": (
            f'{XML}<ax:ocx ax:classid="{{8BD21D40-EC42-11CE-9E0D-00AA006002F3}}" '
            f'ax:persistence="persistStorage" r:id="rId1" xmlns:ax="{ACTIVEX}" xmlns:r="{R}"/>').encode(),
        "word/activeX/_rels/activeX1.xml.rels": relationships(
            ("rId1", f"{MS_RELS}/activeXControlBinary", "activeX1.bin")),
        "word/activeX/activeX1.bin": OLE2 + b"\x00" * 64,
    })


def test_activex_controls_are_removed_with_the_elements_naming_them() -> None:
    result = sanitise(activex_docx(), "form.docx")
    assert_sanitised(result)
    assert result.actions == ("removed word/activeX/activeX1.xml",
                              "removed word/activeX/_rels/activeX1.xml.rels",
                              "removed word/activeX/activeX1.bin",
                              "removed ActiveX controls from word/document.xml")
    assert result.new_filename is None and result.content_type is None
    parts = members(result.data)
    assert not any("activex" in name.lower() for name in parts)
    assert b"w:control" not in parts["word/document.xml"] and b"<w:object" in parts["word/document.xml"]
    assert b"rId901" not in parts["word/_rels/document.xml.rels"]
    assert b"activeX" not in parts["[Content_Types].xml"]
    paragraphs = docx.Document(io.BytesIO(result.data)).paragraphs
    assert [p.text for p in paragraphs] == ["before the control", "after"]


def test_excel_activex_wrappers_left_empty_are_removed() -> None:
    mc = "http://schemas.openxmlformats.org/markup-compatibility/2006"
    button = f'<control xmlns:r="{R}" shapeId="1025" r:id="rId9" name="Button1"'
    controls = (f'<mc:AlternateContent xmlns:mc="{mc}"><mc:Choice Requires="x14"><controls>'
                f'<mc:AlternateContent><mc:Choice Requires="x14">{button}>'
                f'<controlPr defaultSize="0" r:id="rId10"/></control></mc:Choice>'
                f'<mc:Fallback>{button}/></mc:Fallback></mc:AlternateContent>'
                f'</controls></mc:Choice></mc:AlternateContent></worksheet>').encode()
    package = edited(xlsx_with((1, 2)), {
        "xl/worksheets/sheet1.xml": lambda xml: xml.replace(b"</worksheet>", controls),
    }, {
        "xl/worksheets/_rels/sheet1.xml.rels": relationships(
            ("rId9", f"{R}/control", "../activeX/activeX1.xml")),
        "xl/activeX/activeX1.xml": f'<ax:ocx xmlns:ax="{ACTIVEX}"/>'.encode(),
    })
    result = sanitise(package, "book.xlsx")
    assert_sanitised(result)
    sheet = members(result.data)["xl/worksheets/sheet1.xml"]
    assert b"control" not in sheet and b"AlternateContent" not in sheet
    assert sheet.endswith(b'footer="0.5"/></worksheet>')
    workbook = openpyxl.load_workbook(io.BytesIO(result.data))
    assert workbook.active is not None and workbook.active["B1"].value == 2


def test_excel_4_macro_sheets_cannot_be_sanitised() -> None:
    package = edited(xlsx_with((1,)), {}, {"xl/macrosheets/sheet1.xml": b"<xm:macrosheet/>"})
    result = sanitise(package, "book.xlsm")
    assert result.failed and result.reason == SANITISE_FAILED and "Excel 4.0 macro sheets" in result.detail


@pytest.mark.parametrize("build", [lambda: docx_with("plain"), lambda: xlsx_with((1,)),
                                   lambda: pptx_with("slides"), lambda: build_pdf(["plain page"]),
                                   lambda: zip_of({"a.docm": docm("inner")}), lambda: b"just text",
                                   lambda: b"\x89PNG\r\n\x1a\n" + b"\x00" * 40],
                         ids=["docx", "xlsx", "pptx", "pdf", "zip", "text", "png"])
def test_clean_files_come_back_unchanged(build: Callable[[], bytes]) -> None:
    data = build()
    result = sanitise(data, "file")
    assert result == SanitiseResult(data)
    assert result.actions == () and not result.failed and result.new_filename is None


def all_objects(pdf: bytes) -> bytes:
    """Every object pypdf finds in the file, streams decoded, as bytes to search."""
    reader = PdfReader(io.BytesIO(pdf))
    found = []
    for generation, numbers in reader.xref.items():
        for number in numbers:
            obj = reader.get_object(number)
            found.append(repr(obj).encode())
            if isinstance(obj, StreamObject):
                found.append(obj.get_data())
    return b"\n".join(found)


def test_pdf_active_content_is_removed_and_poppler_still_reads_it() -> None:
    original = active_pdf("Quarterly report page one")
    before = poppler("pdfinfo", original)
    if before is not None:
        assert b"JavaScript:      yes" in before.stdout   # poppler sees the script in the test PDF
    result = sanitise(original, "report.pdf")
    assert not result.failed and result.new_filename is None
    assert result.actions == ("removed /OpenAction", "removed the /JavaScript name tree",
                              "removed the /EmbeddedFiles name tree (attached files)",
                              "removed a /Launch action from a Link annotation on page 1")
    reader = PdfReader(io.BytesIO(result.data))
    root = reader.trailer["/Root"]
    assert "/OpenAction" not in root and "/Names" not in root and reader.attachments == {}
    annotations = [annotation.get_object() for annotation in reader.pages[0]["/Annots"]]
    assert "/A" not in annotations[0]
    assert annotations[1]["/A"]["/URI"] == "https://www.example.jp/"      # a plain link stays
    for searched in (all_objects(result.data), decompressed_streams(result.data)):
        for marker in (b"JavaScript", b"app.alert", b"Launch", b"cmd.exe", b"EmbeddedFile",
                       b"SECRET-ATTACHMENT", b"OpenAction"):
            assert marker not in searched, marker
    info = poppler("pdfinfo", result.data)
    if info is None:
        pytest.skip("poppler-utils (pdfinfo) is not installed: no independent validity check")
    assert info.returncode == 0, info.stderr
    assert b"JavaScript:      no" in info.stdout and b"Pages:           1" in info.stdout
    text = poppler("pdftotext", result.data)
    assert text is not None and b"Quarterly report page one" in text.stdout


def test_pdf_outline_page_and_form_actions_and_xfa_are_removed() -> None:
    objects = [
        b"<< /Type /Outlines /First 5 0 R /Last 5 0 R /Count 1 >>",                       # 4
        b"<< /Title (Chapter 1) /Parent 4 0 R /A << /S /JavaScript /JS (outline_js) >> >>",  # 5
        stream(b"<xdp:xdp>xfa form</xdp:xdp>"),                                           # 6
        b"<< /FT /Tx /T (name) /AA << /K << /S /JavaScript /JS (keystroke_js) >> >> "
        b"/Kids [8 0 R] >>",                                                              # 7
        b"<< /Type /Annot /Subtype /Widget /Parent 7 0 R /Rect [0 0 10 10] "
        b"/A << /S /URI /URI (https://a.example/) /Next << /S /JavaScript /JS (chained_js) >> >> >>",  # 8
        b"<< /Type /Annot /Subtype /FileAttachment /Rect [0 0 5 5] /FS (x.exe) >>",       # 9
    ]
    pdf = build_pdf(["form page"], catalog_extra="/Outlines 4 0 R /AcroForm << /Fields [7 0 R] /XFA 6 0 R >> "
                                                 "/AA << /WC << /S /JavaScript /JS (close_js) >> >>",
                    page_extra="/AA << /O << /S /JavaScript /JS (page_js) >> >> /Annots [8 0 R 9 0 R]",
                    objects=objects)
    result = sanitise(pdf, "form.pdf")
    assert not result.failed
    assert set(result.actions) == {
        "removed /AA (additional actions) from the document", "removed the XFA form",
        "removed /AA from a form field", "removed a /JavaScript action from an outline item",
        "removed /AA from page 1", "removed a FileAttachment annotation from page 1",
        "removed actions chained after a /URI action in a form field"}   # the widget is a field's kid
    searched = all_objects(result.data)
    for marker in (b"_js", b"xfa form", b"FileAttachment", b"x.exe"):
        assert marker not in searched, marker
    assert b"https://a.example/" in searched and b"Chapter 1" in searched
    info = poppler("pdfinfo", result.data)
    if info is None:
        pytest.skip("poppler-utils (pdfinfo) is not installed: no independent validity check")
    assert info.returncode == 0 and b"JavaScript:      no" in info.stdout


def test_encrypted_pdfs() -> None:
    def encrypted(user_password: str) -> bytes:
        writer = PdfWriter(clone_from=PdfReader(io.BytesIO(active_pdf())))
        writer.encrypt(user_password=user_password, owner_password="owner", algorithm="AES-128")
        out = io.BytesIO()
        writer.write(out)
        return out.getvalue()

    locked = sanitise(encrypted("user-secret"), "locked.pdf")
    assert locked.failed and locked.reason == SANITISE_FAILED and "encrypted with a password" in locked.detail
    restricted = sanitise(encrypted(""), "restricted.pdf")
    assert not restricted.failed and "removed /OpenAction" in restricted.actions
    assert "removed the encryption (it opened without a password)" in restricted.actions
    assert b"app.alert" not in all_objects(restricted.data)


@pytest.mark.parametrize("data,filename", [
    (b"%PDF-1.4\n1 0 obj\n<< /Type /Catalog\ngarbage", "bad.pdf"),
    (b"PK\x03\x04" + b"\x01" * 100, "bad.docm"),
    (None, "truncated.docm"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 64 + "_VBA_PROJECT".encode("utf-16-le"), "old.doc"),
], ids=["pdf", "zip", "truncated-docm", "legacy-doc-with-vba"])
def test_unreadable_or_unsanitisable_files_fail_closed(data: bytes | None, filename: str) -> None:
    result = sanitise(data if data is not None else docm("x" * 3000)[:5000], filename)
    assert result.failed and result.reason == SANITISE_FAILED and result.data == b"" and result.detail
    assert result.actions == ()


def test_a_dtd_in_an_edited_part_fails() -> None:
    package = edited(docm("x"), {"word/_rels/document.xml.rels": lambda xml: xml.replace(
        b"<Relationships", b'<!DOCTYPE r [<!ENTITY a "b">]><Relationships', 1)}, {})
    result = sanitise(package, "a.docm")
    assert result.failed and "DTD" in result.detail


def test_sanitised_output_is_detected_as_its_new_type() -> None:
    result = sanitise(docm("x"), "a.docm")
    assert detect_file_type(result.data).kind == "zip"
    assert ooxml_kind(members(result.data)) == "docx"


SEEDS = [docm("seed"), xlsm(), active_pdf()]


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(range(len(SEEDS))), st.lists(st.tuples(st.integers(0, 10**9), st.integers(0, 255)),
                                                    min_size=1, max_size=6), st.binary(max_size=300))
def test_sanitise_never_raises(seed: int, flips: list[tuple[int, int]], junk: bytes) -> None:
    data = bytearray(SEEDS[seed])
    for position, value in flips:
        data[position % len(data)] = value
    for sample in (bytes(data), junk, b"%PDF-1.4\n" + junk, b"PK\x03\x04" + junk):
        result = sanitise(sample, "x.docm")
        assert isinstance(result, SanitiseResult)
        assert result.failed == (result.reason == SANITISE_FAILED)
        assert not result.failed or not result.detail.startswith("sanitising x.docm failed"), result.detail
