"""What a tenant id looks like: the one rule every package checks tenant ids against."""

from __future__ import annotations

import re
from typing import Final

# fullmatch, not match + "$": "$" would also accept a trailing newline.
_TENANT_ID: Final = re.compile(r"[a-z0-9][a-z0-9-]{1,62}")
TENANT_ID_RULE: Final = "2 to 63 characters of a-z, 0-9 and '-', starting with a letter or digit"


def is_tenant_id(value: object) -> bool:
    return isinstance(value, str) and _TENANT_ID.fullmatch(value) is not None
