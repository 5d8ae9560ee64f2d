"""A stand-in for WeChat's server API as a mini program's subscription messages use it.

Two calls, as WeChat documents them (every answer is JSON with HTTP 200; errors carry ``errcode``/``errmsg``):

* ``GET /cgi-bin/token?grant_type=client_credential&appid=APPID&secret=APPSECRET`` →
  ``{"access_token", "expires_in": 7200}``; ``40002`` invalid grant_type, ``40013`` invalid appid,
  ``40125`` invalid appsecret. A new token makes the previous one invalid after a grace period, as WeChat does
  (here: at once, which is the stricter case).
* ``POST /cgi-bin/message/subscribe/send?access_token=TOKEN`` with ``{"touser", "template_id", "page", "data",
  "miniprogram_state", "lang"}`` → ``{"errcode": 0, "errmsg": "ok", "msgid"}``; ``41001`` access_token missing,
  ``40001`` invalid credential, ``42001`` access_token expired, ``47001`` data format error, ``40003`` invalid
  openid, ``40037`` invalid template_id, ``43101`` user refuse to accept the msg (the user has not subscribed),
  ``47003`` argument invalid (a ``thing`` value over 20 characters, a missing field), ``45009`` reach max api
  daily quota limit (per openid: ``--daily-limit``), ``-1`` system error.

What WeChat does not have and the stand-in adds for tests:

* an ``Idempotency-Key`` header: a second send with a key already accepted answers the first ``msgid`` and
  records nothing;
* ``GET /_standin/messages?touser=`` (``{"items": [...]}``, oldest first); ``POST /_standin/faults``
  ``{"fail": N, "errcode": -1}`` fails the next N sends with that errcode, ``{"delay_seconds": S, "count": N}``
  delays the next N answers, ``{"expire_tokens": true}`` expires every token issued; ``DELETE /_standin/faults``;
  ``POST /_standin/refusing`` ``{"touser": openid}`` makes that user refuse messages (43101);
* ``GET /health`` answers ``{"status": "ok"}``.

Run it as ``python -m standins.wechat --host 127.0.0.1 --port 8191 [--appid ID --secret SECRET]
[--template-id ID] [--daily-limit N]``.
"""

from __future__ import annotations

import argparse
import json
import re
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from werkzeug.wrappers import Request, Response

TOKEN_SECONDS = 7200
OPENID = re.compile(r"^[A-Za-z0-9_-]{6,64}$")
THING_CHARS = 20
ERRMSG = {
    0: "ok", -1: "system error", 40001: "invalid credential, access_token is invalid or not latest",
    40002: "invalid grant_type", 40003: "invalid openid", 40013: "invalid appid", 40037: "invalid template_id",
    40125: "invalid appsecret", 41001: "access_token missing", 42001: "access_token expired",
    43101: "user refuse to accept the msg", 45009: "reach max api daily quota limit", 47001: "data format error",
    47003: "argument invalid!",
}


