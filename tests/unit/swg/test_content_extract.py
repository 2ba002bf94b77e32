"""swg/content: extraction (extract, documents, multipart, limits) and the verdict over it.

My Numbers with a valid check digit are blocked and the same digits with a wrong one pass, in
every format a body comes in: text (UTF-8 and Shift_JIS), JSON, forms, multipart uploads, docx,
xlsx, pptx, PDF (also checked with poppler's pdftotext), ZIP and nested ZIP, a PDF attachment.
EICAR is found wherever it sits. Zip bombs, deep nesting, corrupt containers, encrypted ones
and XML with a DTD are unscannable, quickly and in bounded memory. Arbitrary and mutated bytes
always get a verdict.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import struct
import time
import tracemalloc
import urllib.parse
import zipfile
from collections.abc import Callable

import docx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pypdf import PdfReader, PdfWriter

from swg.content.documents import (
    PDF_CORRUPT,
    PDF_ENCRYPTED,
    PDF_TOO_MANY_PAGES,
    TOTAL_EXCEEDED,
    XML_FORBIDDEN,
)
from swg.content.extract import (
    ARCHIVE_CORRUPT,
    ARCHIVE_ENCRYPTED,
    MULTIPART_CORRUPT,
    NESTING_TOO_DEEP,
    OFFICE_ENCRYPTED,
    RATIO_EXCEEDED,
    TOO_MANY_MEMBERS,
    Part,
    extract_parts,
    iter_parts,
)
from swg.content.limits import MIB, ExtractionLimits
from swg.content.multipart import MultipartError, parse_media_type, split_multipart
from swg.content.verdict import CLEAN, MALWARE, UNSCANNABLE, ContentVerdict, needs_whole_body, scan_content
from swg.dlp import cards, corporate_number, mynumber
from swg.dlp.scan import DetectorRule, DlpPolicy
from swg.signatures import EICAR_NAME, BuiltinSignatures, Signature
from tests.unit.swg.content_samples import (
    EICAR,
    build_pdf,
    docx_with,
    invalid_mynumber,
    pdf_with_annotation_file,
    pdf_with_attachment,
    poppler,
    pptx_with,
    valid_mynumber,
    xlsx_with,
    zip_of,
)
from ztcore.errors import ConfigError

POLICY = DlpPolicy()
SIGNATURES = BuiltinSignatures()
GOOD = valid_mynumber()
BAD = invalid_mynumber()
BOUNDARY = "----sekimoriFormBoundary7MA4YWxkTrZu0gW"


def scan(data: bytes, filename: str | None = None, content_type: str | None = None,
         policy: DlpPolicy | None = POLICY, limits: ExtractionLimits | None = None,
         signatures: BuiltinSignatures = SIGNATURES) -> ContentVerdict:
    return scan_content(data, filename, content_type, policy, signatures, limits)


def unscannable_reason(verdict: ContentVerdict) -> str | None:
    return verdict.unscannable.reason if verdict.unscannable is not None else None


def multipart(*parts: tuple[dict[str, str], bytes], boundary: str = BOUNDARY) -> bytes:
    out = b""
    for headers, body in parts:
        out += f"--{boundary}\r\n".encode()
        out += b"".join(f"{name}: {value}\r\n".encode() for name, value in headers.items())
        out += b"\r\n" + body + b"\r\n"
    return out + f"--{boundary}--\r\n".encode()


def file_part(filename: str, body: bytes, content_type: str = "application/octet-stream",
              field: str = "upload") -> tuple[dict[str, str], bytes]:
    return ({"Content-Disposition": f'form-data; name="{field}"; filename="{filename}"',
             "Content-Type": content_type}, body)


def docx_split_runs(number: str) -> bytes:
    """The number in two runs of one paragraph: Word shows it whole, the XML has it cut."""
    document = docx.Document()
    paragraph = document.add_paragraph("個人番号: ")
    paragraph.add_run(number[:5])
    paragraph.add_run(number[5:]).bold = True
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


# Every format a number can come in: (name, build(number) -> (data, filename, content type)).
Body = tuple[bytes, str | None, str | None]
FORMATS: list[tuple[str, Callable[[str], Body]]] = [
    ("text", lambda n: (f"申請者の個人番号は {n} です。".encode(), None, "text/plain; charset=utf-8")),
    ("text 4-4-4", lambda n: (f"番号 {n[:4]}-{n[4:8]}-{n[8:]}".encode(), "memo.txt", None)),
    ("shift_jis csv", lambda n: (f"氏名,個人番号\r\n山田太郎,{n}\r\n".encode("cp932"), "名簿.csv", None)),
    ("euc-jp labelled", lambda n: (f"番号：{n}".encode("euc_jp"), None, "text/plain; charset=EUC-JP")),
    ("json", lambda n: (json.dumps({"name": "山田", "mynumber": n}).encode(), None, "application/json")),
    ("json escaped", lambda n: (('{"mynumber": "' + "".join(f"\\u{ord(c):04x}" for c in n) + '"}').encode(),
                                None, "application/json")),
    ("json number", lambda n: (f'{{"id": {int(n)}}}'.encode(), None, None)),
    ("html entities", lambda n: (("<html><body>番号 " + "".join(f"&#{ord(c)};" for c in n)
                                  + "</body></html>").encode(), "page.html", "text/html")),
    ("form", lambda n: (urllib.parse.urlencode({"comment": f"番号 {n}", "x": "1"}).encode(), None,
                        "application/x-www-form-urlencoded")),
    ("form percent digits", lambda n: (("q=" + "".join(f"%{ord(c):02X}" for c in n)).encode(), None,
                                       "application/x-www-form-urlencoded")),
    ("form shift_jis", lambda n: (urllib.parse.urlencode({"備考": f"番号 {n}"}, encoding="cp932").encode(), None,
                                  "application/x-www-form-urlencoded; charset=Shift_JIS")),
    ("multipart field", lambda n: (multipart(({"Content-Disposition": 'form-data; name="note"'}, n.encode())),
                                   None, f"multipart/form-data; boundary={BOUNDARY}")),
    ("multipart file", lambda n: (multipart(({"Content-Disposition": 'form-data; name="title"'}, b"x"),
                                            file_part("a.txt", f"number {n}".encode(), "text/plain")),
                                  None, f'multipart/form-data; boundary="{BOUNDARY}"')),
    ("multipart docx", lambda n: (multipart(file_part("申請書.docx", docx_with(f"個人番号 {n}"))), None,
                                  f"multipart/form-data; boundary={BOUNDARY}")),
    ("docx", lambda n: (docx_with("申請書", f"個人番号: {n}"), "申請書.docx", None)),
    ("docx split runs", lambda n: (docx_split_runs(n), "a.docx", None)),
    ("xlsx number cell", lambda n: (xlsx_with(("氏名", "番号"), ("山田", int(n))), "list.xlsx", None)),
    ("xlsx string cell", lambda n: (xlsx_with(("氏名", "番号"), ("山田", n)), "list.xlsx", None)),
    ("pptx", lambda n: (pptx_with(f"番号 {n}"), "slides.pptx", None)),
    ("pdf", lambda n: (build_pdf(["Application form", f"My Number {n}"]), "form.pdf", "application/pdf")),
    ("pdf attachment", lambda n: (pdf_with_attachment("list.txt", f"number {n}".encode()), "a.pdf", None)),
    ("pdf paper clip", lambda n: (pdf_with_annotation_file("list.txt", n.encode()), "a.pdf", None)),
    ("zip", lambda n: (zip_of({"readme.txt": b"hello", "list.txt": f"番号 {n}".encode()}), "r.zip", None)),
    ("zip stored", lambda n: (zip_of({"list.txt": n.encode()}, zipfile.ZIP_STORED), "r.zip", None)),
    ("nested zip docx", lambda n: (zip_of({"inner.zip": zip_of({"a.docx": docx_with(f"番号 {n}")})}),
                                   "outer.zip", None)),
    ("zip xlsx", lambda n: (zip_of({"b.xlsx": xlsx_with((int(n),))}), "r.zip", None)),
]


@pytest.mark.parametrize("name,build", FORMATS, ids=[name for name, _ in FORMATS])
def test_valid_mynumber_is_blocked_in_every_format(name: str, build: Callable[[str], Body]) -> None:
    data, filename, content_type = build(GOOD)
    verdict = scan(data, filename, content_type)
    assert not verdict.allowed, verdict.detail
    assert verdict.reason == mynumber.REASON
    assert verdict.reasons == (mynumber.REASON,)
    assert verdict.findings == {"mynumber": 1}
    assert GOOD not in verdict.detail and verdict.detail.startswith("Found 1 My Number in ")


@pytest.mark.parametrize("name,build", FORMATS, ids=[name for name, _ in FORMATS])
def test_wrong_check_digit_is_allowed_in_every_format(name: str, build: Callable[[str], Body]) -> None:
    data, filename, content_type = build(BAD)
    verdict = scan(data, filename, content_type)
    assert verdict.allowed, verdict.detail
    assert verdict.reason == CLEAN and verdict.reasons == ()
    assert verdict.findings == {}
    assert verdict.unscannable is None


def test_pdf_text_is_what_poppler_reads_too() -> None:
    pdf = build_pdf(["Application form", f"My Number {GOOD}"])
    [part] = extract_parts(pdf, "form.pdf").parts
    assert part.text is not None and GOOD in part.text and "Application form" in part.text
    result = poppler("pdftotext", pdf)
    if result is None:
        pytest.skip("poppler-utils (pdftotext) is not installed: no independent check of the test PDF")
    assert result.returncode == 0, result.stderr
    assert f"My Number {GOOD}".encode() in result.stdout


def test_paths_name_the_container_chain() -> None:
    inner = docx_with(f"番号 {GOOD}")
    extraction = extract_parts(zip_of({"inner.docx": inner, "notes/a.txt": b"hi"}), "report.zip")
    assert extraction.unscannable is None
    by_path = {part.path: part for part in extraction.parts}
    assert by_path["report.zip"].file_type.kind == "zip" and by_path["report.zip"].depth == 0
    assert by_path["report.zip/inner.docx"].file_type.kind == "docx"
    document = by_path["report.zip/inner.docx/word/document.xml"]
    assert document.document == "report.zip/inner.docx" and document.depth == 2
    assert document.text is not None and GOOD in document.text
    assert by_path["report.zip/notes/a.txt"].text == "hi"


def test_detail_counts_per_document_and_thresholds_apply_to_the_whole_body() -> None:
    body = zip_of({"a.docx": docx_with(f"番号 {GOOD}", f"番号 {valid_mynumber('98765432109')}"),
                   "b.txt": valid_mynumber("11111111112").encode()})
    verdict = scan(body, "report.zip")
    assert verdict.detail == "Found 3 My Numbers in report.zip/a.docx (2) and report.zip/b.txt (1)."
    assert dict(verdict.places["mynumber"]) == {"report.zip/a.docx": 2, "report.zip/b.txt": 1}
    three = DlpPolicy(mynumber=DetectorRule(3))
    assert not scan(body, "report.zip", policy=three).allowed      # 2 + 1 reach 3 across files
    two_only = zip_of({"a.docx": docx_with(f"番号 {GOOD}"), "b.txt": valid_mynumber("11111111112").encode()})
    assert scan(two_only, "report.zip", policy=three).allowed
    assert dict(scan(two_only, "report.zip", policy=three).findings) == {"mynumber": 2}


def test_single_place_detail() -> None:
    body = zip_of({"a.docx": docx_with(f"{GOOD}", f"{valid_mynumber('98765432109')}")})
    assert scan(body, "report.zip").detail == "Found 2 My Numbers in report.zip/a.docx."


def test_other_detectors_and_reporting_only() -> None:
    card = scan("card 4111 1111 1111 1111 exp 12/30".encode())
    assert card.reason == cards.REASON and card.findings == {"credit-card": 1}
    corporate = scan("国税庁 法人番号 7000012050002".encode())
    assert corporate.allowed and corporate.findings == {"corporate-number": 1}
    assert "Reported, not blocking: 1 corporate number in the body." in corporate.detail
    blocked = scan("国税庁 7000012050002".encode(), policy=DlpPolicy(corporate_number=DetectorRule(1)))
    assert blocked.reason == corporate_number.REASON
    keyword = scan(docx_with("この資料は部外秘です"), "memo.docx")
    assert keyword.reason == "dlp-keyword" and keyword.findings == {"keyword:部外秘": 1}
    assert "1 match of keyword rule '部外秘' in memo.docx" in keyword.detail


def test_no_policy_means_no_dlp_but_still_malware() -> None:
    assert scan(GOOD.encode(), policy=None).allowed
    assert scan(zip_of({"e.com": EICAR}), "a.zip", policy=None).reason == MALWARE


@pytest.mark.parametrize("build,place", [
    (lambda: EICAR, "the body"),
    (lambda: EICAR + b"\r\n", "the body"),
    (lambda: zip_of({"docs/readme.txt": b"hi", "eicar.com": EICAR}), "upload.zip/eicar.com"),
    (lambda: zip_of({"l1.zip": zip_of({"l2.zip": zip_of({"eicar.com": EICAR})})}),
     "upload.zip/l1.zip/l2.zip/eicar.com"),
    (lambda: zip_of({"a.docx": zip_of({"word/document.xml": b"<w:document/>", "x.bin": EICAR})}),
     "upload.zip/a.docx/x.bin"),
    (lambda: pdf_with_attachment("eicar.com", EICAR), "upload.zip/eicar.com"),
    (lambda: pdf_with_annotation_file("clip.com", EICAR), "upload.zip/clip.com"),
], ids=["plain", "trailing-newline", "zip", "nested-zip", "in-package", "pdf-attachment", "pdf-paper-clip"])
def test_eicar_is_found_wherever_it_sits(build: Callable[[], bytes], place: str) -> None:
    data = build()
    verdict = scan(data, "upload.zip" if data[:2] != b"X5" else None)
    assert not verdict.allowed and verdict.reason == MALWARE
    assert verdict.malware_name == EICAR_NAME
    assert verdict.malware_path == (place if place != "the body" else "body")
    assert verdict.detail.startswith(f"{EICAR_NAME} found in {place}")


def test_eicar_in_a_multipart_upload_and_hash_signatures_on_members() -> None:
    body = multipart(({"Content-Disposition": 'form-data; name="t"'}, b"hello"), file_part("test.com", EICAR))
    verdict = scan(body, None, f"multipart/form-data; boundary={BOUNDARY}")
    assert verdict.reason == MALWARE and verdict.malware_path == "test.com"
    evil = b"\x7fELF" + b"\x01" * 300
    listed = BuiltinSignatures.of([Signature("Test.Listed-1", hashlib.sha256(evil).hexdigest())])
    found = scan(zip_of({"bin/tool": evil}), "a.zip", signatures=listed)
    assert found.malware_name == "Test.Listed-1" and found.malware_path == "a.zip/bin/tool"
    assert scan(zip_of({"bin/tool": evil + b"x"}), "a.zip", signatures=listed).allowed


def ratio_bomb(size: int) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        with archive.open("zeros.bin", "w") as member:
            chunk = bytes(MIB)
            for _ in range(size // MIB):
                member.write(chunk)
    return out.getvalue()


def test_ratio_bomb_is_unscannable_quickly_and_in_bounded_memory() -> None:
    bomb = ratio_bomb(20 * MIB)
    assert len(bomb) < 200_000            # ~1000:1
    tracemalloc.start()
    started = time.perf_counter()
    verdict = scan(bomb, "bomb.zip")
    elapsed = time.perf_counter() - started
    _current, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert verdict.reason == UNSCANNABLE and verdict.unscannable is not None
    assert verdict.unscannable.reason == RATIO_EXCEEDED
    assert verdict.unscannable.path == "bomb.zip/zeros.bin"
    assert "bomb.zip/zeros.bin" in verdict.detail
    assert peak < 4 * MIB and elapsed < 1.0


def test_ratio_limit_spares_small_regular_files_and_is_configurable() -> None:
    regular = zip_of({"a.xml": b"<row/>" * 50_000})        # 300 kB at a high ratio, under the grace
    assert scan(regular, "a.zip").allowed
    strict = ExtractionLimits(ratio_grace_bytes=0, max_ratio=10)
    verdict = scan(regular, "a.zip", limits=strict)
    assert verdict.unscannable is not None and verdict.unscannable.reason == RATIO_EXCEEDED


def with_declared_size(archive: bytes, declared: int) -> bytes:
    """The member's uncompressed size in both headers set to `declared` (a lying archive)."""
    patched = bytearray(archive)
    local = patched.find(b"PK\x03\x04")
    struct.pack_into("<I", patched, local + 22, declared)
    central = patched.find(b"PK\x01\x02")
    struct.pack_into("<I", patched, central + 24, declared)
    return bytes(patched)


def test_a_member_lying_about_its_size_is_not_read_beyond_it() -> None:
    lying = with_declared_size(zip_of({"a.txt": b"A" * 2_000_000}), 1000)
    tracemalloc.start()
    verdict = scan(lying, "a.zip")
    _current, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert verdict.unscannable is not None and verdict.unscannable.reason == ARCHIVE_CORRUPT  # bad CRC
    assert peak < 2 * MIB


def test_member_and_total_limits() -> None:
    body = zip_of({f"{index}.bin": bytes([index]) * 1000 + bytes(range(256)) * 4 for index in range(10)})
    small = ExtractionLimits(max_member_bytes=1000, max_total_bytes=100_000)
    assert unscannable_reason(scan(body, "a.zip", limits=small)) == "member-too-large"
    tight = ExtractionLimits(max_member_bytes=5000, max_total_bytes=10_000)
    assert unscannable_reason(scan(body, "a.zip", limits=tight)) == TOTAL_EXCEEDED
    assert scan(body, "a.zip").allowed


def overlapping(copies: int, member: bytes) -> bytes:
    """One compressed member and `copies` central directory entries all pointing at it: each
    is small and at a modest ratio, together they unpack to far more than the archive."""
    single = zip_of({"a.txt": member})
    central = single.find(b"PK\x01\x02")
    end = single.find(b"PK\x05\x06")
    entry = single[central:end]
    directory = entry * copies
    record = bytearray(single[end:end + 22])
    struct.pack_into("<HHII", record, 8, copies, copies, len(directory), central)
    return single[:central] + directory + bytes(record)


