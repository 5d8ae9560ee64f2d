"""The mongodump archive format (``mongodump --archive``), read and written without the tools.

An archive made here restores with ``mongorestore --archive`` (``--gzip`` for a
compressed one), and ``huisheng restore`` reads what ``mongodump --archive``
wrote. The layout, as mongo-tools defines it (``common/archive``: ``spec.md``,
``prelude.go``, ``multiplexer.go``, ``parser.go``, ``demultiplexer.go``)::

    magic number    uint32 0x8199e26d, little-endian on disk: 6d e2 99 81
    header          BSON {concurrent_collections: int32, version: "0.1", server_version, tool_version}
    metadata        one BSON per collection {db, collection, metadata, size: int32, type}
    terminator      ff ff ff ff
    blocks          each: a namespace header BSON {db, collection, EOF: bool, CRC: int64},
                    zero or more documents, a terminator

``metadata`` is the collection's ``metadata.json`` as text, canonical Extended
JSON: ``{"options": ..., "indexes": [...], "uuid": ..., "collectionName": ..., "type": ...}``.
A collection's data blocks have ``EOF: false, CRC: 0``; after its last document
comes one block with ``EOF: true``, no documents, and the CRC-64 (ECMA-182 as
Go's ``hash/crc64`` computes it) of all the collection's document bytes, which
the reader checks. Blocks of different collections may interleave (mongodump
dumps collections in parallel); every collection of the prelude must end.

>>> stream = io.BytesIO()
>>> info = collection_metadata("huisheng_demo", "items", indexes=[{"v": 2, "key": {"_id": 1}, "name": "_id_"}])
>>> write_archive(stream, [CollectionDump(info, [{"_id": 1, "名": "回声"}])], Header("8.2.11"))
{'huisheng_demo.items': 1}
>>> stream.getvalue()[:4].hex()
'6de29981'
>>> items = list(read_archive(io.BytesIO(stream.getvalue())))
>>> [type(item).__name__ for item in items]
['Prelude', 'Batch', 'End']
>>> bson.decode(items[1].documents[0])
{'_id': 1, '名': '回声'}
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gzip
import io
import struct
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import IO, Any

import bson
from bson import json_util
from bson.int64 import Int64
from bson.json_util import CANONICAL_JSON_OPTIONS
from bson.raw_bson import RawBSONDocument

MAGIC_NUMBER = 0x8199E26D
MAGIC_BYTES = struct.pack("<I", MAGIC_NUMBER)  # 6d e2 99 81
TERMINATOR = b"\xff\xff\xff\xff"
FORMAT_VERSION = "0.1"
MAX_BSON_SIZE = 16 * 1024 * 1024  # mongo-tools' db.MaxBSONSize: the parser refuses anything larger
MIN_BSON_SIZE = 5  # an empty document
GZIP_MAGIC = b"\x1f\x8b"
TOOL_VERSION = "huisheng-backup 1"
_INT32 = struct.Struct("<i")
_UINT64_MASK = (1 << 64) - 1


class ArchiveError(ValueError):
    """Not a mongodump archive, or a damaged one: the message says where."""


# --------------------------------------------------------------------------- CRC-64


_ECMA_REFLECTED = 0xC96C5795D7870F42


def _table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ _ECMA_REFLECTED if crc & 1 else crc >> 1
        table.append(crc)
    return table


_TABLE = _table()


def crc64_python(data: bytes, crc: int = 0) -> int:
    """CRC-64/ECMA-182 as Go's ``crc64.Update(crc, crc64.MakeTable(crc64.ECMA), data)``: slow but plain.

    >>> hex(crc64_python(b"123456789"))  # the catalogue's check value of CRC-64/XZ
    '0x995dc9bbdf1939fa'
    """
    crc ^= _UINT64_MASK
    table = _TABLE
    for byte in data:
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ _UINT64_MASK


def _liblzma_crc64():
    """liblzma's ``lzma_crc64``, the same function (xz's check), in C; None where it cannot be loaded."""
    name = ctypes.util.find_library("lzma")
    if not name:
        return None
    try:
        function = ctypes.CDLL(name).lzma_crc64
    except (OSError, AttributeError):
        return None
    function.restype = ctypes.c_uint64
    function.argtypes = (ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint64)

    def crc64(data: bytes, crc: int = 0) -> int:
        data = bytes(data)
        return function(data, len(data), crc)

    return crc64 if crc64(b"123456789") == crc64_python(b"123456789") else None


crc64 = _liblzma_crc64() or crc64_python
"""The CRC-64 of a mongodump archive, ``crc64(data, crc_so_far) -> crc``, at C speed where liblzma loads."""


# --------------------------------------------------------------------------- what an archive holds


@dataclass(frozen=True)
class Header:
    """The archive header (mongo-tools ``archive.Header``)."""

    server_version: str = "0.0.0"  # mongorestore parses it as X.Y.Z
    tool_version: str = TOOL_VERSION
    concurrent_collections: int = 1
    version: str = FORMAT_VERSION

    def to_bson(self) -> bytes:
        return bson.encode({
            "concurrent_collections": self.concurrent_collections,
            "version": self.version,
            "server_version": self.server_version,
            "tool_version": self.tool_version,
        })

    @classmethod
    def from_bson(cls, raw: bytes) -> Header:
        doc = _decode(raw, "the archive header")
        return cls(
            server_version=str(doc.get("server_version", "")),
            tool_version=str(doc.get("tool_version", "")),
            concurrent_collections=int(doc.get("concurrent_collections", 0)),
            version=str(doc.get("version", "")),
        )


@dataclass(frozen=True)
class CollectionMetadata:
    """One collection of the prelude (mongo-tools ``archive.CollectionMetadata``).

    ``metadata`` is the text of its ``metadata.json`` (empty for an oplog); ``type``
    is ``collection``, ``view`` or ``timeseries`` (archives of mongodump 4.x have none).
    """

    db: str
    collection: str
    metadata: str = ""
    size: int = 0  # mongodump writes 0: it is known only after the dump
    type: str = "collection"

    @property
    def namespace(self) -> str:
        return f"{self.db}.{self.collection}"

    def parsed(self) -> dict[str, Any]:
        """The metadata as a document: ``options``, ``indexes``, ``uuid``, ``collectionName``, ``type``."""
        if not self.metadata:
            return {}
        try:
            return json_util.loads(self.metadata)
        except ValueError as exc:
            raise ArchiveError(f"the metadata of {self.namespace} is not Extended JSON: {exc}") from exc

    @property
    def options(self) -> dict[str, Any]:
        return dict(self.parsed().get("options") or {})

    @property
    def indexes(self) -> list[dict[str, Any]]:
        return list(self.parsed().get("indexes") or [])

    def to_bson(self) -> bytes:
        return bson.encode({"db": self.db, "collection": self.collection, "metadata": self.metadata,
                            "size": self.size, "type": self.type})

    @classmethod
    def from_bson(cls, raw: bytes) -> CollectionMetadata:
        doc = _decode(raw, "a collection's metadata")
        if not isinstance(doc.get("collection"), str) or not doc["collection"]:
            raise ArchiveError(f"collection metadata without a collection name: {doc!r}")
        return cls(db=str(doc.get("db", "")), collection=doc["collection"], metadata=str(doc.get("metadata", "")),
                   size=int(doc.get("size", 0)), type=str(doc.get("type", "")))


def collection_metadata(
    db: str,
    collection: str,
    *,
    options: Mapping[str, Any] | None = None,
    indexes: Sequence[Mapping[str, Any]] = (),
    uuid: str = "",
    type: str = "collection",
) -> CollectionMetadata:
    """The prelude entry mongodump writes for a collection, its metadata as canonical Extended JSON.

    ``options`` are those of ``listCollections``, ``indexes`` the documents of
    ``listIndexes``, ``uuid`` the collection's UUID in hex (mongodump's form).
    """
    document: dict[str, Any] = {}
    if options:
        document["options"] = dict(options)
    document["indexes"] = [dict(index) for index in indexes]
    if uuid:
        document["uuid"] = uuid
    document["collectionName"] = collection
    if type:
        document["type"] = type
    text = json_util.dumps(document, json_options=CANONICAL_JSON_OPTIONS, separators=(",", ":"),
                           ensure_ascii=False)
    return CollectionMetadata(db, collection, text, 0, type)


Document = bytes | RawBSONDocument | Mapping[str, Any]


@dataclass
class CollectionDump:
    """What to write for one collection: its prelude entry and its documents (any iterable, read lazily)."""

    info: CollectionMetadata
    documents: Iterable[Document] = ()


@dataclass(frozen=True)
class Prelude:
    """First item of :func:`read_archive`: the header and every collection the archive holds."""

    header: Header
    collections: tuple[CollectionMetadata, ...]


@dataclass(frozen=True)
class Batch:
    """Documents (raw BSON) of one collection, in archive order; a collection may come in many batches."""

    db: str
    collection: str
    documents: list[bytes] = field(default_factory=list)

    @property
    def namespace(self) -> str:
        return f"{self.db}.{self.collection}"


@dataclass(frozen=True)
class End:
    """A collection is complete: ``count`` documents whose CRC-64 ``crc`` matched the archive's."""

    db: str
    collection: str
    count: int
    crc: int

    @property
    def namespace(self) -> str:
        return f"{self.db}.{self.collection}"


