"""The demo municipality's directory: a real OpenLDAP slapd on 127.0.0.1, LDAPS only.

The demo logs its staff in exactly as a municipality's AD would be used: the broker finds the
user with a service account over LDAPS (certificate checked against the demo directory's own
CA), binds as the user, resolves nested groups. It needs Debian's `slapd` (scripts/setup.sh
installs it); the folder holds the config, the database, the CA and the log, and the server is
stopped by its own PID.
"""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509

from broker.pki import cert_pem, key_pem, make_ca, make_server_cert, new_key
from ztcore.runtime.files import write_private

SUFFIX = "dc=demo-city,dc=example,dc=lg,dc=jp"
ADMIN_DN = f"cn=admin,{SUFFIX}"
SERVICE_DN = f"cn=sekimori-svc,ou=service,{SUFFIX}"
PEOPLE = f"ou=people,{SUFFIX}"
GROUPS = f"ou=groups,{SUFFIX}"
# The demo staff: user name → (display name, password, direct group)
STAFF = {
    "yamada-taro": ("山田 太郎", "Demo-Pass-2026", "zeimu-ka"),
    "suzuki-hanako": ("鈴木 花子", "Demo-Pass-2027", "kikaku-ka"),
}
# groups: name → parent group (nested: 税務課 ⊂ 総務部 ⊂ 全職員)
GROUP_PARENTS = {"zeimu-ka": "somu-bu", "kikaku-ka": "somu-bu", "somu-bu": "all-staff",
                 "all-staff": None}


def unavailable() -> str | None:
    if shutil.which("slapd") is None and not Path("/usr/sbin/slapd").exists():
        return "OpenLDAP slapd is not installed (apt-get install slapd; scripts/setup.sh does it)"
    return None


def _ssha(password: str) -> str:
    salt = os.urandom(8)
    digest = hashlib.sha1(password.encode() + salt).digest()
    return "{SSHA}" + base64.b64encode(digest + salt).decode()


def _pki(folder: Path) -> None:
    """The demo directory's own CA and its LDAPS certificate (for 127.0.0.1 and localhost)."""
    now = time.time()
    ca_key, key = new_key(), new_key()
    ca = make_ca(ca_key, "デモ市 directory CA", now, 30 * 86400, x509.random_serial_number())
    cert = make_server_cert(ca, ca_key, key, ["localhost", "127.0.0.1"], now, 30 * 86400,
                            x509.random_serial_number())
    (folder / "ca.crt").write_bytes(cert_pem(ca))
    (folder / "server.crt").write_bytes(cert_pem(cert))
    write_private(folder / "server.key", key_pem(key))


@dataclass
class DemoDirectory:
    root: Path
    port: int
    admin_password: str
    service_password: str
    proc: subprocess.Popen[bytes] | None = None

    @property
    def ca_file(self) -> Path:
        return self.root / "ca.crt"

    @property
    def url(self) -> str:
        return f"ldaps://127.0.0.1:{self.port}"

    def identity_toml(self, tenant: str) -> str:
        """The broker's `[identity]` section for the demo municipality."""
        return (
            "[identity]\nrequire_login = true\nrequire_mfa = true\n"
            "token_lifetime_seconds = 900\nmax_session_seconds = 43200\n\n"
            "[[identity.directory]]\n"
            f'tenant = "{tenant}"\nname = "demo-directory"\nkind = "generic"\n'
            f'servers = ["{self.url}"]\nbase_dn = "{SUFFIX}"\n'
            f'bind_dn = "{SERVICE_DN}"\nbind_password = "{self.service_password}"\n'
            f'ca_file = "{self.ca_file}"\n')

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def _config(root: Path, admin_password: str) -> str:
    schema = Path("/etc/ldap/schema")
    return f"""include {schema}/core.schema
include {schema}/cosine.schema
include {schema}/nis.schema
include {schema}/inetorgperson.schema
pidfile {root}/slapd.pid
TLSCACertificateFile {root}/ca.crt
TLSCertificateFile {root}/server.crt
TLSCertificateKeyFile {root}/server.key
modulepath /usr/lib/ldap
moduleload back_mdb
moduleload memberof
database mdb
maxsize 10485760
suffix "{SUFFIX}"
rootdn "{ADMIN_DN}"
rootpw {_ssha(admin_password)}
directory {root}/db
overlay memberof
access to attrs=userPassword by self write by anonymous auth by * none
access to * by users read by * none
"""


