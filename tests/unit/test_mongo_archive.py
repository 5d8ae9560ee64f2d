"""The mongodump archive format, without a server.

The expected bytes below are built by hand (a tiny BSON encoder made of
``struct.pack``), not with the ``bson`` module the code under test uses, so the
writer cannot drift from the layout of mongo-tools' ``common/archive`` without a
test failing. The same layout was compared byte for byte with archives that
``mongodump --archive`` wrote (mongo-tools' ``mongorestore/testdata``).
"""

from __future__ import annotations

import datetime
import gzip
import io
import os
import random
import struct
from pathlib import Path

import bson
import pytest
from bson import Binary, Decimal128, Int64, ObjectId, Regex, Timestamp

from kernel.mongo_archive import (
    MAGIC_BYTES,
    MAX_BSON_SIZE,
    TERMINATOR,
    ArchiveError,
    Batch,
    CollectionDump,
    CollectionMetadata,
    End,
    Header,
    Prelude,
    collection_metadata,
    crc64,
    crc64_python,
    namespace_header,
    read_archive,
    verify_archive,
    write_archive,
)

# --------------------------------------------------------------------------- hand-made BSON


def cstring(text: str) -> bytes:
    return text.encode() + b"\x00"


def e_string(name: str, value: str) -> bytes:
    data = value.encode()
    return b"\x02" + cstring(name) + struct.pack("<i", len(data) + 1) + data + b"\x00"


def e_int32(name: str, value: int) -> bytes:
    return b"\x10" + cstring(name) + struct.pack("<i", value)


def e_int64(name: str, value: int) -> bytes:
    return b"\x12" + cstring(name) + struct.pack("<q", value)


def e_bool(name: str, value: bool) -> bytes:
    return b"\x08" + cstring(name) + (b"\x01" if value else b"\x00")


def document(*elements: bytes) -> bytes:
    body = b"".join(elements)
    return struct.pack("<i", len(body) + 5) + body + b"\x00"


def ns_header(db: str, collection: str, eof: bool, crc: int) -> bytes:
    signed = crc - (1 << 64) if crc >= 1 << 63 else crc
    return document(e_string("db", db), e_string("collection", collection), e_bool("EOF", eof), e_int64("CRC", signed))


def archive_bytes(collections, header: Header | None = None) -> bytes:
    out = io.BytesIO()
    write_archive(out, collections, header or Header("8.2.11", "test"))
    return out.getvalue()


def items_of(data: bytes, **kwargs) -> list:
    return list(read_archive(io.BytesIO(data), **kwargs))


def documents_by_namespace(items) -> dict[str, list[bytes]]:
    found: dict[str, list[bytes]] = {}
    for item in items:
        if isinstance(item, Batch):
            found.setdefault(item.namespace, []).extend(item.documents)
    return found


META = '{"indexes":[],"collectionName":"c","type":"collection"}'

# --------------------------------------------------------------------------- the byte layout


def test_the_magic_number_is_0x8199e26d_little_endian():
    assert MAGIC_BYTES.hex() == "6de29981" and TERMINATOR.hex() == "ffffffff"
    assert archive_bytes([]).startswith(bytes.fromhex("6de29981"))


def test_a_tiny_archive_is_laid_out_exactly_as_mongodump_lays_it_out():
    doc = document(e_int32("_id", 1), e_string("s", "回声"))
    info = CollectionMetadata("huisheng_t", "c", META, 0, "collection")
    data = archive_bytes([CollectionDump(info, [doc])], Header("7.0.16", "huisheng-test", 1))

    header = document(e_int32("concurrent_collections", 1), e_string("version", "0.1"),
                      e_string("server_version", "7.0.16"), e_string("tool_version", "huisheng-test"))
    prelude_entry = document(e_string("db", "huisheng_t"), e_string("collection", "c"), e_string("metadata", META),
                             e_int32("size", 0), e_string("type", "collection"))
    crc = 0x761585BAB27C6DCF  # pinned: CRC-64/ECMA-182 (Go's hash/crc64) of `doc`
    assert crc64_python(doc) == crc
    expected = (
        bytes.fromhex("6de29981") + header + prelude_entry + TERMINATOR
        + ns_header("huisheng_t", "c", False, 0) + doc + TERMINATOR
        + ns_header("huisheng_t", "c", True, crc) + TERMINATOR
    )
    assert data == expected
    # the first bytes spelled out: magic, header length 0x6d, int32 concurrent_collections = 1
    assert data[:36].hex() == "6de299816d00000010636f6e63757272656e745f636f6c6c656374696f6e730001000000"


