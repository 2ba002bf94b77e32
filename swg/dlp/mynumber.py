"""個人番号 (My Number): the check digit and the layouts a My Number is written in.

Owns the validity rule only; finding candidates in text belongs to `scan`. Must not keep or log
a number (the verdict carries counts and masked samples).

Source of the check digit: 行政手続における特定の個人を識別するための番号の利用等に関する
法律施行令 第8条 makes a My Number "eleven digits derived from the 住民票コード followed by one
check digit computed by the formula the 総務省令 defines"; the formula is 平成26年総務省令第85号
(通知カード及び個人番号カード並びに情報提供ネットワークシステムによる特定個人情報の提供等に
関する省令) 第5条 (e-Gov law text):

    check = 11 − (Σ_{n=1..11} P_n × Q_n mod 11), and 0 when that remainder is ≤ 1
    P_n  the n-th digit of the eleven, counting from the lowest (the digit next to the check
         digit is P_1)
    Q_n  n + 1 for 1 ≤ n ≤ 6, n − 5 for 7 ≤ n ≤ 11

i.e. weights 6,5,4,3,2,7,6,5,4,3,2 from the left. Checked in tests/unit/swg/test_dlp_mynumber.py
against an independent implementation written from that text, a worked example in a public
write-up of the formula (983205673214) and hand-computed ones (123456789018: Σ = 212,
212 mod 11 = 3, 11 − 3 = 8; 000000000060: remainder 1, check 0).
"""

from __future__ import annotations

import operator

from ztcore.errors import LocalProtocolError

NAME = "mynumber"
REASON = "dlp-mynumber"
LENGTH = 12
# Contiguous, or 4-4-4 with one kind of separator (the layout of the 個人番号カード's back).
LAYOUTS: frozenset[tuple[int, ...]] = frozenset({(12,), (4, 4, 4)})
# Q_n for n = 1..11, P_1 being the digit next to the check digit.
WEIGHTS: tuple[int, ...] = tuple(n + 1 if n <= 6 else n - 5 for n in range(1, 12))


def mynumber_check_digit(base: str) -> int:
    """The check digit of the eleven-digit `base` (施行令 第8条 / 総務省令 第5条)."""
    if len(base) != LENGTH - 1 or not (base.isascii() and base.isdigit()):
        raise LocalProtocolError("a My Number base is eleven ASCII digits")
    total = sum(map(operator.mul, map(int, reversed(base)), WEIGHTS))
    remainder = total % 11
    return 0 if remainder <= 1 else 11 - remainder


def is_valid_mynumber(digits: str) -> bool:
    """True for twelve ASCII digits whose last is the check digit of the first eleven.

    The all-zero base is refused: it passes the formula (Σ = 0) but is the blank a form prints,
    never an assigned number.
    """
    if len(digits) != LENGTH or not (digits.isascii() and digits.isdigit()):
        return False
    base = digits[:-1]
    if base.count("0") == len(base):
        return False
    return mynumber_check_digit(base) == int(digits[-1])
