"""A throwaway OpenLDAP slapd on 127.0.0.1 for the LDAP integration tests (and by hand).

It owns a temporary folder (config, database, CA, server certificate, log), two free ports
(`ldap://` with StartTLS, and `ldaps://`), and the test directory: staff in nested groups
(`tax-clerks ⊂ tax-dept ⊂ all-staff`), a group cycle, accounts whose names look like filter
injections (`*`, `a*)(uid=*`), an account locked by the administrator (ppolicy
`pwdAccountLockedTime: 000001010000Z`), an expired one (`shadowExpire`), and AD-shaped entries
carrying `sAMAccountName`, `userAccountControl`, `pwdLastSet` and `accountExpires` (a small
schema of our own with AD's attribute OIDs: OpenLDAP's msuser.schema clashes with the memberof
overlay and makes `nTSecurityDescriptor` mandatory). The cn=Monitor database is on, so a test can count binds and connections.

The data is loaded through the running server, not with slapadd, so the memberof overlay fills
`memberOf`. The server is stopped by its own PID. Needs the Debian package `slapd` and
python-ldap; `unavailable()` says why not when they are missing.

    .venv/bin/python -m tests.peers.slapd [DIR]    # start, print the URLs, stop on Ctrl-C
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

SUFFIX = "dc=city,dc=example,dc=lg,dc=jp"
ADMIN_DN = f"cn=admin,{SUFFIX}"
ADMIN_PASSWORD = "admin-secret"
SERVICE_DN = f"cn=sekimori-svc,ou=service,{SUFFIX}"
SERVICE_PASSWORD = "svc-secret"
PEOPLE = f"ou=people,{SUFFIX}"
GROUPS = f"ou=groups,{SUFFIX}"
AD_USERS = f"ou=ad-users,{SUFFIX}"

# username -> password, for the tests
PASSWORDS = {
    "alice": "alice-pw", "bob": "bob-pw", "carol": "carol-pw", "dave": "dave-pw",
    "hanako": "hanako-pw", "henry": "henry-pw", "erin": "erin-pw", "frank": "frank-pw",
    "*": "star-pw", "a*)(uid=*": "inject-pw", "twin": "twin-pw",
    "ad-ok": "ad-ok-pw", "ad-disabled": "ad-disabled-pw", "ad-mustchange": "ad-mustchange-pw",
    "ad-expired": "ad-expired-pw", "ad-locked": "ad-locked-pw",
}
# Windows FILETIME (100 ns since 1601-01-01) for 2001-01-01: an account that expired long ago.
FILETIME_2001 = (978307200 + 11644473600) * 10_000_000
NEVER = 0x7FFFFFFFFFFFFFFF


def unavailable() -> str | None:
    """Why this peer cannot run on this machine, or None."""
    if shutil.which("slapd") is None and not Path("/usr/sbin/slapd").exists():
        return ("OpenLDAP slapd is not installed (apt-get install slapd ldap-utils; "
                "scripts/setup.sh does it with SEKIMORI_TEST_PEERS=1)")
    try:
        import ldap  # noqa: F401
    except ImportError:
        return "python-ldap is not installed (pip install python-ldap; needs libldap2-dev)"
    return None


def _slapd() -> str:
    return shutil.which("slapd") or "/usr/sbin/slapd"


# -- PKI ----------------------------------------------------------------------------------------

def _write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> None:
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    path.chmod(0o600)


def _make_ca(name: str, now: datetime.datetime) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False,
                                         encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256()))
    return key, cert


def make_pki(folder: Path) -> tuple[Path, Path, Path, Path]:
    """A CA and a server certificate for 127.0.0.1/localhost signed by it, plus a second CA that
    signed nothing (the "wrong CA"). Returns (ca, server cert, server key, other ca) paths."""
    import ipaddress

    now = datetime.datetime.now(datetime.UTC)
    ca_key, ca_cert = _make_ca("Sekimori test directory CA", now)
    _, other_cert = _make_ca("Some other CA", now)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
            .issuer_name(ca_cert.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.SubjectAlternativeName([
                x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    paths = (folder / "ca.crt", folder / "server.crt", folder / "server.key", folder / "other-ca.crt")
    paths[0].write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    _write_key(key, paths[2])
    paths[3].write_bytes(other_cert.public_bytes(serialization.Encoding.PEM))
    return paths


# -- configuration and data -----------------------------------------------------------------------

def _config(root: Path, ca: Path, cert: Path, key: Path) -> str:
    schema = "/etc/ldap/schema"
    return f"""\
