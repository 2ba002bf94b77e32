"""What the gateway does with an inspected HTTP exchange: settings, per-request records, and the
small decisions the interceptor asks for (buffer or stream a body, which headers to add, what a
content verdict means as a Decision).

Pure. The interceptor (swg/runtime/interceptor.py) moves the bytes and calls these.

Bodies. The first `whole_scan_bytes` of every body are held: a body that ends within them is
scanned whole (text, JSON, forms, multipart, Office, PDF, zip), and only then sent on. A longer
body is streamed when it is text (DLP runs over it as it passes, `HOLD_BACK_BYTES` behind, so
a finding is made before its bytes leave) or media; a container or executable is held whole up
to `max_buffer_bytes` and refused as unscannable beyond (fail closed).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import urlsplit

from swg.content.limits import ExtractionLimits
from swg.dlp.scan import DlpPolicy
from swg.filetypes import FileType
from swg.signatures import BuiltinSignatures
from ztcore.decision import Decision, deny
from ztcore.errors import ConfigError
from ztcore.reasons import Reason

HOLD_BACK_BYTES = 64 * 1024
# Types whose content can only be judged whole (a zip's directory is at its end): archives,
# executables, and these documents.
WHOLE_ONLY_KINDS = frozenset({"pdf", "docx", "xlsx", "pptx", "docm", "xlsm", "pptm", "ole2", "doc",
                              "xls", "ppt", "msg"})

# Microsoft's sign-in endpoints that read the tenant-restriction headers (v1).
M365_LOGIN_HOSTS = frozenset({"login.microsoftonline.com", "login.microsoft.com", "login.windows.net"})


@dataclass(frozen=True)
class TenantRestrictions:
    """Microsoft 365 tenant restrictions v1: the Entra tenants staff may sign in to, and the
    directory id of the municipality's own tenant (Restrict-Access-Context)."""
    allowed_tenants: tuple[str, ...]
    context_tenant_id: str

    def __post_init__(self) -> None:
        if not self.allowed_tenants:
            raise ConfigError("tenant_restrictions.allowed_tenants must name at least one tenant")
        for name in (*self.allowed_tenants, self.context_tenant_id):
            if not name or any(c in name for c in ",\r\n ") or len(name) > 253:
                raise ConfigError(f"tenant_restrictions: {name!r} is not a tenant domain or id")

    def headers_for(self, host: str) -> list[tuple[bytes, bytes]]:
        if host.lower().rstrip(".") not in M365_LOGIN_HOSTS:
            return []
        return [(b"restrict-access-to-tenants", ",".join(self.allowed_tenants).encode("ascii")),
                (b"restrict-access-context", self.context_tenant_id.encode("ascii"))]


@dataclass(frozen=True)
class InspectionSettings:
    dlp: DlpPolicy | None = field(default_factory=DlpPolicy)
    signatures: BuiltinSignatures = field(default_factory=lambda: BuiltinSignatures.of(()))
    limits: ExtractionLimits = field(default_factory=ExtractionLimits)
    whole_scan_bytes: int = 4 * 1024 * 1024
    max_buffer_bytes: int = 64 * 1024 * 1024
    sanitise: bool = False
    tenant_restrictions: TenantRestrictions | None = None
    blocked_file_kinds: frozenset[str] = frozenset()   # swg.filetypes kinds, e.g. {"pe", "elf"}

    def __post_init__(self) -> None:
        if self.whole_scan_bytes < HOLD_BACK_BYTES:
            raise ConfigError(f"inspection.whole_scan_bytes must be at least {HOLD_BACK_BYTES}")
        if self.max_buffer_bytes < self.whole_scan_bytes:
            raise ConfigError("inspection.max_buffer_bytes must be at least whole_scan_bytes")


@dataclass
class HttpRecord:
    """One inspected request and what became of it: the audit event's content. Findings are
    counts by detector, never the values found."""
    request_id: str
    method: str
    url: str
    decision: Decision
    status: int = 0
    findings: dict[str, int] = field(default_factory=dict)
    malware: str | None = None
    sanitised: tuple[str, ...] = ()
    signatures: tuple[str, ...] = ()
    file_types: tuple[str, ...] = ()
    bytes_up: int = 0
    bytes_down: int = 0
    unblock_request: dict[str, str] | None = None
    origin_protocol: str = ""        # "http/1.1" or "h2": how the origin was spoken to

    def audit_extra(self) -> dict[str, str]:
        extra = {"request_id": self.request_id, "method": self.method, "url": self.url[:2048]}
        if self.status:
            extra["status"] = str(self.status)
        if self.findings:
            extra["dlp"] = ",".join(f"{k}:{v}" for k, v in sorted(self.findings.items()))
        if self.malware:
            extra["malware"] = self.malware
        if self.sanitised:
            extra["sanitised"] = "; ".join(self.sanitised)
        if self.signatures:
            extra["signatures"] = ",".join(self.signatures)
        if self.file_types:
            extra["file_types"] = ",".join(self.file_types)
        if self.origin_protocol:
            extra["origin_protocol"] = self.origin_protocol
        return extra


def stream_whole(file_type: FileType) -> bool:
    """Must a body of this type be held whole to be judged?"""
    return file_type.archive or file_type.executable or file_type.kind in WHOLE_ONLY_KINDS


def charset_of(content_type: str | None) -> str | None:
    if not content_type:
        return None
    for part in content_type.split(";")[1:]:
        name, _, value = part.strip().partition("=")
        if name.strip().lower() == "charset":
            return value.strip().strip('"') or None
    return None


def filename_of(url: str, content_disposition: str | None) -> str | None:
    """The file's name: from Content-Disposition when given, else the URL path's last part."""
    if content_disposition:
        for part in content_disposition.split(";"):
            name, _, value = part.strip().partition("=")
            if name.strip().lower() == "filename" and value:
                return value.strip().strip('"')[:255] or None
    path = urlsplit(url).path
    last = path.rsplit("/", 1)[-1]
    return last[:255] or None


REASON_BY_NAME = {r.value: r for r in Reason}


def block_decision(reason: str, detail: str) -> Decision:
    """A content verdict's machine reason as a Decision (an unknown one is an internal error)."""
    known = REASON_BY_NAME.get(reason)
    if known is None:
        return deny(Reason.INTERNAL_ERROR, detail=f"unknown content reason {reason}: {detail}")
    return deny(known, status=403, detail=detail)
