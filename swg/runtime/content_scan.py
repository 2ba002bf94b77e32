"""The whole-body scan the interceptor calls: the content cores (file types, extraction, DLP,
built-in signatures), then clamd when configured, then sanitising of downloads where asked.

Large bodies are scanned in a worker thread so that one big upload does not stall every other
stream of the broker. Every failure blocks (fail closed) with its reason.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from swg.content.sanitise import sanitise
from swg.content.verdict import scan_content
from swg.inspection import InspectionSettings, block_decision
from swg.runtime.clamd import ClamdClient
from swg.runtime.exchange import BodyVerdict
from ztcore.decision import deny
from ztcore.reasons import Reason

INLINE_SCAN_BYTES = 256 * 1024   # smaller bodies are scanned on the event loop


@dataclass(frozen=True)
class WholeBodyScanner:
    settings: InspectionSettings
    clamd: ClamdClient | None = None

    def with_settings(self, settings: InspectionSettings) -> WholeBodyScanner:
        return WholeBodyScanner(settings, self.clamd)

    async def scan(self, body: bytes, filename: str | None, content_type: str | None,
                   upload: bool) -> BodyVerdict:
        settings = self.settings
        args = (body, filename, content_type, settings.dlp if upload else None, settings.signatures,
                settings.limits)
        verdict = (scan_content(*args) if len(body) <= INLINE_SCAN_BYTES
                   else await asyncio.to_thread(scan_content, *args))
        findings = dict(verdict.findings)
        if not verdict.allowed:
            return BodyVerdict(block_decision(verdict.reason, verdict.detail), b"", findings,
                               verdict.malware_name)
        if self.clamd is not None:
            found = await self.clamd.scan(body)
            if found.reason is not None:
                decision = (deny(found.reason, detail=found.detail) if found.reason is not Reason.MALWARE_DETECTED
                            else deny(Reason.MALWARE_DETECTED, detail=f"{found.signature} (clamd)"))
                return BodyVerdict(decision, b"", findings, found.signature)
        if upload or not settings.sanitise:
            return BodyVerdict(None, body, findings)
        cleaned = (sanitise(body, filename, settings.limits) if len(body) <= INLINE_SCAN_BYTES
                   else await asyncio.to_thread(sanitise, body, filename, settings.limits))
        if cleaned.failed:
            return BodyVerdict(deny(Reason.SANITISE_FAILED, detail=cleaned.detail), b"", findings)
        return BodyVerdict(None, cleaned.data, findings, sanitised=cleaned.actions,
                           new_filename=cleaned.new_filename)
