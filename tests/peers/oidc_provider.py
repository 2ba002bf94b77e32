"""A throwaway OpenID Connect provider on 127.0.0.1 for the OIDC integration tests (and by hand).

The provider is panva's `oidc-provider` (npm, OpenID Certified), pinned in `oidc/package.json`
and driven by `oidc/idp.mjs`: a login form that really checks passwords, first-party
auto-consent, PKCE required (S256), static clients, and per-user `amr`/`acr` (alice logs in
with ["pwd", "otp"] and acr "urn:sekimori:mfa", bob with ["pwd"] only).

`start_provider` installs the npm package into `tests/peers/oidc/node_modules` (gitignored) on
first use, starts `node idp.mjs PORT` on a free port, waits for discovery to answer with the
right issuer, and returns an `OidcProvider` that stops it by its PID. Each instance signs with
its own keys, generated here when it starts (one RSA, one EC P-256, one Ed25519): two instances
never share a key, and by default they do share the key ids ("rsa", "ec", "okp"), so a token
from one presented to the other fails on the signature, not only on an unknown `kid`. Several
instances can run at once.

`headless_login` drives the login form over HTTP (httpx) and stops at the redirect to the
relying party's redirect URI, which is never contacted: it returns that redirect's query.

Needs Node.js (20 or later) and npm; `unavailable()` says why not when they are missing. The
first install needs the npm registry (about 2 s); later runs do not.

    .venv/bin/python -m tests.peers.oidc_provider [DIR]    # start, print the issuer, stop on Ctrl-C
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import jwt.algorithms
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

PEER_DIR = Path(__file__).resolve().parent / "oidc"
NODE_MODULES = PEER_DIR / "node_modules"

# The clients idp.mjs registers (all with the same secret; PKCE is required of every one).
CLIENT_SECRET = "gateway-secret"
CONFIDENTIAL_CLIENT = "gateway"        # client_secret_basic, ID token RS256
ES256_CLIENT = "gateway-es256"         # client_secret_basic, ID token ES256
EDDSA_CLIENT = "gateway-eddsa"         # client_secret_basic, ID token EdDSA (Ed25519)
POST_CLIENT = "gateway-post"           # client_secret_post, ID token RS256
PUBLIC_CLIENT = "agent-public"         # token_endpoint_auth_method none, native, loopback only

# The redirect URIs every client accepts unless the caller gives its own. The public (native)
# client accepts the loopback ones on any port (RFC 8252 §7.3); the others need the exact URI.
AGENT_REDIRECT_URI = "http://127.0.0.1:53682/callback"
GATEWAY_REDIRECT_URI = "https://gateway.city.example.lg.jp/oidc/callback"
DEFAULT_REDIRECT_URIS = (AGENT_REDIRECT_URI, GATEWAY_REDIRECT_URI)

MFA_ACR = "urn:sekimori:mfa"
USERS: dict[str, dict[str, Any]] = {
    "alice": {"password": "alicepw", "email": "alice@city.example.lg.jp", "name": "Alice Tanaka",
              "preferred_username": "alice", "groups": ["tax-clerks", "tax-dept", "all-staff"],
              "amr": ["pwd", "otp"], "acr": MFA_ACR},
    "bob": {"password": "bobpw", "email": "bob@city.example.lg.jp", "name": "Bob Suzuki",
            "preferred_username": "bob", "groups": ["tax-dept", "all-staff"],
            "amr": ["pwd"], "acr": "urn:sekimori:pwd"},
    # no preferred_username, no groups, no acr: the fallbacks
    "carol": {"password": "carolpw", "email": "carol@city.example.lg.jp", "name": "Carol Sato",
              "groups": [], "amr": ["pwd"]},
}


def unavailable() -> str | None:
    """Why this peer cannot run on this machine, or None."""
    for tool in ("node", "npm"):
        if shutil.which(tool) is None:
            return (f"{tool} is not installed (the OIDC provider peer needs Node.js 20+ and npm: "
                    "apt-get install nodejs npm)")
    return None


def ensure_installed(timeout_seconds: float = 300.0) -> None:
    """`npm install` the pinned provider into tests/peers/oidc/node_modules if it is missing.

    A lock file in the temporary folder keeps parallel test processes from installing at once.
    `--no-package-lock`: the one pinned dependency is the contract; no lockfile is written.
    """
    marker = NODE_MODULES / "oidc-provider" / "package.json"
    if marker.exists():
        return
    lock_path = Path(tempfile.gettempdir()) / "sekimori-oidc-peer-npm.lock"
    with lock_path.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if marker.exists():
            return
        out = subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--no-package-lock"],
                             cwd=PEER_DIR, capture_output=True, text=True, timeout=timeout_seconds,
                             stdin=subprocess.DEVNULL)
        if out.returncode != 0 or not marker.exists():
            raise RuntimeError(f"npm install in {PEER_DIR} failed ({out.returncode}):\n"
                               f"{out.stdout[-2000:]}\n{out.stderr[-2000:]}")


# -- keys ------------------------------------------------------------------------------------------

def make_jwks(kid_prefix: str = "") -> dict[str, list[dict[str, Any]]]:
    """A fresh private JWK Set: RSA 2048 (RS256/PS256), EC P-256 (ES256), Ed25519 (EdDSA)."""
    keys = {
        "rsa": jwt.algorithms.RSAAlgorithm.to_jwk(
            rsa.generate_private_key(public_exponent=65537, key_size=2048), as_dict=True),
        "ec": jwt.algorithms.ECAlgorithm.to_jwk(ec.generate_private_key(ec.SECP256R1()), as_dict=True),
        "okp": jwt.algorithms.OKPAlgorithm.to_jwk(ed25519.Ed25519PrivateKey.generate(), as_dict=True),
    }
    for kid, jwk in keys.items():
        jwk.pop("key_ops", None)   # PyJWT writes ["sign"] for a private key; the public JWK would keep it
        jwk.update(kid=kid_prefix + kid, use="sig")
    return {"keys": list(keys.values())}


def public_jwks(jwks: Mapping[str, Any]) -> dict[str, list[dict[str, Any]]]:
    private = {"d", "p", "q", "dp", "dq", "qi", "oth"}
    return {"keys": [{k: v for k, v in key.items() if k not in private} for key in jwks["keys"]]}


# -- the running provider --------------------------------------------------------------------------

@dataclass
class OidcProvider:
    root: Path
    pid: int
    port: int
    redirect_uris: tuple[str, ...]
    jwks: dict[str, Any] = field(repr=False)   # private: a test may sign "as this provider"
    _proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def issuer(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def discovery_url(self) -> str:
        return f"{self.issuer}/.well-known/openid-configuration"

    def log(self) -> str:
        with contextlib.suppress(OSError):
            return (self.root / "idp.log").read_text(errors="replace")
        return ""

    def stop(self) -> None:
        """SIGTERM our node by its PID, wait, SIGKILL if it hangs."""
        try:
            os.kill(self.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        if self._proc is not None:
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            return
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                os.kill(self.pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.05)
        os.kill(self.pid, signal.SIGKILL)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_ready(server: OidcProvider, proc: subprocess.Popen[bytes], timeout_seconds: float) -> None:
    deadline = time.monotonic() + timeout_seconds
    with httpx.Client(timeout=1.0, trust_env=False) as client:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"idp.mjs exited with {proc.returncode}: {server.log()[-2000:]}")
            try:
                doc = client.get(server.discovery_url).json()
                if doc.get("issuer") == server.issuer:
                    return
            except (httpx.HTTPError, ValueError):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"the OIDC provider did not answer on {server.discovery_url} "
                                   f"within {timeout_seconds} s: {server.log()[-2000:]}")
            time.sleep(0.05)


def start_provider(root: Path, *, redirect_uris: Sequence[str] = DEFAULT_REDIRECT_URIS,
                   users: Mapping[str, Mapping[str, Any]] | None = None, kid_prefix: str = "",
                   timeout_seconds: float = 20.0) -> OidcProvider:
    """Start one provider with its own fresh keys in `root` (created if missing; holds the log).
    Retries with a new port if another process took the chosen one before node bound it."""
    ensure_installed()
    root.mkdir(parents=True, exist_ok=True)
    jwks = make_jwks(kid_prefix)
    environment = {**os.environ,
                   "OIDC_REDIRECT_URIS": json.dumps(list(redirect_uris)),
                   "OIDC_USERS": json.dumps(dict(users if users is not None else USERS)),
                   "OIDC_JWKS": json.dumps(jwks),
                   "OIDC_CLIENT_SECRET": CLIENT_SECRET,
                   "NODE_ENV": "test"}
    last_error = ""
    for _attempt in range(3):
        port = free_port()
        with (root / "idp.log").open("wb") as out:
            proc = subprocess.Popen(["node", str(PEER_DIR / "idp.mjs"), str(port)], cwd=PEER_DIR,
                                    env=environment, stdout=out, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL)
        server = OidcProvider(root, proc.pid, port, tuple(redirect_uris), jwks, proc)
        try:
            _wait_ready(server, proc, timeout_seconds)
        except RuntimeError as exc:
            last_error = str(exc)
            server.stop()
            continue
        return server
    raise RuntimeError(f"the OIDC provider did not start: {last_error}")


# -- a user at the login form, without a browser --------------------------------------------------

_FORM_ACTION = re.compile(r'<form[^>]*action="([^"]+)"')


class LoginFailed(Exception):
    """The provider did not send the user back to the redirect URI; the message says where it stopped."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


