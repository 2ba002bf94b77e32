"""`mypy --strict` on the cores (STYLE.md §7): the pure modules that decide."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
CORES = ["ztcore", "broker/pki.py", "broker/config.py", "broker/registry.py",
         "broker/enrolment.py", "broker/devices.py", "agent/pac.py",
         "agent/identity.py", "agent/config.py", "broker/sessions.py", "broker/session_keys.py",
         "idp_bridge/directory.py",
         "idp_bridge/ldap_syntax.py", "idp_bridge/account_state.py", "idp_bridge/groups.py",
         "idp_bridge/totp.py", "idp_bridge/oidc.py", "idp_bridge/oidc_config.py",
         "broker/login.py", "broker/identity_config.py", "agent/session.py",
         "agent/posture", "agent/posture_report.py", "broker/posture_report.py",
         "broker/posture.py", "broker/posture_profile.py", "broker/posture_texts.py",
         "broker/policy/model.py", "broker/policy/guard.py", "broker/policy/engine.py",
         "broker/policy/yaml_io.py", "broker/policy/hosts.py", "broker/policy/lint.py",
         "broker/policy/explain.py",
         "broker/admin_auth.py", "broker/posture_gate.py", "broker/fair_share.py",
         "broker/routing.py", "broker/agent_rules.py", "agent/rules.py", "agent/router.py",
         "broker/m365.py", "agent/dns.py", "swg/dlp",
         "swg/urlcategories.py", "swg/filetypes.py", "swg/signatures.py",
         "swg/tls_leaf.py", "swg/inspection.py", "broker/inspection_config.py",
         "swg/web_verdict.py", "broker/lists_config.py",
         "swg/ioc.py", "swg/stix.py", "swg/url_canonical.py", "swg/clamd_reply.py",
         "swg/httpsig", "swg/content"]


def test_cores_pass_mypy_strict() -> None:
    out = subprocess.run([sys.executable, "-m", "mypy", "--strict", "--no-error-summary", *CORES],
                         cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr
