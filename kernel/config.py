"""Configuration read from the environment, in one place.

Every process of the platform (each service, the gateway, the CLI) reads its
settings here and nowhere else, so the names below are the complete list of
environment variables the code understands. ``docker-compose.yml`` is held
against :data:`ENVIRONMENT` by a test.

>>> settings = Settings.from_env({"AMQP_URI": "amqp://u:p@broker:5672/"})
>>> settings.amqp_uri
'amqp://u:p@broker:5672/'
>>> settings.rpc_timeout
5.0
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

ENVIRONMENT: dict[str, str] = {
    "AMQP_URI": "RabbitMQ connection URI",
    "RABBITMQ_MANAGEMENT_URL": "RabbitMQ management API for `huisheng ops` (http://user:pass@host:15672); "
                               "derived from AMQP_URI (same host and credentials, port 15672) when unset",
    "MONGO_URI": "MongoDB connection URI; the CLI starts an embedded SecantusDB when unset",
    "MONGO_DB_PREFIX": "prefix of every service's own database name",
    "HUISHENG_HOME": "directory for data, logs and run state of the local platform",
    "HUISHENG_SECRET": "HMAC secret that signs bearer tokens",
    "HUISHENG_COMMUNITY": "default community id (Open311 jurisdiction_id)",
    "GATEWAY_HOST": "address the gateway binds",
    "GATEWAY_PORT": "port of the gateway",
    "HTTP_HOST": "address a service binds for /health and /ready",
    "HTTP_PORT": "port a service binds for /health and /ready",
    "SECANTUS_PORT": "port of the embedded SecantusDB the CLI starts",
    "RPC_TIMEOUT": "seconds an RPC caller waits for a reply",
    "MAX_WORKERS": "concurrent workers per service process",
    "GATEWAY_MAX_WORKERS": "concurrent requests the gateway works on; each mostly waits on an RPC reply",
    "RETRY_DELAYS_MS": "comma-separated back-off delays of a failing handler",
    "OUTBOX_SWEEP_SECONDS": "interval of the outbox relay's sweep",
    "OUTBOX_GRACE_SECONDS": "age of an unpublished event before the sweep takes it",
    "LOG_LEVEL": "DEBUG, INFO, WARNING or ERROR",
    "LOG_FORMAT": "json (default) or console",
    "HUISHENG_STOP_TIMEOUT": "seconds a process may take to stop gracefully before it exits anyway",
    "CORS_ORIGINS": "comma-separated origins a browser may call the gateway from; none (CORS closed) when unset",
    "RATE_LIMIT_PER_MINUTE": "requests a token or API key may make to the gateway per minute",
    "RATE_LIMIT_ADDRESS_PER_MINUTE": "requests one client address may make to the gateway per minute",
    "AUTH_CODE_PER_MINUTE": "sign-in code requests one client address may make per minute",
    "HUISHENG_DATA_KEY": "key (32 bytes, base64) that encrypts personal data at rest and keys its search hashes; "
                         "derived from HUISHENG_SECRET when unset (development only)",
    "ACCESS_TOKEN_TTL": "seconds an access token from sign-in is valid",
    "REFRESH_TOKEN_TTL": "seconds a refresh token (and its session) is valid",
    "DIRECTORY_SEED": "seed an empty directory with the demo community at start-up (1) or not (0)",
    "SMS_PROVIDER_URL": "endpoint of the SMS provider's API (Aliyun Dysms SendSms; the local stand-in by default)",
    "SMS_ACCESS_KEY_ID": "access key id of the SMS provider account",
    "SMS_ACCESS_KEY_SECRET": "access key secret that signs requests to the SMS provider",
    "SMS_SIGN_NAME": "the SMS signature (签名) registered with the provider",
    "SMS_TEMPLATE_CODE": "the provider's template code of the sign-in code message",
    "SMS_TIMEOUT": "seconds notify waits for the SMS provider's answer to one request",
    "SMS_ECHO_TEMPLATE_CODE": "the provider's template code of an echo (parameters ticket_id and title)",
    "SMS_RECEIPT_SECRET": "HMAC-SHA256 key the SMS provider's delivery receipts are signed with "
                          "(X-Huisheng-Signature over timestamp and body, as the outbound webhooks)",
    "NOTIFY_TIMER_SECONDS": "how often notify retries, falls back and reconciles echoes (its timer)",
    "ECHO_PROOF_SECONDS": "seconds after a ticket change by which its echo must be delivered or a reason recorded; "
                          "later, the ticket counts as silent",
    "NOTIFY_RETRY_DELAYS": "comma-separated seconds between attempts on a failing echo channel (back-off)",
    "NOTIFY_MAX_ATTEMPTS": "attempts on one echo channel before the echo falls back to the next",
    "NOTIFY_STEP_DEADLINES": "per channel, seconds a step may take to be delivered before the next is tried "
                             "(channel=seconds, comma-separated; e.g. sms=600,human=28800)",
    "NOTIFY_TIMEZONE": "time zone of quiet hours and digests (IANA name)",
    "SMTP_HOST": "SMTP server notify sends e-mail echoes through",
    "SMTP_PORT": "port of the SMTP server",
    "SMTP_FROM": "sender address of e-mail echoes",
    "SMTP_TIMEOUT": "seconds notify waits for the SMTP server",
    "WECHAT_API_URL": "base URL of WeChat's API (api.weixin.qq.com; the local stand-in by default)",
    "WECHAT_APPID": "the WeChat mini program's AppID",
    "WECHAT_SECRET": "the WeChat mini program's AppSecret",
    "WECHAT_TEMPLATE_ID": "the subscription message template an echo is sent with",
    "WECHAT_TIMEOUT": "seconds notify waits for WeChat's answer",
    "WEBHOOK_SECRET": "HMAC-SHA256 key that signs outbound webhooks (X-Huisheng-Signature)",
    "WEBHOOK_TIMEOUT": "seconds notify waits for a webhook receiver",
    "RETENTION_DAYS": "days after which the personal data of a closed ticket is anonymised",
    "DAILY_CLEARANCE_HOUR": "hour (0-23, Asia/Shanghai) of the daily clearance (日清) the daily report is taken at",
    "HUISHENG_PDF_FONT": "a .ttf/.ttc CJK font the volunteers' PDF records embed (default: Debian's WenQuanYi Zen Hei)",
    "ESCALATE_AFTER_BOUNCES": "bounces (退单) of a ticket from which each bounce escalates it to the secretary",
    "SLA_TIMER_SECONDS": "how often the tickets service looks for deadlines reaching a warning (50 %, 75 %) or breach",
    "SLA_TEST_CLOCK": "1 lets the set_test_clock RPC move the tickets service's clock (tests only; 0 by default)",
}

DEFAULT_AMQP_URI = "amqp://guest:guest@127.0.0.1:5672/"
DEFAULT_SECRET = "huisheng-development-secret-change-me"


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split(",") if part.strip())


def _floats(text: str) -> tuple[float, ...]:
    return tuple(float(part) for part in text.split(",") if part.strip())


def _deadlines(text: str) -> tuple[tuple[str, float], ...]:
    """``sms=600,human=28800`` as ``(("sms", 600.0), ("human", 28800.0))``; a malformed part is an error.

    >>> _deadlines("sms=600, human=28800")
    (('sms', 600.0), ('human', 28800.0))
    """
    pairs = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        channel, separator, seconds = part.partition("=")
        if not separator or not channel.strip():
            raise ValueError(f"NOTIFY_STEP_DEADLINES: expected channel=seconds, got {part!r}")
        pairs.append((channel.strip(), float(seconds)))
    return tuple(pairs)


@dataclass(frozen=True)
class Settings:
    """Immutable settings of one process."""

    amqp_uri: str = DEFAULT_AMQP_URI
    management_url: str | None = None
    mongo_uri: str | None = None
    mongo_db_prefix: str = "huisheng_"
    home: Path = field(default_factory=lambda: Path("var"))
    secret: str = DEFAULT_SECRET
    community: str = "xingqiao"
    gateway_host: str = "127.0.0.1"
    gateway_port: int = 8000
    http_host: str = "127.0.0.1"
    http_port: int = 0
    secantus_port: int = 27018
    rpc_timeout: float = 5.0
    max_workers: int = 10
    gateway_max_workers: int = 64
    retry_delays_ms: tuple[int, ...] = (200, 1000, 5000, 20000)
    outbox_sweep_seconds: float = 1.0
    outbox_grace_seconds: float = 2.0
    log_level: str = "INFO"
    log_format: str = "json"
    stop_timeout: float = 20.0
    cors_origins: tuple[str, ...] = ()
    rate_limit_per_minute: int = 600
    rate_limit_address_per_minute: int = 1200
    auth_code_per_minute: int = 5
    data_key: str | None = None
    access_token_ttl: int = 900
    refresh_token_ttl: int = 30 * 24 * 3600
    directory_seed: bool = True
    sms_provider_url: str = "http://127.0.0.1:8190/"
    sms_access_key_id: str = "huisheng-dev"
    sms_access_key_secret: str = "huisheng-dev-sms-secret"
    sms_sign_name: str = "兴乔社区"
    sms_template_code: str = "SMS_HUISHENG_LOGIN"
    sms_timeout: float = 2.0
    sms_echo_template_code: str = "SMS_HUISHENG_ECHO"
    sms_receipt_secret: str = "huisheng-dev-sms-receipts"
    notify_timer_seconds: float = 2.0
    echo_proof_seconds: float = 900.0
    notify_retry_delays: tuple[float, ...] = (5.0, 30.0, 120.0)
    notify_max_attempts: int = 3
    notify_step_deadlines: tuple[tuple[str, float], ...] = ()
    notify_timezone: str = "Asia/Shanghai"
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 8025
    smtp_from: str = "huisheng@localhost"
    smtp_timeout: float = 5.0
    wechat_api_url: str = "http://127.0.0.1:8191"
    wechat_appid: str = "wx-huisheng-dev"
    wechat_secret: str = "huisheng-dev-wechat-secret"
    wechat_template_id: str = "HUISHENG_ECHO"
    wechat_timeout: float = 2.0
    webhook_secret: str = "huisheng-dev-webhook-secret"
    webhook_timeout: float = 3.0
    retention_days: int = 1095
    daily_clearance_hour: int = 17
    pdf_font: str | None = None
    escalate_after_bounces: int = 2
    sla_timer_seconds: float = 10.0
    sla_test_clock: bool = False

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        default = cls()

        def get(name: str, fallback):
            value = env.get(name)
            return fallback if value in (None, "") else value

        return cls(
            amqp_uri=get("AMQP_URI", default.amqp_uri),
            management_url=get("RABBITMQ_MANAGEMENT_URL", None),
            mongo_uri=get("MONGO_URI", None),
            mongo_db_prefix=get("MONGO_DB_PREFIX", default.mongo_db_prefix),
            home=Path(get("HUISHENG_HOME", str(default.home))),
            secret=get("HUISHENG_SECRET", default.secret),
            community=get("HUISHENG_COMMUNITY", default.community),
            gateway_host=get("GATEWAY_HOST", default.gateway_host),
            gateway_port=int(get("GATEWAY_PORT", default.gateway_port)),
            http_host=get("HTTP_HOST", default.http_host),
            http_port=int(get("HTTP_PORT", default.http_port)),
            secantus_port=int(get("SECANTUS_PORT", default.secantus_port)),
            rpc_timeout=float(get("RPC_TIMEOUT", default.rpc_timeout)),
            max_workers=int(get("MAX_WORKERS", default.max_workers)),
            gateway_max_workers=int(get("GATEWAY_MAX_WORKERS", default.gateway_max_workers)),
            retry_delays_ms=_ints(get("RETRY_DELAYS_MS", "")) or default.retry_delays_ms,
            outbox_sweep_seconds=float(get("OUTBOX_SWEEP_SECONDS", default.outbox_sweep_seconds)),
            outbox_grace_seconds=float(get("OUTBOX_GRACE_SECONDS", default.outbox_grace_seconds)),
            log_level=get("LOG_LEVEL", default.log_level).upper(),
            log_format=get("LOG_FORMAT", default.log_format),
            stop_timeout=float(get("HUISHENG_STOP_TIMEOUT", default.stop_timeout)),
            cors_origins=tuple(origin.strip() for origin in get("CORS_ORIGINS", "").split(",") if origin.strip()),
            rate_limit_per_minute=int(get("RATE_LIMIT_PER_MINUTE", default.rate_limit_per_minute)),
            rate_limit_address_per_minute=int(get("RATE_LIMIT_ADDRESS_PER_MINUTE",
                                                  default.rate_limit_address_per_minute)),
            auth_code_per_minute=int(get("AUTH_CODE_PER_MINUTE", default.auth_code_per_minute)),
            data_key=get("HUISHENG_DATA_KEY", None),
            access_token_ttl=int(get("ACCESS_TOKEN_TTL", default.access_token_ttl)),
            refresh_token_ttl=int(get("REFRESH_TOKEN_TTL", default.refresh_token_ttl)),
            directory_seed=get("DIRECTORY_SEED", "1") not in ("0", "false", "no"),
            sms_provider_url=get("SMS_PROVIDER_URL", default.sms_provider_url),
            sms_access_key_id=get("SMS_ACCESS_KEY_ID", default.sms_access_key_id),
            sms_access_key_secret=get("SMS_ACCESS_KEY_SECRET", default.sms_access_key_secret),
            sms_sign_name=get("SMS_SIGN_NAME", default.sms_sign_name),
            sms_template_code=get("SMS_TEMPLATE_CODE", default.sms_template_code),
            sms_timeout=float(get("SMS_TIMEOUT", default.sms_timeout)),
            sms_echo_template_code=get("SMS_ECHO_TEMPLATE_CODE", default.sms_echo_template_code),
            sms_receipt_secret=get("SMS_RECEIPT_SECRET", default.sms_receipt_secret),
            notify_timer_seconds=float(get("NOTIFY_TIMER_SECONDS", default.notify_timer_seconds)),
            echo_proof_seconds=float(get("ECHO_PROOF_SECONDS", default.echo_proof_seconds)),
            notify_retry_delays=_floats(get("NOTIFY_RETRY_DELAYS", "")) or default.notify_retry_delays,
            notify_max_attempts=int(get("NOTIFY_MAX_ATTEMPTS", default.notify_max_attempts)),
            notify_step_deadlines=_deadlines(get("NOTIFY_STEP_DEADLINES", "")),
            notify_timezone=get("NOTIFY_TIMEZONE", default.notify_timezone),
            smtp_host=get("SMTP_HOST", default.smtp_host),
            smtp_port=int(get("SMTP_PORT", default.smtp_port)),
            smtp_from=get("SMTP_FROM", default.smtp_from),
            smtp_timeout=float(get("SMTP_TIMEOUT", default.smtp_timeout)),
            wechat_api_url=get("WECHAT_API_URL", default.wechat_api_url),
            wechat_appid=get("WECHAT_APPID", default.wechat_appid),
            wechat_secret=get("WECHAT_SECRET", default.wechat_secret),
            wechat_template_id=get("WECHAT_TEMPLATE_ID", default.wechat_template_id),
            wechat_timeout=float(get("WECHAT_TIMEOUT", default.wechat_timeout)),
            webhook_secret=get("WEBHOOK_SECRET", default.webhook_secret),
            webhook_timeout=float(get("WEBHOOK_TIMEOUT", default.webhook_timeout)),
            retention_days=int(get("RETENTION_DAYS", default.retention_days)),
            daily_clearance_hour=int(get("DAILY_CLEARANCE_HOUR", default.daily_clearance_hour)),
            pdf_font=get("HUISHENG_PDF_FONT", None),
            escalate_after_bounces=int(get("ESCALATE_AFTER_BOUNCES", default.escalate_after_bounces)),
            sla_timer_seconds=float(get("SLA_TIMER_SECONDS", default.sla_timer_seconds)),
            sla_test_clock=get("SLA_TEST_CLOCK", "0") in ("1", "true", "yes"),
        )

    def database_name(self, service: str) -> str:
        """Each service owns one database: ``huisheng_tickets``, ``huisheng_notify`` ..."""
        return f"{self.mongo_db_prefix}{service}"

    def nameko_config(self, *, web_address: str | None = None, gateway: bool = False) -> dict:
        """The dict a nameko container is built with; kernel extensions read ``HUISHENG``.

        The gateway gets more workers than a service: a request beyond them would wait for a
        worker before its RPC deadline even starts, so its answer time would have no bound.
        """
        config = {
            "AMQP_URI": self.amqp_uri,
            "max_workers": self.gateway_max_workers if gateway else self.max_workers,
            "serializer": "json",
            "HUISHENG": self,
        }
        if web_address:
            config["WEB_SERVER_ADDRESS"] = web_address
        return config


def settings_of(config: Mapping) -> Settings:
    """The :class:`Settings` a nameko container was configured with."""
    settings = config.get("HUISHENG")
    if isinstance(settings, Settings):
        return settings
    return Settings.from_env({k: str(v) for k, v in config.items() if isinstance(k, str)})