def test_an_empty_collection_has_an_empty_block_then_its_end_like_mongodump_writes_it():
    info = CollectionMetadata("huisheng_t", "empty", META, 0, "collection")
    data = archive_bytes([CollectionDump(info, [])])
    blocks = data[data.index(TERMINATOR) + 4:]
    assert blocks == (ns_header("huisheng_t", "empty", False, 0) + TERMINATOR
                      + ns_header("huisheng_t", "empty", True, 0) + TERMINATOR)


def test_a_crc_with_its_top_bit_set_is_stored_as_a_negative_int64_and_read_back_unsigned():
    doc = next(d for i in range(1000) if crc64(d := bson.encode({"_id": i})) >= 1 << 63)
    header = namespace_header("d", "c", eof=True, crc=crc64(doc))
    assert bson.decode(header)["CRC"] < 0 and header == ns_header("d", "c", True, crc64(doc))
    info = CollectionMetadata("d", "c", META)
    [_, _, end] = items_of(archive_bytes([CollectionDump(info, [doc])]))
    assert end == End("d", "c", 1, crc64(doc))


def test_collection_metadata_is_canonical_extended_json_in_mongodumps_field_order():
    info = collection_metadata(
        "huisheng_tickets", "processed_events", options={"capped": True, "size": 4096},
        indexes=[{"v": 2, "key": {"_id": 1}, "name": "_id_"},
                 {"v": 2, "key": {"at": 1}, "name": "at_1", "expireAfterSeconds": 604800}],
        uuid="3f41c0f2d55549948a6a332e09396ff2",
    )
    assert info.metadata == (
        '{"options":{"capped":true,"size":{"$numberInt":"4096"}},'
        '"indexes":[{"v":{"$numberInt":"2"},"key":{"_id":{"$numberInt":"1"}},"name":"_id_"},'
        '{"v":{"$numberInt":"2"},"key":{"at":{"$numberInt":"1"}},"name":"at_1",'
        '"expireAfterSeconds":{"$numberInt":"604800"}}],'
        '"uuid":"3f41c0f2d55549948a6a332e09396ff2","collectionName":"processed_events","type":"collection"}'
    )
    assert info.options == {"capped": True, "size": 4096}
    assert info.indexes[1] == {"v": 2, "key": {"at": 1}, "name": "at_1", "expireAfterSeconds": 604800}
    assert collection_metadata("d", "c").metadata == '{"indexes":[],"collectionName":"c","type":"collection"}'


# --------------------------------------------------------------------------- CRC-64


def test_crc64_is_go_crc64_ecma_and_the_fast_path_agrees_with_the_plain_one():
    assert crc64(b"123456789") == crc64_python(b"123456789") == 0x995DC9BBDF1939FA  # CRC-64/XZ check value
    assert crc64(b"a") == 0x330284772E652B05 and crc64(b"") == 0
    data = random.Random(7).randbytes(100_003)
    assert crc64(data) == crc64_python(data)
    assert crc64(data[40_000:], crc64(data[:40_000])) == crc64(data)  # incremental, as over many documents


# --------------------------------------------------------------------------- round trips


RICH = {
    "_id": ObjectId("6b089d21be7f85e501d1c426"),
    "at": datetime.datetime(2026, 5, 1, 8, 30, 15, 123000),
    "n": Int64(2**40), "i": 7, "f": 1.5, "d": Decimal128("3.14"), "b": Binary(b"\x00\x01", 0),
    "ts": Timestamp(1700000000, 3), "re": Regex("^兴", "i"), "none": None, "yes": True,
    "nested": {"timeline": [{"type": "ticket.received"}, {"type": "echo.delivered"}]},
}


def test_documents_metadata_and_header_survive_a_round_trip():
    tickets = collection_metadata("huisheng_tickets", "tickets", indexes=[
        {"v": 2, "key": {"_id": 1}, "name": "_id_"},
        {"v": 2, "key": {"community": 1, "reporter": 1, "request_key": 1}, "name": "by_request_key", "unique": True,
         "partialFilterExpression": {"request_key": {"$type": "string"}}}])
    outbox = collection_metadata("huisheng_notify", "inbox", indexes=[
        {"v": 2, "key": {"_outbox_since": 1}, "name": "outbox_since", "sparse": True}])
    docs = [RICH, *({"_id": f"t-{i}", "k": i} for i in range(2500))]
    header = Header("8.2.11", "huisheng-test", 1)
    data = archive_bytes([CollectionDump(tickets, docs), CollectionDump(outbox, [{"_id": "m"}])], header)

    items = items_of(data)
    assert items[0] == Prelude(header, (tickets, outbox))
    assert items[0].collections[0].indexes[1]["partialFilterExpression"] == {"request_key": {"$type": "string"}}
    found = documents_by_namespace(items)
    assert found["huisheng_tickets.tickets"] == [bson.encode(doc) for doc in docs]
    assert [item.count for item in items if isinstance(item, End)] == [2501, 1]


