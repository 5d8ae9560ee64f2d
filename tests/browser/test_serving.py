"""How the gateway serves the console: its files with the right types, a CSP of this origin only, no escape."""

from __future__ import annotations

import re

import requests

from gateway.routes.console import CONSOLE_DIR


def test_the_page_and_its_files_are_served_with_their_types_and_a_self_only_policy(running_platform):
    gateway = running_platform.gateway
    page = requests.get(f"{gateway}/console", timeout=10)
    assert page.status_code == 200
    assert page.headers["Content-Type"] == "text/html; charset=utf-8"
    policy = page.headers["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "default-src 'none'" in policy and "unsafe" not in policy
    assert page.headers["X-Content-Type-Options"] == "nosniff" and page.headers["X-Frame-Options"] == "DENY"
    assert '<html lang="zh-CN">' in page.text
    # every file the page and its modules name is served, as what it is
    wanted = set(re.findall(r'(?:src|href)="/console/([^"]+)"', page.text))
    for module in (CONSOLE_DIR / "js").glob("*.js"):
        wanted.add(f"js/{module.name}")
    types = {".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml"}
    for name in sorted(wanted):
        answer = requests.get(f"{gateway}/console/{name}", timeout=10)
        assert answer.status_code == 200, name
        assert answer.headers["Content-Type"].startswith(types[name[name.rindex("."):]]), name
        assert answer.headers["Content-Security-Policy"] == policy


def test_nothing_else_is_served_from_there(running_platform):
    gateway = running_platform.gateway
    for name in ("__init__.py", "nothing.js", ".hidden.css", "js/..%2F..%2Fpyproject.toml", "%2e%2e/pyproject.toml",
                 "a/b/c/d/e.js"):
        answer = requests.get(f"{gateway}/console/{name}", timeout=10)
        assert answer.status_code == 404, name
        if answer.headers.get("Content-Type", "").startswith("application/problem+json"):
            assert answer.json()["code"] == "no_such_file"
        assert "[build-system]" not in answer.text


def test_the_app_has_no_inline_script_or_style_the_policy_would_refuse():
    page = (CONSOLE_DIR / "index.html").read_text("utf-8")
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", page)  # every script is a file
    assert " style=" not in page and "<style" not in page
    for module in (CONSOLE_DIR / "js").glob("*.js"):
        text = module.read_text("utf-8")
        assert "innerHTML" not in text and "eval(" not in text and "new Function" not in text, module.name
        assert 'setAttribute("style"' not in text, module.name