include {schema}/core.schema
include {schema}/cosine.schema
include {schema}/nis.schema
include {schema}/inetorgperson.schema
include {root}/ad-shape.schema
pidfile {root}/slapd.pid
TLSCACertificateFile {ca}
TLSCertificateFile {cert}
TLSCertificateKeyFile {key}
modulepath /usr/lib/ldap
moduleload back_mdb
moduleload memberof
moduleload refint
moduleload ppolicy

database mdb
maxsize 104857600
suffix "{SUFFIX}"
rootdn "{ADMIN_DN}"
rootpw {ssha(ADMIN_PASSWORD)}
directory {root}/db
index objectClass,uid,cn,member,memberOf eq
overlay memberof
memberof-group-oc groupOfNames
memberof-member-ad member
memberof-memberof-ad memberOf
memberof-refint TRUE
overlay refint
refint_attributes member
overlay ppolicy
ppolicy_default "cn=default,ou=policies,{SUFFIX}"
ppolicy_use_lockout
access to attrs=userPassword by self write by anonymous auth by * none
access to * by users read by * none

database monitor
access to dn.subtree="cn=Monitor" by dn.exact="{ADMIN_DN}" read by * none
"""


# AD's attribute OIDs, with the equality rules AD has (msuser.schema leaves them out); the
# auxiliary class is ours, under OpenLDAP's experimental arc.
AD_SHAPE_SCHEMA = """\
attributetype ( 1.2.840.113556.1.4.8 NAME 'userAccountControl' EQUALITY integerMatch
  SYNTAX 1.3.6.1.4.1.1466.115.121.1.27 SINGLE-VALUE )
attributetype ( 1.2.840.113556.1.4.96 NAME 'pwdLastSet' EQUALITY integerMatch
  SYNTAX 1.3.6.1.4.1.1466.115.121.1.27 SINGLE-VALUE )
attributetype ( 1.2.840.113556.1.4.159 NAME 'accountExpires' EQUALITY integerMatch
  SYNTAX 1.3.6.1.4.1.1466.115.121.1.27 SINGLE-VALUE )
attributetype ( 1.2.840.113556.1.4.221 NAME 'sAMAccountName' EQUALITY caseIgnoreMatch
  SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 SINGLE-VALUE )
objectclass ( 1.3.6.1.4.1.4203.666.11.99.1 NAME 'sekimoriAdAccount' AUXILIARY
  MAY ( userAccountControl $ pwdLastSet $ accountExpires $ sAMAccountName ) )
