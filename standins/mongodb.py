"""The local stand-in for MongoDB: SecantusDB, with three of its per-write costs and a stall taken out.

Production runs MongoDB; development, the tests and the benchmark run the embedded SecantusDB (pinned in
constraints.txt), a MongoDB written in Python. Profiles of the echo path put three of its costs among the
largest of a ticket (``docs/benchmarks.md``, ninth and thirteenth rounds), and none exists on MongoDB; the
stall stopped the whole server for up to a minute in benchmark runs:

1. **The index catalog is read again for every write.** Each insert or update reads and BSON-decodes the
   specification of every index of the collection five times or more (``Storage._iter_indexes``): a fifth
   of the server's CPU on a ticket with eleven indexes. MongoDB keeps its catalog in memory. Here each
   collection's specifications are kept once read, and every catalog change (an index built, dropped or
   changed, a collection dropped or renamed) empties the copy. The one flag ordinary writes set,
   ``multikey``, is never answered from the copy: it is read from the table as before.
2. **Every change stream decodes every entry of the server's oplog** before it looks at its namespace, so
   five services' streams decode each write five times. Here an entry's ``ns`` is read first (its
   top-level fields, without the document it carries) and only an entry the stream wants is decoded.
3. **The TTL sweeper keeps a snapshot open for a minute.** After each sweep the sweeper thread parks for
   60 s with its WiredTiger session still holding the snapshot the sweep read with, and lets go only when
   the next sweep starts. Everything written meanwhile stays pinned in the cache, so a page that every
   insert appends to grows past its size limit and cannot be evicted. A read that needs that page tries to
   evict it first, fails and sleeps, again for each document it fetches, while it holds the lock most of
   the server runs under (``Storage._lock``): WiredTiger's statistics showed "page acquire eviction
   blocked" climbing by 1,500 a second for 38 s while the pinned range grew for a minute, and
   ``py-spy dump --native`` the whole server waiting behind one ``count_documents`` asleep in
   ``__wt_page_in_func`` while the machine idled (docs/benchmarks.md, twelfth round). Here the sweeper
   lets go of its session after each sweep. Two waits for ``_lock`` that held a thread's cursors in place
   while it waited go too: after each command a connection thread read the database's profiling level
   under the lock (now kept once read; a ``profile`` command empties the copy) and let go of its cursors
   under it (now under a lock of its own that only ``close()``, what ``_lock`` guarded against, takes).

4. **A ``$in`` list is compared with each document element by element.** A find's filter is checked again
   on every document the index lookup fetched, and ``{"_id": {"$in": ids}}`` compares each one with the list
   in order (after checking the whole list again), so reading N tickets by id costs N²/2 comparisons in
   Python: about a third of the reports' fold's database time, growing with its batch, as the relay's
   settle once did (docs/benchmarks.md, second and thirteenth rounds). MongoDB matches ``$in`` by a set.
   Here a filter made only of string equalities and ``$in`` lists of strings on top-level fields, without
   a collation, is checked by set lookups, once planned per filter; a document whose field is not a string
   (an array, a number, missing) is checked as before.

All four change how fast the server answers, not what: the tests of this module compare answers with the
unpatched server's. :func:`install` refuses any other SecantusDB version than the one the patches were read
against, so an upgrade fails loudly until they are read again.

    python -m standins.mongodb --port 27017 --storage-path var/mongo --sync-on-commit
"""

from __future__ import annotations

import contextlib
import sys
import threading
from collections.abc import Callable, Mapping
from typing import Any

import bson
from bson.raw_bson import RawBSONDocument

PATCHED_VERSION = "0.7.0b3"
# Storage methods that change an index catalog: each one empties the copy before and after it runs.
CATALOG_CHANGES = ("create_index", "drop_index", "set_index_expiry", "set_index_options", "drop_all_indexes",
                   "drop_collection", "drop_database", "rename_collection", "_recover_pending_drops_locked")
_RAW = bson.CodecOptions(document_class=RawBSONDocument)


class CatalogCopy:
    """What the server keeps in a catalog table (each collection's index specifications, as
    ``Storage._iter_indexes`` yields them; each database's profiling settings), kept once read.

    A generation count guards the race between a reader and a catalog change: a reader that started before
    a change never stores what it read.
    """

    def __init__(self) -> None:
        self.entries: dict[tuple[str, ...], tuple] = {}
        self.generation = 0
        self.lock = threading.Lock()

    def read(self, key: tuple[str, str], load: Callable[[], tuple]) -> tuple:
        cached = self.entries.get(key)
        if cached is not None:
            return cached
        generation = self.generation
        loaded = load()
        with self.lock:
            if generation == self.generation:
                self.entries[key] = loaded
        return loaded

    def forget(self) -> None:
        with self.lock:
            self.generation += 1
            self.entries.clear()


