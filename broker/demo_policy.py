"""The demo municipality's access policy: デモ市 on the β model, with a tax system on the LGWAN
side and a resident-records system on the My Number side, and one rule that (wrongly) tries to
open the latter — the three-layer guard refuses it whatever the rule says."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

TAX_HOST = "tax.demo-city.test"
JYUKI_HOST = "jyuki.demo-city.test"
HOSTS = (TAX_HOST, JYUKI_HOST)
POLICY = f"""tenant: {{id: demo-city, name: デモ市, model: beta}}
apps:
  - {{id: tax-system, name: 税務システム, kind: private, zone: lgwan, hosts: [{TAX_HOST}], private_kind: web}}
  - {{id: jyuki, name: 住民記録システム, kind: private, zone: mynumber, hosts: [{JYUKI_HOST}], private_kind: web}}
rules:
  - id: r-001
    description: 税務課は税務システムを使える（多要素認証と要件を満たす端末で）
    when: {{groups: [zeimu-ka], apps: [tax-system], posture_profiles: [standard]}}
    action: allow
  - id: r-002
    description: 住民記録システムを全職員に許可（誤設定の例：三層分離ガードが拒否する）
    when: {{groups: [all-staff], apps: [jyuki]}}
    action: allow
"""


def import_policy(data_dir: Path, tenant: str) -> str:
    """`sekimori policy import` of the demo policy; returns what the command printed."""
    path = data_dir / "demo-policy.yaml"
    path.write_text(POLICY, encoding="utf-8")
    out = subprocess.run([sys.executable, "-P", "-m", "broker", "policy", "import", str(path),
                          "--tenant", tenant, "--data-dir", str(data_dir)],
                         capture_output=True, text=True, timeout=60)
    if out.returncode != 0:
        raise RuntimeError(f"policy import failed: {out.stdout}{out.stderr}")
    return " ".join(out.stdout.split())