def test_overlapping_members_hit_the_total_limit() -> None:
    text = b"".join(f"line {index} of the quarterly report\n".encode() for index in range(60_000))
    body = overlapping(40, text)                 # 40 x 2 MB from one 300 kB member
    verdict = scan(body, "quine.zip", policy=None)     # no DLP: only the unpacking is timed here
    assert verdict.unscannable is not None and verdict.unscannable.reason == TOTAL_EXCEEDED


def nest(levels: int, inner: bytes) -> bytes:
    """`levels` ZIPs one in another, a.txt in the innermost."""
    data = zip_of({"a.txt": inner})
    for level in range(2, levels + 1):
        data = zip_of({f"l{level}.zip": data})
    return data


def test_nesting_beyond_max_depth_is_unscannable() -> None:
    three = nest(3, b"hello")                    # zip/zip/zip/a.txt: three containers
    assert scan(three, "n.zip").allowed
    four = nest(4, b"hello")
    verdict = scan(four, "n.zip")
    assert verdict.unscannable is not None and verdict.unscannable.reason == NESTING_TOO_DEEP
    assert scan(four, "n.zip", limits=ExtractionLimits(max_depth=4)).allowed
    deep = nest(40, b"hello")
    assert unscannable_reason(scan(deep, "n.zip")) == NESTING_TOO_DEEP


