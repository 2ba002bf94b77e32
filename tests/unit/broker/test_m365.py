"""broker/m365.py over Microsoft's real endpoint data (three versions, in the project's
../shared/data/m365-endpoints; see PROVENANCE.md there) and over malformed documents."""

from __future__ import annotations

import copy
import functools
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from broker.m365 import (
    SERVICE_AREAS,
    EndpointData,
    EndpointDataError,
    EndpointSet,
    diff_endpoint_data,
    parse_endpoint_data,
    parse_version_reply,
    render_diff,
)

DATA = Path(__file__).resolve().parents[3] / ".." / "shared" / "data" / "m365-endpoints"
FILES = {"2022": "worldwide_circa2021-2022_full_nebula.json",
         "2024": "worldwide_2024-04-17_full_slivertea.json",
         "2025": "worldwide_2025_noipv6_jonhadfield.json"}
needs_data = pytest.mark.skipif(
    not all((DATA / name).is_file() for name in FILES.values()),
    reason=f"the real Microsoft 365 endpoint files are not at {DATA} (they live in the project's "
           "../shared, which a plain clone of the repository does not have)")

# A small document in Microsoft's format, for the tests that must run without ../shared.
SYNTHETIC: list[dict[str, Any]] = [
    {"id": 1, "serviceArea": "Exchange", "serviceAreaDisplayName": "Exchange Online",
     "urls": ["outlook.office.com", "outlook.office365.com"],
     "ips": ["13.107.6.152/31", "2603:1006::/40"], "tcpPorts": "80,443", "udpPorts": "443",
     "expressRoute": True, "category": "Optimize", "required": True},
    {"id": 11, "serviceArea": "Skype", "serviceAreaDisplayName": "Microsoft Teams",
     "ips": ["52.112.0.0/14"], "udpPorts": "3478,3479,3480,3481", "expressRoute": True,
     "category": "Optimize", "required": True},
    {"id": 46, "serviceArea": "Common", "serviceAreaDisplayName": "Microsoft 365 Common and Office",
     "urls": ["*-files.sharepoint.com", "autodiscover.*.onmicrosoft.com"], "tcpPorts": "443",
     "expressRoute": False, "category": "Default", "required": False, "notes": "CDN"},
]


@functools.cache
def raw(version: str) -> bytes:
    return (DATA / FILES[version]).read_bytes()


@functools.cache
def real(version: str) -> EndpointData:
    return parse_endpoint_data(raw(version))


def sample_document() -> list[dict[str, Any]]:
    """The 2024 data when ../shared is there, else the synthetic document."""
    if all((DATA / name).is_file() for name in FILES.values()):
        return list(json.loads(raw("2024")))
    return copy.deepcopy(SYNTHETIC)


def parse_json(document: object) -> EndpointData:
    return parse_endpoint_data(json.dumps(document).encode())


# ---- the real files --------------------------------------------------------------------------

@needs_data
@pytest.mark.parametrize(("version", "sets", "optimize", "allow", "default", "urls", "ipv4", "ipv6",
                          "max_id"), [
    ("2022", 107, 3, 12, 92, 354, 90, 204, 160),
    ("2024", 72, 3, 7, 62, 221, 56, 77, 184),
    ("2025", 63, 3, 7, 53, 199, 51, 0, 193),
])
def test_real_files_parse_with_the_counts_of_provenance(
        version: str, sets: int, optimize: int, allow: int, default: int, urls: int, ipv4: int,
        ipv6: int, max_id: int) -> None:
    data = real(version)
    assert len(data.sets) == sets and min(data.ids) == 1 and max(data.ids) == max_id
    assert data.category_counts() == {"Optimize": optimize, "Allow": allow, "Default": default}
    assert data.url_count == urls
    assert (data.ip_count - data.ipv6_count, data.ipv6_count) == (ipv4, ipv6)
    assert data.sha256 == hashlib.sha256(raw(version)).hexdigest()
    assert {s.service_area for s in data.sets} == set(SERVICE_AREAS)


