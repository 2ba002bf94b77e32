"""Downloading Microsoft 365 endpoint data (the shell around broker/m365.py).

Owns the HTTP side of Microsoft's "Office 365 IP Address and URL web service": ask
`/version/<instance>` for the latest version, and download `/endpoints/<instance>` only when that
differs from the version we hold; or download an admin-configured JSON file from a plain URL.
Bodies are read with a size cap and an overall deadline; redirects are not followed (a
redirect to http:// would drop TLS on data that decides what bypasses the gateway). Every
httpx, TLS and socket failure becomes one EndpointFetchError naming the URL.

It must not parse the endpoint data (the caller does, with `parse_endpoint_data`) nor store it.
"""

from __future__ import annotations

import ssl
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Final
from urllib.parse import quote, urlencode, urlsplit

import httpx

from broker.m365 import MAX_ENDPOINT_BYTES, MAX_VERSION_BYTES, EndpointDataError, parse_version_reply
from ztcore.errors import ZTError

DEFAULT_BASE_URL: Final = "https://endpoints.office.com"
DEFAULT_INSTANCE: Final = "Worldwide"
_USER_AGENT: Final = "Sekimori-M365-Import"


class EndpointFetchError(ZTError):
    """Downloading endpoint data or its version failed; the message names the URL and why."""


@dataclass(frozen=True, slots=True)
class ServiceUrls:
    version: str
    endpoints: str


@dataclass(frozen=True, slots=True)
class FetchResult:
    """`raw` is None when the service reports the version we already hold (nothing downloaded)."""

    version: str
    raw: bytes | None

    @property
    def unchanged(self) -> bool:
        return self.raw is None


def service_urls(base_url: str, instance: str, client_request_id: str, *,
                 no_ipv6: bool = False) -> ServiceUrls:
    """The version and endpoints URLs of the web service at `base_url` (Microsoft's, or a local
    mirror serving the same paths). Pure. `client_request_id` is the GUID Microsoft asks each
    client to generate once and keep."""
    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
        raise EndpointFetchError(f"base URL {base_url!r}: expected http(s)://host[:port][/path]")
    if not instance.isascii() or not instance.isalnum():
        raise EndpointFetchError(f"instance {instance!r}: expected a name like 'Worldwide'")
    try:
        request_id = str(uuid.UUID(client_request_id))
    except (ValueError, TypeError, AttributeError):
        raise EndpointFetchError(f"client request id {client_request_id!r}: expected a GUID") from None
    query = {"clientrequestid": request_id}
    base = base_url.rstrip("/")
    version = f"{base}/version/{quote(instance)}?{urlencode(query)}"
    if no_ipv6:
        query["NoIPv6"] = "true"
    return ServiceUrls(version=version, endpoints=f"{base}/endpoints/{quote(instance)}?{urlencode(query)}")


def fetch_endpoint_data(base_url: str, instance: str, client_request_id: str,
                        known_version: str | None, *, timeout_seconds: float = 20.0,
                        client: httpx.Client | None = None, no_ipv6: bool = False,
                        max_bytes: int = MAX_ENDPOINT_BYTES) -> FetchResult:
    """Ask the version service; download the data only if its version is not `known_version`."""
    urls = service_urls(base_url, instance, client_request_id, no_ipv6=no_ipv6)
    with _client(client, timeout_seconds) as http:
        reply = _get(http, urls.version, timeout_seconds, MAX_VERSION_BYTES)
        try:
            version = parse_version_reply(reply, instance)
        except EndpointDataError as exc:
            raise EndpointFetchError(f"GET {urls.version}: not a version reply: {exc}") from None
        if version == known_version:
            return FetchResult(version=version, raw=None)
        return FetchResult(version=version, raw=_get(http, urls.endpoints, timeout_seconds, max_bytes))


def fetch_url(url: str, *, timeout_seconds: float = 20.0, client: httpx.Client | None = None,
              max_bytes: int = MAX_ENDPOINT_BYTES) -> bytes:
    """The body of an admin-configured JSON file (a mirror without the version service)."""
    if urlsplit(url).scheme not in ("http", "https"):
        raise EndpointFetchError(f"URL {url!r}: expected an http:// or https:// URL")
    with _client(client, timeout_seconds) as http:
        return _get(http, url, timeout_seconds, max_bytes)


@contextmanager
def _client(client: httpx.Client | None, timeout_seconds: float) -> Iterator[httpx.Client]:
    if client is not None:
        yield client
        return
    # trust_env=False: proxies and CA bundles come from the composition root's client, not from
    # whatever environment the broker happens to run in.
    with httpx.Client(timeout=timeout_seconds, follow_redirects=False, trust_env=False,
                      headers={"User-Agent": _USER_AGENT}) as own:
        yield own


def _get(http: httpx.Client, url: str, timeout_seconds: float, max_bytes: int) -> bytes:
    deadline = time.monotonic() + timeout_seconds
    try:
        with http.stream("GET", url, timeout=timeout_seconds, follow_redirects=False,
                         headers={"Accept": "application/json"}) as response:
            if response.status_code != 200:
                where = response.headers.get("location")
                hint = f" (redirect to {where}; configure that URL directly)" if where else ""
                status = f"HTTP {response.status_code} {response.reason_phrase}".rstrip()
                raise EndpointFetchError(f"GET {url}: {status}{hint}")
            declared = response.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > max_bytes:
                raise EndpointFetchError(f"GET {url}: body of {declared} bytes is more than the "
                                         f"limit of {max_bytes}")
            body = bytearray()
            for chunk in response.iter_bytes():
                body += chunk
                if len(body) > max_bytes:
                    raise EndpointFetchError(f"GET {url}: body is more than the limit of "
                                             f"{max_bytes} bytes")
                if time.monotonic() > deadline:
                    raise EndpointFetchError(f"GET {url}: timed out after {timeout_seconds:g} s "
                                             "(body still arriving)")
            return bytes(body)
    except httpx.TimeoutException as exc:
        raise EndpointFetchError(f"GET {url}: timed out after {timeout_seconds:g} s "
                                 f"({type(exc).__name__})") from None
    except (httpx.HTTPError, httpx.InvalidURL, OSError) as exc:
        raise EndpointFetchError(f"GET {url}: {_describe(exc)}") from None


def _describe(exc: BaseException) -> str:
    cause: BaseException | None = exc
    for _ in range(8):  # httpx wraps ssl errors in ConnectError; the chain is short
        if cause is None:
            break
        if isinstance(cause, ssl.SSLError):
            return "TLS error: " + " ".join(str(cause).split())
        cause = cause.__cause__ or cause.__context__
    detail = " ".join(str(exc).split()) or type(exc).__name__
    return f"{type(exc).__name__}: {detail}"
