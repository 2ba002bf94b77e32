"""A throwaway Samba Active Directory domain controller on 127.0.0.1, for the AD tests.

An independent implementation of AD's LDAP side: the real bind sub-codes (`data 52e`, `533`,
`701`, `773`, `775`, …), userAccountControl and its computed flags, account lockout,
LDAP_MATCHING_RULE_IN_CHAIN. It owns a folder with the domain (`CITY.EXAMPLE.LG.JP`), its own CA
and server certificate (Samba's self-signed one names only `DC1.<realm>`, never 127.0.0.1), the
smb.conf, the logs and the PID files (the provisioned smb.conf would put them under /var and
/run), and the test directory:

- staff in nested groups `tax-clerks ⊂ tax-dept ⊂ all-staff`, a group cycle, and a user whose
  DN needs escaping (`CN=Sato\\, Hanako (税務課)`);
- one account per refusal: disabled, must change its password (pwdLastSet 0), account expired
  (`setexpiry --days=0`), password expired (a 2-day password policy object and a pwdLastSet
  three days old), outside its logon hours, limited to another workstation, and one to lock out
  (the domain locks an account after 3 bad passwords); and one that must change its password
  but whose password never expires (the DC lets it in);
- the service account the connector searches with (password never expires).

Samba serves LDAP only on the fixed ports (389, 636, and the global catalogue's 3268/3269) and
only one DC can run on 127.0.0.1, so it needs root and those ports free: `unavailable()` and
`ports_taken()` say why not. Only the `ldap` service runs (no DNS, Kerberos, SMB or RPC), which
starts in a fraction of a second; pass `services=` for more.

Provisioning and filling the directory takes about 15 s (some 40 `samba-tool` runs), so the
result is kept as a template under the temporary folder, keyed by the Samba version and this
file's contents, rebuilt after a day (the domain's 42-day password age runs from the build) and
copied for each run. samba-tool writes the local sam.ldb directly, with or without the server
running.

The server runs in the foreground with its standard input on a pipe we hold: it stops by itself
when our process ends, however it ends; `stop()` sends SIGTERM to its PID (and SIGKILL if needed).

    .venv/bin/python -m tests.peers.samba_ad [DIR]   # start, print the settings, stop on Ctrl-C

`samba_dc` is a session-scoped pytest fixture (import it into a test module); modules that import
it share one server, started once and stopped after the last of them.
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import errno
import fcntl
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.peers.slapd import make_pki

REALM = "CITY.EXAMPLE.LG.JP"
DOMAIN = "CITY"
DNS_DOMAIN = REALM.lower()
BASE_DN = "DC=city,DC=example,DC=lg,DC=jp"
USERS_DN = f"CN=Users,{BASE_DN}"
ADMIN_DN = f"CN=Administrator,{USERS_DN}"
ADMIN_PASSWORD = "Adm1n!Passw0rd"
SERVICE_ACCOUNT = "sekimori-svc"
SERVICE_DN = f"CN={SERVICE_ACCOUNT},{USERS_DN}"
SERVICE_UPN = f"{SERVICE_ACCOUNT}@{DNS_DOMAIN}"
SERVICE_PASSWORD = "Svc!Passw0rd-2026"
LOCKOUT_THRESHOLD = 3

# sAMAccountName -> password (Samba's default policy wants three character classes)
PASSWORDS = {
    "alice": "Al1ce!Passw0rd", "bob": "B0b!Passw0rd99", "carol": "Car0l!Passw0rd",
    "dave": "Dav3!Passw0rd", "hanako": "Han4ko!Passw0rd", "henry": "Henr7!Passw0rd",
    "walter": "Walt3r!Passw0rd", "dora": "D0ra!Disabled", "mika": "M1ka!MustChange",
    "eiji": "E1ji!Expired", "paul": "Pa7l!PwdExpired", "hiro": "H1ro!Hours",
    "wanda": "W4nda!Workstation", "lena": "L3na!Lockout", "fumi": "Fum1!Future",
    "nora": "N0ra!NeverExpires",
}
# The CN (RDN value) where it is not the account name
CNS = {"alice": "Alice Tanaka", "hanako": "Sato, Hanako (税務課)"}
DISPLAY_NAMES = {"alice": "田中 アリス", "hanako": "佐藤 花子"}
MAILS = {"alice": "alice@city.example.lg.jp", "hanako": "hanako@city.example.lg.jp"}
# group -> direct members (users and groups)
GROUPS = {
    "tax-clerks": ("alice", "hanako"),
    "tax-dept": ("tax-clerks", "bob"),
    "all-staff": ("tax-dept", "carol"),
    "loop-a": ("henry", "loop-b"),
    "loop-b": ("loop-a",),
}
# sAMAccountName -> what is wrong with it, and the bind sub-code Samba 4.17 answers with the
# right password (observed; the wrong password always gets 52e, except a locked account: 775)
STATES = {
    "dora": ("disabled (samba-tool user disable)", "533"),
    "mika": ("must change its password (pwdLastSet 0)", "773"),
    "eiji": ("account expired (samba-tool user setexpiry --days=0)", "701"),
    "paul": ("password expired (2-day password policy object, pwdLastSet 3 days ago)", "532"),
    "hiro": ("outside its logon hours (logonHours all zero)", "530"),
    "wanda": ("limited to another workstation (userWorkstations NOWHERE)", "531"),
}
PSO_NAME = "sekimori-short-lived"

# TCP ports each Samba service listens on (on 127.0.0.1 and ::1 with `interfaces = lo`), checked
# before starting; cldap and kdc also take UDP 389, 88 and 464, which are not checked
SERVICE_PORTS = {
    "ldap": (389, 636, 3268, 3269),
    "kdc": (88, 464),
    "rpc": (135, 49152, 49153, 49154),
    "cldap": (),  # UDP 389
}
DEFAULT_SERVICES = ("ldap",)
TEMPLATE_MAX_AGE_SECONDS = 86_400
_APT = ("apt-get install samba samba-ad-dc samba-ad-provision samba-dsdb-modules winbind "
        "ldb-tools; scripts/setup.sh does it with SEKIMORI_TEST_PEERS=1")
# Samba's control that lets a local ldb client set pwdLastSet to a time (DSDB_CONTROL_BYPASS_
# PASSWORD_HASH_OID); over LDAP only 0 and -1 are accepted.
_BYPASS_PASSWORD_HASH = "local_oid:1.3.6.1.4.1.7165.4.3.12:0"


def user_dn(name: str) -> str:
    from ldap.dn import escape_dn_chars  # type: ignore[import-untyped]  # independent of ours

    return f"CN={escape_dn_chars(CNS.get(name, name))},{USERS_DN}"


def _samba() -> str | None:
    # Debian puts it in /usr/sbin, which a non-login PATH may leave out
    return shutil.which("samba") or ("/usr/sbin/samba" if os.access("/usr/sbin/samba", os.X_OK)
                                     else None)


def unavailable() -> str | None:
    """Why this peer cannot run on this machine (not counting busy ports), or None."""
    if os.geteuid() != 0:
        return "the Samba AD DC needs root (it listens on the fixed ports 389 and 636)"
    missing = [name for name, found in (("samba", _samba()), ("samba-tool", shutil.which("samba-tool")),
                                        ("ldbmodify", shutil.which("ldbmodify")))
               if found is None]
    if missing:
        return f"Samba AD DC not installed (missing {', '.join(missing)}: {_APT})"
    try:
        import ldap  # type: ignore[import-untyped]  # noqa: F401
    except ImportError:
        return "python-ldap is not installed (pip install python-ldap; needs libldap2-dev)"
    return None


def ports_taken(services: tuple[str, ...] = DEFAULT_SERVICES) -> str | None:
    """Which of the ports the DC needs another process holds, or None when all are free."""
    taken = []
    for port in sorted({p for s in services for p in SERVICE_PORTS[s]}):
        for family, host in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
            try:
                with socket.socket(family) as s:
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as samba does
                    s.bind((host, port))
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    taken.append(f"{host}:{port}" if ":" not in host else f"[{host}]:{port}")
    if taken:
        return (f"the Samba AD DC needs these ports, and another process holds them: "
                f"{', '.join(taken)} (a system slapd or samba? `ss -ltnp`)")
    return None


def samba_version() -> str:
    out = subprocess.run([_samba() or "samba", "-V"], capture_output=True, text=True, check=True)
    return out.stdout.strip().removeprefix("Version ").strip()


def ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


# -- configuration ---------------------------------------------------------------------------------

def smb_conf(dc: Path, *, services: tuple[str, ...] = DEFAULT_SERVICES, tls: Path | None = None,
             cleartext_binds: bool = False) -> str:
    """Our whole smb.conf for the domain in `dc` (the provisioned one names /var and /run)."""
    lines = [
        "[global]",
        "netbios name = DC1",
        f"realm = {REALM}",
        f"workgroup = {DOMAIN}",
        "server role = active directory domain controller",
        f"server services = {', '.join(services)}",
        "interfaces = lo",
        "bind interfaces only = yes",
        f"private dir = {dc}/private",
        f"lock directory = {dc}",
        f"state directory = {dc}/state",
        f"cache directory = {dc}/cache",
        f"binddns dir = {dc}/bind-dns",
        f"pid directory = {dc}/run",
        f"ncalrpc dir = {dc}/run/ncalrpc",
        f"winbindd socket directory = {dc}/run/winbindd",
        f"log file = {dc}/log/log.%m",
        "logging = file",
        "max log size = 10000",
        # Samba's default ("yes") refuses a simple bind without TLS, as an AD with LDAP signing
        # enforced does; the tests rely on that, a person trying things by hand may not.
        f"ldap server require strong auth = {'no' if cleartext_binds else 'yes'}",
    ]
    if tls is not None:
        lines += ["tls enabled = yes", f"tls keyfile = {tls}/server.key",
                  f"tls certfile = {tls}/server.crt", f"tls cafile = {tls}/ca.crt"]
    return "\n\t".join(lines) + "\n"


# -- the template: a provisioned and filled domain ---------------------------------------------------

def _run(argv: list[str], log: Path) -> None:
    with log.open("a") as out:
        out.write(f"$ {' '.join(argv)}\n")
        out.flush()
        result = subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                timeout=120)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[:4])} … failed ({result.returncode}): "
                           f"{log.read_text()[-1500:]}")


def samba_tool(dc: Path, *args: str, log: Path | None = None) -> None:
    """`samba-tool <args> -s smb.conf` on the domain in `dc` (-s must follow the subcommand)."""
    _run(["samba-tool", *args, "-s", str(dc / "etc" / "smb.conf")], log or dc / "samba-tool.log")


def _ldbmodify(dc: Path, ldif: str, *controls: str) -> None:
    path = dc / "change.ldif"
    path.write_text(ldif)
    argv = ["ldbmodify", "-H", str(dc / "private" / "sam.ldb")]
    argv += [f"--controls={c}" for c in controls]
    _run([*argv, str(path)], dc / "samba-tool.log")
    path.unlink()


def _filetime(unix_seconds: float) -> int:
    return int((unix_seconds + 11_644_473_600) * 10_000_000)


def build_template(dc: Path) -> None:
    """Provision the domain in `dc` (which must not exist) and fill the test directory."""
    dc.mkdir(parents=True)
    log = dc / "samba-tool.log"
    _run(["samba-tool", "domain", "provision", f"--realm={REALM}", f"--domain={DOMAIN}",
          "--server-role=dc", "--dns-backend=NONE", f"--adminpass={ADMIN_PASSWORD}",
          "--host-name=dc1", "--host-ip=127.0.0.1", f"--targetdir={dc}",
          "--option=interfaces=lo", "--option=bind interfaces only=yes"], log)
    (dc / "etc" / "smb.conf").write_text(smb_conf(dc))

    def tool(*args: str) -> None:
        samba_tool(dc, *args, log=log)

    tool("domain", "passwordsettings", "set", f"--account-lockout-threshold={LOCKOUT_THRESHOLD}")
    tool("user", "create", SERVICE_ACCOUNT, SERVICE_PASSWORD, "--use-username-as-cn",
         "--description=Sekimori gateway: finds users for the login")
    tool("user", "setexpiry", SERVICE_ACCOUNT, "--noexpiry")
    for name, password in PASSWORDS.items():
        args = ["user", "create", name, password]
        if name == "alice":
            args += ["--given-name=Alice", "--surname=Tanaka"]
        else:
            args += ["--use-username-as-cn"]
        if name in MAILS:
            args += [f"--mail-address={MAILS[name]}"]
        if name in ("mika", "nora"):
            args += ["--must-change-at-next-login"]
        tool(*args)
        if name in DISPLAY_NAMES or name in CNS and name != "alice":
            extra = [f"--display-name={DISPLAY_NAMES[name]}"] if name in DISPLAY_NAMES else []
            if name in CNS and name != "alice":  # samba-tool puts it into a DN unescaped
                extra.append(f"--force-new-cn={user_dn(name).split(',CN=Users,')[0][3:]}")
            tool("user", "rename", name, *extra)
    for group in GROUPS:
        tool("group", "add", group)
    for group, members in GROUPS.items():
        tool("group", "addmembers", group, ",".join(members))

    tool("user", "disable", "dora")
    tool("user", "setexpiry", "eiji", "--days=0")
    tool("user", "setexpiry", "fumi", "--days=30")
    tool("user", "setexpiry", "nora", "--noexpiry")  # "password never expires" and pwdLastSet 0
    # Password expired: Samba takes a password policy object's maximum age only when it is more
    # than a day, and pwdLastSet can be set to a time only past the password_hash module.
    tool("domain", "passwordsettings", "pso", "create", PSO_NAME, "1", "--max-pwd-age=2",
         "--min-pwd-age=0")
    tool("domain", "passwordsettings", "pso", "apply", PSO_NAME, "paul")
    three_days_ago = _filetime(time.time() - 3 * 86_400)
    _ldbmodify(dc, f"dn: {user_dn('paul')}\nchangetype: modify\nreplace: pwdLastSet\n"
                   f"pwdLastSet: {three_days_ago}\n", _BYPASS_PASSWORD_HASH)
    never = base64.b64encode(bytes(21)).decode()  # 168 hours, none allowed
    _ldbmodify(dc, f"dn: {user_dn('hiro')}\nchangetype: modify\nreplace: logonHours\n"
                   f"logonHours:: {never}\n\n"
                   f"dn: {user_dn('wanda')}\nchangetype: modify\nreplace: userWorkstations\n"
                   f"userWorkstations: NOWHERE\n")


def _template_key() -> str:
    return hashlib.sha256(samba_version().encode() + Path(__file__).read_bytes()).hexdigest()[:16]


def copy_template(dest: Path, cache: Path | None = None) -> float:
    """Copy the provisioned, filled domain to `dest` (which must not exist), building it first if
    needed; returns the seconds spent building (0 when it was cached). Several processes may ask
    at once: one builds, and nobody replaces the template while another copies it (a lock)."""
    cache = cache or Path(tempfile.gettempdir())
    final = cache / f"sekimori-samba-ad-template-{_template_key()}"
    built = 0.0
    with (cache / "sekimori-samba-ad.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        marker = final / "built"
        if not marker.exists() or time.time() - marker.stat().st_mtime > TEMPLATE_MAX_AGE_SECONDS:
            for old in cache.glob("sekimori-samba-ad-template-*"):  # stale versions of ours
                if old.is_dir():
                    shutil.rmtree(old, ignore_errors=True)
            staging = cache / f"sekimori-samba-ad-template-building-{os.getpid()}"
            started = time.monotonic()
            try:
                build_template(staging)
            except BaseException:
                shutil.rmtree(staging, ignore_errors=True)
                raise
            (staging / "built").write_text(f"{samba_version()}\n")
            staging.rename(final)
            built = time.monotonic() - started
        shutil.copytree(final, dest, symlinks=True)
    return built


# -- the running server -----------------------------------------------------------------------------

@dataclass
class SambaDC:
    """A running DC: where it is, how to reach it, and who is in it."""

    root: Path
    pid: int
    ca_file: Path
    other_ca_file: Path
    services: tuple[str, ...]
    build_seconds: float = 0.0  # provisioning and filling (0: the template was cached)
    start_seconds: float = 0.0  # copy, certificates, start, until a bind works
    _proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    base_dn = BASE_DN
    realm = REALM
    service_dn = SERVICE_DN
    service_upn = SERVICE_UPN
    service_password = SERVICE_PASSWORD
    admin_dn = ADMIN_DN
    admin_password = ADMIN_PASSWORD
    passwords = PASSWORDS
    ldap_url = "ldap://127.0.0.1:389"  # StartTLS only (require strong auth)
    ldaps_url = "ldaps://127.0.0.1:636"

    @property
    def dc(self) -> Path:
        return self.root / "dc"

    @property
    def ldaps_url_wrong_name(self) -> str | None:
        """The same server at ::1, which its certificate does not name (None without IPv6)."""
        return "ldaps://[::1]:636" if ipv6_loopback() else None

    def user_dn(self, name: str) -> str:
        return user_dn(name)

    def samba_tool(self, *args: str) -> None:
        samba_tool(self.dc, *args)

    def admin(self) -> Any:
        """A python-ldap connection bound as the domain's Administrator over LDAPS."""
        return _connect(self.ldaps_url, self.ca_file, ADMIN_DN, ADMIN_PASSWORD)

    def read(self, dn: str, *attributes: str) -> dict[str, list[str]]:
        """Attributes of one entry, read as the Administrator (for assertions and debugging)."""
        import ldap  # type: ignore[import-untyped]

        conn = self.admin()
        try:
            found = conn.search_s(dn, ldap.SCOPE_BASE, "(objectClass=*)", list(attributes))
        finally:
            conn.unbind_s()
        return {k: [v.decode() for v in vs] for k, vs in found[0][1].items()}

    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def stop(self) -> None:
        """SIGTERM our samba by its PID, wait (it takes about 2 s), SIGKILL if it hangs. Once:
        a second call does nothing (the PID may belong to someone else by then)."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc.stdin is not None:
            with contextlib.suppress(OSError):
                proc.stdin.close()


def _connect(url: str, ca_file: Path, dn: str, password: str, timeout: float = 2.0) -> Any:
    import ldap  # type: ignore[import-untyped]

    conn = ldap.initialize(url)
    conn.set_option(ldap.OPT_REFERRALS, 0)
    conn.set_option(ldap.OPT_NETWORK_TIMEOUT, timeout)
    conn.set_option(ldap.OPT_TIMEOUT, timeout)
    conn.set_option(ldap.OPT_X_TLS_CACERTFILE, str(ca_file))
    conn.set_option(ldap.OPT_X_TLS_REQUIRE_CERT, ldap.OPT_X_TLS_DEMAND)
    conn.set_option(ldap.OPT_X_TLS_NEWCTX, 0)
    conn.simple_bind_s(dn, password)
    return conn


def _wait_ready(server: SambaDC, proc: subprocess.Popen[bytes], log: Path,
                timeout_seconds: float) -> None:
    import ldap  # type: ignore[import-untyped]

    deadline = time.monotonic() + timeout_seconds
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"samba exited with {proc.returncode}: {log.read_text()[-2000:]}")
        try:
            _connect(server.ldaps_url, server.ca_file, SERVICE_DN, SERVICE_PASSWORD, 1.0).unbind_s()
            return
        except ldap.LDAPError as exc:
            if time.monotonic() > deadline:
                raise RuntimeError(f"samba did not answer on {server.ldaps_url} within "
                                   f"{timeout_seconds} s ({exc}): {log.read_text()[-2000:]}") from None
            time.sleep(0.05)


def start_samba_ad(root: Path, *, services: tuple[str, ...] = DEFAULT_SERVICES,
                   cleartext_binds: bool = False, cache: Path | None = None,
                   timeout_seconds: float = 30.0) -> SambaDC:
    """Copy the template domain into `root`/dc, give it a certificate for 127.0.0.1, start it and
    wait until the service account can bind over LDAPS. Raises RuntimeError when it cannot."""
    why = unavailable() or ports_taken(services)
    if why:
        raise RuntimeError(why)
    root.mkdir(parents=True, exist_ok=True)
    dc = root / "dc"
    shutil.rmtree(dc, ignore_errors=True)
    started = time.monotonic()
    build_seconds = copy_template(dc, cache)
    tls = root / "tls"
    tls.mkdir(exist_ok=True)
    ca, cert, key, other_ca = make_pki(tls)  # 127.0.0.1 and localhost; key mode 600 (samba checks)
    (dc / "etc" / "smb.conf").write_text(smb_conf(dc, services=services, tls=tls,
                                                  cleartext_binds=cleartext_binds))
    for sub in ("run", "log"):
        (dc / sub).mkdir(exist_ok=True)
    log = root / "samba.log"
    with log.open("wb") as out:
        # -i: foreground, logs to stdout, and ends when its standard input closes: our pipe,
        # held until stop(), so the server cannot outlive this process
        proc = subprocess.Popen([_samba() or "samba", "-s", str(dc / "etc" / "smb.conf"), "-i",
                                 "-M", "single", "-d", "1"], stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.PIPE, start_new_session=True)
    server = SambaDC(root, proc.pid, ca, other_ca, services, build_seconds=build_seconds,
                     _proc=proc)
    try:
        _wait_ready(server, proc, log, timeout_seconds)
    except BaseException:
        server.stop()
        raise
    server.start_seconds = time.monotonic() - started - build_seconds
    return server


# -- one server per process, shared by the test modules that use it ----------------------------------

_lock = threading.Lock()
_shared: SambaDC | None = None
_users = 0


@contextlib.contextmanager
def shared_dc(make_root: Callable[[], Path]) -> Iterator[SambaDC]:
    """The process's DC, started by the first user in the folder `make_root()` gives, and stopped
    after the last user is done."""
    global _shared, _users
    with _lock:
        if _shared is not None and not _shared.alive():  # died under us: start again
            _shared.stop()
            atexit.unregister(_shared.stop)
            _shared = None
        if _shared is None:
            _shared = start_samba_ad(make_root())
            atexit.register(_shared.stop)
        _users += 1
        server = _shared
    try:
        yield server
    finally:
        with _lock:
            _users -= 1
            if _users == 0 and _shared is not None:
                _shared.stop()
                atexit.unregister(_shared.stop)
                # the domain's copy is 35 MB; the log and the certificates stay for a post-mortem
                shutil.rmtree(_shared.dc, ignore_errors=True)
                _shared = None


@pytest.fixture(scope="session")
def samba_dc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SambaDC]:
    """A running Samba AD DC (see the module docstring); skips, with the reason, when this
    machine cannot run one."""
    why = unavailable() or (None if _shared is not None else ports_taken())
    if why:
        pytest.skip(why)
    with shared_dc(lambda: tmp_path_factory.mktemp("samba-ad")) as server:
        yield server


def main(argv: list[str]) -> int:
    root = Path(argv[1]) if len(argv) > 1 else Path(tempfile.mkdtemp(prefix="sekimori-samba-ad-run-"))
    why = unavailable() or ports_taken()
    if why:
        print(why, file=sys.stderr)
        return 1
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # `kill PID` stops the DC too
    server = start_samba_ad(root)
    print(f"SAMBA_DIR={root} SAMBA_PID={server.pid} LDAPS_URL={server.ldaps_url} "
          f"LDAP_URL={server.ldap_url} (StartTLS) CA={server.ca_file} BASE_DN={BASE_DN} "
          f"BIND_DN={SERVICE_DN!r} BIND_PASSWORD={SERVICE_PASSWORD!r} "
          f"(built in {server.build_seconds:.1f} s, started in {server.start_seconds:.1f} s)")
    try:
        signal.pause()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