@needs_data
def test_real_sets_are_read_field_by_field() -> None:
    data = real("2024")
    first = data.by_id(1)
    assert first is not None and data.by_id(999) is None
    assert (first.service_area, first.display_name, first.category) == ("Exchange", "Exchange Online",
                                                                        "Optimize")
    assert first.urls == ("outlook.cloud.microsoft", "outlook.office.com", "outlook.office365.com")
    assert first.ips[0] == "13.107.6.152/31" and "2603:1006::/40" in first.ips
    assert (first.tcp_ports, first.udp_ports) == (((80, 80), (443, 443)), ((443, 443),))
    assert first.required and first.express_route and first.notes == ""
    # Microsoft writes '143, 587, 993, 995' with spaces, '443,80', and single ports for a range.
    ports = {s.id: (s.tcp_ports, s.udp_ports) for s in data.sets}
    assert ports[2] == (((143, 143), (587, 587), (993, 993), (995, 995)), ())
    assert ports[11] == ((), ((3478, 3481),))
    assert ports[184] == (((80, 80), (443, 443)), ())


@needs_data
@pytest.mark.parametrize("version", sorted(FILES))
def test_sets_written_back_in_microsofts_format_read_back_equal(version: str) -> None:
    data = real(version)
    again = parse_json([s.to_json_dict() for s in data.sets])
    assert again.sets == data.sets


@needs_data
def test_2025_direct_sets_match_an_independent_export_of_the_live_api() -> None:
    """MDI-JF/ms-endpoints' per-category lists (2025-11) hold exactly our Optimize and Allow
    URLs and IPv4 networks of the 2025 file, per service area."""
    lists = DATA / "derived-lists-MDI-JF-2025-11" / "lists" / "ms365"
    if not lists.is_dir():
        pytest.skip(f"{lists} is absent")
    data = real("2025")
    for category, short in (("Optimize", "opt"), ("Allow", "allow")):
        for area in SERVICE_AREAS:
            sets = [s for s in data.sets if s.category == category and s.service_area == area]
            for kind, ours in (("url", {u for s in sets for u in s.urls}),
                               ("ipv4", {ip for s in sets for ip in s.ips if ":" not in ip})):
                path = lists / f"ms365_{area.lower()}_{kind}_{short}.txt"
                listed = set(path.read_text().split()) if path.exists() else set()
                assert ours == listed, (category, area, kind)


@needs_data
def test_diff_2022_to_2024_consolidation() -> None:
    diff = diff_endpoint_data(real("2022"), real("2024"))
    removed = [s.id for s in diff.removed]
    assert removed == [3, 5, 6, 13, 15, 22, 26, 29, 38, 42, 52, 65, 72, 74, 82, 88, 98, 99, 100, 101,
                       102, 103, 106, 109, 110, 111, 112, 113, 115, 120, 123, 128, 148, 149, 150,
                       154, 157]
    assert len(removed) == 37  # PROVENANCE's hint
    assert [s.id for s in diff.added] == [180, 184]
    assert len(diff.changed) == 43 and diff.direct_categories_changed
    exchange_pop = next(c for c in diff.changed if c.id == 2)
    fields = {f.field: (f.old, f.new) for f in exchange_pop.fields}
    assert fields["tcpPorts"] == ("587", "143,587,993,995")
    assert fields["required"] == (True, False)
    # '443' → '443,80' is a change, but '443,80' and '80,443' are the same ports.
    assert {f.field: (f.old, f.new) for c in diff.changed if c.id == 71 for f in c.fields} == {
        "tcpPorts": ("443", "80,443")}


