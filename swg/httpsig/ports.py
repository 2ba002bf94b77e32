"""Suricata port specifications in a rule header (`any`, `80`, `!80`, `1024:`, `[80,443,8000:8100]`,
`[1024:65535,!8080]`, `$VARIABLE`), as the set of server ports a signature applies to.

Owns the syntax and the variables' default values (suricata.yaml's), except `$HTTP_PORTS`, which
means any port here: the gateway sees HTTP wherever it is (Suricata's app-layer detection is
port-agnostic too, and the gateway inspects decrypted HTTPS). It must not know addresses: a
forward proxy's client is always the home network.
"""

from __future__ import annotations

from swg.httpsig.lexer import RuleSyntaxError
from swg.httpsig.model import PortSet

PORT_VARIABLES = {
    "HTTP_PORTS": "any", "SHELLCODE_PORTS": "!80", "ORACLE_PORTS": "1521", "SSH_PORTS": "22",
    "DNP3_PORTS": "20000", "MODBUS_PORTS": "502", "FILE_DATA_PORTS": "any", "FTP_PORTS": "21",
    "GENEVE_PORTS": "6081", "VXLAN_PORTS": "4789", "TEREDO_PORTS": "3544",
}
_MAX_DEPTH = 8


class UnknownPortVariable(ValueError):
    """A `$NAME` this engine has no value for: the rule is skipped, not failed."""


def parse_ports(text: str) -> PortSet | None:
    """The port set of a header field; None for any port."""
    include: list[tuple[int, int]] = []
    exclude: list[tuple[int, int]] = []
    every = _collect(text.strip(), False, include, exclude, 0)
    if every and not exclude:
        return None
    return PortSet(() if every else tuple(include), tuple(exclude))


def _collect(text: str, negated: bool, include: list[tuple[int, int]], exclude: list[tuple[int, int]],
             depth: int) -> bool:
    """Adds `text` to the ranges; True when it includes every port (a positive `any`)."""
    if depth > _MAX_DEPTH:
        raise RuleSyntaxError("port list nested too deep")
    if text.startswith("!"):
        return _collect(text[1:].strip(), not negated, include, exclude, depth + 1)
    if text.startswith("$"):
        name = text[1:]
        if name not in PORT_VARIABLES:
            raise UnknownPortVariable(f"unknown port variable ${name[:30]}")
        return _collect(PORT_VARIABLES[name], negated, include, exclude, depth + 1)
    if text == "any":
        if negated:
            raise RuleSyntaxError("'!any' matches no port")
        return True
    if text.startswith("["):
        if not text.endswith("]"):
            raise RuleSyntaxError(f"unbalanced port list {text[:40]!r}")
        every = False
        for part in _split_list(text[1:-1]):
            every |= _collect(part, negated, include, exclude, depth + 1)
        return every
    (exclude if negated else include).append(_range(text))
    return False


def _split_list(text: str) -> list[str]:
    parts: list[str] = []
    level = 0
    current: list[str] = []
    for ch in text:
        if ch == "," and level == 0:
            parts.append("".join(current).strip())
            current = []
            continue
        level += (ch == "[") - (ch == "]")
        current.append(ch)
    parts.append("".join(current).strip())
    if any(not part for part in parts):
        raise RuleSyntaxError(f"empty item in port list [{text[:40]}]")
    return parts


def _range(text: str) -> tuple[int, int]:
    low_text, colon, high_text = text.partition(":")
    try:
        low = int(low_text) if low_text else 0
        high = (int(high_text) if high_text else 65535) if colon else low
    except ValueError:
        raise RuleSyntaxError(f"bad port {text[:30]!r}") from None
    if not 0 <= low <= high <= 65535:
        raise RuleSyntaxError(f"bad port range {text[:30]!r}")
    return low, high
