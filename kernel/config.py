"""Configuration read from the environment, in one place.

Every process of the platform (each service, the gateway, the CLI) reads its
settings here and nowhere else. Each setting is declared once, as a field of
:class:`Settings` that names its variable, its default and what it means; the
variable's text is parsed by the field's type. :data:`ENVIRONMENT` lists those
variables, the complete list the code understands: ``docker-compose.yml`` and
the k8s manifests are held against it by tests.

>>> settings = Settings.from_env({"AMQP_URI": "amqp://u:p@broker:5672/"})
>>> settings.amqp_uri
'amqp://u:p@broker:5672/'
>>> settings.rpc_timeout
5.0
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

DEFAULT_AMQP_URI = "amqp://guest:guest@127.0.0.1:5672/"
DEFAULT_SECRET = "huisheng-development-secret-change-me"


def _env(variable: str, default: Any, doc: str, parse: Callable[[str], Any] | None = None) -> Any:
    """A field read from ``variable`` (``doc`` says what it is); ``parse`` overrides its type's parser."""
    return field(default=default, metadata={"variable": variable, "doc": doc, "parse": parse})


def _flag(text: str) -> bool:
    """1/true/yes or 0/false/no; anything else is an error, not a silent default."""
    word = text.strip().lower()
    if word not in ("1", "true", "yes", "0", "false", "no"):
        raise ValueError(f"expected 1/true/yes or 0/false/no, got {text!r}")
    return word in ("1", "true", "yes")


