"""Media types (`parse_media_type`) and multipart bodies (`split_multipart`, RFC 2046 §5.1 and
RFC 7578 multipart/form-data).

Owns reading a Content-Type value and cutting a complete multipart body into its parts with
their headers, name and file name. It must not decide what a part holds (extract does) and
reads nothing but the bytes it is given. A body a server could read differently from us (no
boundary, no closing delimiter, a part without a header block) is refused with `MultipartError`:
the extractor reports it as unscannable.
"""

from __future__ import annotations

import base64
import binascii
import quopri
import re
import urllib.parse
from dataclasses import dataclass

from ztcore.errors import ZTError

MAX_PARTS = 10_000
MAX_HEADER_BYTES = 16_384
# RFC 2046 §5.1.1: 1 to 70 characters; longer ones seen in the wild are still accepted.
MAX_BOUNDARY_CHARS = 200

_PARAM = re.compile(r';\s*([!#$%&\'*+.^_`|~0-9A-Za-z-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^;]*)')
_QUOTED_PAIR = re.compile(r"\\(.)")


class MultipartError(ZTError):
    """A multipart body we cannot cut into parts the way its receiver would; says why."""


@dataclass(frozen=True)
class MultipartPart:
    headers: tuple[tuple[str, str], ...]   # (lower-case name, value), in order
    name: str | None                       # Content-Disposition name
    filename: str | None                   # Content-Disposition filename (filename* preferred)
    content_type: str | None
    body: bytes                            # Content-Transfer-Encoding base64/quoted-printable undone


def parse_media_type(value: str | None) -> tuple[str, dict[str, str]]:
    """("type/subtype" lower-case, {lower-case parameter: value}) of a Content-Type header;
    ("", {}) for None. Quoted values are unquoted; the first of a repeated parameter wins."""
    if not value:
        return "", {}
    media, _, rest = value.partition(";")
    params: dict[str, str] = {}
    for match in _PARAM.finditer(";" + rest):
        name, raw = match.group(1).lower(), match.group(2).strip()
        if raw.startswith('"') and raw.endswith('"') and len(raw) >= 2:
            raw = _QUOTED_PAIR.sub(r"\1", raw[1:-1])
        params.setdefault(name, raw)
    return media.strip().lower(), params


def split_multipart(body: bytes, boundary: str) -> tuple[bytes, list[MultipartPart], bytes]:
    """(preamble, parts, epilogue) of a complete multipart body; MultipartError if malformed."""
    if not boundary or len(boundary) > MAX_BOUNDARY_CHARS:
        raise MultipartError("the multipart Content-Type has no usable boundary parameter")
    try:
        marker = boundary.encode("ascii")
    except UnicodeEncodeError:
        raise MultipartError("the multipart boundary is not ASCII") from None
    # A delimiter is a line "--boundary" (transport padding allowed), at the start of the body
    # or after a line break; "--boundary--" closes. Bare LF line breaks are accepted, as
    # browsers' servers do.
    delimiter = re.compile(rb"(?:\A|\r?\n)--" + re.escape(marker) + rb"(--)?[ \t]*(?:\r?\n|\Z)")
    parts: list[MultipartPart] = []
    preamble = b""
    start: int | None = None
    for match in delimiter.finditer(body):
        if start is None:
            preamble = body[:match.start()]
        else:
            if len(parts) >= MAX_PARTS:
                raise MultipartError(f"the multipart body has more than {MAX_PARTS} parts")
            parts.append(_part(body[start:match.start()]))
        if match.group(1):
            return preamble, parts, body[match.end():]
        start = match.end()
    if start is None:
        raise MultipartError("the multipart body does not contain its boundary")
    raise MultipartError("the multipart body has no closing boundary (truncated?)")


def _part(raw: bytes) -> MultipartPart:
    if not raw:                              # no headers and no body
        return MultipartPart((), None, None, None, b"")
    if raw.startswith((b"\r\n", b"\n")):
        head, body = b"", raw[2 if raw.startswith(b"\r\n") else 1:]
    else:
        match = re.search(rb"\r?\n\r?\n", raw[:MAX_HEADER_BYTES + 4])
        if match is None:
            raise MultipartError("a multipart part has no blank line after its headers")
        head, body = raw[:match.start()], raw[match.end():]
    headers = _headers(head)
    values = dict(reversed(headers))        # the first of a repeated header wins
    _disposition, params = parse_media_type(values.get("content-disposition"))
    filename = _extended(params.get("filename*")) or params.get("filename")
    encoding = values.get("content-transfer-encoding", "").strip().lower()
    return MultipartPart(headers, params.get("name"), filename, values.get("content-type"),
                         _decode_transfer(body, encoding))


def _headers(head: bytes) -> tuple[tuple[str, str], ...]:
    if len(head) > MAX_HEADER_BYTES:
        raise MultipartError(f"a multipart part's headers are longer than {MAX_HEADER_BYTES} bytes")
    # Browsers send file names as raw UTF-8 (WHATWG HTML, multipart/form-data encoding).
    text = head.decode("utf-8", errors="replace")
    headers: list[tuple[str, str]] = []
    for line in re.split(r"\r?\n", text):
        if line[:1] in (" ", "\t") and headers:       # obsolete line folding
            name, value = headers[-1]
            headers[-1] = (name, value + " " + line.strip())
            continue
        name, colon, value = line.partition(":")
        if not colon or not name.strip():
            raise MultipartError(f"a multipart part has a malformed header line {line[:60]!r}")
        headers.append((name.strip().lower(), value.strip()))
    return tuple(headers)


def _extended(value: str | None) -> str | None:
    """An RFC 8187 value (UTF-8''%E5%A0%B1.pdf), None if absent or unreadable."""
    if not value or value.count("'") < 2:
        return None
    charset, _language, encoded = value.split("'", 2)
    try:
        return urllib.parse.unquote(encoded, encoding=charset or "utf-8", errors="strict")
    except (LookupError, UnicodeDecodeError):
        return None


def _decode_transfer(body: bytes, encoding: str) -> bytes:
    if encoding == "base64":
        try:
            return base64.b64decode(re.sub(rb"\s+", b"", body), validate=True)
        except (binascii.Error, ValueError):
            raise MultipartError("a multipart part declared base64 is not valid base64") from None
    if encoding == "quoted-printable":
        return quopri.decodestring(body)
    return body
