"""`[inspection]` (broker/inspection_config.py): defaults, and each bad field named by its path."""

from __future__ import annotations

from typing import Any

import pytest

from broker.inspection_config import BUILTIN_DO_NOT_DECRYPT, parse_inspection
from ztcore.errors import ConfigError


def test_defaults_are_off_with_the_builtin_bypass_list() -> None:
    config = parse_inspection({})
    assert not config.enabled and config.plain_http_ports == frozenset({80})
    assert config.bypass_patterns() == BUILTIN_DO_NOT_DECRYPT
    assert config.dlp.mynumber == 1 and config.dlp.corporate_number == 0
    assert config.tenant_restrictions is None
    assert "bank" in config.do_not_decrypt_categories and config.signature_mode == "alert-only"


def test_a_full_section() -> None:
    config = parse_inspection({
        "enabled": True, "do_not_decrypt": ["*.Bank.example"], "builtin_do_not_decrypt": False,
        "plain_http_ports": [80, 8080], "block_file_kinds": ["pe"], "clamd": "tcp:127.0.0.1:3310",
        "dlp": {"mynumber": 3}, "tenant_restrictions": {"allowed_tenants": ["city.example.lg.jp"],
                                                         "context_tenant_id": "abc"}})
    assert config.bypass_patterns() == ("*.bank.example",)
    assert config.plain_http_ports == frozenset({80, 8080}) and config.dlp.mynumber == 3
    assert config.tenant_restrictions is not None
    assert config.tenant_restrictions.allowed_tenants == ("city.example.lg.jp",)


@pytest.mark.parametrize("table, path", [
    ({"enabled": "yes"}, "inspection.enabled"),
    ({"nonsense": 1}, "inspection.nonsense"),
    ({"plain_http_ports": [0]}, "inspection.plain_http_ports[0]"),
    ({"do_not_decrypt": ["bad host!"]}, "inspection.do_not_decrypt[0]"),
    ({"block_file_kinds": ["PE EXE"]}, "inspection.block_file_kinds[0]"),
    ({"clamd": "localhost:3310"}, "inspection.clamd"),
    ({"whole_scan_bytes": 10}, "inspection.whole_scan_bytes"),
    ({"whole_scan_bytes": 1 << 22, "max_buffer_bytes": 1 << 21}, "inspection.max_buffer_bytes"),
    ({"dlp": {"passport": 1}}, "inspection.dlp.passport"),
    ({"do_not_decrypt_categories": ["bank", "no way"]}, "inspection.do_not_decrypt_categories[1]"),
    ({"signature_mode": "block-some"}, "inspection.signature_mode"),
    ({"dlp": {"mynumber": -1}}, "inspection.dlp.mynumber"),
    ({"tenant_restrictions": {"allowed_tenants": []}}, "inspection.tenant_restrictions.allowed_tenants"),
])
def test_bad_fields_are_named(table: dict[str, Any], path: str) -> None:
    with pytest.raises(ConfigError, match=path.replace("[", r"\[").replace("]", r"\]")):
        parse_inspection(table)