def test_write_archive_takes_raw_bson_and_returns_counts():
    from bson.raw_bson import RawBSONDocument

    raw = bson.encode({"_id": 1})
    info = CollectionMetadata("d", "c", META)
    counts = write_archive(io.BytesIO(), [CollectionDump(info, [raw, RawBSONDocument(raw), {"_id": 2}])])
    assert counts == {"d.c": 3}


def test_batches_are_bounded():
    info = CollectionMetadata("d", "c", META)
    items = items_of(archive_bytes([CollectionDump(info, ({"_id": i} for i in range(2500)))]), batch_size=1000)
    assert [len(item.documents) for item in items if isinstance(item, Batch)] == [1000, 1000, 500]


def test_gzip_archives_are_written_as_mongodump_gzip_and_read_without_being_told():
    info = CollectionMetadata("d", "c", META)
    buffer = io.BytesIO()
    with gzip.GzipFile(fileobj=buffer, mode="wb") as compressed:
        write_archive(compressed, [CollectionDump(info, [{"_id": i, "s": "回声" * 20} for i in range(500)])])
    data = buffer.getvalue()
    assert data[:2] == b"\x1f\x8b" and gzip.decompress(data)[:4] == MAGIC_BYTES
    prelude, counts = verify_archive(io.BytesIO(data))
    assert counts == {"d.c": 500} and prelude.collections == (info,)


def test_empty_collections_and_empty_archives():
    empty = CollectionMetadata("d", "empty", META)
    items = items_of(archive_bytes([CollectionDump(empty, [])]))
    assert items[1:] == [End("d", "empty", 0, 0)]
    assert items_of(archive_bytes([])) == [Prelude(Header("8.2.11", "test"), ())]


def test_documents_larger_than_16_kb_and_up_to_16_mb():
    info = CollectionMetadata("d", "big", META)
    big = {"_id": 1, "blob": Binary(os.urandom(3 * 1024 * 1024)), "text": "回" * 20_000}
    assert len(bson.encode(big)) > 16 * 1024
    found = documents_by_namespace(items_of(archive_bytes([CollectionDump(info, [big, {"_id": 2}])])))
    assert found["d.big"] == [bson.encode(big), bson.encode({"_id": 2})]
    too_big = bson.encode({"_id": 3, "blob": Binary(b"x" * MAX_BSON_SIZE)})
    with pytest.raises(ArchiveError, match="bytes"):
        write_archive(io.BytesIO(), [CollectionDump(info, [too_big])])


def test_unicode_names_and_text():
    info = collection_metadata("huisheng_回声", "工单", indexes=[{"v": 2, "key": {"地址": 1}, "name": "按地址"}])
    doc = {"_id": "兴乔-1", "描述": "3号楼下水道堵了 🚰", "地址": "兴乔小区"}
    items = items_of(archive_bytes([CollectionDump(info, [doc])]))
    assert items[0].collections[0].indexes == [{"v": 2, "key": {"地址": 1}, "name": "按地址"}]
    assert bson.decode(documents_by_namespace(items)["huisheng_回声.工单"][0]) == doc


# --------------------------------------------------------------------------- damage is detected


def one_collection(docs=({"_id": 1, "s": "abcdef"},)) -> bytes:
    return archive_bytes([CollectionDump(CollectionMetadata("d", "c", META), list(docs))])


def test_a_changed_byte_in_a_document_is_a_crc_mismatch():
    data = bytearray(one_collection())
    at = data.index(b"abcdef")
    data[at] = ord("X")  # still valid BSON: only the CRC can tell
    with pytest.raises(ArchiveError, match="CRC mismatch for d.c"):
        verify_archive(io.BytesIO(bytes(data)))


def test_a_changed_crc_is_a_crc_mismatch():
    data = one_collection()
    doc = bson.encode({"_id": 1, "s": "abcdef"})
    damaged = data.replace(ns_header("d", "c", True, crc64(doc)), ns_header("d", "c", True, crc64(doc) ^ 1))
    with pytest.raises(ArchiveError, match="CRC mismatch"):
        verify_archive(io.BytesIO(damaged))


def test_what_is_not_a_whole_archive_is_refused():
    data = one_collection()
    with pytest.raises(ArchiveError, match="not a mongodump archive"):
        verify_archive(io.BytesIO(b"\x00" + data[1:]))
    with pytest.raises(ArchiveError, match="not a mongodump archive"):
        verify_archive(io.BytesIO(b""))
    for cut in (3, 10, data.index(TERMINATOR) + 2, len(data) - 30, len(data) - 2):
        with pytest.raises(ArchiveError):
            verify_archive(io.BytesIO(data[:cut]))