ArchiveItem = Prelude | Batch | End


# --------------------------------------------------------------------------- writing


def namespace_header(db: str, collection: str, eof: bool = False, crc: int = 0) -> bytes:
    """The BSON opening a block: ``{db, collection, EOF, CRC}``, CRC an int64 holding the unsigned CRC's bits."""
    signed = crc - (1 << 64) if crc >= 1 << 63 else crc
    return bson.encode({"db": db, "collection": collection, "EOF": eof, "CRC": Int64(signed)})


def _raw(document: Document) -> bytes:
    if isinstance(document, bytes | bytearray | memoryview):
        return bytes(document)
    if isinstance(document, RawBSONDocument):
        return document.raw
    return bson.encode(document)


def write_archive(
    fileobj: IO[bytes], collections: Sequence[CollectionDump], header: Header | None = None
) -> dict[str, int]:
    """Write a whole archive to ``fileobj``; returns the number of documents written per namespace.

    The prelude names every collection first, then each collection's documents
    follow in one block and its EOF block, as ``mongodump --archive`` lays out a
    collection it dumps alone. Documents are streamed: only one is held at a time.
    """
    fileobj.write(MAGIC_BYTES)
    fileobj.write((header or Header()).to_bson())
    for dump in collections:
        fileobj.write(dump.info.to_bson())
    fileobj.write(TERMINATOR)
    return {dump.info.namespace: _write_collection(fileobj, dump) for dump in collections}


