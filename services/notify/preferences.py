"""A person's echo preferences: channels in order, quiet hours, a daily digest. No I/O.

Quiet hours and the digest hold back *push* channels (SMS, WeChat, e-mail, webhooks, a grid worker's
call); the in-app inbox makes no sound and is never held back. A critical ticket's echoes bypass both.

>>> from datetime import UTC, datetime
>>> prefs = normalised({"channels": ["sms", "inbox"], "quiet_hours": {"start": "22:00", "end": "07:00"}})
>>> at_night = datetime(2026, 12, 6, 15, 0, tzinfo=UTC)  # 23:00 in Shanghai
>>> deferral(prefs, "sms", critical=False, now=at_night)
(datetime.datetime(2026, 12, 6, 23, 0, tzinfo=datetime.timezone.utc), 'quiet_hours')
>>> deferral(prefs, "sms", critical=True, now=at_night) is None
True
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

DEFAULT_TIMEZONE = "Asia/Shanghai"
PUSH_CHANNELS: tuple[str, ...] = ("sms", "wechat", "email", "webhook", "human")
CHOOSABLE_CHANNELS: tuple[str, ...] = ("inbox", "sms", "wechat", "email", "webhook")
DEFAULTS: dict = {"channels": ["inbox"], "quiet_hours": None, "digest": None, "webhook_url": None}


def normalised(stored: Mapping | None) -> dict:
    """The preferences with every member present (the defaults for what was never set).

    >>> normalised(None)["channels"]
    ['inbox']
    """
    prefs = {**DEFAULTS, **{k: v for k, v in (stored or {}).items() if k in DEFAULTS}}
    prefs["channels"] = list(prefs["channels"] or DEFAULTS["channels"])
    return prefs


def _clock(text: str) -> time:
    hours, minutes = text.split(":")
    return time(int(hours), int(minutes))


def _local(now: datetime, tz: str) -> datetime:
    return now.astimezone(ZoneInfo(tz))


def quiet_until(quiet: Mapping | None, now: datetime, tz: str = DEFAULT_TIMEZONE) -> datetime | None:
    """When the quiet hours that ``now`` falls in end (in ``now``'s zone), or None outside them.

    Quiet hours may span midnight (22:00-07:00). Equal start and end mean no quiet hours.

    >>> from datetime import UTC
    >>> quiet_until({"start": "22:00", "end": "07:00"}, datetime(2026, 12, 6, 0, 30, tzinfo=UTC)) is None
    True
    """
    if not quiet:
        return None
    start, end = _clock(quiet["start"]), _clock(quiet["end"])
    if start == end:
        return None
    local = _local(now, tz)
    clock = local.time().replace(second=0, microsecond=0)
    if start < end:
        inside = start <= clock < end
        end_day = local.date()
    else:  # spans midnight
        inside = clock >= start or clock < end
        end_day = local.date() + timedelta(days=1) if clock >= start else local.date()
    if not inside:
        return None
    return datetime.combine(end_day, end, tzinfo=local.tzinfo).astimezone(now.tzinfo)


def next_digest(digest: Mapping | None, now: datetime, tz: str = DEFAULT_TIMEZONE) -> datetime | None:
    """The next time the daily digest goes out (strictly after ``now``), or None without a digest.

    >>> from datetime import UTC
    >>> next_digest({"at": "18:00"}, datetime(2026, 12, 6, 9, 0, tzinfo=UTC))  # 17:00 in Shanghai
    datetime.datetime(2026, 12, 6, 10, 0, tzinfo=datetime.timezone.utc)
    """
    if not digest:
        return None
    local = _local(now, tz)
    at = datetime.combine(local.date(), _clock(digest["at"]), tzinfo=local.tzinfo)
    if at <= local:
        at += timedelta(days=1)
    return at.astimezone(now.tzinfo)


def deferral(prefs: Mapping, channel: str, *, critical: bool, now: datetime,
             tz: str = DEFAULT_TIMEZONE) -> tuple[datetime, str] | None:
    """Until when a step on ``channel`` waits, and the reason recorded for it; None to go now.

    The digest comes first (a digest-pending echo waits for the digest, which may itself fall in
    quiet hours: then until they end).
    """
    if critical or channel not in PUSH_CHANNELS:
        return None
    digest_at = next_digest(prefs.get("digest"), now, tz)
    if digest_at is not None:
        return (quiet_until(prefs.get("quiet_hours"), digest_at, tz) or digest_at), "digest_pending"
    quiet_end = quiet_until(prefs.get("quiet_hours"), now, tz)
    if quiet_end is not None:
        return quiet_end, "quiet_hours"
    return None
