"""The directory's routes (docs/directory.md): sign-in, me, residents, places, audit, API keys, staff."""

from __future__ import annotations

from typing import Any

from gateway.http import endpoint, json_body, paging, query
from kernel.errors import ValidationFailed
from kernel.web import http

RESIDENT_FILTERS = ("grid", "building", "flag")
AUDIT_FILTERS = ("actor", "subject", "from", "to")


def members(body: Any, required: tuple[str, ...], optional: tuple[str, ...] = ()) -> dict:
    """The body's members: an object with every ``required`` one and nothing unknown (mass assignment: 422).

    Types and formats are checked by the service that owns the request, with its one schema.

    >>> members({"phone": "13800000000"}, ("phone",))
    {'phone': '13800000000'}
    >>> members({"phone": "1", "role": "admin"}, ("phone",))
    Traceback (most recent call last):
    ...
    kernel.errors.ValidationFailed: ('the request is not valid', {'role': ['Unknown field.']})
    """
    if not isinstance(body, dict):
        raise ValidationFailed("the body must be a JSON object", {"_schema": ["expected a JSON object"]})
    errors = {name: ["Unknown field."] for name in body if name not in required + optional}
    errors |= {name: ["Missing data for required field."] for name in required if name not in body}
    if errors:
        raise ValidationFailed("the request is not valid", errors)
    return body


def filters(request, names: tuple[str, ...]) -> dict:
    return {name: value for name in names if (value := query(request, name)) is not None}


class DirectoryRoutes:
    """Needs ``auth``, ``limits``, ``idempotency``, ``directory`` (see GatewayService)."""

    # --- sign-in ---------------------------------------------------------------------------------

    @http("POST", "/api/v1/auth/code")
    @endpoint
    def request_code(self, request):
        address = self.client_address(request)
        self.limits.check("auth_code", address)
        body = members(json_body(request), ("phone",))
        self.directory.request_code(body["phone"])
        return 202, {"sent": True}

    @http("POST", "/api/v1/auth/token")
    @endpoint
    def sign_in(self, request):
        self.limits.check("address", self.client_address(request))
        body = members(json_body(request), ("phone", "code"), ("password",))
        return 200, self.directory.sign_in(body["phone"], body["code"], password=body.get("password"))

    @http("POST", "/api/v1/auth/refresh")
    @endpoint
    def refresh(self, request):
        self.limits.check("address", self.client_address(request))
        body = members(json_body(request), ("refresh_token",))
        return 200, self.directory.refresh(body["refresh_token"])

    @http("POST", "/api/v1/auth/logout")
    @endpoint
    def sign_out(self, request):
        caller = self.caller(request)
        if caller.session:  # a development token has no session to end
            self.directory.sign_out(caller.session)
        return 204, None

    # --- me --------------------------------------------------------------------------------------

    @http("GET", "/api/v1/me")
    @endpoint
    def me(self, request):
        caller = self.caller(request, "me.read")
        return 200, self.directory.me(caller.community, caller.subject)

    @http("GET", "/api/v1/me/export")
    @endpoint
    def export_me(self, request):
        caller = self.caller(request, "me.export")
        held = self.directory.export_person(caller.community, caller.subject)
        # What the other services hold about the person: each owns its part of the answer.
        held.update(self.tickets.export_resident(caller.community, caller.subject))
        held.update(self.notify.export_recipient(caller.community, caller.subject))
        return 200, held

    @http("DELETE", "/api/v1/me")
    @endpoint
    def erase_me(self, request):
        caller = self.caller(request, "me.erase")
        return 200, self.directory.erase_person(caller.community, caller.subject)

    @http("POST", "/api/v1/me/consents")
    @endpoint
    def record_consent(self, request):
        caller = self.caller(request, "consents.write")
        body = members(json_body(request), ("purpose", "granted"))
        return 201, self.directory.record_consent(caller.community, caller.subject, body["purpose"], body["granted"])

    # --- the register ----------------------------------------------------------------------------

    @http("GET", "/api/v1/residents")
    @endpoint
    def list_residents(self, request):
        caller = self.caller(request, "residents.list")
        cursor, limit = paging(request)
        return 200, self.directory.list_residents(caller.community, caller.viewer(), filters(request, RESIDENT_FILTERS),
                                                  cursor, limit)

    @http("GET", "/api/v1/residents/<string:person_id>")
    @endpoint
    def get_resident(self, request, person_id):
        caller = self.caller(request, "residents.read")
        return 200, self.directory.get_person(caller.community, person_id, caller.viewer())

    @http("GET", "/api/v1/places")
    @endpoint
    def place_tree(self, request):
        caller = self.caller(request, "places.read")
        return 200, self.directory.place_tree(caller.community)

    @http("GET", "/api/v1/places/communities")
    @endpoint
    def list_communities(self, request):
        self.caller(request, "places.read")
        return 200, self.directory.list_communities()

    @http("GET", "/api/v1/places/buildings/<string:code>")
    @endpoint
    def locate(self, request, code):
        caller = self.caller(request, "places.read")
        return 200, self.directory.locate(caller.community, code)

    @http("GET", "/api/v1/audit")
    @endpoint
    def audit(self, request):
        caller = self.caller(request, "audit.read")
        cursor, limit = paging(request)
        return 200, self.directory.audit(caller.community, filters(request, AUDIT_FILTERS), cursor, limit)

    # --- administration --------------------------------------------------------------------------

    @http("GET", "/api/v1/apikeys")
    @endpoint
    def list_api_keys(self, request):
        self.caller(request, "apikeys.manage")
        return 200, self.directory.list_api_keys()

    @http("POST", "/api/v1/apikeys")
    @endpoint
    def create_api_key(self, request):
        caller = self.caller(request, "apikeys.manage")
        body = members(json_body(request), ("name",), ("communities",))
        communities = body.get("communities") or [caller.community]
        return 201, self.directory.create_api_key(body["name"], communities, caller.subject)

    @http("DELETE", "/api/v1/apikeys/<string:name>")
    @endpoint
    def revoke_api_key(self, request, name):
        self.caller(request, "apikeys.manage")
        return 200, self.directory.revoke_api_key(name)

    @http("POST", "/api/v1/admin/people/<string:person_id>/revoke")
    @endpoint
    def revoke_person(self, request, person_id):
        caller = self.caller(request, "sessions.revoke")
        return 200, self.directory.revoke_person(caller.community, person_id, caller.subject)

    @http("POST", "/api/v1/staff")
    @endpoint
    def create_staff(self, request):
        caller = self.caller(request, "staff.manage")
        body = json_body(request)  # the directory's staff schema checks it (unknown fields included)
        if not isinstance(body, dict):
            raise ValidationFailed("the body must be a JSON object", {"_schema": ["expected a JSON object"]})
        return 201, self.directory.create_staff(caller.community, body)
