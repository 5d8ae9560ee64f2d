"""notify's nameko extensions: its timer and the settings it reads once (echo policy, time zone, check-in state)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from nameko.extensions import DependencyProvider
from nameko.timer import Timer

from kernel.config import settings_of
from services.notify.fallback import Policy


class NotifyTimer(Timer):
    """nameko's timer with its interval from the settings (NOTIFY_TIMER_SECONDS)."""

    def __init__(self, **kwargs) -> None:
        super().__init__(interval=2.0, **kwargs)

    def setup(self) -> None:
        self.interval = settings_of(self.container.config).notify_timer_seconds


notify_timer = NotifyTimer.decorator


@dataclass(frozen=True)
class EchoSettings:
    policy: Policy
    timezone: str
    receipt_secret: str
    community: str  # whose daily check-in this process sends
    checkin_state: CheckinState


@dataclass
class CheckinState:
    """The last day this process made sure of the check-in notice, and raised its missing answers (so a timer
    pass does not ask the database again; the database's fixed ids keep other processes from doing it twice),
    and the community's check-in hour as last read (read again after ``SCHEDULE_SECONDS``)."""

    sent_day: date | None = None
    raised_day: date | None = None
    at: str | None = None
    read_at: float = float("-inf")


class EchoSettingsProvider(DependencyProvider):
    """The echo policy (deadlines, back-off, proof window) and time zone, read once from the settings."""

    def setup(self) -> None:
        settings = settings_of(self.container.config)
        self.value = EchoSettings(policy_of(self.container.config), settings.notify_timezone,
                                  settings.sms_receipt_secret, settings.community, CheckinState())

    def get_dependency(self, worker_ctx) -> EchoSettings:
        return self.value


def policy_of(config) -> Policy:
    settings = settings_of(config)
    deadlines = {**Policy().deadlines, **dict(settings.notify_step_deadlines)}
    return Policy(deadlines=deadlines, retry_delays=settings.notify_retry_delays,
                  max_attempts=settings.notify_max_attempts, proof_seconds=settings.echo_proof_seconds)