def _copied(entries: tuple) -> list[tuple[str, dict, dict]]:
    # Callers may change what they are given; the copy must not change with it.
    return [(name, dict(key), dict(options)) for name, key, options in entries]


def _forgetting(method: Callable, catalog: CatalogCopy) -> Callable:
    def changed(self: Any, *args: Any, **kwargs: Any) -> Any:
        catalog.forget()
        try:
            return method(self, *args, **kwargs)
        finally:
            catalog.forget()
    return changed


def oplog_namespace(blob: bytes) -> str:
    """An oplog entry's ``ns``, read from its leading string fields (SecantusDB writes ``op``, then ``ns``);
    from its top-level fields otherwise, the document it carries left undecoded.

    >>> oplog_namespace(bson.encode({"op": "i", "ns": "tickets.tickets", "o": {"_id": 1}}))
    'tickets.tickets'
    >>> oplog_namespace(bson.encode({"ts": bson.Timestamp(1, 1), "ns": "notify.inbox"}))
    'notify.inbox'
    """
    position = 4  # past the document's length
    while blob[position] == 0x02:  # a string element: type, name, NUL, int32 length (with its NUL), bytes
        end = blob.index(b"\0", position + 1)
        length = int.from_bytes(blob[end + 1:end + 5], "little")
        if blob[position + 1:end] == b"ns":
            return blob[end + 5:end + 4 + length].decode()
        position = end + 5 + length
    return str(bson.decode(blob, _RAW).get("ns", ""))


def install(storage_module: Any, version: str) -> CatalogCopy:
    """Patch SecantusDB's ``Storage`` class in place; return the catalog copy (tests look at it)."""
    if version != PATCHED_VERSION:
        raise RuntimeError(f"standins.mongodb patches SecantusDB {PATCHED_VERSION}, not {version}: read them again")
    storage = storage_module.Storage
    catalog = CatalogCopy()
    uncached = storage._iter_indexes

    def iter_indexes(self: Any, db: str, coll: str) -> list[tuple[str, dict, dict]]:
        return _copied(catalog.read((db, coll), lambda: tuple(uncached(self, db, coll))))

    def multikey_index_names(self: Any, db: str, coll: str) -> set[str]:
        return {name for name, _key, options in uncached(self, db, coll) if options.get("multikey")}

    def index_is_multikey(self: Any, db: str, coll: str, name: str) -> bool:
        return any(found == name and options.get("multikey") for found, _key, options in uncached(self, db, coll))

    storage._iter_indexes = iter_indexes
    storage._multikey_index_names = multikey_index_names
    storage.index_is_multikey = index_is_multikey
    for name in CATALOG_CHANGES:
        setattr(storage, name, _forgetting(getattr(storage, name), catalog))
    storage._merge_oplog_on_session = staticmethod(_merging_oplog(storage_module))
    _letting_go(storage, catalog)
    storage_module.matches = set_matching(storage_module.matches)
    return catalog


def _letting_go(storage: Any, catalog: CatalogCopy) -> None:
    """Patch 3: the TTL sweeper lets go of its snapshot after each sweep; after a command, neither reading the
    profiling level nor letting go of the cursors waits for ``_lock``."""
    read_profile, close, sweep = storage.get_profile, storage.close, storage.prune_ttl_all_collections
    teardown = threading.RLock()  # held by close() while it closes every session, and by a session's reset

    def get_profile(self: Any, db: str) -> dict[str, Any]:  # keyed by three names: no collection's key
        return dict(catalog.read(("profile", db, ""), lambda: tuple(read_profile(self, db).items())))

    def release_thread_snapshot(self: Any) -> None:
        session = getattr(self._tls, "session", None)
        if session is None or getattr(self._tls, "user_txn", None) is not None:
            return  # a transaction's snapshot is what it reads: it lets go when it ends
        with teardown:
            if not self._closed:
                with contextlib.suppress(Exception):  # as SecantusDB's own: a reset that fails leaves nothing held
                    session.reset()

    def sweep_and_let_go(self: Any, **options: Any) -> int:
        try:
            return sweep(self, **options)
        finally:
            release_thread_snapshot(self)

    def closing(self: Any) -> None:
        with teardown:
            close(self)

    storage.get_profile, storage.set_profile = get_profile, _forgetting(storage.set_profile, catalog)
    storage.release_thread_snapshot, storage.close = release_thread_snapshot, closing
    storage.prune_ttl_all_collections = sweep_and_let_go


