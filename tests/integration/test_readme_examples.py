"""The README's curl examples against the API document: each path and method exists, each body validates."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import jsonschema_rs
import pytest

from gateway.openapi import document

ROOT = Path(__file__).resolve().parents[2]
GATEWAY = re.compile(r"^(?:https?://)?(?:localhost|127\.0\.0\.1):8000(/[^?\s]*)")


def curl_commands(text: str) -> list[list[str]]:
    """Every ``curl`` of the README's shell blocks, continuation lines joined, as argument lists."""
    blocks = re.findall(r"```sh\n(.*?)```", text, re.DOTALL)
    joined = "\n".join(block.replace("\\\n", " ") for block in blocks)
    commands = []
    for line in joined.splitlines():
        for match in re.finditer(r"curl\s(.*?)(?:\||\)|#|$)", line):
            commands.append(shlex.split(match.group(1), comments=False))
    return commands


def gateway_calls(text: str) -> list[dict]:
    calls = []
    for args in curl_commands(text):
        call = {"method": "GET", "headers": {}, "body": None, "path": None}
        items = iter(args)
        for arg in items:
            if arg == "-X":
                call["method"] = next(items)
            elif arg == "-H":
                name, _, value = next(items).partition(":")
                call["headers"][name.strip()] = value.strip()
            elif arg in ("-d", "--data"):
                call["body"] = json.loads(next(items))
                call["method"] = call["method"] if call["method"] != "GET" else "POST"
            elif (matched := GATEWAY.match(arg)) is not None:
                call["path"] = matched.group(1)
        if call["path"] is not None:
            calls.append(call)
    return calls


def operation_for(path: str, method: str) -> dict | None:
    for template, item in document()["paths"].items():
        pattern = "^" + re.sub(r"\\\{\w+\\\}", r"[^/]+", re.escape(template)) + "$"
        if re.match(pattern, path) and method.lower() in item:
            return item[method.lower()]
    return None


CALLS = gateway_calls((ROOT / "README.md").read_text("utf-8"))


def test_the_readme_has_gateway_examples():
    assert len(CALLS) >= 5 and any(call["body"] for call in CALLS)


@pytest.mark.parametrize("call", CALLS, ids=[f"{c['method']} {c['path']}" for c in CALLS])
def test_each_example_is_an_operation_of_the_document(call):
    operation = operation_for(call["path"], call["method"])
    assert operation is not None, f"{call['method']} {call['path']} is not in /openapi.json"
    if operation["security"] and not {"Authorization", "X-API-Key"} & set(call["headers"]):
        pytest.fail(f"{call['path']} needs a token but the example sends none")
    if call["body"] is not None:
        reference = operation["requestBody"]["content"]["application/json"]["schema"]
        validator = jsonschema_rs.validator_for({**reference, "components": document()["components"]})
        errors = [error.message for error in validator.iter_errors(call["body"])]
        assert not errors, errors
        assert call["headers"].get("Content-Type") == "application/json"


def test_a_wrong_body_would_be_caught():
    operation = operation_for("/api/v1/tickets", "POST")
    reference = operation["requestBody"]["content"]["application/json"]["schema"]
    validator = jsonschema_rs.validator_for({**reference, "components": document()["components"]})
    assert not validator.is_valid({"service_code": "blocked_drain", "description": "x", "status": "closed"})
