"""`ExtractionLimits`: how far the content extractor may go into a body before giving up.

Owns the limits and their validation only. Going beyond a limit is not an error here: the
extractor reports the body as unscannable and the caller blocks it (fail closed).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from ztcore.errors import ConfigError

MIB = 1024 * 1024


@dataclass(frozen=True)
class ExtractionLimits:
    """Bounds on one body's extraction (zip bombs, deep nesting, huge documents).

    max_depth: containers opened on the way to a part (a zip in a zip holding a docx is 3).
    max_total_bytes: bytes unpacked from all containers plus text extracted from PDFs.
    max_members: members in one archive (counted before its directory is parsed).
    max_ratio: a member's size over its compressed size, checked once it is past
        ratio_grace_bytes (small, very regular files legitimately compress a lot).
    max_member_bytes: the unpacked size of one member.
    max_pdf_pages: pages of one PDF whose text is extracted.
    """

    max_depth: int = 3
    max_total_bytes: int = 64 * MIB
    max_members: int = 10_000
    max_ratio: int = 100
    max_member_bytes: int = 32 * MIB
    ratio_grace_bytes: int = 1 * MIB
    max_pdf_pages: int = 1_000

    def __post_init__(self) -> None:
        for field in fields(self):
            value = getattr(self, field.name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ConfigError(f"content limits: {field.name} must be an integer, not {value!r}")
            minimum = 0 if field.name == "ratio_grace_bytes" else 1
            if value < minimum:
                raise ConfigError(f"content limits: {field.name} must be at least {minimum}, not {value}")
        if self.max_member_bytes > self.max_total_bytes:
            raise ConfigError(f"content limits: max_member_bytes ({self.max_member_bytes}) must not exceed "
                              f"max_total_bytes ({self.max_total_bytes})")
