"""Photos a phone uploads: ``POST /api/v1/photos`` (the raw image as the body) and ``GET /api/v1/photos/{id}``.

The upload's answer ``{"url": "/api/v1/photos/<id>", "content_type", "size"}`` is what a ticket's or a
comment's ``attachments`` then lists. Here the HTTP side is checked — the body's declared type is one
of ``ATTACHMENT_TYPES`` (415) and its size at most ``MAX_ATTACHMENT_BYTES`` (413), read no further than
that — and the tickets service checks the bytes are what the type says (422) and keeps them
(services/tickets/photos.py). A photo is served to its uploader and to whoever may read a ticket that
references it; to anyone else it does not exist (404).
"""

from __future__ import annotations

import base64

from werkzeug.wrappers import Response

from gateway.http import PayloadTooLarge, UnsupportedMediaType, endpoint
from kernel.contracts import ATTACHMENT_TYPES, MAX_ATTACHMENT_BYTES
from kernel.web import http

BINARY = {"type": "string", "format": "binary"}
PHOTO_ID = {"type": "string", "pattern": "^[0-9a-f]{32}$"}

# For gateway/openapi.py (as VOLUNTEER_OPERATIONS): each handler's description, Operation's keyword arguments.
PHOTO_OPERATIONS: dict[str, dict] = {
    "upload_photo": dict(
        summary="Upload a photo (or a PDF) to attach to a ticket or a comment", tag="tickets", ok=201,
        action="photos.upload", raw_body=ATTACHMENT_TYPES,
        answer={"type": "object", "required": ["url", "content_type", "size"], "properties": {
            "url": {"type": "string", "pattern": "^/api/v1/photos/[0-9a-f]{32}$"},
            "content_type": {"type": "string", "enum": list(ATTACHMENT_TYPES)},
            "size": {"type": "integer", "minimum": 1, "maximum": MAX_ATTACHMENT_BYTES}}},
        description=f"The body is the file itself, its `Content-Type` one of {', '.join(ATTACHMENT_TYPES)} (415 "
                    f"otherwise), at most {MAX_ATTACHMENT_BYTES} bytes (413); bytes that are not what the type "
                    "says (a text file sent as image/jpeg) are 422. Put the answer in a ticket's or a comment's "
                    "`attachments`: a ticket may name only photos its author uploaded."),
    "get_photo": dict(
        summary="A photo: to its uploader, and to whoever may read a ticket that references it", tag="tickets",
        action="photos.read", answer=BINARY, path_schemas={"photo_id": PHOTO_ID},
        description="Served with the content type it was uploaded with. Anyone else gets 404, as for a photo that "
                    "does not exist."),
}


class PhotoRoutes:
    """Needs ``caller`` and ``tickets`` (see GatewayService)."""

    @http("POST", "/api/v1/photos")
    @endpoint
    def upload_photo(self, request):
        caller = self.caller(request, "photos.upload")
        if request.mimetype not in ATTACHMENT_TYPES:
            raise UnsupportedMediaType(f"send the file with its Content-Type: one of {', '.join(ATTACHMENT_TYPES)}",
                                       {"Content-Type": [request.mimetype or "missing"]})
        too_large = PayloadTooLarge(f"a photo is at most {MAX_ATTACHMENT_BYTES} bytes",
                                    {"body": [f"max {MAX_ATTACHMENT_BYTES}"]})
        if request.content_length is not None and request.content_length > MAX_ATTACHMENT_BYTES:
            raise too_large
        data = request.stream.read(MAX_ATTACHMENT_BYTES + 1)  # a chunked body has no length to trust
        if len(data) > MAX_ATTACHMENT_BYTES:
            raise too_large
        stored = self.tickets.store_photo(caller.community, caller.subject, request.mimetype,
                                          base64.b64encode(data).decode("ascii"))
        return 201, stored, {"Location": stored["url"]}

    @http("GET", "/api/v1/photos/<string:photo_id>")
    def get_photo(self, request, photo_id):
        # The bytes are not JSON: the photo is fetched under ``endpoint`` (errors, headers, correlation id as
        # everywhere) into ``found``, and only a found photo's answer gets its bytes and type.
        found: dict = {}
        status, headers, body = self._photo_answer(request, photo_id=photo_id, found=found)
        if status != 200 or "data" not in found:
            return status, headers, body
        headers["Content-Type"] = found["content_type"]
        headers["Content-Disposition"] = "inline"
        headers["Cache-Control"] = "private, no-store"  # a resident's photo: never in a shared cache
        return Response(base64.b64decode(found["data"]), status=200, headers=headers)  # a tuple takes text only

    @endpoint
    def _photo_answer(self, request, photo_id, found):
        caller = self.caller(request, "photos.read")
        found.update(self.tickets.photo(caller.community, photo_id, caller.viewer()))
        return 200, {}
