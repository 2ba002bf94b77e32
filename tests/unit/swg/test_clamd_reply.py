"""swg/clamd_reply.py: clamd's replies as verdicts (table-driven, from clamd 1.4.6's own words),
address strings and configuration, INSTREAM framing; Hypothesis: no reply makes the parser raise,
and the frames always carry the body back."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from swg.clamd_reply import (
    END_OF_STREAM,
    ClamdAddress,
    ClamdConfig,
    ClamdReplyError,
    ClamdVerdict,
    instream_frames,
    parse_address,
    parse_ping_reply,
    parse_scan_reply,
    parse_version_reply,
)
from ztcore.errors import ConfigError
from ztcore.reasons import Reason

FOUND, UNAVAILABLE, UNSCANNABLE = (Reason.MALWARE_DETECTED, Reason.MALWARE_SCANNER_UNAVAILABLE,
                                   Reason.CONTENT_UNSCANNABLE)


@pytest.mark.parametrize("reply,outcome,signature,reason", [
    (b"stream: OK\0", "clean", None, None),
    (b"stream: OK", "clean", None, None),                       # no NUL: the connection closed
    (b"stream: OK\0\0", "clean", None, None),
    (b"stream: OK \n\0", "clean", None, None),
    (b"stream: Sekimori.Test.EICAR.UNOFFICIAL FOUND\0", "infected", "Sekimori.Test.EICAR.UNOFFICIAL", FOUND),
    (b"stream: Win.Test.EICAR_HDB-1 FOUND\0", "infected", "Win.Test.EICAR_HDB-1", FOUND),
    (b"stream: Doc.Dropper.Agent-1 (a1b2:123) FOUND\0", "infected", "Doc.Dropper.Agent-1 (a1b2:123)", FOUND),
    # limits and encryption: clamd read the body but could not scan all of it
    (b"stream: Heuristics.Limits.Exceeded.MaxFileSize FOUND\0", "unscannable", None, UNSCANNABLE),
    (b"stream: Heuristics.Encrypted.Zip FOUND\0", "unscannable", None, UNSCANNABLE),
    (b"INSTREAM size limit exceeded. ERROR\0", "unscannable", None, UNSCANNABLE),
    (b"stream: Bad format or broken data ERROR\0", "unscannable", None, UNSCANNABLE),
    (b"stream: Can't parse data ERROR\0", "unscannable", None, UNSCANNABLE),
    # clamd's own troubles, and replies that are not INSTREAM's
    (b"stream: Can't allocate memory ERROR\0", "unscannable", None, UNAVAILABLE),
    (b"stream: Can't create temporary file ERROR\0", "unscannable", None, UNAVAILABLE),
    (b"COMMAND READ TIMED OUT\0", "unscannable", None, UNAVAILABLE),
    (b"UNKNOWN COMMAND\0", "unscannable", None, UNAVAILABLE),
    (b"", "unscannable", None, UNAVAILABLE),
    (b"\0", "unscannable", None, UNAVAILABLE),
    (b"PONG\0", "unscannable", None, UNAVAILABLE),
    (b"stream:  FOUND\0", "unscannable", None, UNAVAILABLE),
    (b"stream: bad\x07name FOUND\0", "unscannable", None, UNAVAILABLE),
    (b"stream: " + b"A" * 500 + b" FOUND\0", "unscannable", None, UNAVAILABLE),
    (b"\xff\xfe garbage", "unscannable", None, UNAVAILABLE),
    (b"file: OK\0", "unscannable", None, UNAVAILABLE),
])
def test_scan_replies(reply: bytes, outcome: str, signature: str | None, reason: Reason | None) -> None:
    verdict = parse_scan_reply(reply)
    assert (verdict.outcome, verdict.signature, verdict.reason) == (outcome, signature, reason)
    assert verdict.reasons == (() if reason is None else (reason.value,))
    assert (verdict.detail == "") == (outcome == "clean")


def test_size_limit_detail_names_the_setting() -> None:
    assert "StreamMaxLength" in parse_scan_reply(b"INSTREAM size limit exceeded. ERROR\0").detail


def test_verdict_constructors() -> None:
    assert ClamdVerdict.clean().reasons == ()
    assert ClamdVerdict.found("X").reasons == ("malware-detected",)
    assert ClamdVerdict.unavailable("down").reasons == ("malware-scanner-unavailable",)
    assert ClamdVerdict.not_scannable("big").reasons == ("content-unscannable",)
    assert len(ClamdVerdict.unavailable("x" * 10_000).detail) <= 300


@given(st.binary(max_size=600))
def test_any_reply_gives_a_verdict(reply: bytes) -> None:
    verdict = parse_scan_reply(reply)
    assert verdict.outcome in ("clean", "infected", "unscannable")
    assert (verdict.reason is None) == (verdict.outcome == "clean")
    assert (verdict.signature is not None) == (verdict.outcome == "infected")


@given(st.text(alphabet=st.characters(codec="utf-8"), max_size=300))
def test_any_found_line_gives_a_verdict(name: str) -> None:
    verdict = parse_scan_reply(f"stream: {name} FOUND\0".encode())
    assert verdict.outcome in ("infected", "unscannable")
    if verdict.outcome == "infected":
        assert verdict.signature and verdict.signature.isprintable()


def test_ping_and_version() -> None:
    assert parse_ping_reply(b"PONG\0")
    assert not parse_ping_reply(b"PANG\0")
    assert not parse_ping_reply(b"")
    bare = parse_version_reply(b"ClamAV 1.4.6\0")
    assert (bare.engine, bare.database_version, bare.database_date) == ("ClamAV 1.4.6", None, None)
    full = parse_version_reply(b"ClamAV 1.4.6/27580/Wed Mar 12 08:36:01 2025\0")
    assert (full.engine, full.database_version, full.database_date) == \
        ("ClamAV 1.4.6", 27580, "Wed Mar 12 08:36:01 2025")
    for bad in (b"", b"PONG\0", b"SSH-2.0-OpenSSH_9.6\r\n", b"ClamAV \x07\0"):
        with pytest.raises(ClamdReplyError, match="not a clamd VERSION reply"):
            parse_version_reply(bad)


@pytest.mark.parametrize("text,expected", [
    ("unix:/run/clamav/clamd.ctl", ClamdAddress("unix", path="/run/clamav/clamd.ctl")),
    ("tcp:127.0.0.1:3310", ClamdAddress("tcp", host="127.0.0.1", port=3310)),
    ("tcp:[::1]:3310", ClamdAddress("tcp", host="::1", port=3310)),
    ("tcp:clamd.internal:65535", ClamdAddress("tcp", host="clamd.internal", port=65535)),
])
def test_addresses(text: str, expected: ClamdAddress) -> None:
    assert parse_address(text) == expected
    assert str(expected) == text


@pytest.mark.parametrize("text,message", [
    ("/run/clamd.ctl", "is not 'unix:/path' or 'tcp:host:port'"),
    ("127.0.0.1:3310", "is not 'unix:/path' or 'tcp:host:port'"),
    ("udp:127.0.0.1:3310", "is not 'unix:/path' or 'tcp:host:port'"),
    ("unix:", "must be absolute"),
    ("unix:clamd.ctl", "must be absolute"),
    ("unix:/a\0b", "must be absolute"),
    ("unix:/" + "a" * 200, "longer than 107 bytes"),
    ("tcp:127.0.0.1", "needs a port"),
    ("tcp:127.0.0.1:", "needs a port"),
    ("tcp:127.0.0.1:0", "needs a port"),
    ("tcp:127.0.0.1:65536", "needs a port"),
    ("tcp:127.0.0.1:http", "needs a port"),
    ("tcp:127.0.0.1:٣٣١٠", "needs a port"),      # Arabic-Indic digits: isdigit, not a port
    ("tcp:::1:3310", "in brackets"),
    ("tcp:[127.0.0.1]:3310", "IPv6 addresses only"),
    ("tcp::3310", "not a host name"),
    ("tcp:bad host:3310", "not a host name"),
])
def test_bad_addresses(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        parse_address(text, "swg.clamd.address")
    assert str(caught.value).startswith("swg.clamd.address: ")


def test_bad_address_type() -> None:
    with pytest.raises(ConfigError, match="expected a string"):
        parse_address(3310)  # type: ignore[arg-type]


@pytest.mark.parametrize("changes,field", [
    ({"address": "tcp:x"}, "clamd.address"),
    ({"connect_timeout_seconds": 0}, "clamd.connect_timeout_seconds"),
    ({"scan_timeout_seconds": -1}, "clamd.scan_timeout_seconds"),
    ({"scan_timeout_seconds": True}, "clamd.scan_timeout_seconds"),
    ({"scan_timeout_seconds": "30"}, "clamd.scan_timeout_seconds"),
    ({"chunk_bytes": 0}, "clamd.chunk_bytes"),
    ({"chunk_bytes": 1 << 27}, "clamd.chunk_bytes"),
    ({"max_stream_bytes": 0}, "clamd.max_stream_bytes"),
])
def test_bad_config(changes: dict[str, object], field: str) -> None:
    values: dict[str, object] = {"address": "unix:/run/clamd.ctl", **changes}
    with pytest.raises(ConfigError, match=f"^{field}: "):
        ClamdConfig(**values)  # type: ignore[arg-type]


def test_config_defaults() -> None:
    config = ClamdConfig("tcp:127.0.0.1:3310")
    assert config.chunk_bytes == 1 << 20 and config.max_stream_bytes is None
    assert config.parsed_address == ClamdAddress("tcp", host="127.0.0.1", port=3310)


def test_frames_of_an_empty_body() -> None:
    assert [bytes(f) for f in instream_frames(b"", 4)] == [END_OF_STREAM]


def test_frames_layout() -> None:
    frames = [bytes(f) for f in instream_frames(b"abcdefghij", 4)]
    assert frames == [b"\0\0\0\x04", b"abcd", b"\0\0\0\x04", b"efgh", b"\0\0\0\x02", b"ij", END_OF_STREAM]


@given(st.binary(max_size=3000), st.integers(1, 1100))
def test_frames_carry_the_body(data: bytes, chunk_bytes: int) -> None:
    frames = [bytes(f) for f in instream_frames(bytearray(data), chunk_bytes)]
    assert frames[-1] == END_OF_STREAM
    body, pairs = b"", frames[:-1]
    assert len(pairs) % 2 == 0
    for header, chunk in zip(pairs[::2], pairs[1::2]):
        assert 1 <= int.from_bytes(header, "big") == len(chunk) <= chunk_bytes
        body += chunk
    assert body == data


def test_frames_refuse_a_zero_chunk() -> None:
    with pytest.raises(ValueError):
        list(instream_frames(b"x", 0))