@needs_data
def test_diff_2024_to_2025_matches_the_reviewed_changes() -> None:
    # The 2025 copy was fetched without IPv6, so IPv6 networks are not compared.
    diff = diff_endpoint_data(real("2024"), real("2025"), ignore_ipv6=True)
    assert [s.id for s in diff.removed] == [18, 33, 41, 43, 44, 45, 67, 68, 105, 180]
    assert [s.id for s in diff.added] == [193]
    assert [c.id for c in diff.changed if c.urls_added or c.urls_removed] == [
        12, 16, 27, 32, 59, 64, 75, 92, 114, 125, 184]
    assert [c.id for c in diff.changed] == [11, 12, 16, 17, 19, 27, 31, 32, 47, 59, 64, 75, 92,
                                            114, 117, 118, 125, 127, 152, 184]

    def changed(field: str) -> dict[int, tuple[str | bool, str | bool]]:
        return {c.id: (f.old, f.new) for c in diff.changed for f in c.fields if f.field == field}

    assert changed("serviceAreaDisplayName") == {
        i: ("Skype for Business Online and Microsoft Teams", "Microsoft Teams")
        for i in (11, 12, 16, 17, 19, 27, 127)}
    assert changed("udpPorts") == {12: ("", "443"), 31: ("", "443"), 47: ("", "443"),
                                   184: ("", "443")}
    assert sorted(changed("notes")) == [19, 117, 118, 152]
    assert changed("tcpPorts") == {184: ("80,443", "443")}
    teams = next(c for c in diff.changed if c.id == 12)
    assert teams.urls_added == ("*.teams.cloud.microsoft", "teams.cloud.microsoft")
    assert teams.ips_removed == ("13.107.64.0/18", "52.238.119.141/32", "52.244.160.207/32")
    assert diff.direct_categories_changed and not diff.empty


@needs_data
def test_diff_without_ignoring_ipv6_reports_every_ipv6_network_gone() -> None:
    diff = diff_endpoint_data(real("2024"), real("2025"))
    gone = {ip for c in diff.changed for ip in c.ips_removed if ":" in ip}
    kept = {ip for s in real("2024").sets if s.id in {c.id for c in diff.changed} for ip in s.ips
            if ":" in ip}
    assert gone == kept and gone and not diff.ipv6_ignored


@needs_data
def test_render_diff_2024_to_2025() -> None:
    lines = render_diff(diff_endpoint_data(real("2024"), real("2025"), ignore_ipv6=True)).splitlines()
    assert lines[0] == "1 set(s) added, 10 removed, 20 changed; Optimize/Allow sets changed"
    assert "+ set 193 Common (Default): *.static.microsoft, *.usercontent.microsoft" in lines
    for set_id in (18, 33, 41, 43, 44, 45, 67, 68, 105, 180):
        assert sum(line.startswith(f"- set {set_id} ") for line in lines) == 1
    for set_id in (12, 16, 27, 32, 59, 64, 75, 92, 114, 125, 184):
        assert any(line.startswith(f"~ set {set_id} ") and " urls " in line for line in lines)
    assert ("~ set 12 Skype (Allow): urls +*.teams.cloud.microsoft +teams.cloud.microsoft; "
            "ips -13.107.64.0/18 -52.238.119.141/32 -52.244.160.207/32; serviceAreaDisplayName "
            "'Skype for Business Online and Microsoft Teams' → 'Microsoft Teams'; udpPorts (none) → 443"
            ) in lines
    assert "~ set 184 Common (Default): urls -*.static.microsoft -*.usercontent.microsoft; " \
           "tcpPorts 80,443 → 443; udpPorts (none) → 443" in lines


@needs_data
def test_render_cuts_long_lists() -> None:
    text = render_diff(diff_endpoint_data(real("2022"), real("2024")), limit=3)
    assert "~ set 116 Common (Default): urls -c.bing.com -c.live.com -cl2.apple.com (+14 more)" \
        in text.splitlines()


@needs_data
@pytest.mark.parametrize("version", sorted(FILES))
def test_diff_of_a_version_with_itself_is_empty(version: str) -> None:
    diff = diff_endpoint_data(real(version), real(version))
    assert diff.empty and not diff.direct_categories_changed
    assert render_diff(diff) == "no changes"
    assert diff.to_json_dict() == {"added": [], "removed": [], "changed": [],
                                   "directCategoriesChanged": False, "ipv6Ignored": False}