def test_too_many_members_is_refused_before_the_directory_is_parsed() -> None:
    body = zip_of({f"{index}.txt": b"" for index in range(10_001)}, zipfile.ZIP_STORED)
    started = time.perf_counter()
    verdict = scan(body, "many.zip")
    assert time.perf_counter() - started < 0.5
    assert verdict.unscannable is not None and verdict.unscannable.reason == TOO_MANY_MEMBERS
    few = ExtractionLimits(max_members=3)
    assert scan(zip_of({"a": b"", "b": b"", "c": b""}), "a.zip", limits=few).allowed
    four = zip_of({"a": b"", "b": b"", "c": b"", "d": b""})
    assert unscannable_reason(scan(four, "a.zip", limits=few)) == TOO_MANY_MEMBERS


def encrypted_flag(archive: bytes) -> bytes:
    patched = bytearray(archive)
    for signature, offset in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        at = patched.find(signature)
        flags = struct.unpack_from("<H", patched, at + offset)[0]
        struct.pack_into("<H", patched, at + offset, flags | 1)
    return bytes(patched)


def dtd_docx(document: bytes) -> bytes:
    source = zipfile.ZipFile(io.BytesIO(docx_with("x")))
    return zip_of({name: (document if name == "word/document.xml" else source.read(name))
                   for name in source.namelist()})


