"""Built-in malware signatures: the EICAR test file and a set of SHA-256 hashes, and a streaming scanner.

Owns the signature model, the hash-list text format (`<sha256> <name>` a line; `#` comments and
blank lines skipped; a bad line is reported, never fatal), the EICAR rule, and `HashScanner`, a
sans-IO scanner fed a body in chunks with bounded memory (a hash state and at most
`EICAR_MAX_BYTES` bytes). It must not read files or fetch signature updates (the shell does) nor
decide access: a verdict says what was found, the policy says what to do with `REASON`.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from ztcore.errors import ZTError

REASON = "malware-detected"
EICAR_NAME = "EICAR-Test-File"
EICAR = rb"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
# The EICAR rules: the 68-byte string first, then only whitespace (space, tab, LF, CR, Ctrl-Z),
# the whole file at most 128 bytes.
EICAR_MAX_BYTES = 128
EICAR_WHITESPACE = frozenset(b" \t\n\r\x1a")
MAX_NAME_CHARS = 128
MAX_LINE_CHARS = 1024
_SHA256 = re.compile(r"[0-9a-fA-F]{64}")


class SignatureError(ZTError):
    """A signature built in code is invalid (a bad hash or name); the message says which."""


@dataclass(frozen=True)
class Signature:
    name: str
    sha256: str

    def __post_init__(self) -> None:
        problem = _name_problem(self.name) or _sha256_problem(self.sha256)
        if problem:
            raise SignatureError(problem)
        object.__setattr__(self, "sha256", self.sha256.lower())


@dataclass(frozen=True)
class BadLine:
    line_number: int   # 1-based
    reason: str


@dataclass(frozen=True)
class MalwareVerdict:
    infected: bool
    name: str | None
    sha256: str

    @property
    def reasons(self) -> tuple[str, ...]:
        return (REASON,) if self.infected else ()


@dataclass(frozen=True, eq=False)
class BuiltinSignatures:
    """The EICAR rule (always on) and hash signatures by lower-case SHA-256."""

    by_sha256: Mapping[str, Signature] = field(default_factory=lambda: MappingProxyType({}))

    @classmethod
    def of(cls, signatures: Iterable[Signature]) -> BuiltinSignatures:
        table: dict[str, Signature] = {}
        for signature in signatures:
            table.setdefault(signature.sha256, signature)
        return cls(MappingProxyType(table))

    @classmethod
    def from_lines(cls, lines: Iterable[str]) -> tuple[BuiltinSignatures, list[BadLine]]:
        """Parse `<sha256> <name>` lines; the first signature for a hash wins, later ones are bad lines."""
        table: dict[str, Signature] = {}
        bad: list[BadLine] = []
        for number, raw in enumerate(lines, start=1):
            if len(raw) > MAX_LINE_CHARS:
                bad.append(BadLine(number, f"line longer than {MAX_LINE_CHARS} characters"))
                continue
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            digest, *rest = line.split(None, 1)
            name = rest[0].strip() if rest else ""
            problem = _sha256_problem(digest) or _name_problem(name)
            if problem:
                bad.append(BadLine(number, problem))
                continue
            signature = Signature(name, digest)
            kept = table.setdefault(signature.sha256, signature)
            if kept is not signature:
                bad.append(BadLine(number, f"duplicate sha256, kept {kept.name!r}"))
        return cls(MappingProxyType(table)), bad

    def __len__(self) -> int:
        return len(self.by_sha256)

    def lookup(self, sha256: str) -> Signature | None:
        return self.by_sha256.get(sha256.lower())

    def scanner(self) -> HashScanner:
        return HashScanner(self)

    def scan(self, data: bytes) -> MalwareVerdict:
        scanner = HashScanner(self)
        scanner.feed(data)
        return scanner.scan_result()


class HashScanner:
    """Fed a body chunk by chunk: its SHA-256, looked up, and the EICAR rule on its first bytes.

    `scan_result()` speaks of the bytes fed so far and may be called more than once.
    """

    def __init__(self, signatures: BuiltinSignatures | None = None) -> None:
        self._signatures = signatures if signatures is not None else BuiltinSignatures()
        self._hash = hashlib.sha256()
        self._prefix = bytearray()   # the first EICAR_MAX_BYTES + 1 bytes: one more says "too long"
        self.total_bytes = 0

    def feed(self, chunk: bytes) -> None:
        self._hash.update(chunk)
        self.total_bytes += len(chunk)
        room = EICAR_MAX_BYTES + 1 - len(self._prefix)
        if room > 0:
            self._prefix += chunk[:room]

    def scan_result(self) -> MalwareVerdict:
        digest = self._hash.hexdigest()
        if is_eicar(bytes(self._prefix)):
            return MalwareVerdict(True, EICAR_NAME, digest)
        signature = self._signatures.by_sha256.get(digest)
        if signature is not None:
            return MalwareVerdict(True, signature.name, digest)
        return MalwareVerdict(False, None, digest)


def is_eicar(data: bytes) -> bool:
    """The whole file is the EICAR test file by the EICAR rules."""
    if len(data) > EICAR_MAX_BYTES or not data.startswith(EICAR):
        return False
    return all(byte in EICAR_WHITESPACE for byte in data[len(EICAR):])


def _sha256_problem(digest: str) -> str | None:
    if _SHA256.fullmatch(digest) is None:
        return "not a SHA-256 (64 hexadecimal digits)"
    return None


def _name_problem(name: str) -> str | None:
    if not name:
        return "no signature name"
    if len(name) > MAX_NAME_CHARS:
        return f"signature name longer than {MAX_NAME_CHARS} characters"
    if not name.isprintable() or name != name.strip():
        return "signature name has control characters or surrounding spaces"
    return None