@dataclass
class WeChatStandin:
    """The API's state: the app, issued tokens, refusing users, accepted messages, faults."""

    appid: str = "wx-huisheng-dev"
    secret: str = "huisheng-dev-wechat-secret"
    template_ids: tuple[str, ...] = ("HUISHENG_ECHO",)
    daily_limit: int = 1000
    tokens: dict[str, float] = field(default_factory=dict)  # token -> expires at (monotonic)
    messages: list[dict] = field(default_factory=list)
    by_key: dict[str, str] = field(default_factory=dict)  # idempotency key -> msgid
    refusing: set[str] = field(default_factory=set)
    fail: int = 0
    fail_code: int = -1
    delay_seconds: float = 0.0
    delay_count: int | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def token(self, query: dict) -> dict:
        if query.get("grant_type") != "client_credential":
            return _error(40002)
        if query.get("appid") != self.appid:
            return _error(40013)
        if query.get("secret") != self.secret:
            return _error(40125)
        token = secrets.token_urlsafe(48)
        with self.lock:
            self.tokens = {token: time.monotonic() + TOKEN_SECONDS}  # the previous token is no longer the latest
        return {"access_token": token, "expires_in": TOKEN_SECONDS}

    def send(self, token: str | None, body: bytes, key: str | None) -> dict:
        if not token:
            return _error(41001)
        with self.lock:
            expires = self.tokens.get(token)
        if expires is None:
            return _error(40001)
        if time.monotonic() >= expires:
            return _error(42001)
        try:
            message = json.loads(body)
        except ValueError:
            return _error(47001)
        if not isinstance(message, dict):
            return _error(47001)
        touser, template_id, data = message.get("touser"), message.get("template_id"), message.get("data")
        if not isinstance(touser, str) or not OPENID.match(touser):
            return _error(40003)
        if template_id not in self.template_ids:
            return _error(40037)
        problem = _data_problem(data)
        if problem:
            return {"errcode": 47003, "errmsg": f"argument invalid! {problem}"}
        with self.lock:
            if key and key in self.by_key:
                return {"errcode": 0, "errmsg": "ok", "msgid": self.by_key[key]}
            if self.fail > 0:
                self.fail -= 1
                return _error(self.fail_code)
            if touser in self.refusing:
                return _error(43101)
            today = [m for m in self.messages if m["touser"] == touser and m["at"] > time.time() - 86400]
            if len(today) >= self.daily_limit:
                return _error(45009)
            msgid = str(10**15 + len(self.messages) + 1)
            self.messages.append({"msgid": msgid, "touser": touser, "template_id": template_id, "data": data,
                                  "page": message.get("page"), "idempotency_key": key, "at": time.time()})
            if key:
                self.by_key[key] = msgid
        return {"errcode": 0, "errmsg": "ok", "msgid": msgid}

    def set_faults(self, spec: dict) -> dict:
        with self.lock:
            if "fail" in spec:
                self.fail, self.fail_code = int(spec["fail"]), int(spec.get("errcode", -1))
            if "delay_seconds" in spec:
                self.delay_seconds = float(spec["delay_seconds"])
                self.delay_count = int(spec["count"]) if spec.get("count") is not None else None
            if spec.get("expire_tokens"):
                self.tokens = {token: 0.0 for token in self.tokens}
        return self.faults_view()

    def clear_faults(self) -> dict:
        with self.lock:
            self.fail, self.fail_code, self.delay_seconds, self.delay_count = 0, -1, 0.0, None
            self.refusing.clear()
        return self.faults_view()

    def faults_view(self) -> dict:
        return {"fail": self.fail, "errcode": self.fail_code, "delay_seconds": self.delay_seconds,
                "count": self.delay_count, "refusing": sorted(self.refusing)}

    def take_delay(self) -> float:
        with self.lock:
            if not self.delay_seconds or self.delay_count == 0:
                return 0.0
            if self.delay_count is not None:
                self.delay_count -= 1
            return self.delay_seconds

    def __call__(self, environ, start_response):
        return self.wsgi(Request(environ))(environ, start_response)

    def wsgi(self, request: Request) -> Response:
        path = request.path
        if path == "/health":
            return _json({"status": "ok"})
        if path == "/_standin/faults":
            if request.method == "DELETE":
                return _json(self.clear_faults())
            if request.method == "POST":
                return _json(self.set_faults(request.get_json(force=True, silent=True) or {}))
            return _json(self.faults_view())
        if path == "/_standin/refusing" and request.method == "POST":
            with self.lock:
                self.refusing.add(str((request.get_json(force=True, silent=True) or {}).get("touser")))
            return _json(self.faults_view())
        if path == "/_standin/messages":
            touser = request.args.get("touser")
            with self.lock:
                items = [m for m in self.messages if touser is None or m["touser"] == touser]
            return _json({"items": items})
        delay = self.take_delay()
        if delay:
            time.sleep(delay)
        if path == "/cgi-bin/token" and request.method == "GET":
            return _json(self.token(dict(request.args)))
        if path == "/cgi-bin/message/subscribe/send" and request.method == "POST":
            return _json(self.send(request.args.get("access_token"), request.get_data(),
                                   request.headers.get("Idempotency-Key")))
        return _json({"errcode": 404, "errmsg": "not found"}, 404)


def _data_problem(data: Any) -> str | None:
    if not isinstance(data, dict) or not data:
        return "data is required"
    for name, value in data.items():
        if not isinstance(value, dict) or not isinstance(value.get("value"), str) or not value["value"]:
            return f"data.{name}.value is required"
        if name.startswith("thing") and len(value["value"]) > THING_CHARS:
            return f"data.{name}.value exceeds {THING_CHARS} characters"
    return None


def _error(code: int) -> dict:
    return {"errcode": code, "errmsg": ERRMSG.get(code, "error")}


def _json(body: Any, status: int = 200) -> Response:
    return Response(json.dumps(body, ensure_ascii=False), status=status, content_type="application/json")


def main(argv: list[str] | None = None) -> None:
    from werkzeug.serving import WSGIRequestHandler, run_simple

    class QuietHandler(WSGIRequestHandler):
        def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
            pass

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8191)
    parser.add_argument("--appid", default="wx-huisheng-dev")
    parser.add_argument("--secret", default="huisheng-dev-wechat-secret")
    parser.add_argument("--template-id", action="append", default=None)
    parser.add_argument("--daily-limit", type=int, default=1000)
    args = parser.parse_args(argv)
    app = WeChatStandin(args.appid, args.secret, tuple(args.template_id or ("HUISHENG_ECHO",)), args.daily_limit)
    run_simple(args.host, args.port, app, threaded=True, request_handler=QuietHandler)


if __name__ == "__main__":
    main()
