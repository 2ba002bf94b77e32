"""The content verdict: `scan_content` runs DLP and the built-in signatures over a whole body.

Owns combining what extract found into one `ContentVerdict`: DLP counts added up over every text
part of the body (thresholds apply to the sums), the malware signatures over the body and every
file inside it, and an unscannable body blocked (fail closed). Also `needs_whole_body`: whether a
body must be buffered for this verdict or can be scanned as a stream. Pure; a verdict carries
counts, names and places, never a matched value.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from swg import signatures as malware
from swg.content.extract import ROOT, Part, Unscannable, iter_parts
from swg.content.limits import ExtractionLimits
from swg.content.multipart import parse_media_type
from swg.dlp import cards, corporate_number, keywords, mynumber
from swg.dlp.scan import DLP_REASONS, DetectorRule, DlpPolicy, scan_text
from swg.filetypes import HEAD_BYTES, detect_file_type
from swg.signatures import BuiltinSignatures

CLEAN = "content-clean"
UNSCANNABLE = "content-unscannable"
MALWARE = malware.REASON
MAX_PLACES_SHOWN = 3

_LABELS = {mynumber.NAME: ("My Number", "My Numbers"),
           corporate_number.NAME: ("corporate number", "corporate numbers"),
           cards.NAME: ("credit card number", "credit card numbers")}
# Bodies read whole by the extractor; the rest (plain text, opaque files) give the same
# verdict when streamed through DlpScanner and HashScanner.
_WHOLE_KINDS = frozenset({"zip", "pdf", "json", "html", "ole2", "doc", "xls", "ppt"})
_WHOLE_MEDIA = frozenset({"application/x-www-form-urlencoded", "application/json"})


@dataclass(frozen=True)
class ContentVerdict:
    """allowed, or blocked for `reason` (the first of `reasons`: malware, then DLP, then
    unscannable); `reason` is CLEAN when allowed.

    findings: DLP counts over the whole body by detector ("mynumber", "credit-card", ...; a
    keyword rule as "keyword:<rule name>"), blocking or not. file_types: the kinds met, in order.
    detail: one or more English sentences naming what was found and where.
    """

    allowed: bool
    reason: str
    reasons: tuple[str, ...]
    findings: Mapping[str, int]
    malware_name: str | None
    file_types: tuple[str, ...]
    detail: str
    unscannable: Unscannable | None = None
    malware_path: str | None = None
    parts_scanned: int = 0
    places: Mapping[str, Mapping[str, int]] = field(default_factory=lambda: MappingProxyType({}))


def scan_content(data: bytes, filename: str | None, content_type: str | None, dlp: DlpPolicy | None,
                 signatures: BuiltinSignatures, limits: ExtractionLimits | None = None) -> ContentVerdict:
    """The verdict on a complete body (an upload or a download, with its name and Content-Type)."""
    tally = _Tally(dlp)
    types: dict[str, None] = {}
    unscannable: Unscannable | None = None
    infected: tuple[str, str] | None = None
    scanned = 0
    parts = iter_parts(data, filename, content_type, limits)
    try:
        for item in parts:
            if isinstance(item, Unscannable):
                unscannable = item
                break
            scanned += 1
            types.setdefault(item.file_type.kind)
            found = signatures.scan(item.data)
            if found.infected:
                infected = (found.name or "malware", item.path)
                break           # blocked whatever else is inside
            tally.add(item)
    finally:
        parts.close()
    blocking = tally.blocking()
    reasons: list[str] = [MALWARE] if infected else []
    reasons.extend(dict.fromkeys(reason for reason in DLP_REASONS
                                 if any(tally.reasons[key] == reason for key in blocking)))
    if unscannable:
        reasons.append(UNSCANNABLE)
    sentences: list[str] = []
    if infected:
        sentences.append(f"{infected[0]} found in {_place(infected[1])}.")
    if blocking:
        sentences.append(f"Found {tally.describe(blocking)}.")
    if unscannable:
        sentences.append(f"Could not scan it all: {unscannable.detail}.")
    if not reasons:
        shown = ", ".join(types) or "nothing"
        sentences.append(f"Nothing to block in {scanned} part{'s' if scanned != 1 else ''} ({shown}).")
        reported = [key for key in tally.totals if key not in blocking]
        if reported:
            sentences.append(f"Reported, not blocking: {tally.describe(reported)}.")
    return ContentVerdict(
        allowed=not reasons, reason=reasons[0] if reasons else CLEAN, reasons=tuple(reasons),
        findings=MappingProxyType(dict(tally.totals)), malware_name=infected[0] if infected else None,
        file_types=tuple(types), detail=" ".join(sentences), unscannable=unscannable,
        malware_path=infected[1] if infected else None, parts_scanned=scanned,
        places=MappingProxyType({key: MappingProxyType(dict(where)) for key, where in tally.places.items()}))


def needs_whole_body(head: bytes, content_type: str | None) -> bool:
    """True when scan_content needs the complete body: a container by magic bytes (ZIP and the
    Office files in it, PDF, OLE2), JSON, HTML, forms and multipart bodies. False for plain text
    and opaque files, which DlpScanner and HashScanner can take chunk by chunk. `head` is the
    first bytes (HEAD_BYTES, or the whole body when shorter)."""
    media, _params = parse_media_type(content_type)
    if media.startswith("multipart/") or media in _WHOLE_MEDIA or media.endswith("+json"):
        return True
    return detect_file_type(head[:HEAD_BYTES]).kind in _WHOLE_KINDS


class _Tally:
    """DLP counts over the parts: totals by finding key, and by document for the detail."""

    def __init__(self, policy: DlpPolicy | None) -> None:
        self.policy = policy
        self.totals: dict[str, int] = {}
        self.places: dict[str, dict[str, int]] = {}
        self.reasons: dict[str, str] = {}
        self.block_at: dict[str, int | None] = {}

    def add(self, part: Part) -> None:
        if self.policy is None or not part.text:
            return
        for finding in scan_text(part.text, self.policy).findings:
            key = finding.detector if finding.rule is None else f"{finding.detector}:{finding.rule}"
            self.totals[key] = self.totals.get(key, 0) + finding.count
            where = self.places.setdefault(key, {})
            where[part.document] = where.get(part.document, 0) + finding.count
            self.reasons[key] = finding.reason
            self.block_at[key] = self._threshold(finding.detector, finding.rule)

    def _threshold(self, detector: str, rule_name: str | None) -> int | None:
        policy = self.policy
        assert policy is not None
        if rule_name is not None:
            return next((rule.block_at for rule in policy.keywords if rule.name == rule_name), None)
        rules: dict[str, DetectorRule | None] = {mynumber.NAME: policy.mynumber,
                                                 corporate_number.NAME: policy.corporate_number,
                                                 cards.NAME: policy.credit_card}
        rule = rules.get(detector)
        return rule.block_at if rule is not None else None

    def blocking(self) -> list[str]:
        return [key for key, count in self.totals.items()
                if (limit := self.block_at.get(key)) is not None and count >= limit]

    def describe(self, keys: list[str]) -> str:
        return "; ".join(f"{self.totals[key]} {_label(key, self.totals[key])} in {_places(self.places[key])}"
                         for key in keys)


def _label(key: str, count: int) -> str:
    detector, _, rule = key.partition(":")
    if detector == keywords.NAME:
        return f"match{'es' if count != 1 else ''} of keyword rule {rule!r}"
    singular, plural = _LABELS.get(detector, (detector, detector))
    return singular if count == 1 else plural


def _places(where: Mapping[str, int]) -> str:
    if len(where) == 1:
        return _place(next(iter(where)))
    shown = [f"{_place(document)} ({count})" for document, count in list(where.items())[:MAX_PLACES_SHOWN]]
    more = len(where) - MAX_PLACES_SHOWN
    if more > 0:
        return ", ".join(shown) + f" and {more} more file{'s' if more != 1 else ''}"
    return ", ".join(shown[:-1]) + " and " + shown[-1]


def _place(path: str) -> str:
    return "the body" if path == ROOT else path