@needs_data
def test_diff_json_is_stable_and_serialisable() -> None:
    diff = diff_endpoint_data(real("2024"), real("2025"), ignore_ipv6=True)
    text = json.dumps(diff.to_json_dict(), sort_keys=True)
    again = diff_endpoint_data(real("2024"), real("2025"), ignore_ipv6=True)
    assert json.dumps(again.to_json_dict(), sort_keys=True) == text
    loaded = json.loads(text)
    assert [s["id"] for s in loaded["added"]] == [193]
    assert parse_json(loaded["removed"]).ids == (18, 33, 41, 43, 44, 45, 67, 68, 105, 180)
    teams = next(c for c in loaded["changed"] if c["id"] == 12)
    assert teams["urlsAdded"] == ["*.teams.cloud.microsoft", "teams.cloud.microsoft"]
    assert {"field": "udpPorts", "old": "", "new": "443"} in teams["fields"]
    assert loaded["directCategoriesChanged"] is True and loaded["ipv6Ignored"] is True


# ---- synthetic documents ---------------------------------------------------------------------

def with_set(**changes: Any) -> list[dict[str, Any]]:
    document = copy.deepcopy(SYNTHETIC)
    document[0].update(changes)
    return document


def test_direct_categories_changed_only_for_optimize_or_allow_sets() -> None:
    old = parse_json(SYNTHETIC)
    default_note = with_set()
    default_note[2]["notes"] = "new CDN"
    assert not diff_endpoint_data(old, parse_json(default_note)).direct_categories_changed
    promoted = with_set()
    promoted[2]["category"] = "Allow"
    diff = diff_endpoint_data(old, parse_json(promoted))
    assert diff.direct_categories_changed
    assert [(f.field, f.old, f.new) for f in diff.changed[0].fields] == [
        ("category", "Default", "Allow")]
    assert not diff_endpoint_data(old, parse_json(SYNTHETIC[:2])).direct_categories_changed
    assert diff_endpoint_data(old, parse_json(SYNTHETIC[1:])).direct_categories_changed


def test_what_is_tolerated_and_normalised() -> None:
    document = with_set(urls=["Outlook.Office.COM", "outlook.office.com"], ips=["13.107.6.153/31"],
                        tcpPorts="443, 80", udpPorts="", notes=None, addedLater={"x": [1]})
    del document[0]["required"]
    data = parse_endpoint_data(b"\xef\xbb\xbf" + json.dumps(document).encode())  # with a BOM
    first = data.sets[0]
    assert first.urls == ("outlook.office.com",)
    assert first.ips == ("13.107.6.152/31",)
    assert (first.tcp_ports, first.udp_ports) == (((80, 80), (443, 443)), ())
    assert (first.notes, first.required) == ("", False)
    assert data.sets[2].urls == ("*-files.sharepoint.com", "autodiscover.*.onmicrosoft.com")
    assert parse_json(with_set(tcpPorts="3478-3481,50000,3482")).sets[0].tcp_ports == (
        (3478, 3482), (50000, 50000))


def documents_with_bad_ip_at_12_3() -> list[dict[str, Any]]:
    document = [dict(SYNTHETIC[2], id=i + 1) for i in range(13)]
    document[12]["ips"] = ["1.2.3.0/24", "1.2.4.0/24", "1.2.5.0/24", "1.2.3"]
    return document


