"""Photos a phone uploads, kept in the tickets database with GridFS, and who may read them back.

``POST /api/v1/photos`` hands the bytes to :meth:`TicketsService.store_photo`; its answer
``{"url": "/api/v1/photos/<id>", "content_type", "size"}`` is what a create or comment body then
lists under ``attachments``. GridFS (pymongo's ``gridfs``, bucket ``photos``: ``photos.files`` and
``photos.chunks``) works on SecantusDB as on MongoDB (checked: upload, download and delete of a
1.3 MB file), and keeps each chunk well under the 16 MB document limit whatever the size limit
becomes.

Who may read a photo: its uploader, and whoever may read a ticket that references it (the
permission table's ``tickets.read``: staff of the community within their grant, residents their
own tickets). A ticket may reference only photos its author uploaded in the same community
(:func:`claim`), so nobody gains a photo by naming its address in a ticket of their own. Anyone
else gets the same 404 as for a photo that does not exist.

Erasure (PIPL): a ticket's attachments stay when a resident is erased (they are the office's
record of the case, and the ticket is anonymised, not deleted), and so do the photos tickets
reference; :func:`forget_uploader` deletes the resident's photos that no ticket references and
drops their name from the rest.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from typing import Any

from gridfs import GridFSBucket
from gridfs.errors import NoFile

from kernel.contracts import ATTACHMENT_TYPES, MAX_ATTACHMENT_BYTES, PHOTO_URL
from kernel.errors import NotFound, ValidationFailed
from services.tickets import actions as lifecycle
from services.tickets.domain import Ticket

BUCKET = "photos"
FILES = f"{BUCKET}.files"
NO_PHOTO = "no such photo that you may see"

# The first bytes of each accepted type (a text file sent as image/jpeg is refused): (offset, bytes).
_MAGIC: dict[str, tuple[tuple[int, bytes], ...]] = {
    "image/jpeg": ((0, b"\xff\xd8\xff"),),
    "image/png": ((0, b"\x89PNG\r\n\x1a\n"),),
    "image/webp": ((0, b"RIFF"), (8, b"WEBP")),
    "application/pdf": ((0, b"%PDF-"),),
}
_HEIC_BRANDS = (b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1")


def sniffed_type(data: bytes) -> str | None:
    """The accepted type ``data`` starts like, None for anything else.

    >>> sniffed_type(b"\\x89PNG\\r\\n\\x1a\\n...."), sniffed_type(b"RIFF\\0\\0\\0\\0WEBPVP8 "), sniffed_type(b"hello")
    ('image/png', 'image/webp', None)
    >>> sniffed_type(b"\\0\\0\\0\\x18ftypheic\\0\\0\\0\\0")
    'image/heic'
    """
    for kind, marks in _MAGIC.items():
        if all(data[offset:offset + len(mark)] == mark for offset, mark in marks):
            return kind
    if data[4:8] == b"ftyp" and data[8:12] in _HEIC_BRANDS:  # ISO base media: HEIF's brands
        return "image/heic"
    return None


def check_upload(content_type: str, data: bytes) -> None:
    """422 unless ``data`` is a non-empty file of an accepted type, within the size limit, that is what it says.

    >>> check_upload("image/png", b"\\x89PNG\\r\\n\\x1a\\n" + bytes(8))
    >>> try:
    ...     check_upload("image/jpeg", b"just some text")
    ... except ValidationFailed as error:
    ...     error.details
    {'body': ['the bytes are not a image/jpeg file']}
    """
    if content_type not in ATTACHMENT_TYPES:
        raise ValidationFailed("the photo is not valid", {"content_type": [f"one of {', '.join(ATTACHMENT_TYPES)}"]})
    if not data or len(data) > MAX_ATTACHMENT_BYTES:
        raise ValidationFailed("the photo is not valid", {"body": [f"1 to {MAX_ATTACHMENT_BYTES} bytes"]})
    if sniffed_type(data) != content_type:
        raise ValidationFailed("the photo is not valid", {"body": [f"the bytes are not a {content_type} file"]})


def url_of(photo_id: str) -> str:
    return f"/api/v1/photos/{photo_id}"


def store(db: Any, community: str, uploader: str, content_type: str, data: bytes) -> dict[str, Any]:
    """Keep a checked upload; its reference for an ``attachments`` list: ``{"url", "content_type", "size"}``."""
    check_upload(content_type, data)
    photo_id = uuid.uuid4().hex  # unguessable; the address carries it (kernel.contracts.PHOTO_URL)
    metadata = {"community": community, "uploader": uploader, "content_type": content_type, "tickets": []}
    GridFSBucket(db, bucket_name=BUCKET).upload_from_stream_with_id(photo_id, photo_id, data, metadata=metadata)
    return {"url": url_of(photo_id), "content_type": content_type, "size": len(data)}


def claim(db: Any, community: str, author: str | None, ticket_id: str,
          attachments: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The attachments of a new ticket or comment, its uploaded photos checked and marked as referenced by it.

    A photo of the platform must be the author's own upload in this community (422 otherwise, the
    same for one that does not exist); its type and size are the stored ones, whatever the body said.
    The reference is written before the ticket: if the ticket is then not stored, the dangling id
    grants nothing (:func:`readable` looks the ticket up).
    """
    checked, errors = [], {}
    for index, attachment in enumerate(attachments):
        matched = PHOTO_URL.match(attachment["url"])
        if matched is None:  # a URL elsewhere: a reference only
            checked.append(dict(attachment))
            continue
        photo = None if author is None else db[FILES].find_one_and_update(
            {"_id": matched["id"], "metadata.community": community, "metadata.uploader": author},
            {"$addToSet": {"metadata.tickets": ticket_id}})
        if photo is None:
            errors[f"attachments.{index}.url"] = ["no photo you uploaded has this address"]
            continue
        checked.append({**attachment, "content_type": photo["metadata"]["content_type"], "size": photo["length"]})
    if errors:
        raise ValidationFailed("the request is not valid", errors)
    return checked