def _write_collection(fileobj: IO[bytes], dump: CollectionDump) -> int:
    db, collection = dump.info.db, dump.info.collection
    fileobj.write(namespace_header(db, collection))
    crc, count = 0, 0
    for document in dump.documents:
        raw = _raw(document)
        _check_size(len(raw), f"a document of {db}.{collection}")
        fileobj.write(raw)
        crc = crc64(raw, crc)
        count += 1
    fileobj.write(TERMINATOR)
    fileobj.write(namespace_header(db, collection, eof=True, crc=crc))
    fileobj.write(TERMINATOR)
    return count


def _check_size(size: int, what: str) -> None:
    if not MIN_BSON_SIZE <= size <= MAX_BSON_SIZE:
        raise ArchiveError(f"{what} has {size} bytes; a BSON document in an archive has 5 to {MAX_BSON_SIZE}")


# --------------------------------------------------------------------------- reading


class _Prefixed(io.RawIOBase):
    """A stream whose first bytes were already read: they come first, then the rest of ``inner``."""

    def __init__(self, prefix: bytes, inner: IO[bytes]):
        self.prefix, self.inner = prefix, inner

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        if self.prefix:
            n = min(len(buffer), len(self.prefix))
            buffer[:n], self.prefix = self.prefix[:n], self.prefix[n:]
            return n
        data = self.inner.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