BAD: list[tuple[str, bytes | list[Any], str]] = [
    ("empty", b"", "$: not valid JSON: Expecting value at line 1 column 1"),
    ("latin-1", b'[{"notes": "\xe9"}]', "$: not UTF-8 (bad byte at offset 12)"),
    ("html", b"<html>", "$: not valid JSON"),
    ("NaN", b"[NaN]", "$: not valid JSON: NaN is not a JSON number"),
    ("deep", b"[" * 100_000 + b"]" * 100_000, "$: not valid JSON"),
    ("object", b'{"id": 1}', "$: expected a JSON array of endpoint sets, got an object"),
    ("empty array", b"[]", "$: the array holds no endpoint sets"),
    ("not a set", [1], "[0]: expected an endpoint set (an object), got a number"),
    ("no id", [{k: v for k, v in SYNTHETIC[0].items() if k != "id"}],
     "[0].id: required key is missing"),
    ("bool id", with_set(id=True), "[0].id: expected a whole number, got a boolean"),
    ("float id", with_set(id=1.0), "[0].id: expected a whole number, got a number"),
    ("string id", with_set(id="1"), "[0].id: expected a whole number, got a string"),
    ("zero id", with_set(id=0), "[0].id: expected 1..2147483647, got 0"),
    ("duplicate id", with_set(id=46), "[2].id: duplicate id 46 (also at [0])"),
    ("category", with_set(category="Fast"), "[0].category: expected Optimize, Allow or Default, got 'Fast'"),
    ("no category", [{k: v for k, v in SYNTHETIC[0].items() if k != "category"}],
     "[0].category: required key is missing"),
    ("null category", with_set(category=None), "[0].category: expected Optimize, Allow or Default, got None"),
    ("service area", with_set(serviceArea="Teams"),
     "[0].serviceArea: expected Exchange, Skype, SharePoint or Common, got 'Teams'"),
    ("display name", with_set(serviceAreaDisplayName=[]),
     "[0].serviceAreaDisplayName: expected a string, got an array"),
    ("notes", with_set(notes=5), "[0].notes: expected a string, got a number"),
    ("surrogate", b'[{"id": 1, "serviceArea": "Common", "category": "Default", "notes": "\\ud800"}]',
     "[0].notes: holds a lone surrogate"),
    ("urls string", with_set(urls="outlook.office.com"),
     "[0].urls: expected an array of strings, got a string"),
    ("url number", with_set(urls=["a.com", 1]), "[0].urls[1]: expected a string, got a number"),
    ("url scheme", with_set(urls=["https://outlook.office.com/"]), "[0].urls[0]: not a host pattern"),
    ("url space", with_set(urls=["outlook office.com"]), "[0].urls[0]: not a host pattern"),
    ("url empty", with_set(urls=[""]), "[0].urls[0]: not a host pattern"),
    ("url dots", with_set(urls=["outlook..com"]), "[0].urls[0]: empty label"),
    ("url star", with_set(urls=["*"]), "[0].urls[0]: the last two labels must be a plain domain"),
    ("url tld", with_set(urls=["*.com"]), "[0].urls[0]: the last two labels must be a plain domain"),
    ("url label", with_set(urls=["a" * 64 + ".com"]), "[0].urls[0]: label longer than 63"),
    ("url unicode", with_set(urls=["関守.jp"]), "[0].urls[0]: not a host pattern"),
    ("ips", documents_with_bad_ip_at_12_3(), "[12].ips[3]: not an IP network: '1.2.3'"),
    ("ip object", with_set(ips=[{}]), "[0].ips[0]: expected a string, got an object"),
    ("ip scope", with_set(ips=["fe80::1%eth0/128"]), "[0].ips[0]: not an IP network"),
    ("ip prefix", with_set(ips=["1.2.3.0/33"]), "[0].ips[0]: not an IP network"),
    ("ip broad", with_set(ips=["0.0.0.0/0"]), "[0].ips[0]: 0.0.0.0/0 is broader than /8"),
    ("ipv6 broad", with_set(ips=["2000::/3"]), "[0].ips[0]: 2000::/3 is broader than /16"),
    ("ports type", with_set(tcpPorts=443), "[0].tcpPorts: expected a port list like '80,443', got a number"),
    ("ports sep", with_set(tcpPorts="80;443"), "[0].tcpPorts: expected a port list like"),
    ("ports empty item", with_set(tcpPorts="80,,443"), "[0].tcpPorts: expected a port list like"),
    ("port zero", with_set(tcpPorts="0"), "[0].tcpPorts: port outside 1..65535 in '0'"),
    ("port high", with_set(udpPorts="443,65536"), "[0].udpPorts: port outside 1..65535"),
    ("port backwards", with_set(udpPorts="3481-3478"), "[0].udpPorts: range 3481-3478 runs backwards"),
    ("port digits", with_set(udpPorts="٤٤٣"), "[0].udpPorts: expected a port list like"),
    ("required", with_set(required="yes"), "[0].required: expected true or false, got a string"),
    ("express route", with_set(expressRoute=1), "[0].expressRoute: expected true or false, got a number"),
]


