"""Short ticket numbers people can read over the phone: ``XQ-20261206-0042``.

``<prefix>-<date>-<sequence>``: the prefix is the community's (its pinyin initials, ``xingqiao`` →
``XQ``, unless :data:`PREFIXES` names another), the date is the day of receipt in Asia/Shanghai (the
platform's time zone for every date people see), the sequence counts that community's tickets of that
day from 1, four digits at least (more once a day passes 9,999).

How numbers are allocated, and why so:

- One counter document per community and day (``ticket_numbers``, ``_id`` ``xingqiao:20261206``). A
  process does not touch it per ticket: it reserves a *block* of :data:`BLOCK` numbers with one atomic
  ``$inc`` (``find_one_and_update``, upsert) and hands them out from memory. A counter updated on every
  create would be the one hot document every create of the community waits on; with blocks it is
  written once per :data:`BLOCK` tickets per process.
- Unique: two reservations never overlap (``$inc`` is atomic), and a ticket number is also held by a
  unique index on the tickets (``by_number``), so a bug cannot hand one out twice silently.
- Gaps are allowed: numbers a process reserved but did not use before it stopped (or before the day
  ended) are never used. The sequence says "about how many that day", not "exactly".
- Short: 16 characters for a community of two initials; a derived sequence from an ordered id
  (an ObjectId, a time stamp) would be unique without a counter but long and unreadable over the phone.

>>> format_number("XQ", date(2026, 12, 6), 42)
'XQ-20261206-0042'
>>> shanghai_day(datetime(2026, 12, 5, 16, 30, tzinfo=UTC))  # 00:30 on the 6th in Beijing time
datetime.date(2026, 12, 6)
>>> prefix_for("xingqiao"), prefix_for("dongcheng"), prefix_for("tiyuchang")
('XQ', 'DC', 'TYC')
>>> NUMBER.fullmatch("XQ-20261206-0042") is not None, NUMBER.fullmatch("3f2a9c") is None
(True, True)
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from datetime import UTC, date, datetime

from nameko.extensions import DependencyProvider
from pymongo import ReturnDocument
from pymongo.collection import Collection
from pymongo.errors import DuplicateKeyError

from services.tickets.calendar import SHANGHAI

COLLECTION = "ticket_numbers"
BLOCK = 10  # numbers one reservation takes: at most this many lost per process and day when it stops
NUMBER = re.compile(r"[A-Z]{1,8}-\d{8}-\d{4,}")
PREFIXES: dict[str, str] = {}  # a community whose initials clash with another's gets its own here

_INITIAL = r"(?:zh|ch|sh|[bpmfdtnlgkhjqxrzcsyw])"
_FINAL = (r"(?:iang|iong|uang|ueng|ang|eng|ing|ong|uai|uan|iao|ian|ai|ei|ao|ou|an|en|in|un|ia|ie|iu"
          r"|ua|uo|ui|ue|ve|er|a|o|e|i|u|v)")
_SYLLABLE = re.compile(rf"{_INITIAL}?{_FINAL}")


def shanghai_day(moment: datetime) -> date:
    """The calendar day of ``moment`` in the platform's time zone."""
    return moment.astimezone(SHANGHAI).date()


def format_number(prefix: str, day: date, sequence: int) -> str:
    return f"{prefix}-{day:%Y%m%d}-{sequence:04d}"


def prefix_for(community: str) -> str:
    """The community's prefix: :data:`PREFIXES`, else the initials of its pinyin code, else its first letters.

    >>> prefix_for("g-7")
    'G'
    """
    if community in PREFIXES:
        return PREFIXES[community]
    code = community.lower()
    syllables = [match.group(0) for match in _SYLLABLE.finditer(code)]
    if syllables and "".join(syllables) == code and len(syllables) <= 8:
        return "".join(syllable[0] for syllable in syllables).upper()
    return re.sub(r"[^A-Za-z]", "", community).upper()[:2] or "T"


class NumberBlocks:
    """Hands out numbers from blocks reserved in ``collection``; one instance per process (thread-safe).

    ``clock`` gives the current UTC time (tests inject one).
    """

    def __init__(self, collection: Collection, block: int = BLOCK,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.collection = collection
        self.block = block
        self.clock = clock
        self._free: dict[str, list[int]] = {}  # counter id -> numbers reserved and not used yet
        self._lock = threading.Lock()

    def next(self, community: str, now: datetime | None = None) -> str:
        """The next number for a ticket of ``community`` received at ``now``."""
        day = shanghai_day(now or self.clock())
        counter = f"{community}:{day:%Y%m%d}"
        with self._lock:
            free = self._free.get(counter)
            if not free:
                free = self._reserve(counter)
                # a new day: yesterday's leftovers are gaps now
                self._free = {key: value for key, value in self._free.items() if key.endswith(counter[-8:])}
                self._free[counter] = free
            sequence = free.pop(0)
        return format_number(prefix_for(community), day, sequence)

    def _reserve(self, counter: str) -> list[int]:
        for _ in range(3):  # two first reservations of a day may race on the upsert: one of them retries
            try:
                document = self.collection.find_one_and_update(
                    {"_id": counter}, {"$inc": {"last": self.block}}, upsert=True,
                    return_document=ReturnDocument.AFTER)
                break
            except DuplicateKeyError:
                continue
        else:
            raise RuntimeError(f"could not reserve ticket numbers for {counter}")
        last = int(document["last"])
        return list(range(last - self.block + 1, last + 1))


class TicketNumbers(DependencyProvider):
    """One :class:`NumberBlocks` per service process, shared by its workers: ``self.numbers.next(coll, c)``."""

    def setup(self) -> None:
        self.blocks: NumberBlocks | None = None

    def get_dependency(self, worker_ctx) -> TicketNumbers:
        return self

    def next(self, collection: Collection, community: str, now: datetime | None = None) -> str:
        if self.blocks is None:
            self.blocks = NumberBlocks(collection)
        return self.blocks.next(community, now)
