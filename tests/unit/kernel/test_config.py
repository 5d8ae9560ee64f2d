"""Settings from the environment, and the list of environment variables kept honest."""

from dataclasses import fields
from pathlib import Path

import pytest

from kernel.config import DEFAULT_AMQP_URI, ENVIRONMENT, Settings, settings_of

# variable, raw value, field of Settings, parsed value
CASES = [
    ("AMQP_URI", "amqp://u:p@broker:5672/vh", "amqp_uri", "amqp://u:p@broker:5672/vh"),
    ("RABBITMQ_MANAGEMENT_URL", "http://u:p@broker:15672", "management_url", "http://u:p@broker:15672"),
    ("MONGO_URI", "mongodb://db:27017/", "mongo_uri", "mongodb://db:27017/"),
    ("MONGO_DB_PREFIX", "hs_", "mongo_db_prefix", "hs_"),
    ("HUISHENG_HOME", "/srv/huisheng", "home", Path("/srv/huisheng")),
    ("HUISHENG_SECRET", "s3cret", "secret", "s3cret"),
    ("HUISHENG_COMMUNITY", "nanshan", "community", "nanshan"),
    ("GATEWAY_HOST", "0.0.0.0", "gateway_host", "0.0.0.0"),
    ("GATEWAY_PORT", "8080", "gateway_port", 8080),
    ("HTTP_HOST", "10.0.0.5", "http_host", "10.0.0.5"),
    ("HTTP_PORT", "9100", "http_port", 9100),
    ("SECANTUS_PORT", "27999", "secantus_port", 27999),
    ("RPC_TIMEOUT", "2.5", "rpc_timeout", 2.5),
    ("MAX_WORKERS", "4", "max_workers", 4),
    ("GATEWAY_MAX_WORKERS", "200", "gateway_max_workers", 200),
    ("RETRY_DELAYS_MS", "100, 200", "retry_delays_ms", (100, 200)),
    ("OUTBOX_SWEEP_SECONDS", "0.5", "outbox_sweep_seconds", 0.5),
    ("OUTBOX_GRACE_SECONDS", "3", "outbox_grace_seconds", 3.0),
    ("LOG_LEVEL", "debug", "log_level", "DEBUG"),
    ("LOG_FORMAT", "console", "log_format", "console"),
    ("HUISHENG_STOP_TIMEOUT", "7.5", "stop_timeout", 7.5),
    ("CORS_ORIGINS", "https://a.example, https://b.example", "cors_origins", ("https://a.example", "https://b.example")),
    ("RATE_LIMIT_PER_MINUTE", "100000", "rate_limit_per_minute", 100000),
    ("RATE_LIMIT_ADDRESS_PER_MINUTE", "50", "rate_limit_address_per_minute", 50),
    ("AUTH_CODE_PER_MINUTE", "30", "auth_code_per_minute", 30),
    ("HUISHENG_DATA_KEY", "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=", "data_key",
     "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="),
    ("ACCESS_TOKEN_TTL", "60", "access_token_ttl", 60),
    ("REFRESH_TOKEN_TTL", "3600", "refresh_token_ttl", 3600),
    ("DIRECTORY_SEED", "0", "directory_seed", False),
    ("SMS_PROVIDER_URL", "https://dysmsapi.aliyuncs.com/", "sms_provider_url", "https://dysmsapi.aliyuncs.com/"),
    ("SMS_ACCESS_KEY_ID", "LTAI-test", "sms_access_key_id", "LTAI-test"),
    ("SMS_ACCESS_KEY_SECRET", "s3cret", "sms_access_key_secret", "s3cret"),
    ("SMS_SIGN_NAME", "体育场街道", "sms_sign_name", "体育场街道"),
    ("SMS_TEMPLATE_CODE", "SMS_0001", "sms_template_code", "SMS_0001"),
    ("SMS_TIMEOUT", "2.5", "sms_timeout", 2.5),
    ("SMS_ECHO_TEMPLATE_CODE", "SMS_0002", "sms_echo_template_code", "SMS_0002"),
    ("SMS_RECEIPT_SECRET", "r3ceipts", "sms_receipt_secret", "r3ceipts"),
    ("NOTIFY_TIMER_SECONDS", "0.5", "notify_timer_seconds", 0.5),
    ("ECHO_PROOF_SECONDS", "60", "echo_proof_seconds", 60.0),
    ("NOTIFY_RETRY_DELAYS", "1, 2.5", "notify_retry_delays", (1.0, 2.5)),
    ("NOTIFY_MAX_ATTEMPTS", "5", "notify_max_attempts", 5),
    ("NOTIFY_STEP_DEADLINES", "sms=30,human=3600", "notify_step_deadlines", (("sms", 30.0), ("human", 3600.0))),
    ("NOTIFY_TIMEZONE", "Asia/Urumqi", "notify_timezone", "Asia/Urumqi"),
    ("SMTP_HOST", "mail.example", "smtp_host", "mail.example"),
    ("SMTP_PORT", "2525", "smtp_port", 2525),
    ("SMTP_FROM", "office@example.cn", "smtp_from", "office@example.cn"),
    ("SMTP_TIMEOUT", "1.5", "smtp_timeout", 1.5),
    ("WECHAT_API_URL", "https://api.weixin.qq.com", "wechat_api_url", "https://api.weixin.qq.com"),
    ("WECHAT_APPID", "wx123", "wechat_appid", "wx123"),
    ("WECHAT_SECRET", "s3cret", "wechat_secret", "s3cret"),
    ("WECHAT_TEMPLATE_ID", "tmpl-1", "wechat_template_id", "tmpl-1"),
    ("WECHAT_TIMEOUT", "1.5", "wechat_timeout", 1.5),
    ("WEBHOOK_SECRET", "hook-s3cret", "webhook_secret", "hook-s3cret"),
    ("WEBHOOK_TIMEOUT", "1.5", "webhook_timeout", 1.5),
    ("RETENTION_DAYS", "365", "retention_days", 365),
    ("DAILY_CLEARANCE_HOUR", "18", "daily_clearance_hour", 18),
    ("HUISHENG_PDF_FONT", "/usr/share/fonts/x.ttc", "pdf_font", "/usr/share/fonts/x.ttc"),
    ("ESCALATE_AFTER_BOUNCES", "3", "escalate_after_bounces", 3),
    ("SLA_TIMER_SECONDS", "0.5", "sla_timer_seconds", 0.5),
    ("SLA_TEST_CLOCK", "1", "sla_test_clock", True),
]


