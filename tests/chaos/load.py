"""The load generator: logical requests at a steady rate, each retried with its Idempotency-Key until acknowledged.

A *logical request* is one resident's report with a key of its own. It is sent
(to the gateways in turn) until the platform acknowledges it with 201, is
rejected with a 4xx, or ``give_up_after`` passes. Every attempt is recorded with
its outcome and how long it took, so the tallies can say what was acknowledged,
what was retried, and whether any attempt hung (no answer within
``attempt_timeout``). The phase a request began in (``before``, ``fault``,
``after``) tells what was recovered.

Workers are (green) threads; every loop here is bounded in count and in time.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import requests

RETRY_BACKOFF_MAX = 1.0
MAX_ATTEMPTS = 200


@dataclass
class Attempt:
    started: float  # seconds since the load began
    seconds: float
    outcome: str  # an HTTP status ("201", "503" ...) or "timeout" / "connection"
    gateway: int  # which of the target's URLs was asked


@dataclass
class LogicalRequest:
    key: str
    subject: str
    phase: str
    attempts: list[Attempt] = field(default_factory=list)
    ticket_id: str | None = None
    state: str = "pending"  # acknowledged, rejected, gave_up
    acknowledged_at: float | None = None

    @property
    def acknowledged(self) -> bool:
        return self.state == "acknowledged"


@dataclass
class Target:
    """How to send one logical request to a system under test."""

    urls: list[str]
    headers: Callable[[str, str], dict]  # (subject, key) -> headers
    body: Callable[[str], dict]  # key -> JSON body
    ticket_id: Callable[[dict], str]  # the 201 answer -> ticket id


class LoadGenerator:
    """``start``, move through phases with ``phase``, ``stop``; then read ``requests``."""

    def __init__(self, target: Target, prefix: str, *, rate: float = 30.0, workers: int = 8,
                 attempt_timeout: float = 10.0, give_up_after: float = 45.0, max_requests: int = 20000,
                 residents: int = 40):
        self.target = target
        self.prefix = prefix
        self.rate = rate
        self.workers = workers
        self.attempt_timeout = attempt_timeout
        self.give_up_after = give_up_after
        self.max_requests = max_requests
        self.residents = residents
        self.requests: list[LogicalRequest] = []
        self.current_phase = "before"
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._began = 0.0
        self.wall_began = 0.0  # time.time() when the load began, to compare with stored timestamps

    # ------------------------------------------------------------------ control

    def start(self) -> LoadGenerator:
        self._began, self.wall_began = time.monotonic(), time.time()
        for index in range(self.workers):
            thread = threading.Thread(target=self._work, name=f"load-{index}", daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def phase(self, name: str) -> None:
        self.current_phase = name

    def now(self) -> float:
        return time.monotonic() - self._began

    def stop(self) -> None:
        """Stop issuing; wait (bounded) for every request in progress to be acknowledged or given up."""
        self._stopping.set()
        deadline = time.monotonic() + self.give_up_after + self.attempt_timeout + 5
        for thread in self._threads:
            thread.join(max(0.1, deadline - time.monotonic()))

    def run_for(self, seconds: float) -> None:
        """Let the load run (the caller's thread sleeps)."""
        time.sleep(seconds)

    # ------------------------------------------------------------------ workers

    def _next(self) -> LogicalRequest | None:
        with self._lock:
            number = len(self.requests)
            if self._stopping.is_set() or number >= self.max_requests:
                return None
            request = LogicalRequest(f"{self.prefix}-{number:05d}", f"r-chaos-{number % self.residents:02d}",
                                     self.current_phase)
            self.requests.append(request)
            return request

    def _work(self) -> None:
        session = requests.Session()
        session.trust_env = False  # loopback only: never through a proxy
        issued = 0
        while issued < self.max_requests:
            request = self._next()
            if request is None:
                return
            issued += 1
            self._send(session, request)
            self._pace()

    def _pace(self) -> None:
        """Open a new request no faster than ``rate`` per second over all workers."""
        with self._lock:
            due = self._began + len(self.requests) / self.rate
        pause = due - time.monotonic()
        if pause > 0:
            self._stopping.wait(min(pause, 5.0))

    def _send(self, session: requests.Session, request: LogicalRequest) -> None:
        """Send until acknowledged, rejected, or out of time; record every attempt."""
        began = time.monotonic()
        for number in range(MAX_ATTEMPTS):
            gateway = (hash(request.key) + number) % len(self.target.urls)
            outcome, answer, retry_after = self._attempt(session, gateway, request)
            if outcome == "201":
                request.ticket_id = self.target.ticket_id(answer)
                request.state, request.acknowledged_at = "acknowledged", self.now()
                return
            if outcome.startswith("4") and outcome not in ("408", "429"):
                request.state = "rejected"
                return
            if time.monotonic() - began > self.give_up_after:
                break
            time.sleep(min(retry_after or 0.1 * 2 ** min(number, 4), RETRY_BACKOFF_MAX))
        request.state = "gave_up"

    def _attempt(self, session: requests.Session, gateway: int, request: LogicalRequest):
        """One POST: (outcome, JSON answer or None, Retry-After seconds or None)."""
        started = self.now()
        try:
            response = session.post(self.target.urls[gateway], json=self.target.body(request.key),
                                    headers=self.target.headers(request.subject, request.key),
                                    timeout=(2.0, self.attempt_timeout))
            outcome = str(response.status_code)
            answer = response.json() if response.status_code == 201 else None
            retry_after = _seconds(response.headers.get("Retry-After"))
        except requests.ReadTimeout:  # connected, asked, and no answer in time: the server hung
            outcome, answer, retry_after = "timeout", None, None
        except (requests.ConnectionError, requests.Timeout, ValueError):
            outcome, answer, retry_after = "connection", None, None
        request.attempts.append(Attempt(started, self.now() - started, outcome, gateway))
        return outcome, answer, retry_after


def _seconds(value: str | None) -> float | None:
    try:
        return float(value) if value else None
    except ValueError:
        return None