LAUGHS = (b'<?xml version="1.0"?>\n<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;">]>'
          b'<w:document xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"><w:body><w:p>'
          b'<w:r><w:t>&lol2;</w:t></w:r></w:p></w:body></w:document>')


def encrypted_pdf(pdf: bytes, user_password: str) -> bytes:
    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(pdf)))
    writer.encrypt(user_password=user_password, owner_password="owner-secret", algorithm="AES-128")
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


@pytest.mark.parametrize("build,filename,content_type,reason", [
    (lambda: b"PK\x03\x04" + b"\x00garbage" * 20, "a.zip", None, ARCHIVE_CORRUPT),
    (lambda: docx_with("x" * 5000)[:6000], "truncated.docx", None, ARCHIVE_CORRUPT),
    (lambda: zip_of({"inner.zip": b"PK\x03\x04broken"}), "a.zip", None, ARCHIVE_CORRUPT),
    (lambda: encrypted_flag(zip_of({"a.txt": b"secret"})), "a.zip", None, ARCHIVE_ENCRYPTED),
    (lambda: b"%PDF-1.4\n1 0 obj\n<< /Type /Catalog /Pages 9 0 R\nnot a pdf", "a.pdf", None, PDF_CORRUPT),
    (lambda: build_pdf(["x"])[:200], "cut.pdf", None, PDF_CORRUPT),
    (lambda: encrypted_pdf(build_pdf(["x"]), "user-secret"), "locked.pdf", None, PDF_ENCRYPTED),
    (lambda: dtd_docx(LAUGHS), "lol.docx", None, XML_FORBIDDEN),
    (lambda: dtd_docx(LAUGHS.decode().replace('version="1.0"', 'version="1.0" encoding="UTF-16"')
                      .encode("utf-16")), "lol16.docx", None, XML_FORBIDDEN),
    (lambda: dtd_docx(b"<w:document><w:body>"), "bad.docx", None, "xml-corrupt"),
    (lambda: b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 100 + "EncryptedPackage".encode("utf-16-le"),
     "secret.docx", None, OFFICE_ENCRYPTED),
    (lambda: multipart(file_part("a.txt", b"hi"))[:-12], None, f"multipart/form-data; boundary={BOUNDARY}",
     MULTIPART_CORRUPT),
    (lambda: b"no boundary here", None, "multipart/form-data", MULTIPART_CORRUPT),
], ids=["zip-garbage", "truncated-docx", "nested-corrupt", "zip-encrypted", "pdf-garbage", "pdf-truncated",
        "pdf-password", "xml-dtd", "xml-dtd-utf16", "xml-broken", "office-encrypted", "multipart-open",
        "multipart-no-boundary"])
