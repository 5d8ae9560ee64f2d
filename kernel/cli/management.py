"""A small client of the RabbitMQ management HTTP API, for ``huisheng ops``.

Where the API is: ``RABBITMQ_MANAGEMENT_URL`` when set (its credentials, if it has any, win), else derived from
``AMQP_URI`` (same host and credentials, http on port 15672, or https on 15671 for ``amqps``). The vhost is always
the one of ``AMQP_URI``: the platform's queues live there.

>>> endpoint = endpoint_for("amqp://hs:pw@rabbit:5672/prod")
>>> endpoint.api, endpoint.vhost, endpoint.username
('http://rabbit:15672/api', 'prod', 'hs')
>>> endpoint_for("pyamqp://guest:guest@localhost:5672/").vhost
'/'
>>> endpoint_for("amqp://hs:pw@rabbit/", "https://ops:secret@mq.example.org/api/").api
'https://mq.example.org/api'
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote, urlsplit, urlunsplit

import requests

from kernel.cli.infra import is_local

DEFAULT_TIMEOUT = 5.0


class ManagementError(Exception):
    """The management API did not answer (refused, timed out, not HTTP), or not with what was asked (401, 404 ...)."""


@dataclass(frozen=True)
class Endpoint:
    """Where the management API is, who we are there, and which vhost we look at."""

    api: str  # "http://host:15672/api", without credentials
    username: str
    password: str
    vhost: str


def endpoint_for(amqp_uri: str, management_url: str | None = None) -> Endpoint:
    """The management endpoint of a broker (see the module's docstring)."""
    amqp = urlsplit(amqp_uri)
    username = unquote(amqp.username) if amqp.username else "guest"
    password = unquote(amqp.password) if amqp.password else "guest"
    if management_url:
        given = urlsplit(management_url)
        if given.username:
            username, password = unquote(given.username), unquote(given.password or "")
        base = urlunsplit((given.scheme or "http", given.netloc.rpartition("@")[2] or "localhost",
                           given.path.rstrip("/").removesuffix("/api"), "", ""))
    else:
        scheme, port = ("https", 15671) if amqp.scheme == "amqps" else ("http", 15672)
        host = amqp.hostname or "localhost"
        base = f"{scheme}://{f'[{host}]' if ':' in host else host}:{port}"  # an IPv6 literal gets its brackets back
    # The vhost as kombu reads it: an empty path or ``/`` is the default vhost ``/``.
    vhost = unquote(amqp.path[1:]) if len(amqp.path) > 1 else "/"
    return Endpoint(api=f"{base}/api", username=username, password=password, vhost=vhost)


def _reason(error: Exception) -> str:
    """The socket error at the bottom of a requests error ("[Errno 111] Connection refused"), else its type."""
    found = re.search(r"\[Errno -?\d+\] [^'\")]+", str(error))
    return found.group(0).strip() if found else type(error).__name__


class ManagementClient:
    """The few calls ``huisheng ops`` needs, each bounded by ``timeout`` seconds."""

    def __init__(self, endpoint: Endpoint, timeout: float = DEFAULT_TIMEOUT):
        self.endpoint = endpoint
        self.timeout = timeout
        self.session = requests.Session()
        self.session.auth = (endpoint.username, endpoint.password)
        # A broker on this machine must never be asked through $http_proxy (as the supervisor's probes).
        self.session.trust_env = not is_local(urlsplit(endpoint.api).hostname or "")

    def _url(self, *parts: str) -> str:
        # The default vhost is "/": every path segment is quoted whole, slashes included.
        return "/".join([self.endpoint.api, *(quote(part, safe="") for part in parts)])

    def _request(self, method: str, *parts: str, **kwargs: Any) -> Any:
        try:
            response = self.session.request(method, self._url(*parts), timeout=self.timeout, **kwargs)
        except requests.Timeout as error:
            raise ManagementError(f"the RabbitMQ management API at {self.endpoint.api} did not answer "
                                  f"within {self.timeout:g} s") from error
        except requests.RequestException as error:
            raise ManagementError(
                f"the RabbitMQ management API at {self.endpoint.api} is unreachable ({_reason(error)}); "
                "is the rabbitmq_management plugin enabled? (set RABBITMQ_MANAGEMENT_URL if it is elsewhere)"
            ) from error
        if response.status_code >= 400:
            raise ManagementError(self._describe(response, "/".join(parts)))
        try:
            return response.json() if response.content else None
        except ValueError as error:
            raise ManagementError(f"{self.endpoint.api} answered something that is not the RabbitMQ "
                                  "management API (not JSON)") from error

    def _describe(self, response: requests.Response, what: str) -> str:
        try:
            reason = response.json().get("reason") or response.reason
        except ValueError:
            reason = response.reason
        if response.status_code == 401:
            return (f"the RabbitMQ management API refused user {self.endpoint.username!r} (401 {reason}); "
                    "check the credentials of AMQP_URI / RABBITMQ_MANAGEMENT_URL")
        if response.status_code == 404:
            return f"not found in the RabbitMQ management API: {what} (does the vhost or queue exist?)"
        return f"the RabbitMQ management API answered {response.status_code} ({reason}) for {what}"

    def queues(self) -> list[dict]:
        """Every queue of the vhost, with its counters and message rates."""
        return self._request("GET", "queues", self.endpoint.vhost) or []

    def peek(self, queue: str, count: int) -> list[dict]:
        """Up to ``count`` messages of ``queue``, put back where they were (ack_requeue_true)."""
        body = {"count": count, "ackmode": "ack_requeue_true", "encoding": "auto", "truncate": 1_000_000}
        return self._request("POST", "queues", self.endpoint.vhost, queue, "get", json=body) or []
