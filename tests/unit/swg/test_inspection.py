"""The small decisions of swg/inspection.py: tenant-restriction headers, file names and
charsets from headers, which bodies must be held whole, audit fields, reasons as Decisions."""

from __future__ import annotations

import pytest

from swg.filetypes import FILE_TYPES
from swg.inspection import (
    HttpRecord,
    InspectionSettings,
    TenantRestrictions,
    block_decision,
    charset_of,
    filename_of,
    stream_whole,
)
from ztcore.decision import deny
from ztcore.errors import ConfigError
from ztcore.reasons import Reason


def test_tenant_restriction_headers_only_on_microsoft_login_hosts() -> None:
    tr = TenantRestrictions(("city.example.lg.jp", "pref.example.lg.jp"), "0000-ctx")
    assert tr.headers_for("LOGIN.microsoftonline.com.") == [
        (b"restrict-access-to-tenants", b"city.example.lg.jp,pref.example.lg.jp"),
        (b"restrict-access-context", b"0000-ctx")]
    assert tr.headers_for("login.microsoftonline.com.evil.example") == []
    assert tr.headers_for("outlook.office365.com") == []


@pytest.mark.parametrize("tenants, context", [((), "x"), (("a,b",), "x"), (("a",), ""), (("a\r\nX: y",), "c")])
def test_tenant_restrictions_refuse_header_injection_and_empty_values(tenants: tuple[str, ...],
                                                                      context: str) -> None:
    with pytest.raises(ConfigError):
        TenantRestrictions(tenants, context)


@pytest.mark.parametrize("url, disposition, expected", [
    ("https://a.example/files/report.docm?x=1", None, "report.docm"),
    ("https://a.example/dl", 'attachment; filename="申請書.pdf"', "申請書.pdf"),
    ("https://a.example/", None, None),
])
def test_filename_from_disposition_or_url(url: str, disposition: str | None, expected: str | None) -> None:
    assert filename_of(url, disposition) == expected


@pytest.mark.parametrize("ctype, expected", [
    ("text/plain; charset=Shift_JIS", "Shift_JIS"), ('text/html; charset="utf-8"', "utf-8"),
    ("application/json", None), (None, None)])
def test_charset(ctype: str | None, expected: str | None) -> None:
    assert charset_of(ctype) == expected


@pytest.mark.parametrize("kind, whole", [("zip", True), ("pe", True), ("docx", True), ("pdf", True),
                                         ("text", False), ("html", False), ("mp4", False),
                                         ("unknown", False)])
def test_which_bodies_are_held_whole(kind: str, whole: bool) -> None:
    assert stream_whole(FILE_TYPES[kind]) is whole


def test_audit_fields_never_carry_values() -> None:
    record = HttpRecord("r1", "POST", "https://a.example/upload", deny(Reason.DLP_MYNUMBER), 403,
                        findings={"mynumber": 2, "credit-card": 1}, file_types=("docx",))
    extra = record.audit_extra()
    assert extra == {"request_id": "r1", "method": "POST", "url": "https://a.example/upload",
                     "status": "403", "dlp": "credit-card:1,mynumber:2", "file_types": "docx"}


def test_content_reasons_become_decisions_and_unknown_ones_fail_closed() -> None:
    assert block_decision("dlp-mynumber", "1 found").reason is Reason.DLP_MYNUMBER
    assert block_decision("malware-detected", "EICAR").status == 403
    unknown = block_decision("no-such-reason", "x")
    assert not unknown.allowed and unknown.reason is Reason.INTERNAL_ERROR


def test_settings_are_checked() -> None:
    with pytest.raises(ConfigError):
        InspectionSettings(whole_scan_bytes=10)
    with pytest.raises(ConfigError):
        InspectionSettings(whole_scan_bytes=1 << 20, max_buffer_bytes=1 << 19)
