"""Open311 GeoReport v2 on the wire: the spec's element names and order, in JSON or XML, and its error format.

GeoReport v2 (wiki.open311.org/GeoReport_v2) fixes the names; its JSON is the Spark convention's
mapping of its XML: a list is a JSON array, and in XML an element named for the list holding one
element per item (``services``/``service``, ``attributes``/``attribute``, ``values``/``value``,
``service_requests``/``request``, ``errors``/``error``). XML is UTF-8 with its declaration, no
namespace; booleans are ``true``/``false``, an absent value an empty element (JSON ``null``).

>>> content_type, body = render("services", [{"service_code": "roof_leak", "service_name": "房屋漏水",
...     "description": "d", "metadata": True, "type": "realtime", "keywords": "漏水", "group": "房屋设施"}], "xml")
>>> content_type
'text/xml; charset=utf-8'
>>> body.decode().splitlines()[0]
"<?xml version='1.0' encoding='utf-8'?>"
>>> "<service><service_code>roof_leak</service_code><service_name>房屋漏水</service_name>" in body.decode()
True
>>> render("errors", [{"code": 403, "description": "Invalid api_key"}], "json")[1].decode()
'[{"code": 403, "description": "Invalid api_key"}]'
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import parse_qsl
from xml.etree import ElementTree

from gateway.http import BadRequest, PayloadTooLarge, UnsupportedMediaType
from kernel.errors import PlatformError

FORMATS = {"json": "application/json; charset=utf-8", "xml": "text/xml; charset=utf-8"}
DEFAULT_FORMAT = "xml"  # the format the spec requires of every server

SERVICE_FIELDS = ("service_code", "service_name", "description", "metadata", "type", "keywords", "group")
ATTRIBUTE_FIELDS = ("variable", "code", "datatype", "required", "datatype_description", "order", "description",
                    "values")
VALUE_FIELDS = ("key", "name")
REQUEST_FIELDS = ("service_request_id", "status", "status_notes", "service_name", "service_code", "description",
                  "agency_responsible", "service_notice", "requested_datetime", "updated_datetime",
                  "expected_datetime", "address", "address_id", "zipcode", "lat", "long", "media_url")
CREATED_FIELDS = ("service_request_id", "service_notice", "account_id")
ACCEPTED_FIELDS = ("token", "service_notice", "account_id")  # no service_request_id when a token is answered
TOKEN_FIELDS = ("service_request_id", "token")
ERROR_FIELDS = ("code", "description")

# What each kind of answer is: its root element, the element of each item, and the fields of an item.
KINDS: dict[str, tuple[str, str | None, tuple[str, ...]]] = {
    "services": ("services", "service", SERVICE_FIELDS),
    "service_definition": ("service_definition", None, ("service_code", "attributes")),
    "requests": ("service_requests", "request", REQUEST_FIELDS),
    "created": ("service_requests", "request", CREATED_FIELDS),
    "accepted": ("service_requests", "request", ACCEPTED_FIELDS),
    "token": ("service_requests", "request", TOKEN_FIELDS),
    "errors": ("errors", "error", ERROR_FIELDS),
}
ITEMS_OF = {"attributes": ("attribute", ATTRIBUTE_FIELDS), "values": ("value", VALUE_FIELDS)}

MAX_FORM_BYTES = 64 * 1024
MAX_FORM_FIELDS = 200
MAX_FIELD_CHARS = 4000
FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"
# attribute[code] or attribute[code][] (a multivaluelist's values)
_ATTRIBUTE = re.compile(r"attribute\[([^\[\]]{1,64})\](\[\])?")
# The spec's arguments of POST requests besides attributes; api_key and jurisdiction_id are the gateway's.
POST_FIELDS = ("service_code", "lat", "long", "address_string", "address_id", "email", "device_id", "account_id",
               "first_name", "last_name", "phone", "description", "media_url")
GATEWAY_FIELDS = ("api_key", "jurisdiction_id")


# --------------------------------------------------------------------------------------------- rendering

def render(kind: str, payload: Any, fmt: str) -> tuple[str, bytes]:
    """``(content type, body)`` of an answer of ``kind`` (see :data:`KINDS`) in ``fmt`` (json or xml)."""
    root, item, names = KINDS[kind]
    shaped = [_ordered(entry, names) for entry in payload] if item else _ordered(payload, names)
    if fmt == "json":
        return FORMATS["json"], json.dumps(shaped, ensure_ascii=False).encode("utf-8")
    element = ElementTree.Element(root)
    for entry in shaped if item else [shaped]:
        _fill(ElementTree.SubElement(element, item) if item else element, entry)
    return FORMATS["xml"], ElementTree.tostring(element, encoding="utf-8", xml_declaration=True)


def _ordered(entry: Mapping[str, Any], names: tuple[str, ...]) -> dict[str, Any]:
    """The entry's members in the spec's order, nothing else; nested lists shaped likewise."""
    shaped = {}
    for name in names:
        if name not in entry:
            continue
        value = entry[name]
        if name in ITEMS_OF and isinstance(value, list):
            value = [_ordered(item, ITEMS_OF[name][1]) for item in value]
        shaped[name] = value
    return shaped


def _fill(element: ElementTree.Element, entry: Mapping[str, Any]) -> None:
    for name, value in entry.items():
        child = ElementTree.SubElement(element, name)
        if name in ITEMS_OF and isinstance(value, list):
            for item in value:
                _fill(ElementTree.SubElement(child, ITEMS_OF[name][0]), item)
        else:
            child.text = _text(value)


def _text(value: Any) -> str | None:
    """An XML element's text.

    >>> _text(True), _text(None), _text(30.274), _text("兴乔")
    ('true', None, '30.274', '兴乔')
    """
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def error_answer(error: PlatformError, fmt: str) -> tuple[int, str, bytes]:
    """A platform error in the spec's error format: ``(HTTP status, content type, body)``.

    The spec: 404 for what does not exist, 403 for a missing or wrong ``api_key``, 400 for any
    other request that cannot be fulfilled; statuses about the request's form or the server's state (405, 413, 415, 429,
    503, 504) keep their meaning. One error per field, each with a readable description.

    >>> from kernel.errors import ValidationFailed, Unauthorized
    >>> status, _, body = error_answer(ValidationFailed("bad", {"attribute[floor]": ["required"]}), "json")
    >>> status, json.loads(body)
    (400, [{'code': 400, 'description': 'attribute[floor]: required'}])
    >>> error_answer(Unauthorized("the API key is not valid"), "xml")[0]
    403
    """
    status = open311_status(error.status)
    descriptions = [f"{name}: {message}" for name, messages in _flat(error.details) for message in messages]
    errors = [{"code": status, "description": text} for text in descriptions[:20]] or [
        {"code": status, "description": error.message}]
    content_type, body = render("errors", errors, fmt if fmt in FORMATS else DEFAULT_FORMAT)
    return status, content_type, body


def open311_status(status: int) -> int:
    """The HTTP status GeoReport v2 answers for a platform error's status.

    >>> [open311_status(s) for s in (401, 403, 404, 405, 409, 422, 413, 429, 503)]
    [403, 403, 404, 405, 400, 400, 413, 429, 503]
    """
    if status in (401, 403):
        return 403
    if status in (404, 405, 413, 415, 429) or status >= 500:
        return status
    return 400


def _flat(details: Mapping[str, Any], prefix: str = "") -> Iterable[tuple[str, list[str]]]:
    """Per-field messages, nested marshmallow messages flattened (``attributes.floor``)."""
    for name, messages in (details or {}).items():
        where = f"{prefix}.{name}" if prefix else str(name)
        if isinstance(messages, Mapping):
            yield from _flat(messages, where)
        elif isinstance(messages, list | tuple):
            yield where, [str(message) for message in messages if not isinstance(message, Mapping | list)]
        else:
            yield where, [str(messages)]


# ---------------------------------------------------------------------------------------------- requests

def read_form(request) -> list[tuple[str, str]]:
    """The body of POST requests as name/value pairs: form-encoded UTF-8 within the limits, else 4xx."""
    mimetype = (request.mimetype or "").lower()
    if mimetype != FORM_CONTENT_TYPE:
        raise UnsupportedMediaType(f"send the request as {FORM_CONTENT_TYPE}", {"Content-Type": [mimetype or "none"]})
    if request.content_length is not None and request.content_length > MAX_FORM_BYTES:
        raise PayloadTooLarge(f"the body is larger than {MAX_FORM_BYTES} bytes", {"body": [f"max {MAX_FORM_BYTES}"]})
    raw = request.stream.read(MAX_FORM_BYTES + 1)
    if len(raw) > MAX_FORM_BYTES:
        raise PayloadTooLarge(f"the body is larger than {MAX_FORM_BYTES} bytes", {"body": [f"max {MAX_FORM_BYTES}"]})
    return parse_form(raw)


def parse_form(raw: bytes) -> list[tuple[str, str]]:
    """Form-encoded UTF-8 ``raw`` as pairs, at most :data:`MAX_FORM_FIELDS` of them.

    >>> parse_form(b"service_code=roof_leak&attribute%5Bfloor%5D=6&description=%E6%BC%8F")
    [('service_code', 'roof_leak'), ('attribute[floor]', '6'), ('description', '漏')]
    >>> parse_form(b"a=%FF")
    Traceback (most recent call last):
    ...
    gateway.http.BadRequest: ('the body is not UTF-8 form data', {'body': ['not UTF-8']})
    """
    try:
        text = raw.decode("utf-8")
        return parse_qsl(text, keep_blank_values=True, errors="strict", max_num_fields=MAX_FORM_FIELDS)
    except UnicodeError as error:
        raise BadRequest("the body is not UTF-8 form data", {"body": ["not UTF-8"]}) from error
    except ValueError as error:  # more fields than allowed
        raise BadRequest("the body has too many fields", {"body": [f"at most {MAX_FORM_FIELDS} fields"]}) from error


def request_arguments(pairs: Iterable[tuple[str, str]]) -> tuple[dict[str, Any], dict[str, str]]:
    """Split POST requests' pairs: ``(the request's data, the gateway's own: api_key, jurisdiction_id)``.

    An empty value is as good as none (the spec's "optional arguments"); ``attribute[code]`` goes to
    ``attributes``, a repeated one or ``attribute[code][]`` as a list. Anything else is refused (400).

    >>> data, own = request_arguments([("api_key", "k"), ("service_code", "roof_leak"), ("email", ""),
    ...     ("attribute[floor]", "6"), ("attribute[spots][]", "wall"), ("attribute[spots][]", "pipe")])
    >>> data, own
    ({'service_code': 'roof_leak', 'attributes': {'floor': '6', 'spots': ['wall', 'pipe']}}, {'api_key': 'k'})
    >>> request_arguments([("status", "closed")])
    Traceback (most recent call last):
    ...
    gateway.http.BadRequest: ('the request is not valid', {'status': ['not an argument of POST requests']})
    """
    data: dict[str, Any] = {}
    own: dict[str, str] = {}
    attributes: dict[str, Any] = {}
    problems: dict[str, list[str]] = {}
    for name, value in pairs:
        if len(value) > MAX_FIELD_CHARS:
            problems[name[:80]] = [f"longer than {MAX_FIELD_CHARS} characters"]
            continue
        attribute = _ATTRIBUTE.fullmatch(name)
        if attribute is not None:
            code, many = attribute.group(1), attribute.group(2)
            if value == "":
                continue
            if many or code in attributes:
                earlier = attributes.get(code, [])
                attributes[code] = (earlier if isinstance(earlier, list) else [earlier]) + [value]
            else:
                attributes[code] = value
        elif name in POST_FIELDS or name in GATEWAY_FIELDS:
            target = own if name in GATEWAY_FIELDS else data
            if name in target:
                problems[name] = ["give it once"]
            elif value != "":
                target[name] = value
        else:
            problems[name[:80]] = ["not an argument of POST requests"]
    if problems:
        raise BadRequest("the request is not valid", problems)
    if attributes:
        data["attributes"] = attributes
    return data, own


def comma_list(value: str | None) -> list[str] | None:
    """A comma-delimited argument (service_request_id, service_code, status) as a list; None if empty.

    >>> comma_list("a, b,,c"), comma_list(""), comma_list(None)
    (['a', 'b', 'c'], None, None)
    """
    if not value:
        return None
    items = [item.strip() for item in value.split(",") if item.strip()]
    return items or None
