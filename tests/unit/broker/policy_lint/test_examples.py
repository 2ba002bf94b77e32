"""examples/policy/: the sample prefecture baseline and the sample municipality load with the
YAML loader, and the analyser finds exactly the problems planted (and marked) in them."""

from __future__ import annotations

from pathlib import Path

from broker.policy.lint import lint
from broker.policy.model import Policy
from broker.policy.yaml_io import load_policy_yaml

EXAMPLES = Path(__file__).resolve().parents[4] / "examples" / "policy"

# (kind, rule, other rule, severity): what sample-city.yaml plants, as its header lists.
PLANTED = {
    ("shadowed", "r-005", "r-004", "error"),
    ("shadowed", "r-014", "r-013", "warning"),
    ("contradiction", "r-006", "p-003", "error"),
    ("contradiction", "r-012", "r-011", "warning"),
    ("contradiction", "r-027", "r-010", "warning"),
    ("guard-overrules", "r-024", None, "error"),
    ("guard-overrules", "r-025", None, "error"),
    ("guard-overrules", "r-032", None, "warning"),
    ("too-broad", "r-032", None, "warning"),
    ("contradiction", "r-032", "r-001", "info"),
    ("contradiction", "r-032", "r-009", "info"),
    ("contradiction", "r-032", "r-010", "info"),
    ("contradiction", "r-032", "r-012", "info"),
    ("disabled", "r-031", None, "info"),
}


def _load() -> tuple[Policy, Policy]:
    pref = load_policy_yaml((EXAMPLES / "sample-pref.yaml").read_text(encoding="utf-8"))
    city = load_policy_yaml((EXAMPLES / "sample-city.yaml").read_text(encoding="utf-8"), pref)
    return pref, city


def test_the_samples_are_realistic_in_size() -> None:
    pref, city = _load()
    assert city.tenant.parent == pref.tenant.id == "sample-pref"
    assert len(city.rules) >= 30 and len(city.apps) >= 20
    assert len(pref.rules) >= 5


def test_the_baseline_is_clean() -> None:
    pref, _ = _load()
    assert lint(pref) == []


def test_lint_finds_exactly_the_planted_problems() -> None:
    pref, city = _load()
    found = {(f.kind, f.rule_id, f.other_rule_id, f.severity) for f in lint(city, pref)}
    assert found == PLANTED


def test_every_planted_rule_is_marked_in_the_file() -> None:
    text = (EXAMPLES / "sample-city.yaml").read_text(encoding="utf-8")
    lines = text.splitlines()
    for kind, rule_id, _, severity in PLANTED:
        if severity == "info" and kind == "contradiction":
            continue                       # consequences of the too-broad r-032, listed in its comment
        at = lines.index(f"  - id: {rule_id}")
        comment = "\n".join(lines[max(0, at - 4):at])
        assert "PLANTED" in comment, rule_id


def test_without_the_baseline_its_contradiction_disappears() -> None:
    _, city = _load()
    found = {(f.kind, f.rule_id) for f in lint(city)}
    assert ("contradiction", "r-006") not in found
    assert ("contradiction", "r-012") in found