def test_unreadable_bodies_are_unscannable(build: Callable[[], bytes], filename: str | None,
                                           content_type: str | None, reason: str) -> None:
    verdict = scan(build(), filename, content_type)
    assert not verdict.allowed and verdict.reason == UNSCANNABLE
    assert verdict.unscannable is not None and verdict.unscannable.reason == reason, verdict.detail
    assert verdict.detail.startswith("Could not scan it all: ")


def test_pdf_with_owner_password_only_is_read() -> None:
    pdf = encrypted_pdf(build_pdf([f"My Number {GOOD}"]), "")
    assert scan(pdf, "a.pdf").reason == mynumber.REASON


def test_pdf_page_limit() -> None:
    pdf = build_pdf(["a", "b", "c"])
    assert scan(pdf, "a.pdf", limits=ExtractionLimits(max_pdf_pages=3)).allowed
    verdict = scan(pdf, "a.pdf", limits=ExtractionLimits(max_pdf_pages=2))
    assert verdict.unscannable is not None and verdict.unscannable.reason == PDF_TOO_MANY_PAGES


def test_malware_outranks_dlp_and_unscannable_follows_dlp() -> None:
    both = zip_of({"a.txt": GOOD.encode(), "e.com": EICAR})
    assert scan(both, "a.zip").reasons == (MALWARE, mynumber.REASON)
    assert scan(zip_of({"e.com": EICAR, "a.txt": GOOD.encode()}), "a.zip").reasons == (MALWARE,)  # stops
    then_corrupt = zip_of({"a.txt": GOOD.encode(), "b.zip": b"PK\x03\x04junk"})
    verdict = scan(then_corrupt, "a.zip")
    assert verdict.reasons == (mynumber.REASON, UNSCANNABLE) and verdict.reason == mynumber.REASON


