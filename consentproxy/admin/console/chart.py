"""The console's consent chart: SVG drawn on the server, no script, readable at a phone's width.

Two panels share the days on the x axis: the opt-in rate per optional
category (given / (given + refused), a point for every day with decisions)
and the number of decisions per day per category. The numbers themselves
are in a table next to it (`counts_table`), for screen readers and for
anyone who wants them exactly.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from datetime import date

WIDTH, HEIGHT = 720, 220
LEFT, RIGHT, TOP, BOTTOM = 48, 12, 14, 26
#: one colour per optional category, each with at least 4.5:1 contrast on white
COLOURS = {"preferences": "#1d4ed8", "statistics": "#047857", "marketing": "#b91c1c"}
_FALLBACK = "#6b21a8"


@dataclass(frozen=True, slots=True)
class DayCounts:
    """One UTC day of one site: per category, how many decisions gave, refused and withdrew it."""

    day: date
    given: dict[str, int] = field(default_factory=dict)
    refused: dict[str, int] = field(default_factory=dict)
    withdrawn: dict[str, int] = field(default_factory=dict)

    def decisions(self, category: str) -> int:
        return self.given.get(category, 0) + self.refused.get(category, 0)

    def rate(self, category: str) -> float | None:
        """The opt-in rate, 0..1; None on a day without decisions on the category."""
        total = self.decisions(category)
        return self.given.get(category, 0) / total if total else None


def _x(index: int, days: int) -> float:
    span = WIDTH - LEFT - RIGHT
    return LEFT + (span * index / (days - 1) if days > 1 else span / 2)


def _y(value: float, top: float) -> float:
    return TOP + (HEIGHT - TOP - BOTTOM) * (1 - value / top if top else 1)


def _frame(title: str, labels: list[tuple[float, str]], days: list[date]) -> list[str]:
    e = html.escape
    parts = [f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{e(title)}" '
             f'xmlns="http://www.w3.org/2000/svg"><title>{e(title)}</title>']
    for y, label in labels:
        parts.append(f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>'
                     f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{e(label)}</text>')
    if days:
        last = len(days) - 1
        for index in sorted({0, len(days) // 2, last}):
            anchor = "start" if index == 0 and last else "end" if index == last and last else "middle"
            parts.append(f'<text x="{_x(index, len(days)):.1f}" y="{HEIGHT - 6}" text-anchor="{anchor}">'
                         f"{days[index].isoformat()}</text>")
    return parts


def _series(category: str, points: list[tuple[float, float]]) -> str:
    colour = COLOURS.get(category, _FALLBACK)
    coords = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
    dots = "".join(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="2.5" fill="{colour}"/>' for x, y in points)
    return (f'<g data-category="{html.escape(category)}"><polyline points="{coords}" fill="none" '
            f'stroke="{colour}" stroke-width="2"/>{dots}</g>')


def rate_chart(days: list[DayCounts], categories: list[str]) -> str:
    """The opt-in rate per category: a point for each day with decisions on it."""
    dates = [d.day for d in days]
    parts = _frame("Opt-in rate per category and day", [(_y(v, 1), f"{int(v * 100)}%") for v in (0, 0.5, 1)],
                   dates)
    for category in categories:
        points = [(_x(i, len(days)), _y(rate, 1)) for i, d in enumerate(days)
                  if (rate := d.rate(category)) is not None]
        parts.append(_series(category, points))
    return "".join(parts) + "</svg>"


def count_chart(days: list[DayCounts], categories: list[str]) -> str:
    """The number of decisions per category and day (a point for every day, zero included)."""
    top = max([d.decisions(c) for d in days for c in categories] + [1])
    parts = _frame("Decisions per category and day", [(_y(v, top), str(v)) for v in (0, top // 2, top)],
                   [d.day for d in days])
    for category in categories:
        parts.append(_series(category, [(_x(i, len(days)), _y(d.decisions(category), top))
                                        for i, d in enumerate(days)]))
    return "".join(parts) + "</svg>"


def legend(categories: list[str]) -> str:
    return '<ul class="legend">' + "".join(
        f'<li><svg width="14" height="14" aria-hidden="true"><rect width="14" height="14" '
        f'fill="{COLOURS.get(c, _FALLBACK)}"/></svg> {html.escape(c)}</li>'
        for c in categories) + "</ul>"


def counts_table(days: list[DayCounts], categories: list[str]) -> str:
    """Every day with decisions, newest first: given / refused / withdrawn and the rate, per category."""
    e = html.escape
    head = "".join(f'<th scope="col">{e(c)}</th>' for c in categories)
    rows = []
    for d in reversed(days):
        if not any(d.decisions(c) or d.withdrawn.get(c) for c in categories):
            continue
        cells = []
        for c in categories:
            rate = d.rate(c)
            shown = "n/a" if rate is None else f"{rate * 100:.0f}%"
            cells.append(f"<td>{d.given.get(c, 0)} / {d.refused.get(c, 0)} / {d.withdrawn.get(c, 0)} "
                         f"({shown})</td>")
        rows.append(f'<tr><th scope="row">{d.day.isoformat()}</th>{"".join(cells)}</tr>')
    if not rows:
        return "<p>No decisions in this period.</p>"
    return ('<div class="scroll" tabindex="0" role="region" aria-label="Counts per day"><table>'
            "<caption>Given / refused / withdrawn (opt-in rate) per day</caption>"
            f'<thead><tr><th scope="col">Day (UTC)</th>{head}</tr></thead><tbody>{"".join(rows)}</tbody>'
            "</table></div>")
