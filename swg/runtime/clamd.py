"""The clamd client: PING, VERSION and INSTREAM to ClamAV's clamd over a unix socket or TCP.

A thin asyncio shell around `swg/clamd_reply.py`: one connection per command (clamd closes it
after answering a `z` command), the command and the frames that module builds, its reply read up
to the NUL and handed to its parser. While a body is being sent, the reply is read at the same
time: clamd answers a body over StreamMaxLength before it has all of it and closes, and that
answer must not be lost in the broken pipe (hence raw non-blocking sockets: see `_connect`). Every failure (refused, no socket, timed out, reset,
a reply cut short or too long) becomes an unscannable verdict from `scan`, False from `ping`, a
ClamdUnavailableError from `version`; no library exception escapes. It must not decide what a
verdict means: the content pipeline does, and fails closed.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from contextlib import suppress
from typing import Any

from swg.clamd_reply import (
    INSTREAM,
    PING,
    VERSION,
    ClamdConfig,
    ClamdVerdict,
    ClamdVersion,
    instream_frames,
    parse_ping_reply,
    parse_scan_reply,
    parse_version_reply,
)
from ztcore.errors import ZTError

log = logging.getLogger("sekimori.clamd")
MAX_REPLY_BYTES = 4096


class ClamdUnavailableError(ZTError):
    """clamd could not be asked (VERSION): the message says why."""


class _Failure(Exception):
    """An I/O failure, described for the verdict's detail."""


class ClamdClient:
    def __init__(self, config: ClamdConfig) -> None:
        self._config = config
        self._address = config.parsed_address

    @property
    def address(self) -> str:
        return str(self._address)

    async def ping(self) -> bool:
        """True when clamd answers PONG within the timeouts."""
        try:
            return parse_ping_reply(await self._exchange(PING, None))
        except _Failure as exc:
            log.debug("clamd ping failed: %s", exc)
            return False

    async def version(self) -> ClamdVersion:
        """clamd's engine and database version; ClamdUnavailableError when it cannot be asked,
        ClamdReplyError when what answers is not clamd."""
        try:
            reply = await self._exchange(VERSION, None)
        except _Failure as exc:
            raise ClamdUnavailableError(str(exc)) from None
        return parse_version_reply(reply)

    async def scan(self, data: bytes | bytearray | memoryview) -> ClamdVerdict:
        """clamd's verdict on `data` (INSTREAM); never raises but for cancellation."""
        size, limit = memoryview(data).nbytes, self._config.max_stream_bytes
        if limit is not None and size > limit:
            return ClamdVerdict.not_scannable(f"the body ({size} bytes) is larger than clamd's "
                                              f"StreamMaxLength ({limit} bytes)")
        try:
            return parse_scan_reply(await self._exchange(INSTREAM, data))
        except _Failure as exc:
            return ClamdVerdict.unavailable(str(exc))
        except Exception as exc:   # fail closed on our own bugs too, and say so in the log
            log.exception("clamd scan failed unexpectedly")
            return ClamdVerdict.unavailable(f"internal error talking to clamd: {type(exc).__name__}")

    async def _exchange(self, command: bytes, body: bytes | bytearray | memoryview | None) -> bytes:
        """The reply to `command` (and `body`, framed for INSTREAM), or _Failure."""
        config, where = self._config, self.address
        try:
            sock = await asyncio.wait_for(self._connect(), config.connect_timeout_seconds)
        except TimeoutError:
            raise _Failure(f"connecting to clamd at {where} timed out after "
                           f"{config.connect_timeout_seconds:g} s") from None
        except (OSError, ValueError) as exc:   # ValueError: UnicodeError of a bad host name (IDNA)
            raise _Failure(f"cannot connect to clamd at {where}: {_describe(exc)}") from None
        try:
            async with asyncio.timeout(config.scan_timeout_seconds):
                return await self._talk(sock, command, body)
        except TimeoutError:
            raise _Failure(f"no reply from clamd at {where} within {config.scan_timeout_seconds:g} s") \
                from None
        except OSError as exc:
            raise _Failure(f"connection to clamd at {where} failed: {_describe(exc)}") from None
        finally:
            sock.close()

    async def _connect(self) -> socket.socket:
        """A connected non-blocking socket. Raw sockets, not asyncio streams: a stream's transport
        drops what it has not read yet when a write fails, and clamd's answer to an oversized
        body arrives just before the write fails."""
        loop, address = asyncio.get_running_loop(), self._address
        if address.kind == "unix":
            targets: list[tuple[int, Any]] = [(socket.AF_UNIX, address.path)]
        else:
            infos = await loop.getaddrinfo(address.host, address.port, type=socket.SOCK_STREAM)
            targets = [(family, sockaddr) for family, _, _, _, sockaddr in infos]
        error: OSError = OSError("no address to connect to")
        for family, target in targets:
            sock = socket.socket(family, socket.SOCK_STREAM)
            try:
                sock.setblocking(False)
                await loop.sock_connect(sock, target)
                return sock
            except OSError as exc:
                sock.close()
                error = exc
            except BaseException:
                sock.close()
                raise
        raise error

    async def _talk(self, sock: socket.socket, command: bytes,
                    body: bytes | bytearray | memoryview | None) -> bytes:
        loop = asyncio.get_running_loop()
        await loop.sock_sendall(sock, command)
        if body is None:
            return await _read_reply(sock)
        reply = asyncio.ensure_future(_read_reply(sock))
        try:
            try:
                for frame in instream_frames(body, self._config.chunk_bytes):
                    if reply.done():
                        break   # clamd answered before the end (size limit): it reads no more
                    await loop.sock_sendall(sock, frame)
            except OSError:
                # clamd closed while we were sending: its answer, if any, is already here
                await asyncio.wait({reply}, timeout=1.0)
                if not reply.done() or reply.exception() is not None or not reply.result():
                    raise
            return await reply
        finally:
            if not reply.done():
                reply.cancel()
                with suppress(asyncio.CancelledError, OSError, _Failure):
                    await reply


async def _read_reply(sock: socket.socket) -> bytes:
    """Up to and with the NUL, or what came before the connection closed."""
    loop, reply = asyncio.get_running_loop(), bytearray()
    while b"\x00" not in reply:
        if len(reply) > MAX_REPLY_BYTES:
            raise _Failure(f"clamd's reply is longer than {MAX_REPLY_BYTES} bytes")
        data = await loop.sock_recv(sock, MAX_REPLY_BYTES)
        if not data:
            break
        reply += data
    return bytes(reply)


def _describe(exc: Exception) -> str:
    return getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
