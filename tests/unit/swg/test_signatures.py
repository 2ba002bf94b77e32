"""swg/signatures.py: the EICAR rules (exact, trailing whitespace, anything else, every chunk split),
the hash-list format with its bad lines, and Hypothesis checks of the streaming scanner against
hashlib and a whole-body reference."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from swg.signatures import (
    EICAR,
    EICAR_NAME,
    REASON,
    BadLine,
    BuiltinSignatures,
    HashScanner,
    MalwareVerdict,
    Signature,
    SignatureError,
    is_eicar,
)
from ztcore.errors import ZTError

EICAR_TEXT = r"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
EICAR_SHA256 = "275a021bbfb6489e54d471899f7db9d1663fc695ec2fe2a2c4538aabf651fd0f"
EVIL = b"not really malware, only listed"
EVIL_SHA256 = hashlib.sha256(EVIL).hexdigest()
SIGNATURES = BuiltinSignatures.of([Signature("Test.Listed-1", EVIL_SHA256)])


def scan_chunks(chunks: list[bytes], signatures: BuiltinSignatures | None = None) -> MalwareVerdict:
    scanner = HashScanner(signatures)
    for chunk in chunks:
        scanner.feed(chunk)
    return scanner.scan_result()


def test_eicar_constant_is_the_published_string() -> None:
    assert EICAR == EICAR_TEXT.encode("ascii")
    assert len(EICAR) == 68
    assert hashlib.sha256(EICAR).hexdigest() == EICAR_SHA256


@pytest.mark.parametrize("data,infected", [
    (EICAR, True),
    (EICAR + b"\r\n", True),
    (EICAR + b"\n", True),
    (EICAR + b" \t\r\n\x1a", True),
    (EICAR + b" " * 60, True),                 # 128 bytes in all: the longest the rules allow
    (EICAR + b" " * 61, False),
    (EICAR + b"x", False),                     # other trailing bytes: not the test file
    (EICAR + b"\n\x00", False),
    (EICAR + b"\x0b", False),                  # vertical tab is not in the rules' whitespace
    (EICAR + b"\nmore text", False),
    (b" " + EICAR, False),                     # the string must come first
    (EICAR[:-1], False),
    (EICAR.lower(), False),
    (EICAR + b" " * 1_000_000, False),
    (b"", False),
])
def test_eicar_rules(data: bytes, infected: bool) -> None:
    verdict = scan_chunks([data])
    digest = hashlib.sha256(data).hexdigest()
    assert verdict == MalwareVerdict(infected, EICAR_NAME if infected else None, digest)
    assert verdict.reasons == ((REASON,) if infected else ())
    assert is_eicar(data) is infected


@pytest.mark.parametrize("data", [EICAR, EICAR + b"\r\n" + b" " * 58, EICAR + b" x"])
def test_eicar_split_across_chunks_at_every_position(data: bytes) -> None:
    whole = scan_chunks([data])
    for cut in range(len(data) + 1):
        assert scan_chunks([data[:cut], data[cut:]]) == whole, cut
        for second in range(cut, len(data) + 1, 7):
            assert scan_chunks([data[:cut], data[cut:second], data[second:]]) == whole, (cut, second)
    assert scan_chunks([data[i:i + 1] for i in range(len(data))]) == whole


def test_hash_signature_detected_whole_and_chunked() -> None:
    expected = MalwareVerdict(True, "Test.Listed-1", EVIL_SHA256)
    assert SIGNATURES.scan(EVIL) == expected
    assert scan_chunks([EVIL[:5], b"", EVIL[5:]], SIGNATURES) == expected
    longer = EVIL + b"\n"
    assert SIGNATURES.scan(longer) == MalwareVerdict(False, None, hashlib.sha256(longer).hexdigest())
    assert BuiltinSignatures().scan(EVIL).infected is False


def test_eicar_is_always_on_and_named_even_when_its_hash_is_listed() -> None:
    signatures = BuiltinSignatures.of([Signature("Other-Name", EICAR_SHA256)])
    assert signatures.scan(EICAR) == MalwareVerdict(True, EICAR_NAME, EICAR_SHA256)


def test_scan_result_speaks_of_the_bytes_so_far_and_can_be_asked_again() -> None:
    scanner = SIGNATURES.scanner()
    scanner.feed(EVIL)
    first = scanner.scan_result()
    assert scanner.scan_result() == first and first.infected
    scanner.feed(b"more")
    assert scanner.scan_result().infected is False
    assert scanner.total_bytes == len(EVIL) + 4


def test_hash_list_parsing_reports_bad_lines_and_keeps_the_good() -> None:
    upper = hashlib.sha256(b"upper").hexdigest().upper()
    lines = [
        "# sekimori built-in hashes",
        "",
        f"{EVIL_SHA256} Test.Listed-1",
        f"  {upper}\tWin.Trojan.Upper Case Name  ",
        "deadbeef Short.Hash",
        "g" * 64 + " Not.Hex",
        EICAR_SHA256,
        f"{EVIL_SHA256} Duplicate.Name",
        f"{EICAR_SHA256} Bad\x07Name",
        f"{EICAR_SHA256} " + "n" * 129,
        "x" * 2000,
        "\uff10" * 64 + " Fullwidth.Digits",
        f"{EICAR_SHA256} EICAR-From-List\r\n",
    ]
    signatures, bad = BuiltinSignatures.from_lines(lines)
    assert dict(signatures.by_sha256) == {
        EVIL_SHA256: Signature("Test.Listed-1", EVIL_SHA256),
        upper.lower(): Signature("Win.Trojan.Upper Case Name", upper.lower()),
        EICAR_SHA256: Signature("EICAR-From-List", EICAR_SHA256),
    }
    assert len(signatures) == 3
    assert signatures.lookup(upper) == Signature("Win.Trojan.Upper Case Name", upper)
    assert [b.line_number for b in bad] == [5, 6, 7, 8, 9, 10, 11, 12]
    assert bad[0] == BadLine(5, "not a SHA-256 (64 hexadecimal digits)")
    assert bad[2] == BadLine(7, "no signature name")
    assert bad[3] == BadLine(8, "duplicate sha256, kept 'Test.Listed-1'")
    assert "control characters" in bad[4].reason
    assert "longer than 128" in bad[5].reason
    assert "line longer" in bad[6].reason
    assert signatures.scan(b"upper") == MalwareVerdict(True, "Win.Trojan.Upper Case Name", upper.lower())


def test_hash_list_of_nothing_is_empty() -> None:
    for lines in ([], ["# only a comment", "   ", "\n"]):
        signatures, bad = BuiltinSignatures.from_lines(lines)
        assert len(signatures) == 0 and bad == []


@pytest.mark.parametrize("name,sha256", [
    ("Ok", "abc"), ("", EVIL_SHA256), (" Padded", EVIL_SHA256), ("Tab\tName", EVIL_SHA256),
])
def test_signature_validation(name: str, sha256: str) -> None:
    with pytest.raises(SignatureError) as raised:
        Signature(name, sha256)
    assert isinstance(raised.value, ZTError)


def test_signature_normalises_the_hash() -> None:
    assert Signature("X", EVIL_SHA256.upper()).sha256 == EVIL_SHA256


def reference(data: bytes, signatures: BuiltinSignatures) -> MalwareVerdict:
    digest = hashlib.sha256(data).hexdigest()
    if len(data) <= 128 and data[:68] == EICAR and not data[68:].strip(b" \t\r\n\x1a"):
        return MalwareVerdict(True, EICAR_NAME, digest)
    listed = signatures.by_sha256.get(digest)
    return MalwareVerdict(listed is not None, listed.name if listed else None, digest)


bodies = st.one_of(
    st.binary(max_size=300),
    st.builds(lambda tail: EICAR + tail, st.binary(max_size=80)),
    st.builds(lambda tail: EICAR + tail, st.text(" \t\r\n\x1a", max_size=70).map(str.encode)),
    st.just(EVIL),
)


@settings(max_examples=300, deadline=None)
@given(bodies, st.lists(st.integers(min_value=0, max_value=300), max_size=6))
def test_scanner_never_raises_and_chunking_changes_nothing(data: bytes, cuts: list[int]) -> None:
    points = sorted({min(cut, len(data)) for cut in cuts})
    chunks = [data[a:b] for a, b in zip([0, *points], [*points, len(data)])]
    assert b"".join(chunks) == data
    assert scan_chunks(chunks, SIGNATURES) == SIGNATURES.scan(data) == reference(data, SIGNATURES)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(max_size=120), max_size=20))
def test_hash_list_parsing_never_raises(lines: list[str]) -> None:
    signatures, bad = BuiltinSignatures.from_lines(lines)
    assert all(isinstance(b, BadLine) and 1 <= b.line_number <= len(lines) for b in bad)
    assert all(len(s.sha256) == 64 for s in signatures.by_sha256.values())