def headless_login(authorization_url: str, username: str, password: str, redirect_uri: str, *,
                   abort: bool = False, timeout_seconds: float = 5.0) -> dict[str, str]:
    """Log in at the provider as a browser would and return the query of the redirect to
    `redirect_uri` (code, state, iss, or error). Redirects are followed by hand so the redirect
    URI itself is never contacted. `abort` presses "cancel" instead of signing in."""
    with httpx.Client(timeout=timeout_seconds, trust_env=False, follow_redirects=False) as client:
        response = client.get(authorization_url)
        for _ in range(10):   # /auth -> /interaction/:uid (the form)
            if response.status_code not in (302, 303):
                break
            location = urllib.parse.urljoin(str(response.url), response.headers["location"])
            if location.startswith(redirect_uri):
                return _query(location)   # an error sent straight back (e.g. invalid_scope)
            response = client.get(location)
        match = _FORM_ACTION.search(response.text)
        if response.status_code != 200 or match is None:
            raise LoginFailed(f"no login form at {response.url}: {response.status_code} "
                              f"{response.text[:300]!r}", response.status_code)
        action = urllib.parse.urljoin(str(response.url), match.group(1))
        form = {"abort": "1"} if abort else {"login": username, "password": password}
        response = client.post(action, data=form)
        for _ in range(10):
            if response.status_code not in (302, 303):
                break
            location = urllib.parse.urljoin(str(response.url), response.headers["location"])
            if location.startswith(redirect_uri):
                return _query(location)
            response = client.get(location)
        raise LoginFailed(f"the provider answered {response.status_code} at {response.url}",
                          response.status_code)


def _query(url: str) -> dict[str, str]:
    return dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query, keep_blank_values=True))


def main(argv: list[str]) -> int:
    root = Path(argv[1]) if len(argv) > 1 else Path(tempfile.mkdtemp(prefix="sekimori-oidc-"))
    why = unavailable()
    if why:
        print(why, file=sys.stderr)
        return 1
    server = start_provider(root)
    print(f"OIDC_PID={server.pid} ISSUER={server.issuer} CLIENT={CONFIDENTIAL_CLIENT}:{CLIENT_SECRET} "
          f"PUBLIC_CLIENT={PUBLIC_CLIENT} REDIRECT_URIS={','.join(server.redirect_uris)} LOG={root}/idp.log")
    try:
        signal.pause()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
