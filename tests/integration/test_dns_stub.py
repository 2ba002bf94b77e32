"""agent/runtime/dns_stub.py over real sockets on 127.0.0.1, with a real upstream resolver.

The upstream ("the system resolver") is dnslib's threaded DNSServer on UDP and TCP; it counts
every name it is asked, so a test can show that internal names never reach it. The stub runs
on its own event loop in a thread; clients are dnslib's blocking client, raw sockets and dig.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from dnslib import (  # type: ignore[import-untyped]
    EDNS0,
    QTYPE,
    RCODE,
    RR,
    TXT,
    A,
    DNSHeader,
    DNSQuestion,
    DNSRecord,
)
from dnslib.server import (  # type: ignore[import-untyped]
    BaseResolver,
    DNSHandler,
    DNSLogger,
    DNSServer,
)
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from agent.runtime.dns_stub import DnsStub, serve_dns
from ztcore.split_dns import SplitDnsConfig, parse_split_dns

HOST = "127.0.0.1"
CONFIG = parse_split_dns({
    "zones": ["city.test"],
    "records": [{"name": "intra.city.test", "addresses": ["10.20.30.40", "fd00::40"]},
                {"name": "many.city.test", "addresses": [f"10.9.0.{i}" for i in range(1, 61)]}],
    "ttl_seconds": 30})
PUBLIC = "93.184.215.14"


class _Resolver(BaseResolver):  # type: ignore[misc]
    """public.example → PUBLIC; big.example TXT → more than 512 bytes; the rest NXDOMAIN."""

    def __init__(self) -> None:
        self.asked: list[str] = []
        self.lock = threading.Lock()

    def resolve(self, request: Any, handler: Any) -> Any:
        name = str(request.q.qname).lower()
        with self.lock:
            self.asked.append(name)
        reply = request.reply()
        if name == "public.example." and request.q.qtype == QTYPE.A:
            reply.add_answer(RR(request.q.qname, QTYPE.A, rdata=A(PUBLIC), ttl=60))
        elif name == "big.example." and request.q.qtype == QTYPE.TXT:
            for i in range(8):
                reply.add_answer(RR(request.q.qname, QTYPE.TXT, rdata=TXT(f"{i}" * 200), ttl=60))
        else:
            reply.header.rcode = RCODE.NXDOMAIN
        return reply


class _Handler(DNSHandler):  # type: ignore[misc]
    udplen = 512   # like a classic server: a bigger UDP answer goes out truncated (TC)


class Upstream:
    def __init__(self) -> None:
        self.resolver = _Resolver()
        quiet = DNSLogger(log="-request,-reply,-truncated,-error", prefix=False)
        for _ in range(20):   # port 0 picks a free UDP port; its TCP twin may be taken
            self.udp = DNSServer(self.resolver, address=HOST, port=0, logger=quiet, handler=_Handler)
            self.port = self.udp.server.server_address[1]
            try:
                self.tcp = DNSServer(self.resolver, address=HOST, port=self.port, tcp=True,
                                     logger=quiet, handler=_Handler)
                break
            except OSError:
                self.udp.server.server_close()
        else:
            raise OSError("no port free for both UDP and TCP")
        self.udp.start_thread()
        self.tcp.start_thread()

    def asked(self) -> list[str]:
        with self.resolver.lock:
            return list(self.resolver.asked)

    def close(self) -> None:
        for server in (self.udp, self.tcp):
            server.stop()
            server.server.server_close()


class StubThread:
    """serve_dns() on an event loop in a thread, so the tests can use blocking clients."""

    def __init__(self, upstreams: list[tuple[str, int]], *, timeout_seconds: float = 1.0,
                 tcp_idle_seconds: float = 10.0) -> None:
        self.config: SplitDnsConfig = CONFIG
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.stub: DnsStub = self._run(serve_dns(lambda: self.config, HOST, 0, upstreams,
                                                 timeout_seconds=timeout_seconds,
                                                 tcp_idle_seconds=tcp_idle_seconds))
        self.port = self.stub.port

    def _run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(10)

    def counters(self) -> dict[str, int]:
        async def read() -> dict[str, int]:
            return self.stub.counters()
        return dict(self._run(read()))

    def ask(self, name: str, qtype: str = "A", *, tcp: bool = False, edns: int | None = None) -> Any:
        q = DNSRecord.question(name, qtype)
        if edns is not None:
            q.add_ar(EDNS0(udp_len=edns))
        reply = DNSRecord.parse(q.send(HOST, self.port, tcp=tcp, timeout=5))
        assert reply.header.id == q.header.id
        return reply

    def close(self) -> None:
        async def stop() -> None:
            self.stub.close()
            await self.stub.wait_closed()
        self._run(stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture(scope="module")
def upstream() -> Iterator[Upstream]:
    u = Upstream()
    yield u
    u.close()


@pytest.fixture(scope="module")
def stub(upstream: Upstream) -> Iterator[StubThread]:
    s = StubThread([(HOST, upstream.port)])
    yield s
    s.close()


def addresses(reply: Any) -> list[str]:
    return [str(rr.rdata) for rr in reply.rr]


def test_private_names_are_answered_from_the_config(stub: StubThread, upstream: Upstream) -> None:
    before, seen = stub.counters(), len(upstream.asked())
    reply = stub.ask("Intra.City.Test")
    assert reply.header.rcode == RCODE.NOERROR and reply.header.aa == 1
    assert addresses(reply) == ["10.20.30.40"]
    assert addresses(stub.ask("intra.city.test", "AAAA")) == ["fd00::40"]
    mx = stub.ask("intra.city.test", "MX")
    assert mx.header.rcode == RCODE.NOERROR and mx.rr == []
    assert upstream.asked()[seen:] == []
    assert stub.counters()["answered"] == before["answered"] + 3


def test_internal_misses_are_nxdomain_and_never_reach_the_upstream(stub: StubThread,
                                                                  upstream: Upstream) -> None:
    before, seen = stub.counters(), len(upstream.asked())
    for name in ["secret-project.city.test", "payroll.intra.city.test", "CITY.test"]:
        reply = stub.ask(name)
        assert reply.header.rcode == (RCODE.NOERROR if name == "CITY.test" else RCODE.NXDOMAIN)
        assert reply.header.aa == 1
    assert stub.ask("hr.city.test", tcp=True).header.rcode == RCODE.NXDOMAIN
    assert stub.counters()["nxdomain"] == before["nxdomain"] + 3
    assert not [n for n in upstream.asked()[seen:] if n.endswith("city.test.")]


def test_public_names_are_forwarded_to_the_upstream(stub: StubThread, upstream: Upstream) -> None:
    before = stub.counters()
    reply = stub.ask("Public.Example")
    assert addresses(reply) == [PUBLIC] and reply.header.aa == 1   # the upstream's own reply
    assert stub.ask("missing.example").header.rcode == RCODE.NXDOMAIN
    assert stub.ask("evilcity.test").header.rcode == RCODE.NXDOMAIN
    assert {"public.example.", "missing.example.", "evilcity.test."} <= set(upstream.asked())
    assert stub.counters()["forwarded"] == before["forwarded"] + 3


def test_tcp_answers_and_forwards(stub: StubThread) -> None:
    assert addresses(stub.ask("intra.city.test", tcp=True)) == ["10.20.30.40"]
    assert addresses(stub.ask("public.example", tcp=True)) == [PUBLIC]
    assert len(stub.ask("many.city.test", tcp=True).rr) == 60


def test_several_queries_on_one_tcp_connection(stub: StubThread) -> None:
    queries = [DNSRecord.question(n) for n in ("intra.city.test", "public.example", "nope.city.test")]
    with socket.create_connection((HOST, stub.port), timeout=5) as sock:
        sock.sendall(b"".join(struct.pack("!H", len(q.pack())) + q.pack() for q in queries))
        replies = [DNSRecord.parse(_read_frame(sock)) for _ in queries]
    assert [r.header.id for r in replies] == [q.header.id for q in queries]
    assert [r.header.rcode for r in replies] == [RCODE.NOERROR, RCODE.NOERROR, RCODE.NXDOMAIN]


def test_big_answers_truncate_over_udp_and_come_whole_over_tcp(stub: StubThread) -> None:
    assert stub.ask("many.city.test").header.tc == 1
    assert len(stub.ask("many.city.test", edns=1232).rr) == 60
    relayed = stub.ask("big.example", "TXT")            # the upstream's TC reply, relayed as is
    assert relayed.header.tc == 1 and relayed.rr == []
    whole = stub.ask("big.example", "TXT", tcp=True)     # the stub asked the upstream over TCP
    assert whole.header.tc == 0 and len(whole.rr) == 8


def test_a_new_config_takes_effect_at_once(stub: StubThread, upstream: Upstream) -> None:
    try:
        stub.config = parse_split_dns({"zones": ["city.test", "example"], "records": [
            {"name": "intra.city.test", "addresses": ["10.0.0.99"]}]})
        assert addresses(stub.ask("intra.city.test")) == ["10.0.0.99"]
        assert stub.ask("public.example").header.rcode == RCODE.NXDOMAIN   # now a private zone
        stub.config = SplitDnsConfig()
        assert stub.ask("nope-now-public.city.test").header.rcode == RCODE.NXDOMAIN
        assert "nope-now-public.city.test." in upstream.asked()           # forwarded this time
    finally:
        stub.config = CONFIG


def _blackhole() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)   # bound, never answers
    sock.bind((HOST, 0))
    return sock


def _closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def test_no_upstream_answering_gives_servfail_within_the_timeout() -> None:
    hole = _blackhole()
    s = StubThread([(HOST, hole.getsockname()[1])], timeout_seconds=0.5)
    try:
        start = time.monotonic()
        reply = s.ask("public.example")
        took = time.monotonic() - start
        assert reply.header.rcode == RCODE.SERVFAIL and 0.4 < took < 2.0
        assert s.ask("intra.city.test").header.rcode == RCODE.NOERROR   # answered, no upstream
        assert s.ask("public.example", tcp=True).header.rcode == RCODE.SERVFAIL
        assert s.counters()["servfail"] == 2
    finally:
        s.close()
        hole.close()


def test_an_unreachable_upstream_is_skipped(upstream: Upstream) -> None:
    hole = _blackhole()
    s = StubThread([(HOST, _closed_port()), (HOST, hole.getsockname()[1]), (HOST, upstream.port)],
                   timeout_seconds=0.5)
    try:
        start = time.monotonic()
        assert addresses(s.ask("public.example")) == [PUBLIC]
        assert time.monotonic() - start < 2.0   # the closed port fails at once (ICMP), the hole times out
        assert s.counters()["servfail"] == 0
    finally:
        s.close()
        hole.close()
    only_closed = StubThread([(HOST, _closed_port())], timeout_seconds=3.0)
    try:
        start = time.monotonic()
        assert only_closed.ask("public.example").header.rcode == RCODE.SERVFAIL
        assert time.monotonic() - start < 1.5
    finally:
        only_closed.close()


def _read_frame(sock: socket.socket) -> bytes:
    (length,) = struct.unpack("!H", _read_exactly(sock, 2))
    return _read_exactly(sock, length)


def _read_exactly(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError("closed")
        data += chunk
    return data


def _closed_by_peer(sock: socket.socket) -> bool:
    try:
        while sock.recv(4096):
            pass
    except (TimeoutError, ConnectionResetError) as exc:
        return isinstance(exc, ConnectionResetError)
    return True


def test_a_bad_tcp_length_or_an_idle_connection_ends_only_that_connection() -> None:
    s = StubThread([], tcp_idle_seconds=0.5)
    try:
        with socket.create_connection((HOST, s.port), timeout=5) as bad:
            bad.sendall(b"\x00\x03abc")
            assert _closed_by_peer(bad)
        start = time.monotonic()
        with socket.create_connection((HOST, s.port), timeout=5) as idle:
            assert _closed_by_peer(idle) and 0.4 < time.monotonic() - start < 3
        with socket.create_connection((HOST, s.port), timeout=5) as good:
            for _ in range(3):   # each query within the idle time keeps the connection open
                time.sleep(0.3)
                q = DNSRecord.question("intra.city.test")
                good.sendall(struct.pack("!H", len(q.pack())) + q.pack())
                assert addresses(DNSRecord.parse(_read_frame(good))) == ["10.20.30.40"]
        assert s.counters()["dropped"] == 1
        assert addresses(s.ask("intra.city.test", tcp=True)) == ["10.20.30.40"]
    finally:
        s.close()


NAMES = ["intra.city.test", "nope.city.test", "public.example", "big.example", "many.city.test"]


@st.composite
def mutated_queries(draw: st.DrawFn) -> bytes:
    qtype = draw(st.sampled_from([QTYPE.A, QTYPE.AAAA, QTYPE.TXT]))
    q = DNSRecord(DNSHeader(id=draw(st.integers(0, 0xFFFF))),   # DNSRecord.question() uses random
                  q=DNSQuestion(draw(st.sampled_from(NAMES)), qtype))
    data = bytearray(q.pack())
    for _ in range(draw(st.integers(1, 3))):
        at = draw(st.integers(0, len(data) - 1)) if data else 0
        op = draw(st.sampled_from(["flip", "cut", "append"]))
        if op == "flip" and data:
            data[at] ^= draw(st.integers(1, 255))
        elif op == "cut":
            del data[at:]
        else:
            data += draw(st.binary(min_size=1, max_size=32))
    return bytes(data)


def _send_garbage_tcp(port: int, packet: bytes, framed: bool) -> None:
    with socket.create_connection((HOST, port), timeout=5) as sock:
        sock.sendall(struct.pack("!H", len(packet)) + packet if framed else packet)
        sock.shutdown(socket.SHUT_WR)   # so a short frame ends at once, not after the idle time
        _closed_by_peer(sock)


def test_malformed_packets_never_stop_the_listener(stub: StubThread) -> None:
    before = stub.counters()
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sent = []

    @settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(st.binary(max_size=300) | mutated_queries(), st.booleans())
    @example(b"", True)
    @example(b"\x12\x34\x81\x00" + bytes(8), False)   # a response
    def send(packet: bytes, framed: bool) -> None:
        udp.sendto(packet, (HOST, stub.port))
        _send_garbage_tcp(stub.port, packet, framed)
        sent.append(packet)

    try:
        send()
    finally:
        udp.close()
    after = stub.counters()
    assert len(sent) >= 100
    assert after["dropped"] > before["dropped"]
    assert addresses(stub.ask("intra.city.test")) == ["10.20.30.40"]
    assert addresses(stub.ask("public.example", tcp=True)) == [PUBLIC]


def test_dig_as_an_independent_client(stub: StubThread) -> None:
    dig = shutil.which("dig")
    if dig is None:
        pytest.skip("dig is not installed (Debian: bind9-dnsutils)")
    common = [dig, f"@{HOST}", "-p", str(stub.port), "+time=3", "+tries=1"]

    def run(*args: str) -> str:
        out = subprocess.run([*common, *args], capture_output=True, text=True, timeout=20)
        assert out.returncode == 0, out.stdout + out.stderr
        return out.stdout

    assert run("+short", "intra.city.test", "A").split() == ["10.20.30.40"]
    assert run("+short", "+tcp", "intra.city.test", "AAAA").split() == ["fd00::40"]
    assert run("+short", "public.example").split() == [PUBLIC]
    full = run("nope.city.test")
    assert "status: NXDOMAIN" in full and "flags: qr aa rd ra" in full and "SOA" in full
    assert len(run("+short", "+ignore", "+noedns", "many.city.test").split()) == 0   # TC, not retried
    assert len(run("+short", "many.city.test").split()) == 60   # dig's EDNS size is enough
