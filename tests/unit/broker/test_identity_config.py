"""broker/identity_config.py: the [identity] section, its errors and step-up matching."""

from __future__ import annotations

from typing import Any

import pytest

from broker.identity_config import parse_identity_config
from ztcore.errors import ConfigError

DIRECTORY = {"tenant": "city-a", "name": "ad", "servers": ["ldaps://dc1.city-a.example"],
             "base_dn": "DC=city-a,DC=example", "bind_dn": "svc@city-a.example",
             "bind_password": "secret"}
OIDC = {"tenant": "city-a", "name": "entra", "issuer": "https://login.example.com/t/v2.0",
        "client_id": "sekimori", "redirect_uri": "http://127.0.0.1:53682/callback"}


def test_defaults_require_login_and_mfa_with_no_method() -> None:
    config = parse_identity_config({})
    assert config.require_login and config.require_mfa
    assert config.directories == () and config.oidc == () and config.max_mfa_age_for("x") is None


def test_methods_per_tenant_and_step_up_rules() -> None:
    config = parse_identity_config({
        "directory": [DIRECTORY], "oidc": [OIDC],
        "step_up": [{"hosts": ["tax.city-a.example", "*.mynumber.example"], "max_mfa_age_seconds": 900},
                    {"hosts": ["tax.city-a.example"], "max_mfa_age_seconds": 300}]})
    assert [d.name for d in config.directories_for("city-a")] == ["ad"]
    assert [o.name for o in config.oidc_for("city-a")] == ["entra"]
    assert config.directories_for("city-b") == ()
    assert config.max_mfa_age_for("tax.city-a.example") == 300            # the strictest
    assert config.max_mfa_age_for("a.mynumber.example") == 900
    assert config.max_mfa_age_for("mynumber.example") is None              # *. is below only
    assert config.max_mfa_age_for("evilmynumber.example") is None


@pytest.mark.parametrize(("raw", "message"), [
    ({"require_mfa": "yes"}, "identity.require_mfa"),
    ({"colour": 1}, "identity.colour: unknown setting"),
    ({"token_lifetime_seconds": 0}, "identity.token_lifetime_seconds"),
    ({"token_lifetime_seconds": 7200, "max_session_seconds": 3600}, "at most"),
    ({"directory": {"tenant": "x"}}, "array of tables"),
    ({"directory": [{**DIRECTORY, "tenant": "City A"}]}, "identity.directory[0].tenant"),
    ({"directory": [{**DIRECTORY, "name": "AD!"}]}, "identity.directory[0].name"),
    ({"directory": [{**DIRECTORY, "servers": ["ldap://dc1"]}]}, "identity.directory[0].servers"),
    ({"directory": [DIRECTORY, DIRECTORY]}, "two login methods named 'ad'"),
    ({"directory": [{**DIRECTORY, "name": "entra"}], "oidc": [OIDC]}, "two login methods"),
    ({"oidc": [{**OIDC, "issuer": "ftp://x"}]}, "identity.oidc[0]"),
    ({"step_up": [{"hosts": []}]}, "identity.step_up[0].hosts"),
    ({"step_up": [{"hosts": ["a.*.example"]}]}, "leading"),
    ({"step_up": [{"hosts": ["a"], "max_mfa_age_seconds": -1}]}, "max_mfa_age_seconds"),
    ({"step_up": [{"hosts": ["a"], "when": 1}]}, "when: unknown"),
])
def test_a_bad_identity_section_names_the_field(raw: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")
                       .replace("*", r"\*").replace(".", r"\.")):
        parse_identity_config(raw)