@pytest.mark.parametrize(("document", "message"), [(d, m) for _, d, m in BAD],
                         ids=[name for name, _, _ in BAD])
def test_bad_documents_name_the_bad_field(document: bytes | list[Any], message: str) -> None:
    body = document if isinstance(document, bytes) else json.dumps(document).encode()
    with pytest.raises(EndpointDataError) as caught:
        parse_endpoint_data(body)
    assert str(caught.value).startswith(message), str(caught.value)


def test_size_limit_and_input_type() -> None:
    body = json.dumps(SYNTHETIC).encode()
    assert len(parse_endpoint_data(body, max_bytes=len(body)).sets) == 3
    with pytest.raises(EndpointDataError, match=rf"^\$: {len(body)} bytes is more than the limit of 100$"):
        parse_endpoint_data(body, max_bytes=100)
    with pytest.raises(EndpointDataError, match=r"^\$: expected bytes, got str$"):
        parse_endpoint_data(body.decode())  # type: ignore[arg-type]


def test_long_values_are_cut_in_messages() -> None:
    with pytest.raises(EndpointDataError) as caught:
        parse_json(with_set(category="x" * 10_000))
    assert len(str(caught.value)) < 150


@pytest.mark.parametrize(("reply", "instance", "latest"), [
    (b'{"instance": "Worldwide", "latest": "2024041700"}', "Worldwide", "2024041700"),
    (b'{"instance": "Worldwide", "latest": "2024041700"}', "worldwide", "2024041700"),
    (b'{"instance": "Worldwide", "latest": "2024041700"}', None, "2024041700"),
    (b'{"latest": "2025011000", "extra": 1}', "Worldwide", "2025011000"),
    (b'[{"instance": "China", "latest": "2023010100"}, {"instance": "Worldwide", '
     b'"latest": "2024041700"}]', "Worldwide", "2024041700"),
])
def test_version_replies(reply: bytes, instance: str | None, latest: str) -> None:
    assert parse_version_reply(reply, instance) == latest


@pytest.mark.parametrize(("reply", "message"), [
    (b'[{"instance": "Worldwide", "latest": "2024041700"}]', None),
    (b'{"instance": "Worldwide", "latest": "2024"}', "latest: expected 10 digits (yyyymmddnn), got '2024'"),
    (b'{"instance": "Worldwide", "latest": 2024041700}', "latest: expected 10 digits"),
    (b'{"instance": "Worldwide"}', "latest: expected 10 digits (yyyymmddnn), got None"),
    (b'{"instance": "China", "latest": "2024041700"}', "instance: expected 'Worldwide', got 'China'"),
    (b'{"instance": 3, "latest": "2024041700"}', "instance: expected 'Worldwide', got 3"),
    (b'[{"instance": "China", "latest": "2023010100"}]', "$: the reply has no entry for instance"),
    (b'[{"instance": "China"}, {"instance": "Worldwide", "latest": "x"}]', "[1].latest: expected 10"),
    (b"null", "$: expected an object"),
    (b"<html>", "$: not valid JSON"),
    (b"{" * 70_000, "$: 70000 bytes is more than the limit of 65536"),
])
def test_bad_version_replies(reply: bytes, message: str | None) -> None:
    """`None`: a list of instances is refused when no instance is asked for."""
    with pytest.raises(EndpointDataError) as caught:
        parse_version_reply(reply, "Worldwide" if message else None)
    assert str(caught.value).startswith(message or "$: the reply lists several instances")


# ---- properties ------------------------------------------------------------------------------

KNOWN_KEYS = ["id", "serviceArea", "serviceAreaDisplayName", "urls", "ips", "tcpPorts", "udpPorts",
              "expressRoute", "category", "required", "notes"]
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20)
near_sets = st.dictionaries(
    st.sampled_from(KNOWN_KEYS + ["other"]),
    json_values | st.sampled_from(["Common", "Default", "Allow", "443", "80,443", "a.com", "1.2.3.0/24"])
    | st.lists(st.sampled_from(["a.com", "*.b.com", "1.2.3.4", "::1", "x y"]), max_size=3),
    max_size=11)


