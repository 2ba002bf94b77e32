"""The HTTP transaction as the buffers Suricata rules inspect.

Owns `HttpRequestView` and `HttpResponseView` (frozen values the proxy fills in from what it
parsed), the URI and host normalisation, and the mapping from a view to buffer bytes, each named
by its Suricata keyword. A missing header gives a missing buffer (None), and a rule inspecting a
missing buffer does not match, as in Suricata before its `absent` keyword.

Buffers are built the way Suricata 5-7 builds them over libhtp, simplified:
- `http.uri`: path with %XX decoded and dot segments removed, then `?query` as sent (libhtp
  leaves the query alone); `http.uri.raw`: the request target as sent.
- `http.host`: the Host header (or the target's authority) lower-cased, port and trailing dots
  removed; `http.host.raw`: the Host header as sent.
- headers with the same name are merged in first-seen order, values joined with ", ", leading
  and trailing blanks trimmed. `http.header` is `Name: value\\r\\n` per merged header except
  Cookie (Set-Cookie in a response), with no final empty line; `http.header.raw` is every
  header line as given plus the final `\\r\\n`; `http.header_names` is `\\r\\n` + each merged name
  + `\\r\\n`, then `\\r\\n`; `http.start` is the first line, `\\r\\n`, then `http.header.raw`.
- `http.user_agent`, `http.cookie`, `http.accept`, ... : the merged value alone.
- `pkt_data` (content with no buffer in an `alert http` rule): first line, raw headers and the
  body prefix, standing in for the reassembled stream.
- bodies are the first bytes only (the view holds at most what the caller passed, cut to
  `body_limit_bytes`); the caller passes them decoded (no gzip), as Suricata inspects them.
Strings are encoded as UTF-8 with surrogateescape, so bytes a shell decoded with
surrogateescape come back unchanged. It must not do I/O or decide anything.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from swg.httpsig.lexer import encode_text

Buffers = Mapping[str, bytes | None]
DEFAULT_BODY_LIMIT_BYTES = 8 * 1024

REQUEST_ONLY = frozenset({
    "http.uri", "http.uri.raw", "http.method", "http.request_line", "http.request_body",
    "http.user_agent", "http.host", "http.host.raw", "http.accept", "http.accept_lang",
    "http.accept_enc", "http.referer", "http.connection",
})
BOTH_PHASES = frozenset({
    "http.header", "http.header.raw", "http.cookie", "http.content_type", "http.content_len",
    "http.start", "http.protocol", "http.header_names", "pkt_data",
})
RESPONSE_ONLY = frozenset({
    "http.stat_code", "http.stat_msg", "http.response_line", "http.response_body", "http.server",
    "http.location",
})
ALL_BUFFERS = REQUEST_ONLY | BOTH_PHASES | RESPONSE_ONLY
_VALUE_BUFFERS = {   # buffer -> header whose merged value it is
    "http.user_agent": "user-agent", "http.accept": "accept", "http.accept_lang": "accept-language",
    "http.accept_enc": "accept-encoding", "http.referer": "referer", "http.connection": "connection",
    "http.content_type": "content-type", "http.content_len": "content-length",
    "http.server": "server", "http.location": "location",
}
_PERCENT = re.compile(rb"%([0-9A-Fa-f]{2})")

Headers = tuple[tuple[str, str], ...]


encode = encode_text


def normalise_uri(target: str) -> str:
    """The `http.uri` of a request target: %XX decoded and dot segments removed in the path, the
    query kept as sent; an absolute-form target keeps only its path and query."""
    path, mark, query = _origin_form(target).partition("?")
    raw = _PERCENT.sub(lambda found: bytes((int(found.group(1), 16),)), encode(path))
    decoded = raw.decode("utf-8", "surrogateescape")
    return _remove_dot_segments(decoded) + mark + query


def normalise_host(authority: str) -> str:
    """Lower case, port and trailing dots removed (`[v6]:443` keeps its brackets' content)."""
    host = authority.strip()
    if host.startswith("["):
        host = host[1:host.find("]")] if "]" in host else host[1:]
    elif host.count(":") == 1:
        host = host.partition(":")[0]
    return host.rstrip(".").lower()


def _port_of(authority: str, scheme: str) -> int | None:
    text = authority.strip()
    tail = text.rpartition("]")[2] if text.startswith("[") else (text if text.count(":") == 1 else "")
    digits = tail.partition(":")[2]
    if digits.isascii() and digits.isdigit() and 0 < int(digits) <= 65535:
        return int(digits)
    return {"http": 80, "https": 443}.get(scheme)


def _origin_form(target: str) -> str:
    if "://" in target.partition("?")[0]:
        try:
            parts = urlsplit(target)
        except ValueError:
            return target
        return (parts.path or "/") + ("?" + parts.query if parts.query else "")
    return target


def _remove_dot_segments(path: str) -> str:
    """RFC 3986 §5.2.4, as libhtp's path normalisation does."""
    if "." not in path:
        return path
    output: list[str] = []
    segments = path.split("/")
    for index, segment in enumerate(segments):
        last = index == len(segments) - 1
        if segment == ".":
            if last:
                output.append("")
        elif segment == "..":
            if len(output) > 1:
                output.pop()
            if last:
                output.append("")
        else:
            output.append(segment)
    result = "/".join(output)
    if path.startswith("/") and not result.startswith("/"):
        result = "/" + result
    return result


def _header_of(headers: Headers, name: str) -> str | None:
    values = [value.strip(" \t") for key, value in headers if key.lower() == name]
    return ", ".join(values) if values else None


@dataclass(frozen=True, slots=True)
class HttpRequestView:
    """One request as the signatures see it. `uri` is the normalised path and query, `raw_uri`
    the target as sent, `host` the normalised host, `user_agent` the merged User-Agent (None when
    absent), `headers` the (name, value) pairs in order, `body` the first bytes of the body,
    `port` the server's TCP port (None when unknown: rules for particular ports do not apply),
    `tls` whether the gateway decrypted it (rules marked `tls_state plaintext` do not apply)."""

    method: str
    uri: str
    raw_uri: str
    host: str
    user_agent: str | None
    headers: Headers = ()
    body: bytes = b""
    protocol: str = "HTTP/1.1"
    port: int | None = None
    tls: bool = False

    @classmethod
    def of(cls, method: str, target: str, headers: Iterable[tuple[str, str]] = (), body: bytes = b"",
           protocol: str = "HTTP/1.1", port: int | None = None, tls: bool = False,
           body_limit_bytes: int = DEFAULT_BODY_LIMIT_BYTES) -> HttpRequestView:
        """From what a proxy parsed: the rest is derived the way Suricata derives it. Without
        `port`: the port in the Host header, else the absolute target's scheme's, else 443 for
        `tls`, else unknown."""
        pairs = tuple((str(name), str(value)) for name, value in headers)
        authority = _header_of(pairs, "host")
        scheme = ""
        if "://" in target.partition("?")[0]:
            try:
                parts = urlsplit(target)
                scheme = parts.scheme.lower()
                if authority is None:
                    authority = parts.netloc.rpartition("@")[2]
            except ValueError:
                pass
        if port is None:
            port = _port_of(authority or "", scheme or ("https" if tls else ""))
        return cls(method=method, uri=normalise_uri(target), raw_uri=target,
                   host=normalise_host(authority or ""), user_agent=_header_of(pairs, "user-agent"),
                   headers=pairs, body=body[:max(0, body_limit_bytes)], protocol=protocol, port=port,
                   tls=tls)


@dataclass(frozen=True, slots=True)
class HttpResponseView:
    status: int
    reason: str = ""
    headers: Headers = ()
    body: bytes = b""
    protocol: str = "HTTP/1.1"

    @classmethod
    def of(cls, status: int, reason: str = "", headers: Iterable[tuple[str, str]] = (),
           body: bytes = b"", protocol: str = "HTTP/1.1",
           body_limit_bytes: int = DEFAULT_BODY_LIMIT_BYTES) -> HttpResponseView:
        pairs = tuple((str(name), str(value)) for name, value in headers)
        return cls(status, reason, pairs, body[:max(0, body_limit_bytes)], protocol)


def request_buffers(request: HttpRequestView) -> dict[str, bytes | None]:
    method, raw_uri, protocol = encode(request.method), encode(request.raw_uri), encode(request.protocol)
    line = method + b" " + raw_uri + b" " + protocol
    buffers = _header_buffers(request.headers, line, request.body, skip="cookie")
    buffers.update({
        "http.method": method,
        "http.uri": encode(request.uri),
        "http.uri.raw": raw_uri,
        "http.request_line": line,
        "http.protocol": protocol,
        "http.host": encode(request.host) if request.host else None,
        "http.user_agent": None if request.user_agent is None else encode(request.user_agent),
        "http.request_body": request.body or None,
    })
    host_raw = _header_of(request.headers, "host")
    buffers["http.host.raw"] = encode(host_raw) if host_raw is not None else buffers["http.host"]
    return buffers


def response_buffers(request: HttpRequestView, response: HttpResponseView) -> dict[str, bytes | None]:
    """The response's own buffers, plus the request-only ones of the same transaction."""
    protocol = encode(response.protocol)
    code = str(response.status).encode()
    reason = encode(response.reason)
    line = protocol + b" " + code + (b" " + reason if reason else b"")
    buffers = _header_buffers(response.headers, line, response.body, skip="set-cookie")
    buffers.update({name: value for name, value in request_buffers(request).items() if name in REQUEST_ONLY})
    buffers.update({
        "http.stat_code": code,
        "http.stat_msg": reason or None,
        "http.response_line": line,
        "http.protocol": protocol,
        "http.response_body": response.body or None,
    })
    return buffers


def _header_buffers(headers: Headers, first_line: bytes, body: bytes, skip: str) -> dict[str, bytes | None]:
    merged: dict[str, tuple[str, list[str]]] = {}
    raw_lines: list[bytes] = []
    for name, value in headers:
        key = name.lower()
        entry = merged.setdefault(key, (name, []))
        entry[1].append(value.strip(" \t"))
        raw_lines.append(encode(name) + b": " + encode(value) + b"\r\n")
    values = {key: ", ".join(parts) for key, (_, parts) in merged.items()}
    normalised = b"".join(encode(name) + b": " + encode(values[key]) + b"\r\n"
                          for key, (name, _) in merged.items() if key != skip)
    raw = b"".join(raw_lines) + b"\r\n"
    buffers: dict[str, bytes | None] = {
        "http.header": normalised or None,
        "http.header.raw": raw if headers else None,
        "http.header_names": (b"\r\n" + b"".join(encode(name) + b"\r\n" for name, _ in merged.values())
                              + b"\r\n") if merged else None,
        "http.start": first_line + b"\r\n" + raw,
        "pkt_data": first_line + b"\r\n" + raw + body,
        "http.cookie": encode(values[skip]) if skip in values else None,
    }
    for buffer, header in _VALUE_BUFFERS.items():
        buffers[buffer] = encode(values[header]) if header in values else None
    return buffers
