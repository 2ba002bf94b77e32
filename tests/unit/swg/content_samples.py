"""Sample files for the swg/content tests, built in memory: My Numbers, EICAR, PDFs written by
hand (so that their structure is known exactly), Office files from python-docx and openpyxl
turned macro-enabled, and ZIP archives. No file is read from disk."""

from __future__ import annotations

import io
import re
import shutil
import subprocess
import zipfile
import zlib

import docx
import openpyxl

from swg.dlp.mynumber import mynumber_check_digit

# Never one literal: a scanner on the developer's machine would quarantine this file.
XML = '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
PACKAGE_RELS = "http://schemas.openxmlformats.org/package/2006/relationships"
OFFICE_RELS = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
MS_RELS = "http://schemas.microsoft.com/office/2006/relationships"
CONTENT_TYPES = "http://schemas.openxmlformats.org/package/2006/content-types"
OLE2 = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"   # what a real vbaProject.bin starts with
PRESENTATION = "application/vnd.openxmlformats-officedocument.presentationml."
EICAR = ("X5O!P%@AP[4\\PZX54(P^)7CC)7}$" + "EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*").encode("ascii")


def valid_mynumber(base: str = "12345678901") -> str:
    return base + str(mynumber_check_digit(base))


def invalid_mynumber(base: str = "12345678901") -> str:
    """The same eleven digits with a wrong check digit."""
    return base + str((mynumber_check_digit(base) + 1) % 10)


def pdf_string(text: str) -> str:
    return "(" + text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)") + ")"


