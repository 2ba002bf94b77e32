"""What the agent shows: the PAC file (agent/pac.py), the block page (ztcore/blockpage.py), and
the device identity helpers (agent/identity.py)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from html.parser import HTMLParser

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from hypothesis import given
from hypothesis import strategies as st

from agent import identity
from agent.pac import render_pac
from ztcore.blockpage import render_block
from ztcore.decision import deny
from ztcore.reasons import REASON_TEXT, Reason

DENY_REASONS = [r for r in Reason if r is not Reason.DESTINATION_ALLOWED]

# -- PAC ---------------------------------------------------------------------------------------------


def pac_results(pac: str) -> list[str]:
    return re.findall(r'return\s+"([^"]*)"', pac)


@pytest.mark.parametrize("host, port", [("127.0.0.1", 3128), ("127.0.0.1", 18080),
                                        ("localhost", 8080)])
def test_pac_sends_everything_else_to_the_agent_only(host: str, port: int) -> None:
    pac = render_pac(host, port)
    results = pac_results(pac)
    assert results == ["DIRECT", f"PROXY {host}:{port}"]
    # Fail closed: no "; DIRECT" (or any other) fallback after the proxy.
    assert ";" not in results[-1]
    assert pac.count("DIRECT") == 1
    assert "function FindProxyForURL(url, host)" in pac


def test_pac_direct_only_for_loopback() -> None:
    pac = render_pac("127.0.0.1", 3128)
    branch = pac[:pac.index('return "DIRECT"')]
    condition = branch[branch.rindex("if ("):]
    hosts = set(re.findall(r'host === "([^"]*)"', condition))
    assert hosts == {"localhost", "127.0.0.1", "[::1]", "::1"}


NODE = shutil.which("node")


@pytest.mark.skipif(NODE is None, reason="node is not installed")
def test_pac_evaluated_by_a_javascript_engine() -> None:
    """The PAC is JavaScript: ask a real engine what it returns (fast, no network)."""
    pac = render_pac("127.0.0.1", 3128)
    urls = [("http://example.jp/", "example.jp"), ("https://10.0.0.5/", "10.0.0.5"),
            ("http://localhost:8000/", "localhost"), ("http://127.0.0.1/", "127.0.0.1"),
            ("http://[::1]/", "::1"), ("https://127.0.0.2/", "127.0.0.2"),
            ("http://xn--eckwd4c7c.jp/", "xn--eckwd4c7c.jp")]
    script = pac + f"\nconsole.log(JSON.stringify({json.dumps(urls)}" \
                   ".map(([u, h]) => FindProxyForURL(u, h))));\n"
    out = subprocess.run([NODE, "-e", script], capture_output=True, text=True, timeout=30,  # type: ignore[list-item]
                         check=True).stdout
    assert json.loads(out) == ["PROXY 127.0.0.1:3128", "PROXY 127.0.0.1:3128", "DIRECT",
                               "DIRECT", "DIRECT", "PROXY 127.0.0.1:3128",
                               "PROXY 127.0.0.1:3128"]


def test_pac_brackets_an_ipv6_proxy_address() -> None:
    assert pac_results(render_pac("::1", 3128))[-1] == "PROXY [::1]:3128"


# -- block page -------------------------------------------------------------------------------

ALLOWED_TAGS = {"html", "head", "meta", "title", "body", "h1", "p", "code", "small", "br"}


class Page(HTMLParser):
    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[str] = []
        self.attrs: list[tuple[str, str | None]] = []
        self.text: list[str] = []
        self.feed(text)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.attrs += attrs

    def handle_data(self, data: str) -> None:
        self.text.append(data)

    @property
    def all_text(self) -> str:
        return "".join(self.text)


def _html(reason: Reason, target: str, detail: str = "", status: int = 403) -> tuple[str, Page]:
    body, ctype = render_block(deny(reason, status=status, detail=detail), target, True)
    assert ctype == b"text/html; charset=utf-8"
    text = body.decode("utf-8")
    return text, Page(text)


@pytest.mark.parametrize("reason", DENY_REASONS, ids=[r.value for r in DENY_REASONS])
def test_html_page_shows_both_languages_and_the_reason_code(reason: Reason) -> None:
    text, page = _html(reason, "example.jp:443")
    assert REASON_TEXT[reason].ja in page.all_text
    assert REASON_TEXT[reason].en in page.all_text
    assert page.all_text.count(reason.value) >= 2  # in the title and in the body
    assert "アクセスが遮断されました / Access blocked" in page.all_text
    assert "example.jp:443" in page.all_text
    assert '<html lang="ja">' in text and '<meta charset="utf-8">' in text


HOSTILE = [
    '<script>alert("x")</script>',
    '"><img src=x onerror=alert(1)>',
    "example.jp:443' onmouseover='alert(1)",
    "</code></p><h1>Your PC is infected</h1>",
    "&lt;already-escaped&gt; & friends",
]


@pytest.mark.parametrize("hostile", HOSTILE)
def test_html_page_escapes_target_and_detail(hostile: str) -> None:
    text, page = _html(Reason.PORT_NOT_ALLOWED, hostile, detail=hostile)
    assert set(page.tags) <= ALLOWED_TAGS
    assert page.tags.count("h1") == 1
    assert [name for name, _ in page.attrs] == ["lang", "charset"]
    assert page.all_text.count(hostile) == 2  # shown as text, once as target, once as detail
    assert "<script" not in text and "<img" not in text


@given(target=st.text(), detail=st.text())
def test_html_page_structure_does_not_depend_on_input(target: str, detail: str) -> None:
    _, page = _html(Reason.ADDRESS_PRIVATE, target, detail=detail)
    _, reference = _html(Reason.ADDRESS_PRIVATE, "t", detail="d" if detail else "")
    assert page.tags == reference.tags
    assert page.attrs == reference.attrs


def test_html_detail_paragraph_only_with_a_detail() -> None:
    _, without = _html(Reason.PORT_NOT_ALLOWED, "example.jp:25")
    _, with_detail = _html(Reason.PORT_NOT_ALLOWED, "example.jp:25", detail="port 25")
    assert "small" not in without.tags and "詳細 / detail" not in without.all_text
    assert "small" in with_detail.tags and "詳細 / detail: port 25" in with_detail.all_text


@pytest.mark.parametrize("detail", ["", "upstream refused"])
def test_text_page(detail: str) -> None:
    decision = deny(Reason.UPSTREAM_UNREACHABLE, status=502, detail=detail)
    body, ctype = render_block(decision, "example.jp:443", False)
    assert ctype == b"text/plain; charset=utf-8"
    lines = body.decode("utf-8").splitlines()
    expected = ["Sekimori: 502 upstream-unreachable",
                REASON_TEXT[Reason.UPSTREAM_UNREACHABLE].ja,
                REASON_TEXT[Reason.UPSTREAM_UNREACHABLE].en,
                "宛先 / destination: example.jp:443"]
    if detail:
        expected.append("詳細 / detail: upstream refused")
    assert lines == expected


# -- device identity ----------------------------------------------------------------------------

KEY = identity.new_key()


def test_new_key_is_p256() -> None:
    assert isinstance(KEY, ec.EllipticCurvePrivateKey)
    assert KEY.curve.name == "secp256r1"
    assert identity.new_key().private_numbers() != KEY.private_numbers()


def test_key_pem_round_trips_unencrypted_pkcs8() -> None:
    pem = identity.key_pem(KEY)
    assert pem.startswith(b"-----BEGIN PRIVATE KEY-----")
    loaded = serialization.load_pem_private_key(pem, password=None)
    assert loaded.private_numbers() == KEY.private_numbers()  # type: ignore[union-attr]


@pytest.mark.parametrize("hostname, cn", [
    ("laptop-17", "laptop-17"),
    ("窓口PC-01", "窓口PC-01"),
    ("", "device"),
    ("h" * 100, "h" * 64),  # RFC 5280 ub-common-name
])
def test_csr_is_valid_and_signed_by_the_key(hostname: str, cn: str) -> None:
    csr = x509.load_pem_x509_csr(identity.csr_pem(KEY, hostname))
    assert csr.is_signature_valid
    assert csr.public_key() == KEY.public_key()
    assert csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == cn


def test_csr_is_not_signed_by_another_key() -> None:
    other = identity.new_key()
    csr = x509.load_pem_x509_csr(identity.csr_pem(other, "laptop"))
    assert csr.public_key() != KEY.public_key()


# (not_before, not_after, now, due)
RENEWAL = [
    (0.0, 300.0, -10.0, False),  # not yet valid
    (0.0, 300.0, 0.0, False),
    (0.0, 300.0, 199.9, False),
    (0.0, 300.0, 200.0, True),  # two thirds exactly
    (0.0, 300.0, 250.0, True),
    (0.0, 300.0, 300.0, True),
    (0.0, 300.0, 10_000.0, True),  # expired: always due
    (1_750_000_000.0, 1_750_604_800.0, 1_750_403_199.0, False),  # a week: due after 4.67 days
    (1_750_000_000.0, 1_750_604_800.0, 1_750_403_200.0, True),
]


@pytest.mark.parametrize("not_before, not_after, now, due", RENEWAL)
def test_renewal_due(not_before: float, not_after: float, now: float, due: bool) -> None:
    assert identity.renewal_due(not_before, not_after, now) is due


@given(start=st.floats(0, 2e9), length=st.floats(1, 1e8), a=st.floats(0, 1), b=st.floats(0, 1))
def test_renewal_once_due_stays_due(start: float, length: float, a: float, b: float) -> None:
    early, late = sorted((start + a * 2 * length, start + b * 2 * length))
    if identity.renewal_due(start, start + length, early):
        assert identity.renewal_due(start, start + length, late)
    assert identity.renewal_due(start, start + length, start + length)  # at expiry