"""


def ssha(password: str) -> str:
    salt = os.urandom(8)
    digest = hashlib.sha1(password.encode() + salt).digest()
    return "{SSHA}" + base64.b64encode(digest + salt).decode()


def _entries() -> list[tuple[str, dict[str, list[str]]]]:
    from ldap.dn import escape_dn_chars  # an implementation independent of ours

    def person(uid: str, cn: str, sn: str, *, extra: dict[str, list[str]] | None = None,
               classes: tuple[str, ...] = ()) -> tuple[str, dict[str, list[str]]]:
        attrs = {"objectClass": ["inetOrgPerson", *classes], "uid": [uid], "cn": [cn],
                 "sn": [sn], "userPassword": [ssha(PASSWORDS[uid])]}
        attrs.update(extra or {})
        return f"uid={escape_dn_chars(uid)},{PEOPLE}", attrs

    def group(cn: str, *members: str) -> tuple[str, dict[str, list[str]]]:
        return f"cn={cn},{GROUPS}", {"objectClass": ["groupOfNames"], "cn": [cn],
                                     "member": list(members)}

    def ad_user(cn: str, uac: int, pwd_last_set: int, expires: int) -> tuple[str, dict[str, list[str]]]:
        return f"cn={cn},{AD_USERS}", {
            "objectClass": ["inetOrgPerson", "sekimoriAdAccount"], "cn": [cn], "sn": [cn], "sAMAccountName": [cn],
            "displayName": [f"AD {cn}"], "mail": [f"{cn}@city.example.lg.jp"],
            "userPassword": [ssha(PASSWORDS[cn])], "userAccountControl": [str(uac)],
            "pwdLastSet": [str(pwd_last_set)], "accountExpires": [str(expires)]}

    def dn(uid: str) -> str:
        return f"uid={escape_dn_chars(uid)},{PEOPLE}"

    def g(cn: str) -> str:
        return f"cn={cn},{GROUPS}"

    recent = 133_000_000_000_000_000  # a FILETIME in 2022: the password was set, not "must change"
    return [
        (SUFFIX, {"objectClass": ["dcObject", "organization"], "dc": ["city"],
                  "o": ["Example City"]}),
        *[(f"ou={ou},{SUFFIX}", {"objectClass": ["organizationalUnit"], "ou": [ou]})
          for ou in ("people", "groups", "service", "policies", "ad-users")],
        (f"cn=default,ou=policies,{SUFFIX}", {
            "objectClass": ["device", "pwdPolicy"], "cn": ["default"],
            "pwdAttribute": ["userPassword"], "pwdLockout": ["TRUE"], "pwdMaxFailure": ["0"]}),
        (SERVICE_DN, {"objectClass": ["person"], "cn": ["sekimori-svc"], "sn": ["service"],
                      "userPassword": [ssha(SERVICE_PASSWORD)]}),
        person("alice", "Alice Tanaka", "Tanaka", extra={"displayName": ["田中 アリス"],
                                                         "mail": ["alice@city.example.lg.jp"]}),
        person("bob", "Bob Suzuki", "Suzuki"),
        person("carol", "Carol Sato", "Sato"),
        person("dave", "Dave Ito", "Ito"),
        person("hanako", "佐藤 花子", "佐藤"),
        person("henry", "Henry Kato", "Kato"),
        person("erin", "Erin Abe", "Abe"),
        person("frank", "Frank Mori", "Mori", classes=("shadowAccount",),
               extra={"shadowExpire": ["1"]}),
        person("*", "Star", "Star"),
        person("a*)(uid=*", "Injection", "Injection"),
        # two entries with the same uid in different places: the search must not pick one
        (f"uid=twin,ou=service,{SUFFIX}", {"objectClass": ["inetOrgPerson"], "uid": ["twin"],
                                            "cn": ["Twin A"], "sn": ["A"],
                                            "userPassword": [ssha(PASSWORDS["twin"])]}),
        (f"uid=twin,ou=policies,{SUFFIX}", {"objectClass": ["inetOrgPerson"], "uid": ["twin"],
                                             "cn": ["Twin B"], "sn": ["B"],
                                             "userPassword": [ssha(PASSWORDS["twin"])]}),
        group("tax-clerks", dn("alice"), dn("hanako")),
        group("tax-dept", g("tax-clerks"), dn("bob")),
        group("all-staff", g("tax-dept"), dn("carol")),
        group("loop-a", dn("henry"), g("loop-b")),
        group("loop-b", g("loop-a")),
        ad_user("ad-ok", 0x200, recent, NEVER),
        ad_user("ad-disabled", 0x202, recent, NEVER),
        ad_user("ad-mustchange", 0x200, 0, NEVER),
        ad_user("ad-expired", 0x200, recent, FILETIME_2001),
        ad_user("ad-locked", 0x210, recent, 0),
        group("ad-staff", f"cn=ad-ok,{AD_USERS}"),
    ]


def _load(url: str) -> None:
    import ldap
    import ldap.modlist

    conn = ldap.initialize(url)
    conn.set_option(ldap.OPT_NETWORK_TIMEOUT, 5)
    conn.simple_bind_s(ADMIN_DN, ADMIN_PASSWORD)
    for dn, attrs in _entries():
        conn.add_s(dn, ldap.modlist.addModlist({k: [v.encode() for v in vs]
                                                for k, vs in attrs.items()}))
    # The administrator's permanent lock (ppolicy): the value 000001010000Z means "until an
    # administrator unlocks it". Set by the rootdn after the add, as an admin would.
    conn.modify_s(f"uid=erin,{PEOPLE}", [(ldap.MOD_REPLACE, "pwdAccountLockedTime",
                                          [b"000001010000Z"])])
    conn.unbind_s()


# -- the running server ---------------------------------------------------------------------------

@dataclass
class Counters:
    binds: int
    connections: int


@dataclass
class Slapd:
    root: Path
    pid: int
    ldap_port: int
    ldaps_port: int
    ca_file: Path
    other_ca_file: Path
    _proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    _monitor: Any = field(default=None, repr=False)

    @property
    def ldap_url(self) -> str:
        return f"ldap://127.0.0.1:{self.ldap_port}"

    @property
    def ldaps_url(self) -> str:
        return f"ldaps://127.0.0.1:{self.ldaps_port}"

    @property
    def ldaps_url_wrong_name(self) -> str:
        """The same LDAPS server under an address its certificate does not name."""
        return f"ldaps://127.0.0.2:{self.ldaps_port}"

    def counters(self) -> Counters:
        """Binds and connections slapd has seen so far (cn=Monitor), read on one connection
        kept open for this, so reading adds nothing to what is counted."""
        import ldap

        if self._monitor is None:
            self._monitor = ldap.initialize(self.ldap_url)
            self._monitor.set_option(ldap.OPT_NETWORK_TIMEOUT, 5)
            self._monitor.simple_bind_s(ADMIN_DN, ADMIN_PASSWORD)

        def read(dn: str, attr: str) -> int:
            return int(self._monitor.search_s(dn, ldap.SCOPE_BASE, attrlist=[attr])[0][1][attr][0])

        return Counters(binds=read("cn=Bind,cn=Operations,cn=Monitor", "monitorOpInitiated"),
                        connections=read("cn=Total,cn=Connections,cn=Monitor", "monitorCounter"))

    def stop(self) -> None:
        """SIGTERM our slapd by its PID, wait (it takes about a second), SIGKILL if it hangs."""
        self._monitor = None
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


def _free_ports(n: int) -> list[int]:
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for s in socks:
            s.close()


def _wait_ready(url: str, proc: subprocess.Popen[bytes], log: Path, timeout_seconds: float) -> None:
    import ldap

    deadline = time.monotonic() + timeout_seconds
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"slapd exited with {proc.returncode}: {log.read_text()[-2000:]}")
        try:
            conn = ldap.initialize(url)
            conn.set_option(ldap.OPT_NETWORK_TIMEOUT, 1)
            conn.simple_bind_s(ADMIN_DN, ADMIN_PASSWORD)
            conn.unbind_s()
            return
        except ldap.LDAPError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"slapd did not answer on {url} within {timeout_seconds} s")
            time.sleep(0.05)


def start_slapd(root: Path, *, timeout_seconds: float = 10.0) -> Slapd:
    """Configure, start and load a slapd in `root` (created if missing). Retries with new ports
    if another process took one of them between choosing and binding."""
    root.mkdir(parents=True, exist_ok=True)
    ca, cert, key, other_ca = make_pki(root)
    (root / "ad-shape.schema").write_text(AD_SHAPE_SCHEMA)
    (root / "slapd.conf").write_text(_config(root, ca, cert, key))
    last_error = ""
    for _attempt in range(3):
        db = root / "db"
        shutil.rmtree(db, ignore_errors=True)
        db.mkdir()
        ldap_port, ldaps_port = _free_ports(2)
        # 127.0.0.2 (Linux routes all of 127/8 to lo) is not in the certificate: a wrong name
        urls = (f"ldap://127.0.0.1:{ldap_port}/ ldaps://127.0.0.1:{ldaps_port}/ "
                f"ldaps://127.0.0.2:{ldaps_port}/")
        log = root / "slapd.log"
        with log.open("wb") as out:
            # -d 0: stay in the foreground (so the PID is slapd's own) without debug output
            proc = subprocess.Popen([_slapd(), "-f", str(root / "slapd.conf"), "-h", urls,
                                     "-d", "0"], stdout=out, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL)
        server = Slapd(root, proc.pid, ldap_port, ldaps_port, ca, other_ca, proc)
        try:
            _wait_ready(server.ldap_url, proc, log, timeout_seconds)
        except RuntimeError as exc:
            last_error = str(exc)
            server.stop()
            continue
        try:
            _load(server.ldap_url)
        except BaseException:
            server.stop()
            raise
        return server
    raise RuntimeError(f"slapd did not start: {last_error}")


def main(argv: list[str]) -> int:
    root = Path(argv[1]) if len(argv) > 1 else Path(tempfile.mkdtemp(prefix="sekimori-slapd-"))
    why = unavailable()
    if why:
        print(why, file=sys.stderr)
        return 1
    server = start_slapd(root)
    print(f"SLAPD_DIR={root} SLAPD_PID={server.pid} LDAP_URL={server.ldap_url} "
          f"LDAPS_URL={server.ldaps_url} CA={server.ca_file} SUFFIX={SUFFIX}")
    try:
        signal.pause()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