def build_pdf(pages: list[str], catalog_extra: str = "", page_extra: str = "",
              objects: list[bytes] | None = None) -> bytes:
    """A PDF 1.4 file: object 1 the catalog, 2 the page tree, 3 Helvetica, 4.. the `objects`
    given (referenced as "4 0 R" and so on), then each page and its content stream."""
    extra = list(objects or [])
    first_page = 4 + len(extra)
    page_ids = [first_page + 2 * index for index in range(len(pages))]
    bodies: list[bytes] = [
        f"<< /Type /Catalog /Pages 2 0 R {catalog_extra} >>".encode(),
        f"<< /Type /Pages /Kids [{' '.join(f'{n} 0 R' for n in page_ids)}] /Count {len(pages)} >>".encode(),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>",
        *extra,
    ]
    for index, text in enumerate(pages):
        content = f"BT /F1 12 Tf 72 720 Td {pdf_string(text)} Tj ET".encode()
        bodies.append(f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
                      f"/Resources << /Font << /F1 3 0 R >> >> "
                      f"/Contents {page_ids[index] + 1} 0 R {page_extra} >>".encode())
        bodies.append(stream(content))
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(bodies, start=1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n".encode() + body + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(bodies) + 1}\n0000000000 65535 f \n".encode()
    out += b"".join(f"{offset:010d} 00000 n \n".encode() for offset in offsets)
    out += f"trailer\n<< /Size {len(bodies) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    return bytes(out)


def stream(content: bytes, dictionary: str = "") -> bytes:
    return f"<< /Length {len(content)} {dictionary} >>\nstream\n".encode() + content + b"\nendstream"


def active_pdf(text: str = "Quarterly report page one") -> bytes:
    """A PDF with an /OpenAction script, a /JavaScript name tree, a /Launch link, a URI link
    (harmless, kept) and an embedded file."""
    objects = [
        b"<< /S /JavaScript /JS (app.alert\\('opened'\\)) >>",                           # 4
        b"<< /Names [(init) 6 0 R] >>",                                                  # 5
        b"<< /S /JavaScript /JS 7 0 R >>",                                               # 6
        stream(b"app.alert('named script');"),                                           # 7
        b"<< /Names [(secret.txt) 9 0 R] >>",                                            # 8
        b"<< /Type /Filespec /F (secret.txt) /UF (secret.txt) /EF << /F 10 0 R >> >>",    # 9
        stream(b"SECRET-ATTACHMENT-BYTES", "/Type /EmbeddedFile"),                       # 10
        b"<< /Type /Annot /Subtype /Link /Rect [72 600 200 620] /Border [0 0 0] "
        b"/A << /S /Launch /F (cmd.exe) /Win << /F (cmd.exe) /P (/c calc) >> >> >>",     # 11
        b"<< /Type /Annot /Subtype /Link /Rect [72 560 200 580] /Border [0 0 0] "
        b"/A << /S /URI /URI (https://www.example.jp/) >> >>",                           # 12
    ]
    return build_pdf([text], catalog_extra="/OpenAction 4 0 R /Names << /JavaScript 5 0 R "
                                           "/EmbeddedFiles 8 0 R >>",
                     page_extra="/Annots [11 0 R 12 0 R]", objects=objects)


def pdf_with_attachment(name: str, content: bytes, text: str = "see attachment") -> bytes:
    objects = [
        f"<< /Names [{pdf_string(name)} 5 0 R] >>".encode(),                                # 4
        f"<< /Type /Filespec /F {pdf_string(name)} /EF << /F 6 0 R >> >>".encode(),          # 5
        stream(content, "/Type /EmbeddedFile"),                                              # 6
    ]
    return build_pdf([text], catalog_extra="/Names << /EmbeddedFiles 4 0 R >>", objects=objects)


def pdf_with_annotation_file(name: str, content: bytes) -> bytes:
    """A file in a FileAttachment annotation (a paper clip on the page), not in the name tree."""
    objects = [
        b"<< /Type /Annot /Subtype /FileAttachment /Rect [72 700 90 720] /FS 5 0 R /Contents (clip) >>",  # 4
        f"<< /Type /Filespec /F {pdf_string(name)} /EF << /F 6 0 R >> >>".encode(),                     # 5
        stream(content, "/Type /EmbeddedFile"),                                                         # 6
    ]
    return build_pdf(["see the paper clip"], page_extra="/Annots [4 0 R]", objects=objects)


def decompressed_streams(pdf: bytes) -> bytes:
    """The PDF's bytes followed by every Flate stream in it inflated."""
    parts = [pdf]
    for match in re.finditer(rb"stream\r?\n(.*?)endstream", pdf, re.DOTALL):
        try:
            parts.append(zlib.decompress(match.group(1)))
        except zlib.error:
            pass
    return b"\n".join(parts)


def poppler(tool: str, pdf: bytes, *args: str) -> subprocess.CompletedProcess[bytes] | None:
    """Runs a poppler-utils tool on the PDF given on stdin ("-" as the file); None when missing."""
    if shutil.which(tool) is None:
        return None
    return subprocess.run([tool, *args, "-", "-"] if tool == "pdftotext" else [tool, *args, "-"],
                          input=pdf, capture_output=True, timeout=30)


def zip_of(members: dict[str, bytes], compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression) as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    return out.getvalue()


def docx_with(*paragraphs: str) -> bytes:
    document = docx.Document()
    for text in paragraphs:
        document.add_paragraph(text)
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


def xlsx_with(*rows: tuple[object, ...]) -> bytes:
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    assert sheet is not None
    for row in rows:
        sheet.append(list(row))
    out = io.BytesIO()
    workbook.save(out)
    return out.getvalue()


def relationships(*entries: tuple[str, str, str]) -> bytes:
    """A relationships part: (Id, Type, Target) each."""
    body = "".join(f'<Relationship Id="{id_}" Type="{type_}" Target="{target}"/>'
                   for id_, type_, target in entries)
    return f'{XML}<Relationships xmlns="{PACKAGE_RELS}">{body}</Relationships>'.encode()


def content_types(defaults: dict[str, str], overrides: dict[str, str]) -> bytes:
    body = "".join(f'<Default Extension="{ext}" ContentType="{type_}"/>' for ext, type_ in defaults.items())
    body += "".join(f'<Override PartName="{part}" ContentType="{type_}"/>'
                    for part, type_ in overrides.items())
    return f'{XML}<Types xmlns="{CONTENT_TYPES}">{body}</Types>'.encode()


def pptx_with(text: str) -> bytes:
    """A minimal presentation written by hand (no python-pptx here): one slide, one text box,
    the text cut in two runs after its sixth character."""
    p = "http://schemas.openxmlformats.org/presentationml/2006/main"
    a = "http://schemas.openxmlformats.org/drawingml/2006/main"
    slide = (f'{XML}<p:sld xmlns:p="{p}" xmlns:a="{a}"><p:cSld><p:spTree><p:sp><p:txBody><a:bodyPr/>'
             f'<a:p><a:r><a:t>{text[:6]}</a:t></a:r><a:r><a:t>{text[6:]}</a:t></a:r></a:p>'
             f'</p:txBody></p:sp></p:spTree></p:cSld></p:sld>')
    return zip_of({
        "[Content_Types].xml": content_types(
            {"rels": "application/vnd.openxmlformats-package.relationships+xml", "xml": "application/xml"},
            {"/ppt/presentation.xml": PRESENTATION + "presentation.main+xml",
             "/ppt/slides/slide1.xml": PRESENTATION + "slide+xml"}),
        "_rels/.rels": relationships(("rId1", f"{OFFICE_RELS}/officeDocument", "ppt/presentation.xml")),
        "ppt/presentation.xml": (f'{XML}<p:presentation xmlns:p="{p}" xmlns:r="{OFFICE_RELS}"><p:sldIdLst>'
                                 f'<p:sldId id="256" r:id="rId2"/></p:sldIdLst></p:presentation>').encode(),
        "ppt/_rels/presentation.xml.rels": relationships(
            ("rId2", f"{OFFICE_RELS}/slide", "slides/slide1.xml")),
        "ppt/slides/slide1.xml": slide.encode(),
    })


def make_macro_enabled(package: bytes, main_part: str, plain: str, macro: str, folder: str) -> bytes:
    """A macro-enabled copy of an Office file: a (fake) vbaProject.bin with its relationship and
    content types, as Office writes them; for Word also vbaData.xml."""
    source = zipfile.ZipFile(io.BytesIO(package))
    out = io.BytesIO()
    rels_name = f"{folder}/_rels/{main_part.rsplit('/', 1)[-1]}.rels"
    vba_data = '<Override PartName="/word/vbaData.xml" ContentType="application/vnd.ms-word.vbaData+xml"/>'
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for info in source.infolist():
            content = source.read(info)
            if info.filename == "[Content_Types].xml":
                content = content.replace(plain.encode(), macro.encode())
                content = content.replace(b"</Types>", (
                    '<Default Extension="bin" ContentType="application/vnd.ms-office.vbaProject"/>'
                    + (vba_data if folder == "word" else "") + "</Types>").encode())
            elif info.filename == rels_name:
                content = content.replace(b"</Relationships>", (
                    f'<Relationship Id="rId900" Type="{MS_RELS}/vbaProject" Target="vbaProject.bin"/>'
                    f'</Relationships>').encode())
            archive.writestr(info, content)
        archive.writestr(f"{folder}/vbaProject.bin", OLE2 + b"Attribute VB_Name" * 40)
        if folder == "word":
            archive.writestr("word/_rels/vbaProject.bin.rels",
                             relationships(("rId1", f"{MS_RELS}/wordVbaData", "vbaData.xml")))
            archive.writestr("word/vbaData.xml", (
                f'{XML}<wne:vbaSuppData xmlns:wne="http://schemas.microsoft.com/office/word/2006/wordml">'
                f'<wne:mcds/></wne:vbaSuppData>').encode())
    return out.getvalue()
