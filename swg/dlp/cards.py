"""Payment card numbers (PAN): Luhn, the major brands' IIN prefixes, the layouts cards are written in.

Owns the validity rule only; finding candidates in text belongs to `scan`. A number counts when
it is 13-19 digits, passes the Luhn check (ISO/IEC 7812-1 annex B) and starts with the IIN of a
major brand at a length that brand issues; this keeps ordinary long numbers (order numbers,
timestamps) out.
"""

from __future__ import annotations

from dataclasses import dataclass

NAME = "credit-card"
REASON = "dlp-credit-card"
MIN_LENGTH = 13
MAX_LENGTH = 19
# Contiguous, 4-4-4-4(-1..3), Amex 4-6-5, Diners 4-6-4; one kind of separator throughout.
LAYOUTS: frozenset[tuple[int, ...]] = frozenset(
    {(n,) for n in range(MIN_LENGTH, MAX_LENGTH + 1)}
    | {(4, 4, 4, 4), (4, 4, 4, 4, 1), (4, 4, 4, 4, 2), (4, 4, 4, 4, 3), (4, 6, 5), (4, 6, 4)})


@dataclass(frozen=True)
class CardBrand:
    """One brand: its IIN prefixes as inclusive ranges of a fixed width, and its PAN lengths."""

    name: str
    prefixes: tuple[tuple[int, int, int], ...]   # (width, first, last)
    lengths: frozenset[int]


BRANDS: tuple[CardBrand, ...] = (
    CardBrand("visa", ((1, 4, 4),), frozenset({13, 16, 19})),
    CardBrand("mastercard", ((2, 51, 55), (4, 2221, 2720)), frozenset({16})),
    CardBrand("amex", ((2, 34, 34), (2, 37, 37)), frozenset({15})),
    CardBrand("jcb", ((4, 3528, 3589),), frozenset(range(16, 20))),
    CardBrand("diners", ((2, 36, 36), (3, 300, 305)), frozenset(range(14, 20))),
    CardBrand("discover", ((4, 6011, 6011), (2, 65, 65), (3, 644, 649)), frozenset(range(16, 20))),
)


def luhn_valid(digits: str) -> bool:
    """The Luhn (mod 10) check over ASCII digits, the last being the check digit."""
    if not digits or not (digits.isascii() and digits.isdigit()):
        return False
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = int(char)
        if position % 2:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0


def card_brand(digits: str) -> str | None:
    """The brand whose IIN prefix and length fit `digits`, or None."""
    for brand in BRANDS:
        if len(digits) not in brand.lengths:
            continue
        for width, first, last in brand.prefixes:
            head = digits[:width]
            if len(head) == width and head.isdigit() and first <= int(head) <= last:
                return brand.name
    return None


def is_valid_card(digits: str) -> bool:
    """True for 13-19 ASCII digits of a major brand that pass the Luhn check."""
    if not MIN_LENGTH <= len(digits) <= MAX_LENGTH:
        return False
    return card_brand(digits) is not None and luhn_valid(digits)
