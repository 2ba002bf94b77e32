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
    # identity: TOTP (idp_bridge/totp.py)
    TOTP_ACCEPTED = "totp-accepted"
    TOTP_MALFORMED = "totp-malformed"
    TOTP_INVALID = "totp-invalid"
    TOTP_REPLAYED = "totp-replayed"
    TOTP_RATE_LIMITED = "totp-rate-limited"
    TOTP_LOCKED = "totp-locked"
    # identity: session tokens (broker/sessions.py)
    SESSION_VALID = "session-valid"
    SESSION_INVALID = "session-invalid"
    SESSION_EXPIRED = "session-expired"
    SESSION_REVOKED = "session-revoked"
    SESSION_DEVICE_MISMATCH = "session-device-mismatch"
    MFA_REQUIRED = "mfa-required"
    MFA_TOO_OLD = "mfa-too-old"
    # identity: directory login, LDAP / AD (idp_bridge/directory.py)
    DIRECTORY_LOGIN_OK = "directory-login-ok"
    USERNAME_INVALID = "username-invalid"
    PASSWORD_EMPTY = "password-empty"
    CREDENTIALS_INVALID = "credentials-invalid"
    USER_NOT_FOUND = "user-not-found"
    USER_AMBIGUOUS = "user-ambiguous"
    ACCOUNT_DISABLED = "account-disabled"
    ACCOUNT_LOCKED = "account-locked"
    ACCOUNT_EXPIRED = "account-expired"
    PASSWORD_EXPIRED = "password-expired"
    PASSWORD_MUST_CHANGE = "password-must-change"
    LOGON_HOURS = "logon-hours"
    WORKSTATION_NOT_ALLOWED = "workstation-not-allowed"
    ACCOUNT_STATE_UNKNOWN = "account-state-unknown"
    BIND_IDENTITY_MISMATCH = "bind-identity-mismatch"
    GROUPS_INCOMPLETE = "groups-incomplete"
    DIRECTORY_UNAVAILABLE = "directory-unavailable"
    # identity: the login flow and sessions on streams (broker/runtime/identity_service.py)
    LOGIN_OK = "login-ok"
    LOGIN_REQUIRED = "login-required"
    LOGGED_OUT = "logged-out"
    LOGIN_METHOD_UNKNOWN = "login-method-unknown"
    TOTP_NOT_ENROLLED = "totp-not-enrolled"
    LOGIN_RATE_LIMITED = "login-rate-limited"
    # device posture (ztcore/posture.py, broker/posture*.py)
    DEVICE_COMPLIANT = "device-compliant"
    DEVICE_NONCOMPLIANT = "device-noncompliant"
    POSTURE_MISSING = "posture-missing"
    POSTURE_STALE = "posture-stale"
    POSTURE_REPORT_INVALID = "posture-report-invalid"
    POSTURE_REPORT_REPLAYED = "posture-report-replayed"
    POSTURE_REPORT_TOO_OLD = "posture-report-too-old"
    DEVICE_QUARANTINED = "device-quarantined"
    DEVICE_RELEASED = "device-released"
    ADMIN_UNAUTHORIZED = "admin-unauthorized"
    # access policy and the three-layer guard (broker/policy/)
    POLICY_ALLOWED = "policy-allowed"
    POLICY_DENIED = "policy-denied"
    PRIVATE_APP_DEFAULT_DENY = "private-app-default-deny"
    ZONE_MYNUMBER_FORBIDDEN = "zone-mynumber-forbidden"
    ZONE_MYNUMBER_SPECIFIC_ONLY = "zone-mynumber-specific-only"
    ZONE_LGWAN_VDI_ONLY = "zone-lgwan-vdi-only"
    ZONE_LGWAN_NEEDS_MFA_AND_POSTURE = "zone-lgwan-needs-mfa-and-posture"
    TENANT_QUOTA_EXCEEDED = "tenant-quota-exceeded"
    # identity: OpenID Connect relying party (idp_bridge/oidc.py)
    OIDC_LOGIN_OK = "oidc-login-ok"
    OIDC_STATE_INVALID = "oidc-state-invalid"
    OIDC_ISSUER_MISMATCH = "oidc-issuer-mismatch"
    OIDC_PROVIDER_ERROR = "oidc-provider-error"
    OIDC_CODE_REJECTED = "oidc-code-rejected"
    OIDC_TOKEN_INVALID = "oidc-token-invalid"
    OIDC_NONCE_MISMATCH = "oidc-nonce-mismatch"
    OIDC_PROVIDER_UNAVAILABLE = "oidc-provider-unavailable"
    RETURN_TO_INVALID = "return-to-invalid"
    # Microsoft 365 breakout and the agent's bypass modes (ztcore/breakout.py, ztcore/bypass.py)
    BREAKOUT_DIRECT = "breakout-direct"
    CAPTIVE_PORTAL_WINDOW = "captive-portal-window"
    OVERRIDE_ACTIVE = "override-active"
    AGENT_EVENTS_INVALID = "agent-events-invalid"
    AGENT_RULES_UNAVAILABLE = "agent-rules-unavailable"
    # secure web gateway: TLS inspection and the content pipeline (swg/, broker/runtime/inspection*)
    UPSTREAM_CERTIFICATE_INVALID = "upstream-certificate-invalid"
    UPSTREAM_TLS_FAILED = "upstream-tls-failed"
    UPSTREAM_PROTOCOL_ERROR = "upstream-protocol-error"
    URL_CATEGORY_BLOCKED = "url-category-blocked"
    IOC_MATCH = "ioc-match"
    HTTP_SIGNATURE = "http-signature"
    DLP_MYNUMBER = "dlp-mynumber"
    DLP_CORPORATE_NUMBER = "dlp-corporate-number"
    DLP_CREDIT_CARD = "dlp-credit-card"
    DLP_KEYWORD = "dlp-keyword"
    MALWARE_DETECTED = "malware-detected"
    MALWARE_SCANNER_UNAVAILABLE = "malware-scanner-unavailable"
    CONTENT_UNSCANNABLE = "content-unscannable"
    SANITISE_FAILED = "sanitise-failed"
    FILE_TYPE_BLOCKED = "file-type-blocked"


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
    Reason.TOTP_ACCEPTED: ReasonText(
        "確認コードを確認しました。", "The verification code was accepted."),
    Reason.TOTP_MALFORMED: ReasonText(
        "確認コードは半角数字6桁で入力してください。",
        "Enter the verification code as exactly 6 digits."),
    Reason.TOTP_INVALID: ReasonText(
        "確認コードが正しくありません。認証アプリの最新のコードを入力してください。",
        "The verification code is not correct. Enter the current code from your "
        "authenticator app."),
    Reason.TOTP_REPLAYED: ReasonText(
        "この確認コードは既に使用されています。次のコードが表示されるまでお待ちください。",
        "This verification code has already been used. Wait for the next code."),
    Reason.TOTP_RATE_LIMITED: ReasonText(
        "確認コードの誤りが続いたため、しばらく入力できません。数分後に再試行してください。",
        "Too many wrong verification codes. Try again in a few minutes."),
    Reason.TOTP_LOCKED: ReasonText(
        "確認コードの誤りが多すぎるため、ロックされました。情報システム課に連絡してください。",
        "Verification codes are locked after too many failures. Contact your IT department."),
    Reason.SESSION_VALID: ReasonText(
        "ログインセッションは有効です。", "The login session is valid."),
    Reason.SESSION_INVALID: ReasonText(
        "ログイン情報が正しくありません。もう一度ログインしてください（sekimori-agent login）。",
        "The login session is not valid. Log in again (sekimori-agent login)."),
    Reason.SESSION_EXPIRED: ReasonText(
        "ログインの有効期限が切れました。もう一度ログインしてください（sekimori-agent login）。",
        "Your login has expired. Log in again (sekimori-agent login)."),
    Reason.SESSION_REVOKED: ReasonText(
        "このログインセッションは取り消されました。もう一度ログインしてください（sekimori-agent login）。",
        "This login session has been revoked. Log in again (sekimori-agent login)."),
    Reason.SESSION_DEVICE_MISMATCH: ReasonText(
        "このログインセッションは別の端末のものです。この端末でログインしてください。",
        "This login session belongs to another device. Log in on this device."),
    Reason.MFA_REQUIRED: ReasonText(
        "このアプリには多要素認証が必要です。多要素認証でログインし直してください。",
        "This app requires multi-factor authentication. Log in again with "
        "multi-factor authentication."),
    Reason.MFA_TOO_OLD: ReasonText(
        "このアプリを使うには、もう一度認証してください（多要素認証の再確認: sekimori-agent login）。",
        "This app needs a recent multi-factor authentication. Authenticate again "
        "(sekimori-agent login)."),
    Reason.DIRECTORY_LOGIN_OK: ReasonText(
        "ディレクトリでのログインを確認しました。", "The directory login succeeded."),
    Reason.USERNAME_INVALID: ReasonText(
        "ユーザー名が正しくありません。", "The user name is not valid."),
    Reason.PASSWORD_EMPTY: ReasonText(
        "パスワードを入力してください。", "Enter your password."),
    Reason.CREDENTIALS_INVALID: ReasonText(
        "ユーザー名またはパスワードが正しくありません。",
        "The user name or password is not correct."),
    Reason.USER_NOT_FOUND: ReasonText(
        "ユーザー名またはパスワードが正しくありません。",
        "The user name or password is not correct."),
    Reason.USER_AMBIGUOUS: ReasonText(
        "このユーザー名に該当するアカウントが複数あります。情報システム課に連絡してください。",
        "More than one account matches this user name. Contact your IT department."),
    Reason.ACCOUNT_DISABLED: ReasonText(
        "このアカウントは無効になっています。情報システム課に連絡してください。",
        "This account is disabled. Contact your IT department."),
    Reason.ACCOUNT_LOCKED: ReasonText(
        "このアカウントはロックされています。しばらく待つか、情報システム課に連絡してください。",
        "This account is locked. Wait a while or contact your IT department."),
    Reason.ACCOUNT_EXPIRED: ReasonText(
        "このアカウントは有効期限が切れています。情報システム課に連絡してください。",
        "This account has expired. Contact your IT department."),
    Reason.PASSWORD_EXPIRED: ReasonText(
        "パスワードの有効期限が切れています。庁内の端末でパスワードを変更してください。",
        "Your password has expired. Change it on an office computer."),
    Reason.PASSWORD_MUST_CHANGE: ReasonText(
        "パスワードの変更が必要です。庁内の端末でパスワードを変更してください。",
        "You must change your password. Change it on an office computer."),
    Reason.LOGON_HOURS: ReasonText(
        "この時間帯はログインが許可されていません。",
        "Logging in is not allowed at this time of day."),
    Reason.WORKSTATION_NOT_ALLOWED: ReasonText(
        "このアカウントはこの端末からのログインが許可されていません。",
        "This account may not log in from this computer."),
    Reason.ACCOUNT_STATE_UNKNOWN: ReasonText(
        "アカウントの状態を確認できないため、ログインを拒否しました（フェイルクローズ）。",
        "The account's state could not be checked, so the login was refused (fail closed)."),
    Reason.BIND_IDENTITY_MISMATCH: ReasonText(
        "ディレクトリでの本人確認に失敗しました（フェイルクローズ）。",
        "The directory did not confirm who logged in (fail closed)."),
    Reason.GROUPS_INCOMPLETE: ReasonText(
        "所属グループを確認しきれないため、ログインを拒否しました（フェイルクローズ）。",
        "Group membership could not be fully resolved, so the login was refused (fail closed)."),
    Reason.DIRECTORY_UNAVAILABLE: ReasonText(
        "認証サーバー（ディレクトリ）に接続できないため、ログインできません（フェイルクローズ）。",
        "The directory server cannot be reached, so you cannot log in (fail closed)."),
    Reason.LOGIN_OK: ReasonText(
        "ログインしました。", "You are logged in."),
    Reason.LOGIN_REQUIRED: ReasonText(
        "ログインが必要です。「sekimori-agent login」でログインしてください。",
        "You need to log in. Run \"sekimori-agent login\"."),
    Reason.LOGGED_OUT: ReasonText(
        "ログアウトしました。", "You are logged out."),
    Reason.LOGIN_METHOD_UNKNOWN: ReasonText(
        "このログイン方法はこの自治体では設定されていません。",
        "This login method is not configured for your organisation."),
    Reason.TOTP_NOT_ENROLLED: ReasonText(
        "ワンタイムパスワード（TOTP）が登録されていません。情報システム課に登録を依頼してください。",
        "No one-time password (TOTP) is enrolled for you. Ask your IT department to enrol one."),
    Reason.LOGIN_RATE_LIMITED: ReasonText(
        "ログインの失敗が続いたため、この端末からのログインを一時的に止めています。しばらく待ってください。",
        "Too many failed logins from this device: wait a few minutes before trying again."),
    Reason.DEVICE_COMPLIANT: ReasonText(
        "端末はセキュリティ要件を満たしています。", "The device meets the security requirements."),
    Reason.DEVICE_NONCOMPLIANT: ReasonText(
        "端末がセキュリティ要件を満たしていないため、通信を遮断しました。"
        "「sekimori-agent status」で対処方法を確認してください。",
        "The device does not meet the security requirements, so the connection was blocked. "
        "Run \"sekimori-agent status\" to see what to fix."),
    Reason.POSTURE_MISSING: ReasonText(
        "端末の状態（ポスチャ）がまだ報告されていません。しばらく待ってから再試行してください。",
        "The device has not reported its security state yet. Wait a moment and try again."),
    Reason.POSTURE_STALE: ReasonText(
        "端末の状態の報告が古くなったため、通信を遮断しました（フェイルクローズ）。",
        "The device's security report is out of date, so the connection was blocked (fail closed)."),
    Reason.POSTURE_REPORT_INVALID: ReasonText(
        "端末の状態の報告を検証できませんでした（改ざん、または別の端末の署名）。",
        "The device's security report could not be verified (tampered, or signed by another device)."),
    Reason.POSTURE_REPORT_REPLAYED: ReasonText(
        "端末の状態の報告が再送されたものだったため、拒否しました。",
        "The device's security report was a replay and was refused."),
    Reason.POSTURE_REPORT_TOO_OLD: ReasonText(
        "端末の状態の報告が古すぎるため、拒否しました。端末の時計も確認してください。",
        "The device's security report is too old and was refused. Check the device's clock."),
    Reason.DEVICE_QUARANTINED: ReasonText(
        "この端末は管理者により隔離されています。情報システム課に連絡してください。",
        "This device has been quarantined by an administrator. Contact your IT department."),
    Reason.DEVICE_RELEASED: ReasonText(
        "端末の隔離が解除されました。", "The device was released from quarantine."),
    Reason.ADMIN_UNAUTHORIZED: ReasonText(
        "管理APIの認証に失敗しました（管理者トークンが必要です）。",
        "The admin API needs a valid administrator token."),
    Reason.POLICY_ALLOWED: ReasonText(
        "アクセスポリシーにより許可されています。", "Allowed by the access policy."),
    Reason.POLICY_DENIED: ReasonText(
        "アクセスポリシーにより、このアプリへのアクセスは許可されていません。",
        "The access policy does not allow you to use this app."),
    Reason.PRIVATE_APP_DEFAULT_DENY: ReasonText(
        "この庁内アプリへのアクセスを許可するルールがありません（既定で拒否）。",
        "No rule allows access to this internal app (denied by default)."),
    Reason.ZONE_MYNUMBER_FORBIDDEN: ReasonText(
        "マイナンバー利用事務系の外の端末からマイナンバー利用事務系へは接続できません（三層分離）。",
        "A device outside the My Number segment may never reach a My Number app "
        "(three-layer separation)."),
    Reason.ZONE_MYNUMBER_SPECIFIC_ONLY: ReasonText(
        "マイナンバー利用事務系の端末は、特定通信の宛先にしか接続できません（三層分離）。",
        "A device on the My Number segment may reach only its specific communications "
        "(three-layer separation)."),
    Reason.ZONE_LGWAN_VDI_ONLY: ReasonText(
        "αモデルでは、インターネット接続系の端末からLGWAN接続系へは画面転送でのみ接続できます。",
        "In the alpha model, a device on the internet segment may reach LGWAN apps only by "
        "screen transfer."),
    Reason.ZONE_LGWAN_NEEDS_MFA_AND_POSTURE: ReasonText(
        "LGWAN接続系のアプリには、多要素認証と要件を満たした端末が必要です。",
        "LGWAN apps need multi-factor authentication and a compliant device."),
    Reason.TENANT_QUOTA_EXCEEDED: ReasonText(
        "この自治体の同時接続数または帯域の上限に達しています。しばらくしてから再試行してください。",
        "Your organisation has reached its share of connections or bandwidth. Try again shortly."),
    Reason.OIDC_LOGIN_OK: ReasonText(
        "シングルサインオンでログインしました。", "The single sign-on login succeeded."),
    Reason.OIDC_STATE_INVALID: ReasonText(
        "ログインの応答が、この端末で始めたログインと一致しません。もう一度ログインしてください。",
        "The login response does not match a login started on this device. Log in again."),
    Reason.OIDC_ISSUER_MISMATCH: ReasonText(
        "ログインの応答が、想定と異なる認証サーバーから届きました（フェイルクローズ）。",
        "The login response came from a different identity provider than expected (fail closed)."),
    Reason.OIDC_PROVIDER_ERROR: ReasonText(
        "認証サーバーがログインを拒否しました。",
        "The identity provider refused the login."),
    Reason.OIDC_CODE_REJECTED: ReasonText(
        "認証サーバーがログインの引き換えを拒否しました。もう一度ログインしてください。",
        "The identity provider refused to redeem the login. Log in again."),
    Reason.OIDC_TOKEN_INVALID: ReasonText(
        "認証サーバーからのIDトークンを検証できませんでした（フェイルクローズ）。",
        "The ID token from the identity provider could not be verified (fail closed)."),
    Reason.OIDC_NONCE_MISMATCH: ReasonText(
        "IDトークンがこのログインのものではありません（フェイルクローズ）。",
        "The ID token does not belong to this login (fail closed)."),
    Reason.OIDC_PROVIDER_UNAVAILABLE: ReasonText(
        "認証サーバーに接続できないため、ログインできません（フェイルクローズ）。",
        "The identity provider cannot be reached, so you cannot log in (fail closed)."),
    Reason.RETURN_TO_INVALID: ReasonText(
        "ログイン後の戻り先が正しくありません。",
        "The page to return to after login is not valid."),
    Reason.BREAKOUT_DIRECT: ReasonText(
        "Microsoft 365 の通信として、端末から直接接続しました（ローカルブレイクアウト）。",
        "Sent directly from the device as Microsoft 365 traffic (local breakout)."),
    Reason.CAPTIVE_PORTAL_WINDOW: ReasonText(
        "公衆無線LANのログイン画面のため、一時的に直接接続しました（時間制限付き）。",
        "Sent directly for a Wi-Fi login page during a time-limited captive-portal window."),
    Reason.OVERRIDE_ACTIVE: ReasonText(
        "管理者の解除コードにより、一時的に制御を解除して直接接続しました。",
        "Sent directly while an administrator's override code lifts enforcement."),
    Reason.AGENT_EVENTS_INVALID: ReasonText(
        "端末から送られた記録が正しくないため、受け付けませんでした。",
        "The events the agent reported are invalid and were not accepted."),
    Reason.AGENT_RULES_UNAVAILABLE: ReasonText(
        "端末向けのルールを作成できませんでした（フェイルクローズ）。",
        "The rules for this device could not be prepared (fail closed)."),
    Reason.UPSTREAM_CERTIFICATE_INVALID: ReasonText(
        "接続先サーバーの証明書が正しくないため、接続を遮断しました（期限切れ・名前の不一致・"
        "信頼できない発行者など）。",
        "The destination server's certificate is not valid (expired, wrong name or untrusted "
        "issuer), so the connection was blocked."),
    Reason.UPSTREAM_TLS_FAILED: ReasonText(
        "接続先サーバーと安全な接続（TLS）を確立できませんでした。",
        "A secure (TLS) connection to the destination server could not be made."),
    Reason.UPSTREAM_PROTOCOL_ERROR: ReasonText(
        "接続先サーバーの応答が正しくないため、中断しました。",
        "The destination server's response was malformed, so it was stopped."),
    Reason.URL_CATEGORY_BLOCKED: ReasonText(
        "このサイトの分類（カテゴリ）は利用が許可されていません。",
        "Sites in this category are not allowed."),
    Reason.IOC_MATCH: ReasonText(
        "既知の攻撃・不正サイトの情報（IOC）に一致したため、遮断しました。",
        "Blocked: the destination matches a known threat indicator (IOC)."),
    Reason.HTTP_SIGNATURE: ReasonText(
        "攻撃の特徴（シグネチャ）に一致する通信のため、遮断しました。",
        "Blocked: the request matches an attack signature."),
    Reason.DLP_MYNUMBER: ReasonText(
        "個人番号（マイナンバー）を含むデータの送信は禁止されています。",
        "Sending data that contains an Individual Number (My Number) is not allowed."),
    Reason.DLP_CORPORATE_NUMBER: ReasonText(
        "法人番号を含むデータの送信は、この設定では禁止されています。",
        "Sending data that contains corporate numbers is not allowed by this policy."),
    Reason.DLP_CREDIT_CARD: ReasonText(
        "クレジットカード番号を含むデータの送信は禁止されています。",
        "Sending data that contains credit card numbers is not allowed."),
    Reason.DLP_KEYWORD: ReasonText(
        "送信が禁止されている語句（機密表示など）を含んでいます。",
        "The data contains words or patterns that may not be sent (such as confidentiality marks)."),
    Reason.MALWARE_DETECTED: ReasonText(
        "ファイルからマルウェアが検出されたため、遮断しました。",
        "Malware was found in the file, so it was blocked."),
    Reason.MALWARE_SCANNER_UNAVAILABLE: ReasonText(
        "ウイルス検査を実施できなかったため、安全のため遮断しました。",
        "The malware scan could not be run, so the file was blocked to be safe."),
    Reason.CONTENT_UNSCANNABLE: ReasonText(
        "内容を検査できないファイル（暗号化・破損・大きすぎる・圧縮爆弾など）のため、遮断しました。",
        "The content could not be inspected (encrypted, damaged, too large or a compression bomb), "
        "so it was blocked."),
    Reason.SANITISE_FAILED: ReasonText(
        "ファイルを無害化できなかったため、遮断しました。",
        "The file could not be sanitised, so it was blocked."),
    Reason.FILE_TYPE_BLOCKED: ReasonText(
        "この種類のファイルの送受信は許可されていません。",
        "Files of this type may not be sent or received."),
}


def text_for(reason: Reason) -> ReasonText:
    return REASON_TEXT[reason]