def readable(db: Any, tickets: Any, community: str, photo_id: str, viewer: Mapping[str, Any]) -> dict[str, Any]:
    """``{"content_type", "data"}`` of a photo ``viewer`` may see: theirs, or on a ticket they may read; else 404."""
    photo = db[FILES].find_one({"_id": photo_id, "metadata.community": community})
    if photo is None or not _may_read(tickets, community, photo["metadata"], viewer):
        raise NotFound(NO_PHOTO, {"photo_id": ["not found"]})
    try:
        data = GridFSBucket(db, bucket_name=BUCKET).open_download_stream(photo_id).read()
    except NoFile as error:  # its chunks went between the two reads (an erasure): as if it never was
        raise NotFound(NO_PHOTO, {"photo_id": ["not found"]}) from error
    return {"content_type": photo["metadata"]["content_type"], "data": data}


def _may_read(tickets: Any, community: str, metadata: Mapping[str, Any], viewer: Mapping[str, Any]) -> bool:
    if metadata.get("uploader") is not None and metadata["uploader"] == viewer.get("subject"):
        return True
    for ticket_id in metadata.get("tickets", []):
        document = tickets.find_one({"_id": ticket_id, "community": community})
        if document is not None and lifecycle.may_view(Ticket.from_document(document), viewer):
            return True
    return False


def forget_uploader(db: Any, community: str, resident: str) -> int:
    """Erasure: the resident's photos that no ticket references go; the others no longer name them.

    Answers how many were deleted. Idempotent: a second run finds none of theirs.
    """
    bucket = GridFSBucket(db, bucket_name=BUCKET)
    orphans = [photo["_id"] for photo in db[FILES].find(
        {"metadata.community": community, "metadata.uploader": resident, "metadata.tickets": []}, {"_id": 1})]
    for photo_id in orphans:
        try:
            bucket.delete(photo_id)
        except NoFile:  # a concurrent erasure deleted it first
            continue
    db[FILES].update_many({"metadata.community": community, "metadata.uploader": resident},
                          {"$set": {"metadata.uploader": None}})
    return len(orphans)


__all__ = ["BUCKET", "check_upload", "claim", "forget_uploader", "readable", "sniffed_type", "store"]
