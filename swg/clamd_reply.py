"""The pure parts of ClamAV's clamd protocol (clamd(8), ClamAV 1.4): the client's configuration and
address strings, INSTREAM framing, and what a reply means, as a verdict value.

Owns: `ClamdConfig` and its address strings (`unix:/run/clamav/clamd.ctl`, `tcp:127.0.0.1:3310`,
`tcp:[::1]:3310`), checked with a ConfigError naming the field; `instream_frames`, the body as
INSTREAM sends it (each chunk after its 4-byte big-endian length, then a zero length); and the
replies to the `z`-prefixed (NUL-terminated) commands: `PONG`, `ClamAV 1.4.6/27580/<date>` for
VERSION, and for INSTREAM `stream: OK`, `stream: <signature> FOUND`,
`INSTREAM size limit exceeded. ERROR`, `stream: <message> ERROR`.

A verdict is clean, infected (with clamd's signature name), or *unscannable* with a reason the
caller fails closed on: `malware-scanner-unavailable` when clamd could not give an answer
(refused, timed out, closed early, said something we cannot read, or an error of its own:
memory, temporary files) and `content-unscannable` when clamd read this body and cannot vouch
for it (over StreamMaxLength, broken data, `Heuristics.Limits.Exceeded.*` and
`Heuristics.Encrypted.*` alerts: the body was not scanned whole). It must not open sockets or read
clocks: `swg/runtime/clamd.py` does the I/O.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

from ztcore.errors import ConfigError, RemoteProtocolError
from ztcore.reasons import Reason

MAX_SIGNATURE_CHARS = 200
MAX_DETAIL_CHARS = 300
MAX_UNIX_PATH_BYTES = 107            # sun_path is 108 bytes with its NUL
END_OF_STREAM = b"\x00\x00\x00\x00"
PING = b"zPING\x00"
VERSION = b"zVERSION\x00"
INSTREAM = b"zINSTREAM\x00"

# clamd's own troubles (cl_strerror texts, the command loop): the scanner, not the body
_SCANNER_ERRORS = ("allocate memory", "temporary file", "timed out", "too many", "queue",
                   "unknown command", "malformed command", "database", "engine", "lstat", "fd")
# alerts that say a limit or an encryption kept clamd from scanning the whole body
_NOT_SCANNED_WHOLE = ("Heuristics.Limits.Exceeded", "Heuristics.Encrypted")
_HOST = re.compile(r"[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?")

Outcome = Literal["clean", "infected", "unscannable"]


class ClamdReplyError(RemoteProtocolError):
    """clamd's reply to PING or VERSION is not what clamd says; the message quotes it."""

    def __init__(self, message: str) -> None:
        super().__init__(message, status_hint=502)


@dataclass(frozen=True, slots=True)
class ClamdAddress:
    kind: Literal["unix", "tcp"]
    path: str = ""                   # unix
    host: str = ""                   # tcp
    port: int = 0

    def __str__(self) -> str:
        if self.kind == "unix":
            return f"unix:{self.path}"
        return f"tcp:[{self.host}]:{self.port}" if ":" in self.host else f"tcp:{self.host}:{self.port}"


def parse_address(text: str, field: str = "address") -> ClamdAddress:
    """`unix:/absolute/path` or `tcp:host:port` (`tcp:[::1]:3310`); ConfigError naming `field`."""
    if not isinstance(text, str):
        raise ConfigError(f"{field}: expected a string such as 'unix:/run/clamav/clamd.ctl' or "
                          f"'tcp:127.0.0.1:3310', not {type(text).__name__}")
    scheme, colon, rest = text.partition(":")
    if scheme == "unix" and colon:
        if not rest.startswith("/") or "\x00" in rest or not rest.isprintable():
            raise ConfigError(f"{field}: {text[:120]!r}: the socket path must be absolute")
        if len(rest.encode("utf-8", "surrogateescape")) > MAX_UNIX_PATH_BYTES:
            raise ConfigError(f"{field}: the socket path is longer than {MAX_UNIX_PATH_BYTES} bytes")
        return ClamdAddress("unix", path=rest)
    if scheme == "tcp" and colon:
        host, colon, port = rest.rpartition(":")
        if not colon or not port.isascii() or not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigError(f"{field}: {text[:120]!r}: needs a port from 1 to 65535 (tcp:host:port)")
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
            if ":" not in host:
                raise ConfigError(f"{field}: {text[:120]!r}: brackets are for IPv6 addresses only")
        elif ":" in host:
            raise ConfigError(f"{field}: {text[:120]!r}: write an IPv6 address in brackets "
                              "(tcp:[::1]:3310)")
        elif not _HOST.fullmatch(host):
            raise ConfigError(f"{field}: {text[:120]!r}: not a host name or address")
        return ClamdAddress("tcp", host=host, port=int(port))
    raise ConfigError(f"{field}: {text[:120]!r} is not 'unix:/path' or 'tcp:host:port'")


