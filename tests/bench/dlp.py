"""DLP scan throughput on mixed Japanese municipal text: 10 MB (UTF-8) of 住民記録/税/福祉-style
prose with dates, amounts, phone numbers, postal codes, half-width katakana and, sprinkled in,
My Numbers (valid and not), 法人番号, card numbers and confidentiality stamps.

    .venv/bin/python -m tests.bench.dlp [--megabytes 10] [--seed 1]

Measures scan_text on the whole text, DlpScanner fed in 64 KiB and 1 KiB chunks, scan_bytes on
CP932 and EUC-JP bodies without a charset hint (decoding included), and the default policy
plus ten custom regular expressions. A script, not a test: it prints numbers and asserts nothing.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path

if __package__ in (None, ""):  # run as a file: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from swg.dlp.corporate_number import corporate_check_digit
from swg.dlp.keywords import DEFAULT_KEYWORD_RULES, KeywordRule
from swg.dlp.mynumber import mynumber_check_digit
from swg.dlp.scan import DlpPolicy, DlpScanner, DlpVerdict, scan_bytes, scan_text

PROSE = [
    "住民記録システムの更新作業について、下記のとおりお知らせします。",
    "令和６年度の予算執行状況は次のとおりです。", "申請書を窓口に提出してください。",
    "担当：市民課 住民記録係 山田太郎", "福祉課からの回答をお待ちしております。",
    "固定資産税の納税通知書を送付しました。", "ご不明な点は情報システム課までお問い合わせください。",
    "会議は第２会議室で開催します。", "ﾃﾞｰﾀ連携ｼｽﾃﾑの移行ｽｹｼﾞｭｰﾙ", "Microsoft 365 の利用申請",
    "LGWAN-ASP 経由で送信", "添付ファイルをご確認ください。", "以上、よろしくお願いいたします。",
    "児童手当の現況届について",
]


def mynumber(rng: random.Random, valid: bool) -> str:
    base = "".join(rng.choice("0123456789") for _ in range(11))
    check = mynumber_check_digit(base)
    number = base + str(check if valid else (check + 1) % 10)
    groups = (number[:4], number[4:8], number[8:])
    return rng.choice([number, " ".join(groups), "-".join(groups)])


def filler(rng: random.Random) -> str:
    roll = rng.random()
    if roll < 0.55:
        return rng.choice(PROSE)
    if roll < 0.65:
        return f"令和{rng.randint(1, 7)}年{rng.randint(1, 12)}月{rng.randint(1, 28)}日"
    if roll < 0.72:
        return f"金額 {rng.randint(1, 9_999_999):,}円／￥{rng.randint(1, 99_999):,}"
    if roll < 0.78:
        return f"電話 0{rng.randint(3, 99)}-{rng.randint(100, 9999)}-{rng.randint(1000, 9999)}"
    if roll < 0.82:
        return f"〒{rng.randint(100, 999)}-{rng.randint(0, 9999):04d}"
    if roll < 0.87:
        return f"受付番号 {rng.randint(10**9, 10**15)}"
    if roll < 0.90:
        return "\n"
    if roll < 0.992:
        return f"2024-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}T{rng.randint(0, 23):02d}:00:00"
    if roll < 0.996:
        return "個人番号 " + mynumber(rng, rng.random() < 0.5)
    if roll < 0.998:
        base = f"{rng.randint(0, 10**12 - 1):012d}"
        return f"法人番号 {corporate_check_digit(base)}{base}"
    if roll < 0.999:
        return rng.choice(["4111 1111 1111 1111", "5555-5555-5555-4444", "3530111333300000"])
    return rng.choice(["部外秘", "取扱注意", "㊙"])


def make_text(rng: random.Random, megabytes: float) -> str:
    parts: list[str] = []
    size = 0
    while size < megabytes * 1_000_000:
        part = filler(rng)
        parts.append(part)
        size += len(part.encode())
    return "".join(parts)


def best_of(run: Callable[[], DlpVerdict], repeat: int = 3) -> tuple[float, DlpVerdict]:
    best, verdict = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        verdict = run()
        best = min(best, time.perf_counter() - start)
    assert verdict is not None
    return best, verdict


def streamed(text: str, policy: DlpPolicy, chunk_chars: int) -> DlpVerdict:
    scanner = DlpScanner(policy)
    for start in range(0, len(text), chunk_chars):
        scanner.feed(text[start:start + chunk_chars])
    return scanner.finish()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--megabytes", type=float, default=10.0)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    text = make_text(random.Random(args.seed), args.megabytes)
    megabytes = len(text.encode()) / 1_000_000
    print(f"text: {megabytes:.1f} MB as UTF-8, {len(text) / 1e6:.2f} M characters")
    policy = DlpPolicy()
    patterns = [
        r"職員番号\s*[0-9]{6}", r"[A-Z]{2}[0-9]{6}", r"(?:秘密|機密)文書", r"被保護者番号[:：]?[0-9]{8}",
        r"パスワード[:：]\S{4,32}", r"口座番号\s*[0-9]{7}", r"TEL[:：]?[0-9-]{10,13}", r"関係者外秘",
        r"\b[0-9]{3}-[0-9]{4}\b", r"健康保険証.{0,10}番号"]
    regexes = tuple(KeywordRule(f"custom-{i}", pattern, regex=True, block_at=None)
                    for i, pattern in enumerate(patterns))
    custom = DlpPolicy(keywords=DEFAULT_KEYWORD_RULES + regexes)
    cp932, euc = text.encode("cp932", errors="replace"), text.encode("euc_jp", errors="replace")
    runs: list[tuple[str, float, Callable[[], DlpVerdict]]] = [
        ("scan_text, whole text", megabytes, lambda: scan_text(text, policy)),
        ("DlpScanner, 64 KiB chunks", megabytes, lambda: streamed(text, policy, 65_536)),
        ("DlpScanner, 1 KiB chunks", megabytes, lambda: streamed(text, policy, 1_024)),
        ("scan_bytes CP932, no hint", len(cp932) / 1e6, lambda: scan_bytes(cp932, None, policy)),
        ("scan_bytes EUC-JP, no hint", len(euc) / 1e6, lambda: scan_bytes(euc, None, policy)),
        ("scan_text, + 10 regex rules", megabytes, lambda: scan_text(text, custom)),
    ]
    for label, size, run in runs:
        seconds, verdict = best_of(run)
        found = ", ".join(f"{f.rule or f.detector} {f.count}" for f in verdict.findings)
        print(f"{label:<30} {size / seconds:7.1f} MB/s  ({seconds:.2f} s)  {found}")


if __name__ == "__main__":
    main()