def string_sets(query: Mapping[str, Any]) -> tuple[tuple[str, frozenset[str]], ...] | None:
    """Patch 4's plan of a filter: ``(field, the strings it may hold)`` per clause; None if any clause is
    something else (an operator, a dotted path, a value that is not a string, a ``$in`` with one).

    >>> string_sets({"_id": {"$in": ["a"]}, "community": "x"})
    (('_id', frozenset({'a'})), ('community', frozenset({'x'})))
    >>> string_sets({"_id": {"$in": ["a", 1]}}), string_sets({"a.b": "x"}), string_sets({"n": {"$gt": "a"}})
    (None, None, None)
    """
    plan = []
    for field, condition in query.items():
        if not isinstance(field, str) or not field or field.startswith("$") or "." in field:
            return None
        if type(condition) is str:
            plan.append((field, frozenset((condition,))))
        elif (type(condition) is dict and len(condition) == 1 and type(condition.get("$in")) is list
              and all(type(value) is str for value in condition["$in"])):
            plan.append((field, frozenset(condition["$in"])))
        else:
            return None
    return tuple(plan) if plan else None


def set_matching(matches: Callable[..., bool]) -> Callable[..., bool]:
    """Patch 4: SecantusDB's ``matches`` (as ``secantus.storage`` calls it), with filters that
    :func:`string_sets` can plan checked by set lookups; anything else as before."""
    last = threading.local()  # the filter last planned on this thread, and its plan: one plan per find
    absent = object()

    def planned(query: Mapping[str, Any]) -> tuple[tuple[str, frozenset[str]], ...] | None:
        seen = getattr(last, "query", None)
        if seen is not None and seen[0] is query:  # held here, so its id cannot be another filter's
            return seen[1]
        plan = string_sets(query)
        last.query = (query, plan)
        return plan

    def set_matches(doc: Mapping[str, Any], query: Mapping[str, Any], *, vars: dict[str, Any] | None = None,
                    collation: Any = None) -> bool:
        plan = planned(query) if collation is None and isinstance(query, dict) else None
        if plan is not None:
            for field, allowed in plan:
                value = doc.get(field, absent)
                if type(value) is not str:  # an array may hold a match, and other types have their own rules
                    return matches(doc, query, vars=vars, collation=collation)
                if value not in allowed:
                    return False
            return True
        return matches(doc, query, vars=vars, collation=collation)

    return set_matches


def _merging_oplog(module: Any) -> Callable:
    """``Storage._merge_oplog_on_session`` of SecantusDB 0.7.0b3, deciding on ``ns`` before decoding an entry."""
    wt = module.wt

    def merge(session: Any, start_seq: int, limit: int,
              ns_filter: Callable[[str], bool] | None = None) -> tuple[list[tuple[int, dict[str, Any]]], int]:
        out: list[tuple[int, dict[str, Any]]] = []
        scan_high = start_seq - 1
        cursors: list[Any] = []
        heads: list[int | None] = []
        try:
            for table in module._OPLOG_ALL_TABLES:
                try:
                    cursor = session.open_cursor(table, None)
                except Exception as exc:
                    if module._is_missing_table(exc):
                        continue
                    raise
                cursors.append(cursor)
                cursor.set_key(int(start_seq))
                found = cursor.search_near()
                if found == wt.WT_NOTFOUND:
                    heads.append(None)
                elif found < 0:
                    heads.append(int(cursor.get_key()) if cursor.next() == 0 else None)
                else:
                    heads.append(int(cursor.get_key()))
            while len(out) < limit:
                best = min((i for i, head in enumerate(heads) if head is not None), key=heads.__getitem__,
                           default=None)
                if best is None:
                    break
                cursor, seq = cursors[best], heads[best]
                blob = bytes(cursor.get_value())
                if blob and (ns_filter is None or ns_filter(oplog_namespace(blob))):
                    out.append((seq, bson.decode(blob)))
                scan_high = max(scan_high, seq)
                heads[best] = int(cursor.get_key()) if cursor.next() == 0 else None
        finally:
            for cursor in cursors:
                with contextlib.suppress(Exception):
                    cursor.close()
        return out, scan_high

    return merge


def main(argv: list[str] | None = None) -> int:
    import secantus
    from secantus import cli, storage

    install(storage, secantus.__version__)
    return cli.main(argv)


if __name__ == "__main__":
    sys.exit(main())