def parses_or_fails_cleanly(body: bytes) -> None:
    """Both parsers either succeed or raise EndpointDataError, whose message starts with a path."""
    try:
        data = parse_endpoint_data(body)
        assert data.sets and all(isinstance(s, EndpointSet) for s in data.sets)
    except EndpointDataError as exc:
        assert str(exc).split(": ")[0], exc
    try:
        assert len(parse_version_reply(body, "Worldwide")) == 10
    except EndpointDataError as exc:
        assert str(exc).split(": ")[0], exc


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=300))
def test_arbitrary_bytes_raise_only_endpoint_data_error(body: bytes) -> None:
    parses_or_fails_cleanly(body)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(json_values)
def test_arbitrary_json_raises_only_endpoint_data_error(value: Any) -> None:
    parses_or_fails_cleanly(json.dumps(value).encode())


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(near_sets, min_size=1, max_size=4))
def test_documents_of_almost_endpoint_sets_raise_only_endpoint_data_error(
        document: list[dict[str, Any]]) -> None:
    parses_or_fails_cleanly(json.dumps(document).encode())


WRONG_TYPES = {
    "id": json_values.filter(lambda v: isinstance(v, bool) or not isinstance(v, int)),
    "serviceArea": json_values.filter(lambda v: v not in SERVICE_AREAS),
    "category": json_values.filter(lambda v: v not in ("Optimize", "Allow", "Default")),
    **{key: json_values.filter(lambda v: v is not None and not isinstance(v, list))
       for key in ("urls", "ips")},
    **{key: json_values.filter(lambda v: v is not None and not isinstance(v, str))
       for key in ("serviceAreaDisplayName", "notes", "tcpPorts", "udpPorts")},
    **{key: json_values.filter(lambda v: v is not None and not isinstance(v, bool))
       for key in ("expressRoute", "required")},
}


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_a_wrong_value_in_a_real_set_is_reported_at_that_set(data: st.DataObject) -> None:
    document = sample_document()
    index, key = data.draw(st.integers(0, len(document) - 1)), data.draw(st.sampled_from(sorted(WRONG_TYPES)))
    document[index][key] = data.draw(WRONG_TYPES[key], label="value")
    with pytest.raises(EndpointDataError) as caught:
        parse_json(document)
    assert str(caught.value).startswith(f"[{index}].{key}"), str(caught.value)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_a_wrong_element_in_a_real_set_is_reported_at_that_element(data: st.DataObject) -> None:
    document = sample_document()
    index, key = data.draw(st.integers(0, len(document) - 1)), data.draw(st.sampled_from(["urls", "ips"]))
    values = document[index].setdefault(key, [])
    position = data.draw(st.integers(0, len(values)), label="position")
    bad_strings = {"urls": ["", "x y", "http://a.com", "*", "a.com/"],
                   "ips": ["", "x y", "1.2.3", "a.com", "1.2.3.4/40"]}[key]
    values.insert(position, data.draw(json_values.filter(lambda v: not isinstance(v, str))
                                      | st.sampled_from(bad_strings)))
    with pytest.raises(EndpointDataError) as caught:
        parse_json(document)
    assert str(caught.value).startswith(f"[{index}].{key}[{position}]: "), str(caught.value)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_deleting_keys_of_a_real_set(data: st.DataObject) -> None:
    document = sample_document()
    index, key = data.draw(st.integers(0, len(document) - 1)), data.draw(st.sampled_from(KNOWN_KEYS))
    document[index].pop(key, None)
    if key in ("id", "serviceArea", "category"):
        with pytest.raises(EndpointDataError, match=rf"^\[{index}\]\.{key}: required key is missing$"):
            parse_json(document)
        return
    field, empty = {"tcpPorts": ("tcp_ports", ()), "udpPorts": ("udp_ports", ()), "urls": ("urls", ()),
                    "ips": ("ips", ()), "notes": ("notes", ""), "required": ("required", False),
                    "serviceAreaDisplayName": ("display_name", ""),
                    "expressRoute": ("express_route", False)}[key]
    assert getattr(parse_json(document).sets[index], field) == empty