@dataclass(frozen=True, slots=True)
class ClamdConfig:
    """How to reach clamd. `max_stream_bytes`, clamd's StreamMaxLength when known: a larger body is
    unscannable at once, without a round trip (clamd would refuse it anyway)."""

    address: str
    connect_timeout_seconds: float = 2.0
    scan_timeout_seconds: float = 30.0
    chunk_bytes: int = 1 << 20
    max_stream_bytes: int | None = None

    def __post_init__(self) -> None:
        parse_address(self.address, "clamd.address")
        for name in ("connect_timeout_seconds", "scan_timeout_seconds"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 3600:
                raise ConfigError(f"clamd.{name}: {value!r} is not a number of seconds in (0, 3600]")
        if isinstance(self.chunk_bytes, bool) or not isinstance(self.chunk_bytes, int) \
                or not 1 <= self.chunk_bytes <= 1 << 26:
            raise ConfigError(f"clamd.chunk_bytes: {self.chunk_bytes!r} is not from 1 to {1 << 26}")
        limit = self.max_stream_bytes
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
            raise ConfigError(f"clamd.max_stream_bytes: {limit!r} is not a positive number of bytes")

    @property
    def parsed_address(self) -> ClamdAddress:
        return parse_address(self.address, "clamd.address")


@dataclass(frozen=True, slots=True)
class ClamdVerdict:
    """What clamd said about one body. `reason` is set unless clean; `detail` says more (for the
    log, never for a decision)."""

    outcome: Outcome
    signature: str | None = None
    reason: Reason | None = None
    detail: str = ""

    @classmethod
    def clean(cls) -> ClamdVerdict:
        return cls("clean")

    @classmethod
    def found(cls, signature: str) -> ClamdVerdict:
        return cls("infected", signature, Reason.MALWARE_DETECTED, f"clamd found {signature}")

    @classmethod
    def unavailable(cls, detail: str) -> ClamdVerdict:
        return cls("unscannable", None, Reason.MALWARE_SCANNER_UNAVAILABLE, _cut(detail))

    @classmethod
    def not_scannable(cls, detail: str) -> ClamdVerdict:
        return cls("unscannable", None, Reason.CONTENT_UNSCANNABLE, _cut(detail))

    @property
    def reasons(self) -> tuple[str, ...]:
        return () if self.reason is None else (self.reason.value,)


@dataclass(frozen=True, slots=True)
class ClamdVersion:
    engine: str                      # "ClamAV 1.4.6"
    database_version: int | None     # None with only custom (unofficial) databases
    database_date: str | None


def instream_frames(data: bytes | bytearray | memoryview, chunk_bytes: int) -> Iterator[bytes | memoryview]:
    """The INSTREAM body after the command: length, chunk, length, chunk, ..., zero length. The
    chunks are views of `data`, not copies."""
    if chunk_bytes < 1:
        raise ValueError("chunk_bytes must be positive")
    view = memoryview(data).cast("B")
    for start in range(0, len(view), chunk_bytes):
        chunk = view[start:start + chunk_bytes]
        yield len(chunk).to_bytes(4, "big")
        yield chunk
    yield END_OF_STREAM


def reply_text(reply: bytes) -> str:
    """A reply as text: up to its NUL, trailing white space removed, bytes not UTF-8 replaced."""
    return reply.split(b"\x00", 1)[0].decode("utf-8", "replace").strip()


def parse_scan_reply(reply: bytes) -> ClamdVerdict:
    """The verdict of INSTREAM's reply (see the module docstring); never raises."""
    text = reply_text(reply)
    if not text:
        return ClamdVerdict.unavailable("clamd closed the connection without a reply")
    name, colon, result = text.partition(": ")
    if colon and name == "stream" and result == "OK":
        return ClamdVerdict.clean()
    if colon and name == "stream" and result.endswith(" FOUND"):
        signature = result[:-len(" FOUND")].strip()
        if not signature or len(signature) > MAX_SIGNATURE_CHARS or not signature.isprintable():
            return ClamdVerdict.unavailable(f"clamd reported a malformed signature name: {text!r}")
        if signature.startswith(_NOT_SCANNED_WHOLE):
            return ClamdVerdict.not_scannable(f"clamd could not scan the whole body: {signature}")
        return ClamdVerdict.found(signature)
    if text.endswith("ERROR"):
        message = text[:-len("ERROR")].strip()
        if "size limit exceeded" in message:
            return ClamdVerdict.not_scannable("the body is larger than clamd's StreamMaxLength "
                                              f"({message})")
        if any(fragment in message.lower() for fragment in _SCANNER_ERRORS):
            return ClamdVerdict.unavailable(f"clamd failed: {message}")
        return ClamdVerdict.not_scannable(f"clamd could not scan the body: {message}")
    return ClamdVerdict.unavailable(f"clamd's reply is not one INSTREAM gives: {text!r}")


def parse_ping_reply(reply: bytes) -> bool:
    return reply_text(reply) == "PONG"


def parse_version_reply(reply: bytes) -> ClamdVersion:
    """`ClamAV 1.4.6`, or `ClamAV 1.4.6/27580/Wed Mar 12 08:36:01 2025`; ClamdReplyError if not."""
    text = reply_text(reply)
    engine, _, rest = text.partition("/")
    if not engine.startswith("ClamAV ") or len(text) > 200 or not text.isprintable():
        raise ClamdReplyError(f"not a clamd VERSION reply: {text[:100]!r}")
    number, _, date = rest.partition("/")
    return ClamdVersion(engine, int(number) if number.isascii() and number.isdigit() else None,
                        date or None)


def _cut(detail: str) -> str:
    return detail if len(detail) <= MAX_DETAIL_CHARS else detail[:MAX_DETAIL_CHARS - 3] + "..."
