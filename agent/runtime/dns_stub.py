"""The agent's split-DNS stub: a DNS server on UDP and TCP, one port, answering or forwarding.

This shell owns the sockets: it receives queries, asks `agent.dns.decide` what to do with each
(with the config of that moment: `config` is called per query, so a new config from the broker
applies at once), sends the answers, and relays forwarded queries to the upstream resolvers
over UDP. It must not decide anything about names itself.

Forwarding tries the upstreams in order, each for `timeout_seconds` (an ICMP "port unreachable"
moves on at once), and answers SERVFAIL when none replied. A reply counts only if it matches the
query (ID and question, RFC 5452), read on a fresh socket per query so the OS picks a random
source port. A truncated (TC) upstream reply goes to a UDP client as it is, and the client
retries over TCP; for a TCP client the stub asks that upstream again over TCP.

TCP follows RFC 1035 §4.2.2 (two-byte length prefix) and RFC 7766: queries on a connection are
answered in order; a bad length, a dropped packet or `tcp_idle_seconds` without a query ends
that connection only. A malformed packet is dropped and counted, never ends the listener.

Counters: every packet received ends in exactly one of `answered` (from the config, including
NODATA), `nxdomain`, `rejected` (FORMERR or NOTIMP), `forwarded` or `dropped`; `servfail` counts
the forwarded queries no upstream answered.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import struct
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from agent.dns import (
    FORMERR,
    NOTIMP,
    NXDOMAIN,
    DnsAnswer,
    DnsDrop,
    DnsForward,
    decide,
    is_reply_to,
    is_truncated,
    servfail,
)
from ztcore.split_dns import SplitDnsConfig

log = logging.getLogger("sekimori.agent.dns")
TCP_IDLE_SECONDS = 10.0
MAX_INFLIGHT = 256          # forwarded UDP queries waiting for an upstream; more are dropped
MAX_TCP_CONNECTIONS = 64
_LENGTH = struct.Struct("!H")
_MIN_MESSAGE_BYTES = 12     # a DNS header
_BIND_ATTEMPTS = 20


async def serve_dns(config: Callable[[], SplitDnsConfig], host: str, port: int,
                    upstreams: Sequence[tuple[str, int]], *, timeout_seconds: float = 2.0,
                    tcp_idle_seconds: float = TCP_IDLE_SECONDS) -> DnsStub:
    """Listen on `host`:`port` (0 picks a port free for both UDP and TCP) and serve until close().

    `upstreams` are (IP literal, port) pairs; pass them through `agent.dns.upstreams_without` so
    the stub never forwards to itself. Raises OSError if the port cannot be bound.
    """
    stub = DnsStub(config, upstreams, timeout_seconds=timeout_seconds,
                   tcp_idle_seconds=tcp_idle_seconds)
    await stub._listen(host, port)
    return stub


class DnsStub:
    def __init__(self, config: Callable[[], SplitDnsConfig], upstreams: Sequence[tuple[str, int]], *,
                 timeout_seconds: float, tcp_idle_seconds: float = TCP_IDLE_SECONDS) -> None:
        self._config = config
        self.upstreams = tuple(upstreams)
        self.timeout_seconds = timeout_seconds
        self.tcp_idle_seconds = tcp_idle_seconds
        self.host = ""
        self.port = 0
        self.answered = self.nxdomain = self.rejected = self.forwarded = self.dropped = 0
        self.servfail = 0
        self._udp: asyncio.DatagramTransport | None = None
        self._tcp: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self._closed = False

    def counters(self) -> dict[str, int]:
        return {"answered": self.answered, "nxdomain": self.nxdomain, "rejected": self.rejected,
                "forwarded": self.forwarded, "dropped": self.dropped, "servfail": self.servfail}

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._udp is not None:
            self._udp.close()
        if self._tcp is not None:
            self._tcp.close()
        for writer in list(self._writers):
            writer.close()
        for task in list(self._tasks):
            task.cancel()

    async def wait_closed(self) -> None:
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._tcp is not None:
            await self._tcp.wait_closed()

    async def _listen(self, host: str, port: int) -> None:
        loop = asyncio.get_running_loop()
        for _ in range(_BIND_ATTEMPTS):
            udp, _ = await loop.create_datagram_endpoint(lambda: _ClientDatagrams(self),
                                                         local_addr=(host, port))
            bound = int(udp.get_extra_info("sockname")[1])
            try:
                self._tcp = await asyncio.start_server(self._serve_tcp, host, bound)
            except OSError as exc:
                udp.close()
                if port == 0 and exc.errno == errno.EADDRINUSE:
                    continue   # the UDP port picked is taken for TCP: pick another pair
                raise
            self._udp = udp
            self.host, self.port = host, bound
            log.info("dns stub on %s port %d (udp, tcp), upstreams %s", host, bound,
                     ", ".join(f"{h}:{p}" for h, p in self.upstreams) or "none")
            return
        raise OSError(errno.EADDRINUSE, f"no port free for both UDP and TCP on {host}")

    # ---- the decision, the same for both transports ---------------------------------------------

    def _decide(self, packet: bytes, *, udp: bool) -> bytes | DnsForward | None:
        """The reply to send, a query to forward, or None (dropped); counts the outcome."""
        try:
            decision = decide(packet, self._config(), udp=udp)
        except Exception:   # config() failed: fail closed, as forwarding could leak a name
            log.exception("dns: no config for a query; answering SERVFAIL")
            reply = servfail(packet)
            if reply is None:
                self.dropped += 1
            else:
                self.servfail += 1
            return reply
        if isinstance(decision, DnsDrop):
            self.dropped += 1
            if decision.why.startswith("internal-error"):
                log.error("dns: dropped a query: %s", decision.why)
            else:
                log.debug("dns: dropped a packet: %s", decision.why)
            return None
        if isinstance(decision, DnsAnswer):
            if decision.rcode == NXDOMAIN:
                self.nxdomain += 1
            elif decision.rcode in (FORMERR, NOTIMP):
                self.rejected += 1
            else:
                self.answered += 1
            log.debug("dns: answered: %s", decision.why)
            return decision.reply
        self.forwarded += 1
        log.debug("dns: forwarding %s", decision.qname)
        return decision

    def _on_datagram(self, packet: bytes, client: Any) -> None:
        outcome = self._decide(packet, udp=True)
        if isinstance(outcome, bytes):
            self._send_udp(outcome, client)
        elif isinstance(outcome, DnsForward):
            if len(self._tasks) >= MAX_INFLIGHT:
                self.forwarded -= 1
                self.dropped += 1
                log.warning("dns: %d queries already wait for an upstream; dropped one", MAX_INFLIGHT)
                return
            self._spawn(self._forward_udp(outcome, client))

    def _send_udp(self, reply: bytes, client: Any) -> None:
        if self._udp is not None and not self._closed:
            self._udp.sendto(reply, client)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _forward_udp(self, forward: DnsForward, client: Any) -> None:
        try:
            reply = await self._forward(forward, tcp_client=False)
        except Exception:   # a failure ends this query only
            log.exception("dns: forwarding %s failed", forward.qname)
            return
        if reply is not None:
            self._send_udp(reply, client)

    # ---- upstreams ---------------------------------------------------------------------------------

    async def _forward(self, forward: DnsForward, *, tcp_client: bool) -> bytes | None:
        for host, port in self.upstreams:
            reply = await self._ask_udp(forward.query, host, port)
            if reply is None:
                continue
            if tcp_client and is_truncated(reply):
                reply = await self._ask_tcp(forward.query, host, port) or reply
            return reply
        self.servfail += 1
        log.warning("dns: no upstream answered for %s; answering SERVFAIL", forward.qname)
        return servfail(forward.query)

    async def _ask_udp(self, query: bytes, host: str, port: int) -> bytes | None:
        loop = asyncio.get_running_loop()
        done: asyncio.Future[bytes | None] = loop.create_future()
        try:
            transport, _ = await loop.create_datagram_endpoint(lambda: _UpstreamDatagrams(query, done),
                                                               remote_addr=(host, port))
        except OSError as exc:
            log.warning("dns: cannot reach upstream %s:%d: %s", host, port, exc)
            return None
        try:
            reply = await asyncio.wait_for(done, self.timeout_seconds)
        except TimeoutError:
            log.warning("dns: upstream %s:%d did not answer within %.1f s", host, port,
                        self.timeout_seconds)
            return None
        finally:
            transport.close()
        if reply is None:
            log.warning("dns: upstream %s:%d refused the query (ICMP error)", host, port)
        return reply

    async def _ask_tcp(self, query: bytes, host: str, port: int) -> bytes | None:
        async def exchange() -> bytes:
            reader, writer = await asyncio.open_connection(host, port)
            try:
                writer.write(_LENGTH.pack(len(query)) + query)
                await writer.drain()
                (length,) = _LENGTH.unpack(await reader.readexactly(_LENGTH.size))
                return await reader.readexactly(length)
            finally:
                writer.close()

        try:
            reply = await asyncio.wait_for(exchange(), self.timeout_seconds)
        except (OSError, TimeoutError, asyncio.IncompleteReadError) as exc:
            log.warning("dns: upstream %s:%d over TCP: %s", host, port, exc or type(exc).__name__)
            return None
        return reply if is_reply_to(query, reply) else None

    # ---- TCP clients -------------------------------------------------------------------------------

    async def _serve_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._closed or len(self._writers) >= MAX_TCP_CONNECTIONS:
            if not self._closed:
                log.warning("dns: %d TCP connections open; refused one", len(self._writers))
            writer.close()
            return
        self._writers.add(writer)
        try:
            while await self._serve_one_tcp(reader, writer):
                pass
        except (OSError, TimeoutError):   # the client went away or stalled: this connection only
            pass
        except Exception:
            log.exception("dns: TCP connection failed")
        finally:
            self._writers.discard(writer)
            writer.close()

    async def _serve_one_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """Answer one length-prefixed query; False ends the connection."""
        try:
            head = await asyncio.wait_for(reader.readexactly(_LENGTH.size), self.tcp_idle_seconds)
        except (asyncio.IncompleteReadError, TimeoutError):
            return False   # the client closed, or sent nothing for tcp_idle_seconds
        (length,) = _LENGTH.unpack(head)
        if length < _MIN_MESSAGE_BYTES:
            self.dropped += 1
            log.debug("dns: TCP length %d is shorter than a DNS header; closing", length)
            return False
        try:
            packet = await asyncio.wait_for(reader.readexactly(length), self.tcp_idle_seconds)
        except (asyncio.IncompleteReadError, TimeoutError):
            self.dropped += 1
            log.debug("dns: TCP message shorter than its length %d; closing", length)
            return False
        outcome = self._decide(packet, udp=False)
        if isinstance(outcome, DnsForward):
            outcome = await self._forward(outcome, tcp_client=True)
        if outcome is None:
            return False   # dropped: closing tells the client at once, rather than after a timeout
        writer.write(_LENGTH.pack(len(outcome)) + outcome)
        await asyncio.wait_for(writer.drain(), self.tcp_idle_seconds)
        return not self._closed


class _ClientDatagrams(asyncio.DatagramProtocol):
    def __init__(self, stub: DnsStub) -> None:
        self.stub = stub

    def datagram_received(self, data: bytes, addr: Any) -> None:
        try:
            self.stub._on_datagram(data, addr)
        except Exception:   # never let one packet end the listener
            self.stub.dropped += 1
            log.exception("dns: a UDP packet failed")

    def error_received(self, exc: Exception) -> None:
        log.debug("dns: UDP error: %s", exc)   # e.g. ICMP for a reply to a client that left


class _UpstreamDatagrams(asyncio.DatagramProtocol):
    """One forwarded query on its own connected socket: sent once, first matching reply wins."""

    def __init__(self, query: bytes, done: asyncio.Future[bytes | None]) -> None:
        self.query, self.done = query, done

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport.sendto(self.query)  # type: ignore[attr-defined]

    def datagram_received(self, data: bytes, addr: Any) -> None:
        if not self.done.done() and is_reply_to(self.query, data):
            self.done.set_result(data)

    def error_received(self, exc: Exception) -> None:
        if not self.done.done():
            self.done.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_result(None)
