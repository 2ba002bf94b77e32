"""The broker's side of TLS inspection: whether a flow is inspected, and opening it.

A flow is inspected when `[inspection] enabled`, the policy's obligations say inspect (or
sanitise), and the host is not on the do-not-decrypt list (the built-in list, the configured
patterns, the tenant's Microsoft 365 Optimize endpoints, the bank and health categories).
Opening it connects upstream first — TLS with full validation unless the port carries plain
HTTP — and only then hands the stream an interceptor with a leaf minted from the inspection CA.
A site refused before connecting (IOC, category, policy) gets an interceptor without upstream
that answers every request with the block page (`block_page`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from urllib.parse import urlsplit

from cryptography import x509

from broker.inspection_config import InspectionConfig
from swg.clamd_reply import ClamdConfig
from swg.dlp.scan import DetectorRule, DlpPolicy
from swg.httpsig import EMPTY_RULESET, HttpRequestView, HttpRuleset, blocking_hits
from swg.inspection import HttpRecord, InspectionSettings, TenantRestrictions
from swg.runtime.clamd import ClamdClient
from swg.runtime.content_scan import WholeBodyScanner
from swg.runtime.httpsig_import import import_rules
from swg.runtime.interceptor import Interceptor, RequestCheck
from swg.runtime.tls_intercept import LeafCache, client_context, connect_upstream
from swg.signatures import BuiltinSignatures
from swg.tls_leaf import CaKey
from swg.web_verdict import WebLists, file_signatures
from ztcore.breakout import BreakoutMatcher, BreakoutRule, BreakoutRules, RuleSource
from ztcore.decision import Decision, deny
from ztcore.reasons import Reason

log = logging.getLogger("sekimori.inspect")
# Refusals shown as a block page inside the site's own TLS session.
PAGE_REASONS = frozenset({Reason.IOC_MATCH, Reason.URL_CATEGORY_BLOCKED, Reason.POLICY_DENIED})


def _rule(threshold: int) -> DetectorRule | None:
    return DetectorRule(block_at=threshold if threshold > 0 else None)


def settings_from(config: InspectionConfig, signatures: BuiltinSignatures) -> InspectionSettings:
    dlp = DlpPolicy(mynumber=_rule(config.dlp.mynumber),
                    corporate_number=_rule(config.dlp.corporate_number),
                    credit_card=_rule(config.dlp.credit_card)) if config.dlp.enabled else None
    restrictions = config.tenant_restrictions
    return InspectionSettings(
        dlp=dlp, signatures=signatures, whole_scan_bytes=config.whole_scan_bytes,
        max_buffer_bytes=config.max_buffer_bytes, sanitise=config.sanitise_downloads,
        tenant_restrictions=TenantRestrictions(restrictions.allowed_tenants,
                                               restrictions.context_tenant_id)
        if restrictions else None,
        blocked_file_kinds=config.block_file_kinds)


class InspectionService:
    def __init__(self, config: InspectionConfig, ca_cert: x509.Certificate, ca_key: CaKey,
                 *, signatures: BuiltinSignatures | None = None,
                 optimize_rules: Callable[[str], BreakoutRules] | None = None,
                 scanner: WholeBodyScanner | None = None, connect_timeout_seconds: float = 10.0,
                 clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.ca_cert = ca_cert
        self.leaves = LeafCache(ca_cert, ca_key, clock, validity_seconds=config.leaf_validity_hours * 3600)
        self.client_ctx = client_context(config.upstream_ca_file or None)
        self.settings = settings_from(config, signatures or BuiltinSignatures.of(()))
        self.sanitising = replace(self.settings, sanitise=True)
        clamd = ClamdClient(ClamdConfig(config.clamd)) if config.clamd else None
        self.scanner = scanner or WholeBodyScanner(self.settings, clamd)
        self.connect_timeout_seconds = connect_timeout_seconds
        self._bypass = BreakoutMatcher(BreakoutRules("", "config", tuple(
            BreakoutRule(pattern, True, RuleSource.INCLUDE) for pattern in config.bypass_patterns())))
        self._optimize_rules = optimize_rules
        self._optimize: dict[str, tuple[str, BreakoutMatcher]] = {}
        self._signatures: dict[tuple[str, str], BuiltinSignatures] = {}
        self.signatures: HttpRuleset = EMPTY_RULESET
        if config.http_signatures:
            loaded = import_rules(Path(config.http_signatures))
            self.signatures = loaded.ruleset
            log.info("HTTP signatures from %s: %s (%.1f s)", config.http_signatures,
                     loaded.report.summary(), loaded.seconds)

    def check_signatures(self, method: str, url: str, headers: list[tuple[bytes, bytes]],
                         port: int) -> tuple[Decision | None, tuple[str, ...]]:
        """The HTTP signatures on a request's head: (a deny in an IPS mode, the sids hit)."""
        if not len(self.signatures):
            return None, ()
        parts = urlsplit(url)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        view = HttpRequestView.of(method, target, [(k.decode("latin-1"), v.decode("latin-1")) for k, v in headers],
                                  port=port, tls=parts.scheme == "https")
        hits = self.signatures.match(view)
        blocking = blocking_hits(hits, self.config.signature_mode)  # type: ignore[arg-type]
        sids = tuple(f"{h.sid}:{h.rev}" for h in hits)
        if blocking:
            hit = blocking[0]
            return deny(Reason.HTTP_SIGNATURE, detail=f"sid {hit.sid}: {hit.msg}"), sids
        return None, sids

    def do_not_decrypt(self, tenant: str, host: str, port: int,
                       categories: tuple[str, ...] = ()) -> str | None:
        """Why this host is passed through undecrypted, or None."""
        if self._bypass.route(host, port).direct:
            return "do-not-decrypt list"
        private = [c for c in categories if c in self.config.do_not_decrypt_categories]
        if private:
            return f"category {private[0]}"
        if self._optimize_rules is not None:
            rules = self._optimize_rules(tenant)
            cached = self._optimize.get(tenant)
            if cached is None or cached[0] != rules.version:
                optimize = BreakoutRules(tenant, rules.source_version, tuple(
                    r for r in rules.rules if r.source is RuleSource.M365 and r.category == "optimize"))
                cached = (rules.version, BreakoutMatcher(optimize))
                self._optimize[tenant] = cached
            match = cached[1].route(host, port)
            if match.direct and match.rule is not None:
                return f"Microsoft 365 Optimize ({match.rule.label})"
        return None

    def wants(self, tenant: str, obligations: str, host: str, port: int,
              categories: tuple[str, ...] = ()) -> bool:
        if not self.config.enabled:
            return False
        stances = set(obligations.split(",")) if obligations else set()
        if "sanitise" not in stances and "inspect" not in stances:
            return False
        return "sanitise" in stances or self.do_not_decrypt(tenant, host, port, categories) is None

    def signatures_for(self, tenant: str, lists: WebLists | None) -> BuiltinSignatures:
        """The built-in file signatures plus the tenant's SHA-256 IOCs (cached per lists version)."""
        if lists is None:
            return self.settings.signatures
        key = (tenant, lists.version)
        found = self._signatures.get(key)
        if found is None:
            if len(self._signatures) > 1000:
                self._signatures.clear()
            found = self._signatures[key] = file_signatures(lists, tenant, self.settings.signatures)
        return found

    async def open(self, host: str, port: int, addresses: list[str], *, sanitise: bool,
                   on_record: Callable[[HttpRecord], None],
                   check_request: RequestCheck | None = None,
                   signatures: BuiltinSignatures | None = None) -> tuple[Decision | None, Interceptor | None, str]:
        """Connect upstream and build the interceptor: (a deny, None, "") when the upstream
        failed, else (None, interceptor, the address used)."""
        plain = port in self.config.plain_http_ports
        refused, upstream = await connect_upstream(host, port, addresses, None if plain else self.client_ctx,
                                                   self.connect_timeout_seconds)
        if upstream is None:
            assert refused is not None
            return refused, None, ""
        server_ctx = None if plain else self.leaves.context_for(host, upstream.certificate)
        settings = self.sanitising if sanitise else self.settings
        if signatures is not None and signatures is not settings.signatures:
            settings = replace(settings, signatures=signatures)
        scan = self.scanner.with_settings(settings)
        client_ctx = None if plain else self.client_ctx

        async def connect() -> tuple[Decision | None, tuple[asyncio.StreamReader, asyncio.StreamWriter] | None]:
            refused, more = await connect_upstream(host, port, addresses, client_ctx,
                                                   self.connect_timeout_seconds)
            return refused, (more.reader, more.writer) if more is not None else None

        interceptor = Interceptor(host=host, port=port, server_ctx=server_ctx, reader=upstream.reader,
                                  writer=upstream.writer, settings=settings, scan_whole=scan.scan,
                                  on_record=on_record, check_request=check_request, connect=connect)
        return None, interceptor, upstream.address

    def block_page(self, host: str, port: int, refusal: Decision,
                   on_record: Callable[[HttpRecord], None]) -> Interceptor | None:
        """A site refused before connecting (IOC, category, policy), answered with the block page
        over a leaf for its name instead of a failed CONNECT that browsers show as a bare error.
        None where it cannot be shown (a do-not-decrypt host: a pinned app would refuse the leaf)."""
        if not self.config.enabled or refusal.reason not in PAGE_REASONS:
            return None
        plain = port in self.config.plain_http_ports
        server_ctx = None if plain else self.leaves.context_for(host, None)
        return Interceptor(host=host, port=port, server_ctx=server_ctx, reader=None, writer=None,
                           settings=self.settings, scan_whole=self.scanner.scan, on_record=on_record,
                           refusal=refusal)

    def close(self) -> None:
        self.leaves.close()