class _Stream:
    """Exact reads of BSON documents and terminators, with the offset for error messages."""

    def __init__(self, fileobj: IO[bytes]):
        self.fileobj, self.offset = fileobj, 0

    def read(self, size: int, what: str, allow_eof: bool = False) -> bytes | None:
        chunks, wanted = [], size
        while wanted:
            chunk = self.fileobj.read(wanted)
            if not chunk:
                break
            chunks.append(chunk)
            wanted -= len(chunk)
        data = b"".join(chunks)
        if not data and allow_eof:
            return None
        if len(data) != size:
            raise ArchiveError(f"the archive ends in the middle of {what} (offset {self.offset + len(data)})")
        self.offset += size
        return data

    def document(self, what: str, allow_eof: bool = False) -> bytes | None:
        """The next BSON document, ``TERMINATOR``, or None at the end (only if ``allow_eof``)."""
        start = self.offset
        prefix = self.read(4, what, allow_eof)
        if prefix is None or prefix == TERMINATOR:
            return prefix
        size = _INT32.unpack(prefix)[0]
        if not MIN_BSON_SIZE <= size <= MAX_BSON_SIZE:
            raise ArchiveError(f"{size} at offset {start} is neither a BSON length nor a terminator ({what})")
        raw = prefix + self.read(size - 4, what)
        if raw[-1] != 0:
            raise ArchiveError(f"{what} at offset {start} does not end with a null byte")
        return raw


def _decode(raw: bytes, what: str) -> dict[str, Any]:
    try:
        return bson.decode(raw)
    except Exception as exc:  # noqa: BLE001 - bson raises several types for bad input
        raise ArchiveError(f"{what} is not valid BSON: {exc}") from exc


def _unwrap_gzip(fileobj: IO[bytes]) -> IO[bytes]:
    """The archive's bytes, whether ``fileobj`` holds it plain or gzip-compressed (``mongodump --gzip``)."""
    start = fileobj.read(2)
    stream = _Prefixed(start, fileobj)
    return gzip.GzipFile(fileobj=stream, mode="rb") if start == GZIP_MAGIC else io.BufferedReader(stream)


def read_prelude(stream: _Stream) -> Prelude:
    """Magic number, header and collection metadata, up to the first terminator."""
    magic = stream.read(4, "the magic number", allow_eof=True)
    if magic != MAGIC_BYTES:
        raise ArchiveError("this is not a mongodump archive (it does not start with the magic number 0x8199e26d)")
    raw = stream.document("the archive header")
    if raw == TERMINATOR:
        raise ArchiveError("the archive has no header")
    header = Header.from_bson(raw)
    collections = []
    while (raw := stream.document("the prelude")) != TERMINATOR:
        collections.append(CollectionMetadata.from_bson(raw))
    return Prelude(header, tuple(collections))


def data_namespace(info: CollectionMetadata, server_version: str) -> str:
    """Where a collection's documents are in the archive: a time-series one's before 8.3 are its buckets'."""
    if info.type == "timeseries" and _version(server_version) < (8, 3, 0):
        return f"{info.db}.system.buckets.{info.collection}"
    return info.namespace


def _version(text: str) -> tuple[int, ...]:
    parts = text.split("-", 1)[0].split("+", 1)[0].split(".")
    try:
        return tuple(int(part) for part in parts) if len(parts) == 3 else (0, 0, 0)
    except ValueError:
        return (0, 0, 0)


@dataclass
class _Open:
    crc: int = 0
    count: int = 0


