"""The import directions of DESIGN.md, checked on the source (AST), not by memory.

broker → swg, casb, idp_bridge → ztcore; agent → ztcore; ztcore imports nothing of ours. The
agent ships alone to laptops: neither it nor ztcore may import a broker-only library.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
OURS = {"ztcore", "broker", "agent", "swg", "casb", "idp_bridge"}
ALLOWED = {
    "ztcore": {"ztcore"},
    "agent": {"agent", "ztcore"},
    "swg": {"swg", "ztcore"},
    "casb": {"casb", "ztcore"},
    "idp_bridge": {"idp_bridge", "ztcore"},
    "broker": {"broker", "swg", "casb", "idp_bridge", "ztcore"},
}
# pyjwt is in the agent's extra too: the agent signs its posture reports (JWS ES256) with it.
BROKER_ONLY_LIBRARIES = {"fastapi", "starlette", "uvicorn", "sqlalchemy", "alembic", "ldap",
                         "authlib", "pydantic", "prometheus_client", "psycopg", "pyotp",
                         "qrcode"}


def imported_roots(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    roots: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots


def sources(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_package_imports_point_one_way(package: str) -> None:
    files = sources(package)
    assert files, f"package {package} has no sources"
    wrong = []
    for path in files:
        for root in imported_roots(path) & OURS:
            if root not in ALLOWED[package]:
                wrong.append(f"{path.relative_to(ROOT)} imports {root}")
    assert not wrong, "imports against DESIGN.md:\n" + "\n".join(wrong)


@pytest.mark.parametrize("package", ["agent", "ztcore"])
def test_laptop_code_needs_no_broker_libraries(package: str) -> None:
    wrong = [f"{p.relative_to(ROOT)} imports {lib}" for p in sources(package)
             for lib in imported_roots(p) & BROKER_ONLY_LIBRARIES]
    assert not wrong, "\n".join(wrong)


def test_the_check_catches_a_wrong_import(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("from broker.pki import new_key\nimport ztcore.decision\n")
    assert imported_roots(bad) & OURS == {"broker", "ztcore"}