def test_a_collection_of_the_prelude_that_never_ends_is_refused():
    info = CollectionMetadata("d", "c", META)
    prelude_only = archive_bytes([CollectionDump(info, [])])
    prelude_only = prelude_only[: prelude_only.index(TERMINATOR) + 4]
    with pytest.raises(ArchiveError, match="before all its collections were seen: d.c"):
        verify_archive(io.BytesIO(prelude_only))
    unfinished = prelude_only + ns_header("d", "c", False, 0) + bson.encode({"_id": 1}) + TERMINATOR
    with pytest.raises(ArchiveError, match="before the end of d.c"):
        verify_archive(io.BytesIO(unfinished))


def test_blocks_after_an_end_and_headerless_blocks_are_refused():
    data = one_collection()
    with pytest.raises(ArchiveError, match="after its end"):
        verify_archive(io.BytesIO(data + ns_header("d", "c", False, 0) + TERMINATOR))
    with pytest.raises(ArchiveError, match="two terminators"):
        verify_archive(io.BytesIO(data + TERMINATOR))


# --------------------------------------------------------------------------- archives mongodump wrote


def handmade(prelude: list[bytes], blocks: list[bytes], header: bytes | None = None) -> bytes:
    header = header or document(e_int32("concurrent_collections", 4), e_string("version", "0.1"),
                                e_string("server_version", "4.0.2"), e_string("tool_version", "r4.1.3"))
    return MAGIC_BYTES + header + b"".join(prelude) + TERMINATOR + b"".join(blocks)


def test_interleaved_blocks_of_a_parallel_dump_and_a_4x_prelude_are_read():
    """mongodump -j4 interleaves collections; 4.x wrote no `type`, relaxed JSON, and an oplog with db ""."""
    meta = '{"options":{},"indexes":[{"v":2,"key":{"_id":1},"name":"_id_","ns":"test.a"}],"uuid":"d6b7"}'
    prelude = [document(e_string("db", "test"), e_string("collection", name), e_string("metadata", meta),
                        e_int32("size", 0)) for name in ("a", "b")]
    prelude.append(document(e_string("db", ""), e_string("collection", "oplog"), e_string("metadata", ""),
                            e_int32("size", 0)))
    a = [bson.encode({"_id": i}) for i in range(3)]
    b = [bson.encode({"_id": f"b{i}"}) for i in range(2)]
    op = bson.encode({"ts": Timestamp(1, 1), "op": "n"})
    blocks = [
        ns_header("test", "a", False, 0), a[0], a[1], TERMINATOR,
        ns_header("test", "b", False, 0), b[0], TERMINATOR,
        ns_header("test", "a", False, 0), a[2], TERMINATOR,
        ns_header("test", "a", True, crc64(b"".join(a))), TERMINATOR,
        ns_header("test", "b", False, 0), b[1], TERMINATOR,
        ns_header("", "oplog", False, 0), op, TERMINATOR,
        ns_header("test", "b", True, crc64(b"".join(b))), TERMINATOR,
        ns_header("", "oplog", True, crc64(op)), TERMINATOR,
    ]
    items = items_of(handmade(prelude, blocks))
    assert items[0].header == Header("4.0.2", "r4.1.3", 4, "0.1")
    assert [(c.namespace, c.type) for c in items[0].collections] == [("test.a", ""), ("test.b", ""), (".oplog", "")]
    assert items[0].collections[0].indexes[0]["key"] == {"_id": 1} and items[0].collections[2].parsed() == {}
    assert documents_by_namespace(items) == {"test.a": a, "test.b": b, ".oplog": [op]}
    assert [(e.namespace, e.count) for e in items if isinstance(e, End)] == [("test.a", 3), ("test.b", 2),
                                                                             (".oplog", 1)]


FIXTURES = os.environ.get("HUISHENG_MONGODUMP_ARCHIVES")


@pytest.mark.skipif(not FIXTURES, reason="HUISHENG_MONGODUMP_ARCHIVES (a folder of mongodump archives) is not set")
def test_archives_written_by_mongodump_are_read_whole():
    paths = sorted(Path(FIXTURES).glob("*.archive*"))
    assert paths, f"no *.archive files in {FIXTURES}"
    for path in paths:
        with open(path, "rb") as archive:
            prelude, counts = verify_archive(archive)
        assert prelude.header.version == "0.1" and set(counts) >= {c.namespace for c in prelude.collections
                                                                  if c.type != "timeseries"}
