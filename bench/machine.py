"""What the figures were measured on: the machine, the versions, the commit."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from bench.infra import rabbitmq_version, tool_version

PACKAGES = ("nameko", "kombu", "amqp", "eventlet", "pymongo", "marshmallow", "Werkzeug", "SecantusDB")


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _memory_mb() -> int | None:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) // 1024
    return None


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def _git(root: Path, *args: str) -> str:
    try:
        done = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=10, check=False)
    except OSError:
        return ""
    return done.stdout.strip()


def describe(repo: Path, platform_root: Path, wrk: str) -> dict:
    """Cores, CPU model, memory, OS, versions of the stack, and the commit of the code measured."""
    return {
        "nproc": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "memory_mb": _memory_mb(),
        "kernel": platform.release(),
        "load_average_at_start": list(os.getloadavg()),
        "python": sys.version.split()[0],
        "packages": {package: _version(package) for package in PACKAGES},
        "rabbitmq": rabbitmq_version(),
        "wrk": tool_version([wrk, "--version"]).split(" [")[0],
        "git_commit": _git(repo, "rev-parse", "HEAD"),
        "git_dirty": bool(_git(repo, "status", "--porcelain", "--untracked-files=no")),
        "platform_root": str(platform_root),
        "platform_commit": _git(platform_root, "rev-parse", "HEAD"),
    }