def test_every_environment_variable_has_a_parsing_case():
    assert {case[0] for case in CASES} == set(ENVIRONMENT)


@pytest.mark.parametrize("name,raw,field,expected", CASES, ids=[case[0] for case in CASES])
def test_from_env_parses_each_variable(name, raw, field, expected):
    settings = Settings.from_env({name: raw})
    assert getattr(settings, field) == expected
    assert getattr(settings, field) != getattr(Settings(), field)


@pytest.mark.parametrize("name,raw,field,expected", CASES, ids=[case[0] for case in CASES])
def test_each_variable_changes_only_its_own_field(name, raw, field, expected):
    settings = Settings.from_env({name: raw})
    others = [f for f in Settings.__dataclass_fields__ if f != field]
    assert [getattr(settings, f) for f in others] == [getattr(Settings(), f) for f in others]


def test_from_env_parses_all_variables_at_once():
    settings = Settings.from_env({name: raw for name, raw, _, _ in CASES})
    assert {field: getattr(settings, field) for _, _, field, _ in CASES} == {
        field: expected for _, _, field, expected in CASES}


def test_empty_environment_gives_the_defaults():
    assert Settings.from_env({}) == Settings()
    assert Settings().amqp_uri == DEFAULT_AMQP_URI
    assert Settings().mongo_uri is None


def test_empty_strings_fall_back_to_the_defaults():
    assert Settings.from_env({name: "" for name in ENVIRONMENT}) == Settings()


@pytest.mark.parametrize("raw", ["", " ", ",", " , "])
def test_retry_delays_without_numbers_fall_back_to_the_default(raw):
    assert Settings.from_env({"RETRY_DELAYS_MS": raw}).retry_delays_ms == Settings().retry_delays_ms


def test_retry_delays_ignore_empty_parts():
    assert Settings.from_env({"RETRY_DELAYS_MS": "50,,150, "}).retry_delays_ms == (50, 150)


def test_a_non_numeric_port_is_an_error():
    with pytest.raises(ValueError):
        Settings.from_env({"GATEWAY_PORT": "eighty"})


def test_from_env_without_a_mapping_reads_os_environ(monkeypatch):
    monkeypatch.setenv("HUISHENG_COMMUNITY", "from-os-environ")
    monkeypatch.setenv("MAX_WORKERS", "3")
    settings = Settings.from_env()
    assert (settings.community, settings.max_workers) == ("from-os-environ", 3)


def test_database_name_is_prefix_plus_service():
    assert Settings().database_name("tickets") == "huisheng_tickets"
    assert Settings(mongo_db_prefix="t1_").database_name("notify") == "t1_notify"


def test_nameko_config_carries_broker_serializer_workers_and_settings():
    settings = Settings(amqp_uri="amqp://x/", max_workers=3)
    config = settings.nameko_config()
    assert config["AMQP_URI"] == "amqp://x/"
    assert config["serializer"] == "json"
    assert config["max_workers"] == 3
    assert config["HUISHENG"] is settings
    assert "WEB_SERVER_ADDRESS" not in config


def test_nameko_config_has_the_web_server_address_when_given():
    config = Settings().nameko_config(web_address="127.0.0.1:8123")
    assert config["WEB_SERVER_ADDRESS"] == "127.0.0.1:8123"


def test_settings_of_returns_the_embedded_settings():
    settings = Settings(community="nanshan")
    assert settings_of(settings.nameko_config()) is settings


def test_settings_of_a_plain_config_reads_its_keys():
    settings = settings_of({"AMQP_URI": "amqp://plain/", "max_workers": 10})
    assert settings.amqp_uri == "amqp://plain/"


@pytest.mark.parametrize("raw,expected", [("1", True), ("yes", True), ("TRUE", True), ("0", False), ("no", False)])
def test_a_flag_reads_yes_and_no_words(raw, expected):
    assert Settings.from_env({"SLA_TEST_CLOCK": raw}).sla_test_clock is expected


def test_a_flag_that_is_neither_yes_nor_no_is_an_error():
    with pytest.raises(ValueError, match="1/true/yes or 0/false/no"):
        Settings.from_env({"DIRECTORY_SEED": "maybe"})


def test_every_setting_names_its_own_variable_and_says_what_it_is():
    variables = [spec.metadata["variable"] for spec in fields(Settings)]
    assert len(variables) == len(set(variables)) == len(ENVIRONMENT)
    assert all(doc.strip() for doc in ENVIRONMENT.values())


def test_the_gateway_gets_its_own_worker_count():
    settings = Settings(max_workers=10, gateway_max_workers=64)
    assert settings.nameko_config(gateway=True)["max_workers"] == 64
    assert settings.nameko_config()["max_workers"] == 10


def test_a_malformed_step_deadline_is_an_error():
    with pytest.raises(ValueError, match="channel=seconds"):
        Settings.from_env({"NOTIFY_STEP_DEADLINES": "sms600"})
