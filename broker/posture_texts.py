"""What a failed posture check says to staff, in Japanese and English, and how to fix it per OS.

One table keyed by the stable check id. A message says what is wrong; a fix says what the user
should do, on their OS where the steps differ. Texts are `str.format_map` templates over the
parameters broker/posture.py passes (`minimum`, `allowed_ja`, `required_en`, `max_ja`, ...).
A fact the agent could not establish gets the "could not determine" texts instead: the user
cannot switch on a firewall the agent cannot see, so the fix is to restart and call IT.
This module decides nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

OS_VERSION: Final = "os-version"
OS_UNSUPPORTED: Final = "os-unsupported"
DISK_ENCRYPTION: Final = "disk-encryption"
FIREWALL: Final = "firewall"
EDR: Final = "edr"
SCREEN_LOCK: Final = "screen-lock"
SECURITY_UPDATE: Final = "security-update"
DOMAIN_JOINED: Final = "domain-joined"
REPORT_AGE: Final = "report-age"
# The order checks are evaluated and listed in.
CHECKS: Final = (REPORT_AGE, OS_UNSUPPORTED, OS_VERSION, SECURITY_UPDATE, DISK_ENCRYPTION,
                 FIREWALL, EDR, SCREEN_LOCK, DOMAIN_JOINED)

FAMILY_NAMES: Final[Mapping[str, str]] = {
    "windows": "Windows", "macos": "macOS", "linux": "Linux", "unknown": "unknown OS"}
_ANY_OS: Final = "*"


@dataclass(frozen=True, slots=True)
class CheckText:
    message_ja: str
    message_en: str
    fix: Mapping[str, tuple[str, str]]   # OS family (or "*" for any) -> (ja, en)
    subject_ja: str                      # for "could not determine ...": 「…を確認できませんでした」
    subject_en: str


@dataclass(frozen=True, slots=True)
class RenderedText:
    message_ja: str
    message_en: str
    fix_ja: str
    fix_en: str


_UPDATE_WINDOWS: Final = (
    "「設定 > Windows Update」で「更新プログラムのチェック」を実行し、すべての更新プログラムを"
    "インストールしてから再起動してください。",
    "Open Settings > Windows Update, select \"Check for updates\", install every update and "
    "restart the device.")
_UPDATE_MACOS: Final = (
    "「システム設定 > 一般 > ソフトウェアアップデート」で最新のアップデートをインストールし、"
    "再起動してください。",
    "Open System Settings > General > Software Update, install the latest update and restart "
    "the Mac.")

TEXTS: Final[Mapping[str, CheckText]] = {
    REPORT_AGE: CheckText(
        "端末の状態（ポスチャ）の報告が途絶えているため、端末の安全を確認できません。",
        "The device has stopped reporting its security state, so it cannot be checked.",
        {_ANY_OS: (
            "Sekimori エージェントが動作しているか「sekimori-agent status」で確認し、ネットワークに"
            "接続し直すか端末を再起動してください。解決しない場合は情報システム課に連絡してください。",
            "Check that the Sekimori agent is running (\"sekimori-agent status\"), then reconnect "
            "to the network or restart the device. If that does not help, contact your IT "
            "department.")},
        "端末の状態の報告", "the device's security report"),
    OS_UNSUPPORTED: CheckText(
        "この端末の OS（{os}）では接続できません。接続が許可されている OS: {allowed_ja}。",
        "Devices running {os} may not connect. Allowed operating systems: {allowed_en}.",
        {_ANY_OS: (
            "接続が許可されている OS（{allowed_ja}）の端末を使用してください。不明な点は"
            "情報システム課に連絡してください。",
            "Use a device running an allowed operating system ({allowed_en}). Contact your IT "
            "department if you are unsure.")},
        "OS の種類", "which operating system the device runs"),
    OS_VERSION: CheckText(
        "OS のバージョンが古いため、接続の条件（{minimum} 以降）を満たしていません。",
        "The operating system is older than required ({minimum} or later).",
        {"windows": (
            "「設定 > Windows Update」で「更新プログラムのチェック」を実行し、すべての更新プログラムを"
            "インストールしてから再起動してください。{minimum} 以降への更新が表示されない場合は"
            "情報システム課に連絡してください。",
            "Open Settings > Windows Update, select \"Check for updates\", install every update "
            "and restart. If no update to {minimum} or later is offered, contact your IT "
            "department."),
         "macos": (
            "「システム設定 > 一般 > ソフトウェアアップデート」で macOS を {minimum} 以降に"
            "アップデートし、再起動してください。",
            "Open System Settings > General > Software Update, update macOS to {minimum} or "
            "later and restart the Mac."),
         "linux": (
            "ディストリビューションを {minimum} 以降にアップグレードしてください。手順は情報システム課に"
            "確認してください。",
            "Upgrade the distribution to {minimum} or later; ask your IT department for the "
            "procedure."),
         _ANY_OS: (
            "OS を {minimum} 以降に更新してください。",
            "Update the operating system to {minimum} or later.")},
        "OS のバージョン", "the operating system version"),
    SECURITY_UPDATE: CheckText(
        "最後にセキュリティ更新プログラムを適用してから {max_days} 日を超えています。",
        "Security updates have not been installed for more than {max_days} days.",
        {"windows": _UPDATE_WINDOWS,
         "macos": _UPDATE_MACOS,
         "linux": (
            "端末で「sudo apt update && sudo apt upgrade」（Fedora・RHEL 系では「sudo dnf upgrade」）"
            "を実行し、再起動してください。",
            "Run \"sudo apt update && sudo apt upgrade\" in a terminal (\"sudo dnf upgrade\" on "
            "Fedora or RHEL) and restart."),
         _ANY_OS: (
            "最新のセキュリティ更新プログラムをインストールし、再起動してください。",
            "Install the latest security updates and restart the device.")},
        "セキュリティ更新の適用日", "when security updates were last installed"),
    DISK_ENCRYPTION: CheckText(
        "ディスクが暗号化されていません。",
        "The system disk is not encrypted.",
        {"windows": (
            "「設定 > プライバシーとセキュリティ > デバイスの暗号化」または「コントロール パネル > "
            "システムとセキュリティ > BitLocker ドライブ暗号化」で暗号化を有効にしてください。"
            "管理者権限が必要な場合は情報システム課に連絡してください。",
            "Turn encryption on in Settings > Privacy & security > Device encryption, or in "
            "Control Panel > System and Security > BitLocker Drive Encryption. If this needs "
            "administrator rights, contact your IT department."),
         "macos": (
            "「システム設定 > プライバシーとセキュリティ > FileVault」で FileVault をオンにして"
            "ください。",
            "Turn FileVault on in System Settings > Privacy & Security > FileVault."),
         "linux": (
            "Linux のディスク暗号化（LUKS）は通常 OS のインストール時に設定します。"
            "情報システム課に連絡してください。",
            "On Linux, disk encryption (LUKS) is normally set up when the system is installed. "
            "Contact your IT department."),
         _ANY_OS: (
            "システムディスクの暗号化を有効にしてください。",
            "Turn on encryption for the system disk.")},
        "ディスク暗号化の状態", "whether the disk is encrypted"),
    FIREWALL: CheckText(
        "ファイアウォールが無効になっています。",
        "The firewall is turned off.",
        {"windows": (
            "「設定 > プライバシーとセキュリティ > Windows セキュリティ > ファイアウォールとネットワーク"
            "保護」で、ドメイン・プライベート・パブリックのすべてのネットワークのファイアウォールを"
            "有効にしてください。",
            "Open Settings > Privacy & security > Windows Security > Firewall & network "
            "protection and turn the firewall on for every network (domain, private and public)."),
         "macos": (
            "「システム設定 > ネットワーク > ファイアウォール」でファイアウォールをオンにしてください。",
            "Turn the firewall on in System Settings > Network > Firewall."),
         "linux": (
            "端末で「sudo ufw enable」（firewalld の場合は「sudo systemctl enable --now firewalld」）"
            "を実行してください。",
            "Run \"sudo ufw enable\" in a terminal (with firewalld: \"sudo systemctl enable --now "
            "firewalld\")."),
         _ANY_OS: (
            "OS のファイアウォールを有効にしてください。",
            "Turn on the operating system's firewall.")},
        "ファイアウォールの状態", "whether the firewall is on"),
    EDR: CheckText(
        "必要なセキュリティ対策ソフト（{required_ja} のいずれか）が動作していません。",
        "Required security software is not running (any one of: {required_en}).",
        {_ANY_OS: (
            "セキュリティ対策ソフトが起動しているか確認し、端末を再起動してください。それでも"
            "動作しない場合は情報システム課に連絡してください。",
            "Check that the security software is running and restart the device. If it still "
            "does not run, contact your IT department.")},
        "セキュリティ対策ソフトの動作状況", "whether the security software is running"),
    SCREEN_LOCK: CheckText(
        "画面ロックが無効か、ロックまでの時間が長すぎます（{max_ja}以内にロックされる必要があります）。",
        "The screen lock is off or starts too late (the screen must lock within {max_en}).",
        {"windows": (
            "「設定 > 個人用設定 > ロック画面 > スクリーン セーバー」で待ち時間を{max_ja}以内にし、"
            "「再開時にログオン画面に戻る」をオンにしてください。",
            "Open Settings > Personalization > Lock screen > Screen saver, set the wait to "
            "{max_en} or less and tick \"On resume, display logon screen\"."),
         "macos": (
            "「システム設定 > ロック画面」で、スクリーンセーバの開始またはディスプレイのオフを{max_ja}"
            "以内にし、「パスワードを要求」を「すぐに」にしてください。",
            "In System Settings > Lock Screen, start the screen saver or turn the display off "
            "within {max_en}, and set \"Require password\" to \"Immediately\"."),
         "linux": (
            "「設定 > プライバシー > 画面ロック」（GNOME の場合）で自動画面ロックをオンにし、"
            "画面オフまでの時間を{max_ja}以内にしてください。",
            "In Settings > Privacy > Screen Lock (GNOME), turn automatic screen lock on and set "
            "the blank screen delay to {max_en} or less."),
         _ANY_OS: (
            "画面ロックを有効にし、{max_ja}以内に自動でロックされるように設定してください。",
            "Turn the screen lock on and make the screen lock itself within {max_en}.")},
        "画面ロックの設定", "the screen lock setting"),
    DOMAIN_JOINED: CheckText(
        "この端末は組織のドメインに参加していません。",
        "This device is not joined to the organisation's domain.",
        {_ANY_OS: (
            "端末のドメイン参加は情報システム課が行います。情報システム課に連絡してください。",
            "Only your IT department can join this device to the domain: contact them.")},
        "ドメイン参加の状態", "whether the device is joined to the domain"),
}

_UNKNOWN_MESSAGE: Final = (
    "{subject_ja}を確認できませんでした。確認できない項目は要件を満たしていないものとして扱います。",
    "Sekimori could not determine {subject_en}; an item that cannot be checked counts as failed.")
_UNKNOWN_FIX: Final = (
    "端末を再起動してください。解決しない場合は「sekimori-agent status」の表示内容を添えて"
    "情報システム課に連絡してください。",
    "Restart the device. If that does not help, contact your IT department and include the "
    "output of \"sekimori-agent status\".")


def render(check: str, os_family: str, *, unknown: bool,
           params: Mapping[str, str]) -> RenderedText:
    """The texts for `check` on `os_family`; `params` fills the templates' fields."""
    text = TEXTS[check]
    if unknown:
        fields = {"subject_ja": text.subject_ja, "subject_en": text.subject_en}
        return RenderedText(_UNKNOWN_MESSAGE[0].format_map(fields),
                            _UNKNOWN_MESSAGE[1].format_map(fields), *_UNKNOWN_FIX)
    fix_ja, fix_en = text.fix.get(os_family) or text.fix[_ANY_OS]
    return RenderedText(text.message_ja.format_map(params), text.message_en.format_map(params),
                        fix_ja.format_map(params), fix_en.format_map(params))


def duration_ja(seconds: int) -> str:
    if seconds % 3600 == 0:
        return f"{seconds // 3600}時間"
    return f"{seconds // 60}分" if seconds % 60 == 0 else f"{seconds}秒"


def duration_en(seconds: int) -> str:
    for unit, size in (("hour", 3600), ("minute", 60)):
        if seconds % size == 0:
            count = seconds // size
            return f"{count} {unit}" + ("s" if count != 1 else "")
    return f"{seconds} second" + ("s" if seconds != 1 else "")


def join_ja(items: tuple[str, ...]) -> str:
    return "、".join(items) if items else "なし"


def join_en(items: tuple[str, ...]) -> str:
    return ", ".join(items) if items else "none"
