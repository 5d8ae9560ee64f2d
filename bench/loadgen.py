"""The load generators, the same for the naive pipeline and the platform.

* :func:`run_wrk` — closed-loop, N keep-alive connections as fast as the server
  answers (``wrk`` with a Lua script that sets the POST body and headers), for
  the sustained rate;
* :func:`run_paced` — open-loop at a fixed rate (this module run as a
  subprocess, plain threads, keep-alive connections), recording each request's
  scheduled time, answer and ticket id, for latency at 100 req/s. Latency is
  measured from the *scheduled* send time, so a stalled server cannot hide its
  queueing delay (no coordinated omission).

Both run in a child process whose CPU time is read with ``wait4``, so the report
shows how much of the two cores the load generator itself took.

    python -m bench.loadgen paced --url URL --rate 100 --duration 20 --spec spec.json --out out.json
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import queue
import re
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

WRK_RESULT = "BENCH_JSON "
WRK_TIMEOUT_SECONDS = 10
GIVE_UP_SECONDS = 30

WRK_SCRIPT = """\
wrk.method = "POST"
wrk.body = {body}
{headers}

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{marker}{{"requests": %d, "duration_us": %d, "bytes": %d, '
    .. '"errors": {{"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}}, '
    .. '"latency_us": {{"p50": %d, "p90": %d, "p99": %d, "max": %d, "mean": %.1f}}}}\\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, latency.mean))
end
"""


@dataclass(frozen=True)
class Request:
    """What every load generator sends: one URL, one JSON body, the same headers."""

    url: str
    body: str
    headers: Mapping[str, str]

    def to_dict(self) -> dict:
        return {"url": self.url, "body": self.body, "headers": dict(self.headers)}


def lua_string(text: str) -> str:
    """A Lua long string holding ``text`` exactly (no escapes are interpreted inside one).

    >>> lua_string('{"a": "b"}')
    '[=[{"a": "b"}]=]'
    """
    level = 1
    while f"]{'=' * level}]" in text:
        level += 1
    return f"[{'=' * level}[{text}]{'=' * level}]"


def wrk_script(request: Request) -> str:
    """The Lua script: method, body and headers, and a ``done`` hook that prints one JSON line."""
    headers = "\n".join(f"wrk.headers[ {lua_string(name)} ] = {lua_string(value)}"
                        for name, value in request.headers.items())
    return WRK_SCRIPT.format(body=lua_string(request.body), headers=headers, marker=WRK_RESULT)


def parse_wrk(output: str) -> dict:
    """The JSON line of our ``done`` hook, plus wrk's own ``Requests/sec``."""
    for line in output.splitlines():
        if line.startswith(WRK_RESULT):
            result = json.loads(line[len(WRK_RESULT):])
            break
    else:
        raise ValueError(f"wrk printed no result line:\n{output[-2000:]}")
    match = re.search(r"Requests/sec:\s+([\d.]+)", output)
    result["requests_per_second"] = float(match.group(1)) if match else None
    result["non_2xx"] = result["errors"]["status"]
    return result


def _wait_with_usage(process: subprocess.Popen, timeout: float) -> float:
    """Wait for a child and return the CPU seconds (user + system) it used."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pid, status, usage = os.wait4(process.pid, os.WNOHANG)
        if pid:
            process.returncode = os.waitstatus_to_exitcode(status)
            return usage.ru_utime + usage.ru_stime
        time.sleep(0.05)
    process.kill()
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    raise TimeoutError(f"the load generator did not finish within {timeout:g} s")


def run_wrk(wrk: str, request: Request, connections: int, seconds: float, workdir: Path) -> dict:
    """Closed-loop load with ``connections`` connections for ``seconds``; wrk's figures and its own CPU."""
    script = workdir / "post.lua"
    script.write_text(wrk_script(request))
    argv = [wrk, "-t1", f"-c{connections}", f"-d{seconds:g}s", f"--timeout={WRK_TIMEOUT_SECONDS}s",
            "-s", str(script), request.url]
    out = workdir / f"wrk-c{connections}.out"
    started = time.monotonic()
    with out.open("w") as sink:
        process = subprocess.Popen(argv, stdout=sink, stderr=subprocess.STDOUT)
        cpu = _wait_with_usage(process, seconds + WRK_TIMEOUT_SECONDS + 30)
    wall = time.monotonic() - started
    result = parse_wrk(out.read_text())
    return {**result, "connections": connections, "wall_seconds": wall, "cpu_seconds": cpu,
            "cpu_cores": cpu / wall if wall > 0 else None}


def run_paced(request: Request, rate: float, seconds: float, workdir: Path) -> dict:
    """Open-loop load at ``rate`` requests per second for ``seconds``, in a child process."""
    spec, out = workdir / "paced-spec.json", workdir / "paced.json"
    spec.write_text(json.dumps(request.to_dict()))
    argv = [sys.executable, "-m", "bench.loadgen", "paced", "--rate", str(rate), "--duration", str(seconds),
            "--spec", str(spec), "--out", str(out)]
    started = time.monotonic()
    process = subprocess.Popen(argv, cwd=Path(__file__).resolve().parents[1])
    cpu = _wait_with_usage(process, seconds + GIVE_UP_SECONDS + WRK_TIMEOUT_SECONDS + 20)
    wall = time.monotonic() - started
    if process.returncode != 0:
        raise RuntimeError(f"the paced load generator failed with exit code {process.returncode}")
    result = json.loads(out.read_text())
    return {**result, "wall_seconds": wall, "cpu_seconds": cpu, "cpu_cores": cpu / wall if wall > 0 else None}


# --------------------------------------------------------------------------- the paced client (child process)


class _Client:
    """One keep-alive connection per thread."""

    def __init__(self, request: Request):
        parts = urlsplit(request.url)
        self.host, self.port, self.path = parts.hostname, parts.port or 80, parts.path or "/"
        self.body = request.body.encode()
        self.headers = {**request.headers, "Content-Type": "application/json"}
        self.local = threading.local()

    def _connection(self) -> http.client.HTTPConnection:
        connection = getattr(self.local, "connection", None)
        if connection is None:
            connection = http.client.HTTPConnection(self.host, self.port, timeout=WRK_TIMEOUT_SECONDS)
            self.local.connection = connection
        return connection

    def post(self) -> tuple[int, bytes]:
        connection = self._connection()
        try:
            connection.request("POST", self.path, body=self.body, headers=self.headers)
            response = connection.getresponse()
            return response.status, response.read()
        except (OSError, http.client.HTTPException):
            connection.close()
            self.local.connection = None
            return 0, b""


def _ticket_id(status: int, body: bytes) -> str | None:
    if status != 201:
        return None
    try:
        return json.loads(body).get("id")
    except (ValueError, AttributeError):
        return None


def paced(request: Request, rate: float, seconds: float, threads: int = 32) -> dict:
    """Send ``rate * seconds`` requests on schedule; each record: scheduled, sent, done, status, ticket id.

    A server that falls far behind keeps every thread waiting; requests still queued
    :data:`GIVE_UP_SECONDS` after the schedule ended are not sent (status 0), so the run stays bounded.
    """
    client, jobs, records = _Client(request), queue.Queue(), []
    lock = threading.Lock()
    give_up = time.time() + seconds + GIVE_UP_SECONDS

    def worker() -> None:
        while (scheduled := jobs.get()) is not None:
            sent = time.time()
            status, body = client.post() if sent < give_up else (0, b"")
            done = time.time()
            with lock:
                records.append({"scheduled": scheduled, "sent": sent, "done": done, "status": status,
                                "id": _ticket_id(status, body)})

    pool = [threading.Thread(target=worker, daemon=True) for _ in range(threads)]
    for thread in pool:
        thread.start()
    total, start = int(rate * seconds), time.time() + 0.05
    for index in range(total):
        scheduled = start + index / rate
        time.sleep(max(0.0, scheduled - time.time()))
        jobs.put(scheduled)
    for _ in pool:
        jobs.put(None)
    for thread in pool:
        thread.join(max(0.0, give_up - time.time()) + WRK_TIMEOUT_SECONDS + 1)
    return {"rate": rate, "seconds": seconds, "started": start, "ended": time.time(), "records": records}


def main(argv: list[str] | None = None) -> int:
    """``python -m bench.loadgen paced ...``: run the paced client, write its records as JSON."""
    parser = argparse.ArgumentParser(prog="python -m bench.loadgen")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("paced", help="open-loop load at a fixed rate")
    run.add_argument("--rate", type=float, required=True)
    run.add_argument("--duration", type=float, required=True)
    run.add_argument("--spec", required=True, help="JSON file: url, body, headers")
    run.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    spec = json.loads(Path(args.spec).read_text())
    result = paced(Request(spec["url"], spec["body"], spec["headers"]), args.rate, args.duration)
    Path(args.out).write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
