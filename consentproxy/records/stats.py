"""Consent statistics: what each event counts for, the daily rollup that keeps them, and the report.

Every event the store appends adds to `consent_daily` (site, UTC day, category,
outcome, method → count) in the same transaction, so a year of statistics is
a read of a few thousand rollup rows, never a scan of millions of events.
What an event counts for, per category named in its `choices` other than
"necessary" (always on, never a choice):

- `given` and `renewed`: the category counts **given** if its choice is true,
  **refused** if false (a "statistics only" decision is statistics given,
  marketing refused); a renewal is the visitor deciding again after an expiry
  or a new notice, so it counts like any decision;
- `refused`: each category counts as its choice says (all false: refused);
- `withdrawn`: each category counts **withdrawn**;
- `expired`: nothing (no visitor decided anything).

The opt-in rate of a category on a day is given / (given + refused); None
without decisions. The rollup holds no personal data (no principal, address or
time finer than a day), so an erasure leaves it as it is, and a retention purge
of old events leaves their counts: statistics outlive the events they count.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any, Protocol

import orjson

from consentproxy.records.model import NECESSARY

OUTCOMES: tuple[str, ...] = ("given", "refused", "withdrawn")
DAY_MS = 86_400_000
_EPOCH_DAY = date(1970, 1, 1)
_UPSERT = (
    "INSERT INTO consent_daily (site, day, category, outcome, method, count) VALUES (?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (site, day, category, outcome, method) DO UPDATE SET count = consent_daily.count + excluded.count"
)
BACKFILL_PAGE = 5000


class _Tx(Protocol):
    def all(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]: ...

    def many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None: ...


def day_number(day: date) -> int:
    """Days since 1970-01-01: how the rollup keys a UTC day (time_ms // DAY_MS)."""
    return (day - _EPOCH_DAY).days


def day_of(number: int) -> date:
    return _EPOCH_DAY + timedelta(days=number)


def outcomes(event_type: str, choices: Mapping[str, bool]) -> list[tuple[str, str]]:
    """(category, outcome) pairs one event counts for (see the module docstring)."""
    if event_type == "withdrawn":
        return [(category, "withdrawn") for category in choices if category != NECESSARY]
    if event_type in ("given", "renewed", "refused"):
        return [(category, "given" if value else "refused") for category, value in choices.items()
                if category != NECESSARY]
    return []


Key = tuple[str, int, str, str, str]  # site, day, category, outcome, method


def tally(rows: Iterable[tuple[str, int, str, str, Mapping[str, bool]]]) -> dict[Key, int]:
    """Rollup increments of (site, time_ms, event_type, method, choices) rows."""
    counts: dict[Key, int] = {}
    for site, time_ms, event_type, method, choices in rows:
        day = time_ms // DAY_MS
        for category, outcome in outcomes(event_type, choices):
            key = (site, day, category, outcome, method)
            counts[key] = counts.get(key, 0) + 1
    return counts


def add_to_rollup(tx: _Tx, counts: Mapping[Key, int]) -> None:
    if counts:
        tx.many(_UPSERT, [(*key, count) for key, count in sorted(counts.items())])


def backfill(tx: _Tx) -> None:
    """Count the events stored before the rollup existed (run once, by the migration that creates it)."""
    last: tuple[str, int] = ("", 0)
    while True:
        rows = tx.all("SELECT site, seq, time_ms, event_type, method, choices FROM events "
                      "WHERE (site, seq) > (?, ?) ORDER BY site, seq LIMIT ?",  # a row value: the key's index
                      (last[0], last[1], BACKFILL_PAGE))
        add_to_rollup(tx, tally((row[0], int(row[2]), row[3], row[4], orjson.loads(row[5])) for row in rows))
        if len(rows) < BACKFILL_PAGE:
            return
        last = (rows[-1][0], int(rows[-1][1]))


def _rate(given: int, refused: int) -> float | None:
    return round(given / (given + refused), 4) if given + refused else None


@dataclass(slots=True)
class Counts:
    """given/refused/withdrawn of one category (on one day, or over the window), in total and per method."""

    given: int = 0
    refused: int = 0
    withdrawn: int = 0
    methods: dict[str, dict[str, int]] = field(default_factory=dict)  # method -> outcome -> count

    def add(self, outcome: str, method: str, count: int) -> None:
        if outcome == "given":
            self.given += count
        elif outcome == "refused":
            self.refused += count
        else:
            self.withdrawn += count
        per = self.methods.get(method)
        if per is None:
            per = self.methods[method] = {"given": 0, "refused": 0, "withdrawn": 0}
        per[outcome] += count

    @property
    def opt_in_rate(self) -> float | None:
        return _rate(self.given, self.refused)

    def to_dict(self) -> dict[str, Any]:
        return {"given": self.given, "refused": self.refused, "withdrawn": self.withdrawn,
                "opt_in_rate": self.opt_in_rate, "methods": {m: dict(v) for m, v in sorted(self.methods.items())}}


@dataclass(slots=True)
class ConsentStats:
    """A site's statistics for the UTC days since..until (both included); every day is listed, zeros too."""

    site: str
    since: date
    until: date
    categories: list[str]
    days: dict[date, dict[str, Counts]]  # day -> category -> counts
    totals: dict[str, Counts]

    @classmethod
    def from_rows(cls, site: str, since: date, until: date,
                  rows: Iterable[tuple[int, str, str, str, int]]) -> ConsentStats:
        """From rollup rows (day number, category, outcome, method, count)."""
        days: dict[int, dict[str, Counts]] = {}
        totals: dict[str, Counts] = {}
        for number, category, outcome, method, count in rows:
            if outcome not in OUTCOMES:
                continue
            per = days.get(number)
            if per is None:
                per = days[number] = {}
            counts = per.get(category)
            if counts is None:
                counts = per[category] = Counts()
            counts.add(outcome, method, count)
            total = totals.get(category)
            if total is None:
                total = totals[category] = Counts()
            total.add(outcome, method, count)
        categories = sorted(totals)
        every: dict[date, dict[str, Counts]] = {}
        for number in range(day_number(since), day_number(until) + 1):
            found = days.get(number, {})
            every[day_of(number)] = {category: found.get(category) or Counts() for category in categories}
        return cls(site, since, until, categories, every, totals)

    def to_dict(self) -> dict[str, Any]:
        return {
            "site": self.site, "since": self.since.isoformat(), "until": self.until.isoformat(),
            "categories": self.categories,
            "totals": {category: counts.to_dict() for category, counts in self.totals.items()},
            "days": [{"day": day.isoformat(),
                      "categories": {category: counts.to_dict() for category, counts in per.items()}}
                     for day, per in self.days.items()],
        }

    def to_csv(self) -> str:
        """One row per day, category and method; method "all" is the day's total with its opt-in rate."""
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\r\n")
        writer.writerow(["day", "category", "method", "given", "refused", "withdrawn", "opt_in_rate"])
        for day, per in self.days.items():
            for category, counts in per.items():
                rate = counts.opt_in_rate
                writer.writerow([day.isoformat(), category, "all", counts.given, counts.refused, counts.withdrawn,
                                 "" if rate is None else rate])
                for method, values in sorted(counts.methods.items()):
                    method_rate = _rate(values["given"], values["refused"])
                    writer.writerow([day.isoformat(), category, method, values["given"], values["refused"],
                                     values["withdrawn"], "" if method_rate is None else method_rate])
        return out.getvalue()