def test_cp932_member_names_are_shown_as_written() -> None:
    name = "報告.txt".encode("cp932")
    placeholder = b"X" * (len(name) - 4) + b".txt"
    body = zip_of({placeholder.decode(): GOOD.encode()}).replace(placeholder, name)
    verdict = scan(body, "a.zip")
    assert verdict.detail == "Found 1 My Number in a.zip/報告.txt."


def test_file_types_seen_and_parts_scanned() -> None:
    verdict = scan(zip_of({"a.docx": docx_with("x"), "b.pdf": build_pdf(["y"])}), "a.zip")
    assert verdict.file_types[:3] == ("zip", "docx", "text") and "pdf" in verdict.file_types
    assert verdict.parts_scanned > 5 and verdict.allowed


def test_iter_parts_is_lazy_and_ends_with_the_unscannable() -> None:
    items = list(iter_parts(zip_of({"a.txt": b"x", "b.zip": b"PK\x03\x04junk"}), "a.zip"))
    assert [type(item).__name__ for item in items] == ["Part", "Part", "Part", "Unscannable"]
    walk = iter_parts(zip_of({"a.txt": b"x"}), "a.zip")
    first = next(walk)
    assert isinstance(first, Part) and first.path == "a.zip"
    walk.close()


def test_multipart_details() -> None:
    body = (b"preamble text\r\n--b\r\nContent-Disposition: form-data; name=\"f\"; filename=\"a.txt\"; "
            b"filename*=UTF-8''%E5%A0%B1%E5%91%8A.txt\r\nContent-Transfer-Encoding: base64\r\n\r\n"
            + base64.b64encode(GOOD.encode()) + b"\r\n--b\r\n\r\n--b--\r\nepilogue")
    preamble, parts, epilogue = split_multipart(body, "b")
    assert preamble == b"preamble text" and epilogue == b"epilogue"
    assert parts[0].filename == "報告.txt" and parts[0].body == GOOD.encode() and parts[0].name == "f"
    assert parts[1].body == b"" and parts[1].filename is None
    assert scan(body, None, "multipart/form-data; boundary=b").detail == "Found 1 My Number in 報告.txt."
    hidden = b"--b\r\nContent-Disposition: form-data; name=x\r\n\r\nx\r\n--b--\r\n" + GOOD.encode()
    assert scan(hidden, None, "multipart/form-data; boundary=b").reason == mynumber.REASON   # epilogue
    with pytest.raises(MultipartError):
        split_multipart(b"--b\r\nno blank line", "b")
    assert parse_media_type('Multipart/Form-Data; Boundary="a\\"b"; charset=utf-8') == (
        "multipart/form-data", {"boundary": 'a"b', "charset": "utf-8"})
    assert parse_media_type(None) == ("", {})