def _entries(service_password: str) -> list[tuple[str, dict[str, list[str]]]]:
    out: list[tuple[str, dict[str, list[str]]]] = [
        (SUFFIX, {"objectClass": ["dcObject", "organization"], "dc": ["demo-city"], "o": ["デモ市"]}),
        (PEOPLE, {"objectClass": ["organizationalUnit"], "ou": ["people"]}),
        (GROUPS, {"objectClass": ["organizationalUnit"], "ou": ["groups"]}),
        (f"ou=service,{SUFFIX}", {"objectClass": ["organizationalUnit"], "ou": ["service"]}),
        (SERVICE_DN, {"objectClass": ["person"], "cn": ["sekimori-svc"], "sn": ["svc"],
                      "userPassword": [_ssha(service_password)]}),
    ]
    for uid, (name, password, _) in STAFF.items():
        out.append((f"uid={uid},{PEOPLE}", {
            "objectClass": ["inetOrgPerson"], "uid": [uid], "cn": [name], "sn": [name.split()[0]],
            "displayName": [name], "mail": [f"{uid}@demo-city.example.lg.jp"],
            "userPassword": [_ssha(password)]}))
    for group in ("zeimu-ka", "kikaku-ka", "somu-bu", "all-staff"):   # members first
        members = [f"cn={g},{GROUPS}" for g, parent in GROUP_PARENTS.items() if parent == group]
        members += [f"uid={u},{PEOPLE}" for u, (_, _, g) in STAFF.items() if g == group]
        out.append((f"cn={group},{GROUPS}", {"objectClass": ["groupOfNames"], "cn": [group],
                                             "member": members or [ADMIN_DN]}))
    return out


def start_demo_directory(root: Path, port: int, timeout_seconds: float = 15.0) -> DemoDirectory:
    import ldap  # type: ignore[import-untyped]
    import ldap.modlist  # type: ignore[import-untyped]

    root.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(root / "db", ignore_errors=True)
    (root / "db").mkdir()
    _pki(root)
    admin_password, service_password = base64.b32encode(os.urandom(10)).decode(), \
        base64.b32encode(os.urandom(10)).decode()
    (root / "slapd.conf").write_text(_config(root, admin_password))
    log = (root / "slapd.log").open("wb")
    slapd = shutil.which("slapd") or "/usr/sbin/slapd"
    ldapi = "ldapi://" + str(root / "ldapi").replace("/", "%2F")
    proc = subprocess.Popen([slapd, "-f", str(root / "slapd.conf"), "-d", "0",
                             "-h", f"ldaps://127.0.0.1:{port}/ {ldapi}"],
                            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    directory = DemoDirectory(root, port, admin_password, service_password, proc)
    deadline = time.monotonic() + timeout_seconds
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"slapd exited: {(root / 'slapd.log').read_text()[-500:]}")
        try:
            conn = ldap.initialize(ldapi)
            conn.simple_bind_s(ADMIN_DN, admin_password)
            break
        except ldap.LDAPError:
            if time.monotonic() > deadline:
                directory.stop()
                raise RuntimeError("the demo directory did not start") from None
            time.sleep(0.05)
    try:
        for dn, attrs in _entries(service_password):
            conn.add_s(dn, ldap.modlist.addModlist({k: [v.encode() for v in vs]
                                                    for k, vs in attrs.items()}))
    finally:
        conn.unbind_s()
    return directory
