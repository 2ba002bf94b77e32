"""The one enum of decision reasons, each with a human sentence in Japanese and English.

Reasons are kebab-case strings, shown unchanged in the audit log, the admin console, the block
page and `sekimori-agent status`. Add a reason here, never a free-form string elsewhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class Reason(str, Enum):
    # allow reasons
    DESTINATION_ALLOWED = "destination-allowed"
    DEVICE_ENROLLED = "device-enrolled"
    # destination (broker data path)
    AUTHORITY_INVALID = "authority-invalid"
    PORT_NOT_ALLOWED = "port-not-allowed"
    ADDRESS_LOOPBACK = "address-loopback"
    ADDRESS_PRIVATE = "address-private"
    ADDRESS_LINK_LOCAL = "address-link-local"
    ADDRESS_CGNAT = "address-cgnat"
    ADDRESS_METADATA = "address-metadata"
    ADDRESS_IPV4_MAPPED = "address-ipv4-mapped"
    ADDRESS_RESERVED = "address-reserved"
    DNS_NO_ADDRESS = "dns-no-address"
    UPSTREAM_UNREACHABLE = "upstream-unreachable"
    UPSTREAM_TIMEOUT = "upstream-timeout"
    # device and tunnel
    DEVICE_UNKNOWN = "device-unknown"
    DEVICE_REVOKED = "device-revoked"
    DEVICE_CERTIFICATE_EXPIRED = "device-certificate-expired"
    BROKER_UNREACHABLE = "broker-unreachable"
    BROKER_SHUTTING_DOWN = "broker-shutting-down"
    TOO_MANY_STREAMS = "too-many-streams"
    REQUEST_INVALID = "request-invalid"
    # enrolment
    ENROLMENT_CODE_INVALID = "enrolment-code-invalid"
    ENROLMENT_CODE_USED = "enrolment-code-used"
    ENROLMENT_CODE_EXPIRED = "enrolment-code-expired"
    CSR_INVALID = "csr-invalid"
    # anything that went wrong inside a decision: fail closed
    INTERNAL_ERROR = "internal-error"


@dataclass(frozen=True, slots=True)
class ReasonText:
    ja: str
    en: str


REASON_TEXT: dict[Reason, ReasonText] = {
    Reason.DESTINATION_ALLOWED: ReasonText(
        "宛先は許可されています。", "The destination is allowed."),
    Reason.DEVICE_ENROLLED: ReasonText(
        "端末を登録しました。", "The device was enrolled."),
    Reason.AUTHORITY_INVALID: ReasonText(
        "宛先のホスト名またはポートが正しくありません。",
        "The destination host name or port is not valid."),
    Reason.PORT_NOT_ALLOWED: ReasonText(
        "このポートへの通信は許可されていません。",
        "Connections to this port are not allowed."),
    Reason.ADDRESS_LOOPBACK: ReasonText(
        "ループバックアドレスへの通信は許可されていません。",
        "Connections to loopback addresses are not allowed."),
    Reason.ADDRESS_PRIVATE: ReasonText(
        "プライベートアドレスへの通信はブローカー経由では許可されていません。",
        "Connections to private addresses are not allowed through the broker."),
    Reason.ADDRESS_LINK_LOCAL: ReasonText(
        "リンクローカルアドレスへの通信は許可されていません。",
        "Connections to link-local addresses are not allowed."),
    Reason.ADDRESS_CGNAT: ReasonText(
        "キャリアグレードNATのアドレスへの通信は許可されていません。",
        "Connections to carrier-grade NAT addresses are not allowed."),
    Reason.ADDRESS_METADATA: ReasonText(
        "クラウドのメタデータサービスへの通信は禁止されています。",
        "Connections to cloud metadata services are forbidden."),
    Reason.ADDRESS_IPV4_MAPPED: ReasonText(
        "IPv4射影IPv6アドレスへの通信は許可されていません。",
        "Connections to IPv4-mapped IPv6 addresses are not allowed."),
    Reason.ADDRESS_RESERVED: ReasonText(
        "予約済み・特殊用途のアドレスへの通信は許可されていません。",
        "Connections to reserved or special-purpose addresses are not allowed."),
    Reason.DNS_NO_ADDRESS: ReasonText(
        "宛先のホスト名を解決できませんでした。",
        "The destination host name could not be resolved."),
    Reason.UPSTREAM_UNREACHABLE: ReasonText(
        "宛先のサーバーに接続できませんでした。",
        "The destination server could not be reached."),
    Reason.UPSTREAM_TIMEOUT: ReasonText(
        "宛先のサーバーへの接続がタイムアウトしました。",
        "The connection to the destination server timed out."),
    Reason.DEVICE_UNKNOWN: ReasonText(
        "この端末は登録されていません。管理者に登録を依頼してください。",
        "This device is not enrolled. Ask your administrator to enrol it."),
    Reason.DEVICE_REVOKED: ReasonText(
        "この端末の登録は取り消されています。情報システム課に連絡してください。",
        "This device's enrolment has been revoked. Contact your IT department."),
    Reason.DEVICE_CERTIFICATE_EXPIRED: ReasonText(
        "端末証明書の有効期限が切れています。再登録してください。",
        "The device certificate has expired. Enrol the device again."),
    Reason.BROKER_UNREACHABLE: ReasonText(
        "ブローカーに接続できないため、通信を遮断しました（フェイルクローズ）。",
        "The broker cannot be reached, so the connection was blocked (fail closed)."),
    Reason.BROKER_SHUTTING_DOWN: ReasonText(
        "ブローカーが停止処理中です。しばらくしてから再試行してください。",
        "The broker is shutting down. Try again in a moment."),
    Reason.TOO_MANY_STREAMS: ReasonText(
        "同時接続数の上限に達しました。",
        "Too many simultaneous connections."),
    Reason.REQUEST_INVALID: ReasonText(
        "要求の形式が正しくありません。",
        "The request is malformed."),
    Reason.ENROLMENT_CODE_INVALID: ReasonText(
        "登録コードが正しくありません。",
        "The enrolment code is not valid."),
    Reason.ENROLMENT_CODE_USED: ReasonText(
        "この登録コードは既に使用されています。",
        "This enrolment code has already been used."),
    Reason.ENROLMENT_CODE_EXPIRED: ReasonText(
        "この登録コードは有効期限が切れています。",
        "This enrolment code has expired."),
    Reason.CSR_INVALID: ReasonText(
        "証明書署名要求（CSR）が正しくありません。",
        "The certificate signing request (CSR) is not valid."),
    Reason.INTERNAL_ERROR: ReasonText(
        "内部エラーのため通信を遮断しました（フェイルクローズ）。",
        "The connection was blocked because of an internal error (fail closed)."),
}


def text_for(reason: Reason) -> ReasonText:
    return REASON_TEXT[reason]