@pytest.mark.parametrize("head,content_type,whole", [
    (b"PK\x03\x04rest", None, True),
    (b"%PDF-1.7\n", "application/octet-stream", True),
    (b'{"a": 1}', None, True),
    (b"a=1&b=2", "application/x-www-form-urlencoded", True),
    (b"--x\r\n", "multipart/form-data; boundary=x", True),
    (b"<!doctype html><html>", None, True),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", None, True),
    (b"plain text body", "text/plain", False),
    (b"\x89PNG\r\n\x1a\n....", "image/png", False),
    (b"MZ\x90\x00", None, False),
])
def test_needs_whole_body(head: bytes, content_type: str | None, whole: bool) -> None:
    assert needs_whole_body(head, content_type) is whole


@pytest.mark.parametrize("kwargs,message", [
    ({"max_depth": 0}, "max_depth must be at least 1"),
    ({"max_ratio": -1}, "max_ratio must be at least 1"),
    ({"max_members": True}, "max_members must be an integer"),
    ({"max_total_bytes": 1.5}, "max_total_bytes must be an integer"),
    ({"ratio_grace_bytes": -1}, "ratio_grace_bytes must be at least 0"),
    ({"max_member_bytes": 10, "max_total_bytes": 5},
     "max_member_bytes (10) must not exceed max_total_bytes (5)"),
])
def test_limits_are_validated(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        ExtractionLimits(**kwargs)  # type: ignore[arg-type]


def test_default_limits() -> None:
    limits = ExtractionLimits()
    assert (limits.max_depth, limits.max_total_bytes, limits.max_members, limits.max_ratio,
            limits.max_member_bytes) == (3, 64 * MIB, 10_000, 100, 32 * MIB)


SEEDS = [docx_with(f"番号 {GOOD}"), xlsx_with((1, "a")), pptx_with("hello world"), build_pdf(["x", "y"]),
         zip_of({"a.zip": zip_of({"b.txt": b"x"})}), multipart(file_part("a.txt", b"hi"))]
CONTENT_TYPES = [None, "text/plain", "application/json", "application/x-www-form-urlencoded",
                 f"multipart/form-data; boundary={BOUNDARY}", "application/pdf; charset=bogus"]


def check_verdict(verdict: ContentVerdict) -> None:
    assert isinstance(verdict, ContentVerdict)
    assert verdict.allowed == (verdict.reasons == ()) and (verdict.reason == CLEAN) == verdict.allowed
    if verdict.unscannable is not None:
        assert verdict.unscannable.reason != "internal-error", verdict.unscannable.detail


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=600), st.sampled_from(CONTENT_TYPES), st.sampled_from([None, "a.docx", "b.zip"]))
def test_arbitrary_bytes_always_get_a_verdict(data: bytes, content_type: str | None,
                                              filename: str | None) -> None:
    check_verdict(scan(data, filename, content_type))
    check_verdict(scan(b"PK\x03\x04" + data, filename, content_type))
    check_verdict(scan(b"%PDF-1.4\n" + data, filename, content_type))


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(range(len(SEEDS))), st.lists(st.tuples(st.integers(0, 10**9), st.integers(0, 255)),
                                                    min_size=1, max_size=8),
       st.integers(0, 10**9), st.sampled_from(CONTENT_TYPES))
def test_mutated_containers_always_get_a_verdict(seed: int, flips: list[tuple[int, int]], cut: int,
                                                 content_type: str | None) -> None:
    data = bytearray(SEEDS[seed])
    for position, value in flips:
        data[position % len(data)] = value
    check_verdict(scan(bytes(data), "x.bin", content_type))
    check_verdict(scan(bytes(data[:cut % len(data)]), "x.bin", content_type))
