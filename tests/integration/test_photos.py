"""Native intake's category questions and photos a phone uploads, through the gateway on the real broker and database.

The gateway, tickets, notify and directory run as containers (the directory seeds the demo community:
routing places building b09 in grid 3). Photos are kept with GridFS in the tickets database.
"""

from __future__ import annotations

import pytest
import requests

from kernel.contracts import MAX_ATTACHMENT_BYTES
from kernel.envelope import Envelope, utcnow
from services.tickets import photos
from tests.integration.harness import bearer
from tests.support.broker import publish_event
from tests.support.images import tiny_png

pytestmark = pytest.mark.integration

RESIDENT = "p-0000000000r3"  # not in the directory: routing comes from the body's building
NEIGHBOUR = "p-0000000000r4"
WORKER_G3 = "p-615176e244e1"  # the demo community's grid 3 worker (services/directory/data/demo_community.json)
WORKER_G1 = "p-f9043c2a2fbc"
SECRETARY = "p-60b58c2b932b"
LEAK = {"service_code": "roof_leak", "description": "顶楼漏雨，客厅天花板滴水", "address_string": "兴乔小区9号楼",
        "building": "b09"}
ANSWERS = {"floor": "6", "still_leaking": "yes", "leak_spots": ["ceiling", "wall"]}
PNG = tiny_png(4, 3)


def upload(gateway, headers, data: bytes = PNG, content_type: str = "image/png") -> requests.Response:
    return requests.post(f"{gateway}/api/v1/photos", data=data, headers={**headers, "Content-Type": content_type},
                         timeout=20)


def photo_of(gateway, url: str, headers) -> requests.Response:
    return requests.get(gateway + url, headers=headers, timeout=10)


def create(gateway, headers, body) -> requests.Response:
    return requests.post(f"{gateway}/api/v1/tickets", json=body, headers=headers, timeout=10)


def test_the_category_questions_are_checked_at_intake_stored_and_shown(gateway, settings):
    created = create(gateway, bearer(settings, subject=RESIDENT), {**LEAK, "attributes": ANSWERS})
    assert created.status_code == 201, created.text
    clean = {"floor": 6, "still_leaking": "yes", "leak_spots": ["ceiling", "wall"]}
    assert created.json()["attributes"] == clean
    ticket_id = created.json()["id"]
    for headers in (bearer(settings, subject=RESIDENT), bearer(settings, "secretary", SECRETARY),
                    bearer(settings, "grid_worker", WORKER_G3, grids=["g3"])):
        seen = requests.get(f"{gateway}/api/v1/tickets/{ticket_id}", headers=headers, timeout=10)
        assert seen.status_code == 200 and seen.json()["attributes"] == clean

    # Every bad answer at once: a wrong datatype, an unknown question, a required one left out, a value not listed.
    wrong = create(gateway, bearer(settings, subject=RESIDENT),
                   {**LEAK, "attributes": {"floor": "six", "colour": "red", "leak_spots": ["roof"]}})
    assert wrong.status_code == 422, wrong.text
    assert wrong.headers["Content-Type"].startswith("application/problem+json")
    assert set(wrong.json()["errors"]) == {"attributes.floor", "attributes.colour", "attributes.still_leaking",
                                           "attributes.leak_spots"}
    assert wrong.json()["errors"]["attributes.still_leaking"] == ["required"]
    not_a_value = create(gateway, bearer(settings, subject=RESIDENT), {**LEAK, "attributes": {"floor": {"a": 1}}})
    assert not_a_value.status_code == 422 and "attributes" in not_a_value.json()["errors"]

    # Staff entering a phone-in answer the same questions under the same rule.
    phoned = {**LEAK, "on_behalf_of": RESIDENT, "source": "phone_in"}
    refused = create(gateway, bearer(settings, "secretary", SECRETARY), {**phoned, "attributes": {"floor": "x"}})
    assert refused.status_code == 422 and "attributes.floor" in refused.json()["errors"]
    taken = create(gateway, bearer(settings, "secretary", SECRETARY), {**phoned, "attributes": ANSWERS})
    assert taken.status_code == 201 and taken.json()["attributes"] == clean

    # A body that does not answer at all must still answer the required questions, resident's or staff's phone-in:
    # a 422 naming each missing answer, and no ticket stored.
    def mine() -> list[str]:
        listed = requests.get(f"{gateway}/api/v1/tickets", headers=bearer(settings, subject=RESIDENT), timeout=10)
        assert listed.status_code == 200, listed.text
        return [ticket["id"] for ticket in listed.json()["items"]]

    before = mine()
    assert {ticket_id, taken.json()["id"]} <= set(before)  # the resident's own and the phone-in on their behalf
    for headers, body in ((bearer(settings, subject=RESIDENT), LEAK),
                          (bearer(settings, "secretary", SECRETARY), phoned)):
        unanswered = create(gateway, headers, body)
        assert unanswered.status_code == 422, unanswered.text
        assert unanswered.json()["errors"] == {"attributes.floor": ["required"],
                                               "attributes.still_leaking": ["required"]}
    assert mine() == before


