"""HTTPS origins for the inspection tests, one per certificate case, on 127.0.0.2 (ports chosen
by the OS): a valid certificate from the test's upstream CA, and expired, wrong-host,
self-signed and untrusted-chain (another CA) ones. Each serves the same small application:

  GET  /            "hello from <case>"
  GET  /headers     the request's headers as JSON (what reached the origin)
  GET  /file/<name> a file registered with `files[name] = bytes`
  POST /upload      {"bytes": n, "sha256": ...} of the body it received (`uploads` lists the
                    sizes of the complete ones)
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

HOST = "127.0.0.2"
CASES = ("good", "expired", "wronghost", "selfsigned", "untrusted", "passthrough", "plain")


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def make_ca(cn: str) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(_name(cn))
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False,
                                         encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256()))
    return cert, key


def make_leaf(issuer: x509.Certificate | None, issuer_key: ec.EllipticCurvePrivateKey | None,
              names: list[str], *, expired: bool = False) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.timezone.utc)
    start, end = ((now - dt.timedelta(days=30), now - dt.timedelta(days=1)) if expired
                  else (now - dt.timedelta(hours=1), now + dt.timedelta(days=10)))
    subject = _name(names[0])
    builder = (x509.CertificateBuilder().subject_name(subject)
               .issuer_name(issuer.subject if issuer else subject)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(start).not_valid_after(end)
               .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False)
               .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False))
    if issuer is None:   # self-signed: its own CA
        builder = builder.add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
    return builder.sign(issuer_key or key, hashes.SHA256()), key


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, *args: object) -> None:
        pass

    def _send(self, status: int, body: bytes, ctype: str = "text/plain; charset=utf-8",
              extra: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("content-type", ctype)
        self.send_header("content-length", str(len(body)))
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        if self.path == "/":
            self._send(200, f"hello from {self.server.case}\n".encode())
        elif self.path == "/headers":
            self._send(200, json.dumps({k.lower(): v for k, v in self.headers.items()}).encode(),
                       "application/json")
        elif self.path.startswith("/file/") and self.path[6:] in self.server.files:
            name = self.path[6:]
            self._send(200, self.server.files[name], "application/octet-stream",
                       {"content-disposition": f'attachment; filename="{name}"'})
        else:
            self._send(404, b"not found\n")

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length", "0"))
        digest, left = hashlib.sha256(), length
        while left:
            chunk = self.rfile.read(min(left, 1 << 20))
            if not chunk:
                break
            digest.update(chunk)
            left -= len(chunk)
        if not left:    # only complete uploads count
            self.server.uploads.append(length)
        self._send(200, json.dumps({"bytes": length - left, "sha256": digest.hexdigest()}).encode(),
                   "application/json")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    case = ""
    files: dict[str, bytes]
    uploads: list[int]

    def handle_error(self, request: object, client_address: object) -> None:
        """Quiet about connections the gateway cut on purpose (a blocked upload)."""
        import sys
        if not isinstance(sys.exc_info()[1], (ConnectionError, ssl.SSLError)):
            super().handle_error(request, client_address)  # type: ignore[arg-type]


class TlsOrigins:
    """Start every case; `port[case]`, `ca_path` (the CA a client should trust), `files`."""

    def __init__(self, workdir: Path, names: dict[str, list[str]], host: str = HOST) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.ca, ca_key = make_ca("Sekimori test upstream CA")
        self.ca_key = ca_key
        rogue, rogue_key = make_ca("Some other CA")
        self.ca_path = workdir / "upstream-ca.crt"
        self.ca_path.write_bytes(_pem(self.ca))
        self.files: dict[str, bytes] = {}
        self.uploads: list[int] = []
        self.port: dict[str, int] = {}
        self.certs: dict[str, x509.Certificate] = {}
        self._servers: list[_Server] = []
        for case in CASES:
            host_names = names[case]
            if case == "expired":
                cert, key = make_leaf(self.ca, ca_key, host_names, expired=True)
            elif case == "wronghost":
                cert, key = make_leaf(self.ca, ca_key, ["somewhere-else.test"])
            elif case == "selfsigned":
                cert, key = make_leaf(None, None, host_names)
            elif case == "untrusted":
                cert, key = make_leaf(rogue, rogue_key, host_names)
            else:
                cert, key = make_leaf(self.ca, ca_key, host_names)
            self.certs[case] = cert
            (workdir / f"{case}.crt").write_bytes(_pem(cert))
            (workdir / f"{case}.key").write_bytes(key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption()))
            server = _Server((host, 0), _Handler)
            server.case, server.files, server.uploads = case, self.files, self.uploads
            if case != "plain":   # plain HTTP
                ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
                ctx.load_cert_chain(str(workdir / f"{case}.crt"), str(workdir / f"{case}.key"))
                server.socket = ctx.wrap_socket(server.socket, server_side=True)
            self.port[case] = int(server.server_address[1])
            threading.Thread(target=server.serve_forever, daemon=True).start()
            self._servers.append(server)

    def close(self) -> None:
        for server in self._servers:
            server.shutdown()
            server.server_close()


class Nghttpd:
    """nghttpd (nghttp2's HTTP/2 server, an independent implementation) over TLS on `host`,
    serving `docroot`, with a certificate from `origins`' CA for `names`; stopped by its PID."""

    def __init__(self, workdir: Path, origins: TlsOrigins, names: list[str], port: int,
                 host: str = HOST) -> None:
        import shutil
        import subprocess
        import time
        exe = shutil.which("nghttpd") or "/usr/sbin/nghttpd"
        workdir.mkdir(parents=True, exist_ok=True)
        cert, key = make_leaf(origins.ca, origins.ca_key, names)
        (workdir / "h2.crt").write_bytes(_pem(cert))
        (workdir / "h2.key").write_bytes(key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
        self.docroot = workdir / "htdocs"
        self.docroot.mkdir(exist_ok=True)
        self.port = port
        self.log = open(workdir / "nghttpd.log", "wb")
        self.proc = subprocess.Popen([exe, "-a", host, "-d", str(self.docroot), str(port),
                                      str(workdir / "h2.key"), str(workdir / "h2.crt")],
                                     stdout=self.log, stderr=self.log)
        import socket
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection((host, port), timeout=0.2).close()
                return
            except OSError:
                if self.proc.poll() is not None:
                    break
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"nghttpd did not start: {(workdir / 'nghttpd.log').read_text()[-500:]}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except Exception:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
