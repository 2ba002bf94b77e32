"""The inspection CA in the operating system's trust store, so that browsers and tools accept
the leaves the gateway shows for inspected sites.

Linux (Debian/Ubuntu family): the PEM goes to `/usr/local/share/ca-certificates/` under a name
of its own and `update-ca-certificates` rebuilds the bundle; a CA the broker stops sending is
removed the same way. Needs root (the agent runs as a system service); without it, or on
another OS, the status says what was not done. Windows (certutil -addstore Root) and macOS
(security add-trusted-cert) are installer work not done yet.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("sekimori.agent.trust")
ANCHOR_PREFIX = "sekimori-inspection-"


@dataclass
class TrustStatus:
    installed: str = ""        # SHA-256 of the CA in the store, "" when none
    problem: str = ""


@dataclass
class TrustStore:
    anchor_dir: Path = Path("/usr/local/share/ca-certificates")
    update_command: tuple[str, ...] = ("update-ca-certificates",)

    def __post_init__(self) -> None:
        self.status = TrustStatus()

    def supported(self) -> str:
        """"" when the CA can be installed here, else why not."""
        if not sys.platform.startswith("linux"):
            return f"installing the inspection CA on {sys.platform} is not supported yet"
        if shutil.which(self.update_command[0]) is None:
            return f"{self.update_command[0]} not found (package ca-certificates)"
        if not self.anchor_dir.is_dir():
            return f"{self.anchor_dir} does not exist"
        if not os.access(self.anchor_dir, os.W_OK):
            return f"no permission to write {self.anchor_dir} (the agent service runs as root)"
        return ""

    def ensure(self, pem: str, tenant_id: str) -> TrustStatus:
        """Install `pem` (or remove ours when it is ""); a no-op when already so."""
        problem = self.supported()
        if problem:
            self.status = TrustStatus("", problem)
            return self.status
        digest = hashlib.sha256(pem.encode()).hexdigest() if pem else ""
        target = self.anchor_dir / f"{ANCHOR_PREFIX}{_safe(tenant_id)}.crt"
        current = target.read_text() if target.exists() else ""
        stale = [p for p in self.anchor_dir.glob(f"{ANCHOR_PREFIX}*.crt") if p != target]
        if current == pem and not stale:
            self.status = TrustStatus(digest, "")
            return self.status
        for path in stale:
            path.unlink(missing_ok=True)
        if pem:
            tmp = target.with_suffix(".tmp")
            tmp.write_text(pem)
            os.chmod(tmp, 0o644)
            os.replace(tmp, target)
        else:
            target.unlink(missing_ok=True)
        out = subprocess.run([*self.update_command, "--fresh"] if not pem else list(self.update_command),
                             capture_output=True, text=True, timeout=120)
        if out.returncode != 0:
            self.status = TrustStatus("", f"{self.update_command[0]} failed: "
                                          f"{(out.stderr or out.stdout).strip()[:300]}")
        else:
            self.status = TrustStatus(digest, "")
            log.info("inspection CA %s the trust store", "installed in" if pem else "removed from")
        return self.status


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name)[:64] or "tenant"
