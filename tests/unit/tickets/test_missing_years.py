"""The missing-year warning against a calendar read that a PUT overtook (no broker, no database).

The timer of the tickets service reads the calendar while an admin's PUT loads the year it lacked;
the stale read must neither be kept for the next ticks nor raise the warning the PUT cleared.
"""

from __future__ import annotations

from services.tickets.calendar import YearCalendar
from services.tickets.catalogue import shipped_catalogue
from services.tickets.sla import CALENDAR_MISSING, CALENDARS, CalendarCache, MissingYears

YEAR = 2026
CATALOGUE = shipped_catalogue()


class Calendars:
    """The ``calendars`` collection of one database as CalendarStore reads it; ``while_reading`` runs mid-read."""

    def __init__(self, years: list[int]) -> None:
        self.years = years
        self.while_reading = lambda: None

    def find(self, _query: dict) -> list[dict]:
        documents = [{"_id": year, **YearCalendar.load(year).to_dict()} for year in self.years]
        self.while_reading()
        return documents


class Database:
    name = "huisheng_tickets_unit"

    def __init__(self, calendars: Calendars) -> None:
        self.calendars = calendars

    def __getitem__(self, collection: str) -> Calendars:
        assert collection == CALENDARS
        return self.calendars


def gauge() -> float:
    return CALENDAR_MISSING.labels(year=str(YEAR))._value.get()


def put_while_reading(cache: CalendarCache, missing: MissingYears, calendars: Calendars) -> None:
    """What the service's put_calendar does, run while the cache is in the middle of a read."""
    def put() -> None:
        calendars.years = [YEAR]
        cache.forget(db)
        missing.loaded(YEAR)
        calendars.while_reading = lambda: None
    db = Database(calendars)
    calendars.while_reading = put


def test_a_read_overtaken_by_a_put_is_neither_kept_nor_raises_the_cleared_warning():
    missing = MissingYears()
    cache = CalendarCache(missing)
    calendars = Calendars(years=[])
    db = Database(calendars)

    before = cache.get(db, CATALOGUE)
    assert missing.report(before, [YEAR], read_at=cache.read_at(before)) == [YEAR] and gauge() == 1

    cache.forget(db)  # the service forgets on a PUT; here the PUT lands while the next read is under way
    put_while_reading(cache, missing, calendars)
    stale = cache.get(db, CATALOGUE)
    assert not stale.has_year(YEAR) and gauge() == 0
    assert missing.report(stale, [YEAR], read_at=cache.read_at(stale)) == [] and gauge() == 0

    current = cache.get(db, CATALOGUE)
    assert current is not stale and current.has_year(YEAR)
    assert cache.get(db, CATALOGUE) is current  # the current read is kept
    assert missing.report(current, [YEAR], read_at=cache.read_at(current)) == [] and gauge() == 0


def test_a_year_still_missing_after_a_load_of_another_is_warned():
    missing = MissingYears()
    cache = CalendarCache(missing)
    calendar = cache.get(Database(Calendars(years=[])), CATALOGUE)
    missing.loaded(YEAR + 1)
    assert missing.report(calendar, [YEAR], read_at=cache.read_at(calendar)) == [YEAR] and gauge() == 1
    missing.loaded(YEAR)
    assert gauge() == 0
