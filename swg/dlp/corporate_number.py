"""法人番号 (corporate number): the check digit and the layouts a corporate number is written in.

Owns the validity rule only; finding candidates in text belongs to `scan`. 法人番号 are public
(国税庁 法人番号公表サイト), so the default policy reports them without blocking.

Source of the check digit: 番号法施行令 第35条第1項 makes a corporate number a check digit
followed by a twelve-digit 基礎番号; the formula is 平成26年財務省令第70号 (法人番号の指定等に
関する省令) 第2条:

    check = 9 − (Σ_{n=1..12} P_n × Q_n mod 9)          (a digit 1..9, placed FIRST)
    P_n  the n-th digit of the 基礎番号 counting from the lowest
    Q_n  1 for odd n, 2 for even n

The remainder is taken of the whole sum (the 省令's parenthesisation is ambiguous; only this
reading gives one digit). Checked against published numbers: 国税庁 7000012050002 (Σ = 11,
11 mod 9 = 2, 9 − 2 = 7) and 日本税理士会連合会 7010705000725 (Σ = 29, 29 mod 9 = 2, 7), in
tests/unit/swg/test_dlp_numbers.py.
"""

from __future__ import annotations

from ztcore.errors import LocalProtocolError

NAME = "corporate-number"
REASON = "dlp-corporate-number"
LENGTH = 13
# Contiguous, or 1-4-4-4 (the boxes of the 国税庁 forms) with one kind of separator.
LAYOUTS: frozenset[tuple[int, ...]] = frozenset({(13,), (1, 4, 4, 4)})


def corporate_check_digit(base: str) -> int:
    """The check digit (1..9) of the twelve-digit 基礎番号 `base` (財務省令 第2条)."""
    if len(base) != LENGTH - 1 or not (base.isascii() and base.isdigit()):
        raise LocalProtocolError("a corporate number base is twelve ASCII digits")
    total = sum(int(digit) * (1 if n % 2 else 2) for n, digit in enumerate(reversed(base), start=1))
    return 9 - total % 9


def is_valid_corporate_number(digits: str) -> bool:
    """True for thirteen ASCII digits whose first is the check digit of the other twelve.

    The all-zero base is refused (it would pass with check digit 9 but is never assigned).
    """
    if len(digits) != LENGTH or not (digits.isascii() and digits.isdigit()):
        return False
    base = digits[1:]
    if base.count("0") == len(base):
        return False
    return corporate_check_digit(base) == int(digits[0])