class _Demultiplexer:
    """The state of :func:`read_archive` after the prelude: which namespaces are open, closed, expected."""

    def __init__(self, stream: _Stream, prelude: Prelude, batch_size: int, batch_bytes: int):
        self.stream, self.batch_size, self.batch_bytes = stream, batch_size, batch_bytes
        self.expected = {data_namespace(c, prelude.header.server_version) for c in prelude.collections}
        self.open: dict[str, _Open] = {}
        self.closed: set[str] = set()

    def blocks(self) -> Iterator[Batch | End]:
        while (raw := self.stream.document("a namespace header", allow_eof=True)) is not None:
            if raw == TERMINATOR:
                raise ArchiveError(f"two terminators in a row at offset {self.stream.offset - 4}")
            db, collection, eof, crc = self._namespace_header(raw)
            namespace = f"{db}.{collection}"
            if namespace in self.closed:
                raise ArchiveError(f"a block of {namespace} after its end")
            if eof:
                yield self._end(db, collection, crc)
            else:
                yield from self._body(db, collection)
        self._finish()

    def _namespace_header(self, raw: bytes) -> tuple[str, str, bool, int]:
        doc = _decode(raw, "a namespace header")
        collection, eof, crc = doc.get("collection"), doc.get("EOF", False), doc.get("CRC", 0)
        if not isinstance(collection, str) or not collection:
            raise ArchiveError(f"a namespace header without a collection: {doc!r}")
        if not isinstance(eof, bool) or not isinstance(crc, int):
            raise ArchiveError(f"a namespace header with a bad EOF or CRC: {doc!r}")
        return str(doc.get("db", "")), collection, eof, crc & _UINT64_MASK

    def _body(self, db: str, collection: str) -> Iterator[Batch]:
        state = self.open.setdefault(f"{db}.{collection}", _Open())
        batch, size = [], 0
        while (raw := self.stream.document(f"the documents of {db}.{collection}")) != TERMINATOR:
            state.crc, state.count = crc64(raw, state.crc), state.count + 1
            batch.append(raw)
            size += len(raw)
            if len(batch) >= self.batch_size or size >= self.batch_bytes:
                yield Batch(db, collection, batch)
                batch, size = [], 0
        if batch:
            yield Batch(db, collection, batch)

    def _end(self, db: str, collection: str, crc: int) -> End:
        namespace = f"{db}.{collection}"
        state = self.open.pop(namespace, _Open())
        if self.stream.document(f"the end of {namespace}") != TERMINATOR:
            raise ArchiveError(f"documents follow the end of {namespace}")
        if state.crc != crc:
            raise ArchiveError(f"CRC mismatch for {namespace}: the documents give {state.crc:#018x}, "
                               f"the archive says {crc:#018x}")
        self.closed.add(namespace)
        return End(db, collection, state.count, crc)

    def _finish(self) -> None:
        if self.open:
            raise ArchiveError(f"the archive ends before the end of {', '.join(sorted(self.open))}")
        missing = self.expected - self.closed
        if missing:
            raise ArchiveError(f"the archive ends before all its collections were seen: {', '.join(sorted(missing))}")


def read_archive(
    fileobj: IO[bytes], batch_size: int = 1000, batch_bytes: int = 8 * 1024 * 1024
) -> Iterator[ArchiveItem]:
    """Read an archive (plain or gzip) as a stream: a :class:`Prelude`, then :class:`Batch` and :class:`End` items.

    Batches hold at most ``batch_size`` documents or about ``batch_bytes`` bytes.
    Every collection's CRC is checked when its end is read, so a consumer sees
    a collection's documents before it knows they are intact: read the archive
    once to check it (:func:`verify_archive`) before changing anything with it.
    Raises :class:`ArchiveError` for anything that is not a whole, intact archive.
    """
    stream = _Stream(_unwrap_gzip(fileobj))
    prelude = read_prelude(stream)
    yield prelude
    yield from _Demultiplexer(stream, prelude, batch_size, batch_bytes).blocks()


def verify_archive(fileobj: IO[bytes]) -> tuple[Prelude, dict[str, int]]:
    """Read a whole archive, checking its structure and every CRC; the prelude and documents per namespace."""
    stream = _Stream(_unwrap_gzip(fileobj))
    prelude = read_prelude(stream)
    ends = _Demultiplexer(stream, prelude, batch_size=10_000, batch_bytes=MAX_BSON_SIZE).blocks()
    return prelude, {item.namespace: item.count for item in ends if isinstance(item, End)}