def test_a_photo_is_read_by_its_uploader_and_whoever_may_read_a_ticket_that_references_it(gateway, settings):
    mine, neighbour = bearer(settings, subject=RESIDENT), bearer(settings, "resident", NEIGHBOUR)
    secretary = bearer(settings, "secretary", SECRETARY)
    g3, g1 = (bearer(settings, "grid_worker", WORKER_G3, grids=["g3"]),
              bearer(settings, "grid_worker", WORKER_G1, grids=["g1"]))
    uploaded = upload(gateway, mine)
    assert uploaded.status_code == 201, uploaded.text
    photo = uploaded.json()
    assert photo["content_type"] == "image/png" and photo["size"] == len(PNG)
    assert photo["url"].startswith("/api/v1/photos/") and uploaded.headers["Location"] == photo["url"]

    served = photo_of(gateway, photo["url"], mine)
    assert served.status_code == 200 and served.content == PNG
    assert served.headers["Content-Type"] == "image/png" and served.headers["X-Content-Type-Options"] == "nosniff"
    for someone_else in (neighbour, secretary):  # on no ticket yet: only its uploader knows it exists
        assert photo_of(gateway, photo["url"], someone_else).status_code == 404

    # Another resident cannot gain it by naming its address in a ticket of their own.
    taken = create(gateway, neighbour, {**LEAK, "attributes": ANSWERS, "attachments": [photo]})
    assert taken.status_code == 422 and "attachments.0.url" in taken.json()["errors"]

    # The body's type and size are the stored photo's, whatever the body says.
    created = create(gateway, mine, {**LEAK, "attributes": ANSWERS,
                                     "attachments": [{**photo, "size": 1, "content_type": "image/jpeg"}]})
    assert created.status_code == 201, created.text
    [attached] = created.json()["attachments"]
    assert (attached["url"], attached["content_type"], attached["size"]) == (photo["url"], "image/png", len(PNG))
    for reader in (mine, secretary, g3):
        assert photo_of(gateway, photo["url"], reader).content == PNG
    for outsider in (neighbour, g1):
        assert photo_of(gateway, photo["url"], outsider).status_code == 404

    # A staff member's photo on a resident-visible comment reaches the resident through the ticket.
    fixed = upload(gateway, secretary).json()
    commented = requests.post(f"{gateway}/api/v1/tickets/{created.json()['id']}/comments", headers=secretary,
                              json={"text": "已修好，见照片", "visibility": "resident", "attachments": [fixed]},
                              timeout=10)
    assert commented.status_code in (200, 201), commented.text
    assert photo_of(gateway, fixed["url"], mine).content == PNG
    assert photo_of(gateway, fixed["url"], neighbour).status_code == 404


def test_an_upload_must_be_an_accepted_file_of_the_type_it_says(gateway, settings):
    mine = bearer(settings, subject=RESIDENT)
    unsupported = upload(gateway, mine, b"hello", "text/plain")
    assert unsupported.status_code == 415 and unsupported.json()["code"] == "unsupported_media_type"
    disguised = upload(gateway, mine, "不是图片，只是一段文字".encode(), "image/jpeg")
    assert disguised.status_code == 422 and disguised.json()["errors"] == {
        "body": ["the bytes are not a image/jpeg file"]}
    assert upload(gateway, mine, PNG, "image/jpeg").status_code == 422  # a PNG is not a JPEG
    assert upload(gateway, mine, b"", "image/png").status_code == 422
    too_big = upload(gateway, mine, PNG + bytes(MAX_ATTACHMENT_BYTES), "image/png")
    assert too_big.status_code == 413 and too_big.json()["code"] == "payload_too_large"
    assert upload(gateway, bearer(settings, "ops", "p-ops")).status_code == 403  # ops attach nothing
    assert upload(gateway, {}).status_code == 401
    for missing in ("/api/v1/photos/" + "0" * 32, "/api/v1/photos/not-an-id"):
        response = photo_of(gateway, missing, mine)
        assert response.status_code == 404 and response.headers["Content-Type"].startswith("application/problem")
    bad_reference = create(gateway, mine, {**LEAK, "attributes": ANSWERS, "attachments": [
        {"url": "/api/v1/photos/../tickets", "content_type": "image/png", "size": 3}]})
    assert bad_reference.status_code == 422 and "attachments" in bad_reference.json()["errors"]


def test_erasure_forgets_the_answers_and_the_unattached_photos_and_keeps_the_ticket_s(gateway, settings,
                                                                                      mongo_client, wait_until):
    mine = bearer(settings, subject=RESIDENT)
    kept, loose = upload(gateway, mine).json(), upload(gateway, mine).json()
    other = upload(gateway, bearer(settings, "resident", NEIGHBOUR)).json()
    ticket = create(gateway, mine, {**LEAK, "attributes": ANSWERS, "attachments": [kept]}).json()
    db = mongo_client[settings.database_name("tickets")]
    assert db.tickets.find_one({"_id": ticket["id"]})["attributes"]["floor"] == 6

    publish_event(settings.amqp_uri, Envelope.new("resident.erased", {"resident_id": RESIDENT,
                                                                      "erased_at": utcnow().isoformat()},
                                                  community="xingqiao").to_wire())
    wait_until(lambda: db.tickets.find_one({"_id": ticket["id"]})["reporter"] != RESIDENT)
    wait_until(lambda: db[photos.FILES].find_one({"_id": photo_id(loose)}) is None)
    document = db.tickets.find_one({"_id": ticket["id"]})
    assert document["attributes"] == {}  # a text answer may say anything: it goes as the description does
    assert [attachment["url"] for attachment in document["attachments"]] == [kept["url"]]
    assert db[f"{photos.BUCKET}.chunks"].count_documents({"files_id": photo_id(loose)}) == 0
    assert db[photos.FILES].find_one({"_id": photo_id(kept)})["metadata"]["uploader"] is None
    assert db[photos.FILES].find_one({"_id": photo_id(other)})["metadata"]["uploader"] == NEIGHBOUR
    # the ticket's photo is still the office's to see (the ticket is anonymised, not deleted)
    assert photo_of(gateway, kept["url"], bearer(settings, "secretary", SECRETARY)).content == PNG


def photo_id(reference: dict) -> str:
    return reference["url"].rsplit("/", 1)[1]