def _parts(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _deadlines(text: str) -> tuple[tuple[str, float], ...]:
    """``sms=600,human=28800`` as ``(("sms", 600.0), ("human", 28800.0))``; a malformed part is an error.

    >>> _deadlines("sms=600, human=28800")
    (('sms', 600.0), ('human', 28800.0))
    """
    pairs = []
    for part in _parts(text):
        channel, separator, seconds = part.partition("=")
        if not separator or not channel.strip():
            raise ValueError(f"NOTIFY_STEP_DEADLINES: expected channel=seconds, got {part!r}")
        pairs.append((channel.strip(), float(seconds)))
    return tuple(pairs)


# How a variable's text becomes a field's value, by the field's annotation (a string: see the
# __future__ import). A list that parses to no items (" , ") keeps the field's default.
PARSERS: dict[str, Callable[[str], Any]] = {
    "str": str, "str | None": str, "int": int, "float": float, "bool": _flag, "Path": Path,
    "tuple[int, ...]": lambda text: tuple(int(part) for part in _parts(text)),
    "tuple[float, ...]": lambda text: tuple(float(part) for part in _parts(text)),
    "tuple[str, ...]": lambda text: tuple(_parts(text)),
    "tuple[tuple[str, float], ...]": _deadlines,
}


@dataclass(frozen=True)
class Settings:
    """Immutable settings of one process."""

    amqp_uri: str = _env("AMQP_URI", DEFAULT_AMQP_URI, "RabbitMQ connection URI")
    management_url: str | None = _env("RABBITMQ_MANAGEMENT_URL", None,
                                      "RabbitMQ management API for `huisheng ops` (http://user:pass@host:15672); "
                                      "derived from AMQP_URI (same host and credentials, port 15672) when unset")
    mongo_uri: str | None = _env("MONGO_URI", None,
                                 "MongoDB connection URI; the CLI starts an embedded SecantusDB when unset")
    mongo_db_prefix: str = _env("MONGO_DB_PREFIX", "huisheng_", "prefix of every service's own database name")
    home: Path = _env("HUISHENG_HOME", Path("var"), "directory for data, logs and run state of the local platform")
    secret: str = _env("HUISHENG_SECRET", DEFAULT_SECRET, "HMAC secret that signs bearer tokens")
    community: str = _env("HUISHENG_COMMUNITY", "xingqiao", "default community id (Open311 jurisdiction_id)")
    gateway_host: str = _env("GATEWAY_HOST", "127.0.0.1", "address the gateway binds")
    gateway_port: int = _env("GATEWAY_PORT", 8000, "port of the gateway")
    http_host: str = _env("HTTP_HOST", "127.0.0.1", "address a service binds for /health and /ready")
    http_port: int = _env("HTTP_PORT", 0, "port a service binds for /health and /ready")
    secantus_port: int = _env("SECANTUS_PORT", 27018, "port of the embedded SecantusDB the CLI starts")
    rpc_timeout: float = _env("RPC_TIMEOUT", 5.0, "seconds an RPC caller waits for a reply")
    max_workers: int = _env("MAX_WORKERS", 10, "concurrent workers per service process")
    gateway_max_workers: int = _env("GATEWAY_MAX_WORKERS", 64,
                                    "concurrent requests the gateway works on; each mostly waits on an RPC reply")
    retry_delays_ms: tuple[int, ...] = _env("RETRY_DELAYS_MS", (200, 1000, 5000, 20000),
                                            "comma-separated back-off delays of a failing handler")
    outbox_sweep_seconds: float = _env("OUTBOX_SWEEP_SECONDS", 1.0, "interval of the outbox relay's sweep")
    outbox_grace_seconds: float = _env("OUTBOX_GRACE_SECONDS", 2.0,
                                       "age of an unpublished event before the sweep takes it")
    log_level: str = _env("LOG_LEVEL", "INFO", "DEBUG, INFO, WARNING or ERROR", parse=str.upper)
    log_format: str = _env("LOG_FORMAT", "json", "json (default) or console")
    stop_timeout: float = _env("HUISHENG_STOP_TIMEOUT", 20.0,
                               "seconds a process may take to stop gracefully before it exits anyway")
    cors_origins: tuple[str, ...] = _env("CORS_ORIGINS", (),
                                         "comma-separated origins a browser may call the gateway from; none (CORS "
                                         "closed) when unset")
    rate_limit_per_minute: int = _env("RATE_LIMIT_PER_MINUTE", 600,
                                      "requests a token or API key may make to the gateway per minute")
    rate_limit_address_per_minute: int = _env("RATE_LIMIT_ADDRESS_PER_MINUTE", 1200,
                                              "requests one client address may make to the gateway per minute")
    auth_code_per_minute: int = _env("AUTH_CODE_PER_MINUTE", 5,
                                     "sign-in code requests one client address may make per minute")
    data_key: str | None = _env("HUISHENG_DATA_KEY", None,
                                "key (32 bytes, base64) that encrypts personal data at rest and keys its search "
                                "hashes; derived from HUISHENG_SECRET when unset (development only)")
    access_token_ttl: int = _env("ACCESS_TOKEN_TTL", 900, "seconds an access token from sign-in is valid")
    refresh_token_ttl: int = _env("REFRESH_TOKEN_TTL", 30 * 24 * 3600,
                                  "seconds a refresh token (and its session) is valid")
    directory_seed: bool = _env("DIRECTORY_SEED", True,
                                "seed an empty directory with the demo community at start-up (1) or not (0)")
    sms_provider_url: str = _env("SMS_PROVIDER_URL", "http://127.0.0.1:8190/",
                                 "endpoint of the SMS provider's API (Aliyun Dysms SendSms; the local stand-in by "
                                 "default)")
    sms_access_key_id: str = _env("SMS_ACCESS_KEY_ID", "huisheng-dev", "access key id of the SMS provider account")
    sms_access_key_secret: str = _env("SMS_ACCESS_KEY_SECRET", "huisheng-dev-sms-secret",
                                      "access key secret that signs requests to the SMS provider")
    sms_sign_name: str = _env("SMS_SIGN_NAME", "兴乔社区", "the SMS signature (签名) registered with the provider")
    sms_template_code: str = _env("SMS_TEMPLATE_CODE", "SMS_HUISHENG_LOGIN",
                                  "the provider's template code of the sign-in code message")
    sms_timeout: float = _env("SMS_TIMEOUT", 2.0, "seconds notify waits for the SMS provider's answer to one request")
    sms_echo_template_code: str = _env("SMS_ECHO_TEMPLATE_CODE", "SMS_HUISHENG_ECHO",
                                       "the provider's template code of an echo (parameters ticket_id and title)")
    sms_receipt_secret: str = _env("SMS_RECEIPT_SECRET", "huisheng-dev-sms-receipts",
                                   "HMAC-SHA256 key the SMS provider's delivery receipts are signed with (X-Huisheng-"
                                   "Signature over timestamp and body, as the outbound webhooks)")
    notify_timer_seconds: float = _env("NOTIFY_TIMER_SECONDS", 2.0,
                                       "how often notify retries, falls back and reconciles echoes (its timer)")
    echo_proof_seconds: float = _env("ECHO_PROOF_SECONDS", 900.0,
                                     "seconds after a ticket change by which its echo must be delivered or a reason "
                                     "recorded; later, the ticket counts as silent")
    notify_retry_delays: tuple[float, ...] = _env("NOTIFY_RETRY_DELAYS", (5.0, 30.0, 120.0),
                                                  "comma-separated seconds between attempts on a failing echo channel "
                                                  "(back-off)")
    notify_max_attempts: int = _env("NOTIFY_MAX_ATTEMPTS", 3,
                                    "attempts on one echo channel before the echo falls back to the next")
    notify_step_deadlines: tuple[tuple[str, float], ...] = _env("NOTIFY_STEP_DEADLINES", (),
                                                                "per channel, seconds a step may take to be delivered "
                                                                "before the next is tried (channel=seconds, comma-"
                                                                "separated; e.g. sms=600,human=28800)")
    notify_timezone: str = _env("NOTIFY_TIMEZONE", "Asia/Shanghai", "time zone of quiet hours and digests (IANA name)")
    smtp_host: str = _env("SMTP_HOST", "127.0.0.1", "SMTP server notify sends e-mail echoes through")
    smtp_port: int = _env("SMTP_PORT", 8025, "port of the SMTP server")
    smtp_from: str = _env("SMTP_FROM", "huisheng@localhost", "sender address of e-mail echoes")
    smtp_timeout: float = _env("SMTP_TIMEOUT", 5.0, "seconds notify waits for the SMTP server")
    wechat_api_url: str = _env("WECHAT_API_URL", "http://127.0.0.1:8191",
                               "base URL of WeChat's API (api.weixin.qq.com; the local stand-in by default)")
    wechat_appid: str = _env("WECHAT_APPID", "wx-huisheng-dev", "the WeChat mini program's AppID")
    wechat_secret: str = _env("WECHAT_SECRET", "huisheng-dev-wechat-secret", "the WeChat mini program's AppSecret")
    wechat_template_id: str = _env("WECHAT_TEMPLATE_ID", "HUISHENG_ECHO",
                                   "the subscription message template an echo is sent with")
    wechat_timeout: float = _env("WECHAT_TIMEOUT", 2.0, "seconds notify waits for WeChat's answer")
    webhook_secret: str = _env("WEBHOOK_SECRET", "huisheng-dev-webhook-secret",
                               "HMAC-SHA256 key that signs outbound webhooks (X-Huisheng-Signature)")
    webhook_timeout: float = _env("WEBHOOK_TIMEOUT", 3.0, "seconds notify waits for a webhook receiver")
    retention_days: int = _env("RETENTION_DAYS", 1095,
                               "days after which the personal data of a closed ticket is anonymised")
    daily_clearance_hour: int = _env("DAILY_CLEARANCE_HOUR", 17,
                                     "hour (0-23, Asia/Shanghai) of the daily clearance (日清) the daily report is "
                                     "taken at")
    pdf_font: str | None = _env("HUISHENG_PDF_FONT", None,
                                "a .ttf/.ttc CJK font the volunteers' PDF records embed (default: Debian's WenQuanYi "
                                "Zen Hei)")
    escalate_after_bounces: int = _env("ESCALATE_AFTER_BOUNCES", 2,
                                       "bounces (退单) of a ticket from which each bounce escalates it to the "
                                       "secretary")
    sla_timer_seconds: float = _env("SLA_TIMER_SECONDS", 10.0,
                                    "how often the tickets service looks for deadlines reaching a warning (50 %, 75 %)"
                                    " or breach")
    sla_test_clock: bool = _env("SLA_TEST_CLOCK", False,
                                "1 lets the set_test_clock RPC move the tickets service's clock (tests only; 0 by "
                                "default)")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Every field from its variable; an unset or empty variable keeps the field's default."""
        env = os.environ if environ is None else environ
        values = {}
        for spec in fields(cls):
            text = env.get(spec.metadata["variable"])
            if text in (None, ""):
                continue
            value = (spec.metadata["parse"] or PARSERS[spec.type])(text)
            if value != ():
                values[spec.name] = value
        return cls(**values)

    def database_name(self, service: str) -> str:
        """Each service owns one database: ``huisheng_tickets``, ``huisheng_notify`` ..."""
        return f"{self.mongo_db_prefix}{service}"

    def nameko_config(self, *, web_address: str | None = None, gateway: bool = False) -> dict:
        """The dict a nameko container is built with; kernel extensions read ``HUISHENG``. The gateway's own worker
        count: docs/architecture.md ("RPC with deadlines")."""
        config = {"AMQP_URI": self.amqp_uri, "max_workers": self.gateway_max_workers if gateway else self.max_workers,
                  "serializer": "json", "HUISHENG": self}
        if web_address:
            config["WEB_SERVER_ADDRESS"] = web_address
        return config


# Every environment variable the code understands, with what it means.
ENVIRONMENT: dict[str, str] = {spec.metadata["variable"]: spec.metadata["doc"] for spec in fields(Settings)}


def settings_of(config: Mapping) -> Settings:
    """The :class:`Settings` a nameko container was configured with."""
    settings = config.get("HUISHENG")
    if isinstance(settings, Settings):
        return settings
    return Settings.from_env({k: str(v) for k, v in config.items() if isinstance(k, str)})
