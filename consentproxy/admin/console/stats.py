"""A site's consent rates on the console: the period chooser, the SVG chart and the table of counts.

Read through the admin API's `stats` operation (`/api/sites/{site}/stats`),
which reads the consent store's daily rollup (`RecordStore.stats`), so two
instances on one database show the same figures.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from consentproxy.admin.console.chart import DayCounts, count_chart, counts_table, legend, rate_chart
from consentproxy.admin.console.gate import Visit
from consentproxy.admin.console.layout import e
from consentproxy.records.model import utc_ms

PERIODS = (30, 90, 365)


def day_counts(data: dict[str, Any]) -> tuple[list[DayCounts], list[str]]:
    """The API's statistics document as the chart's days, and its categories."""
    days = [DayCounts(date.fromisoformat(d["day"]),
                      {c: int(v["given"]) for c, v in d["categories"].items()},
                      {c: int(v["refused"]) for c, v in d["categories"].items()},
                      {c: int(v["withdrawn"]) for c, v in d["categories"].items()})
            for d in data["days"]]
    return days, [str(c) for c in data["categories"]]


async def stats_section(visit: Visit, site: str) -> str:
    text = visit.request.query_params.get("days", "")
    period = int(text) if text.isdigit() and int(text) in PERIODS else PERIODS[0]
    until = utc_ms().date()
    since = until - timedelta(days=period - 1)
    answer = await visit.api("GET", "/api/sites/{site}/stats", {"site": site},
                             query={"since": since.isoformat(), "until": until.isoformat()})
    if not answer.ok:
        return f'<p class="error" role="alert">{e(answer.message)}</p>'
    days, categories = day_counts(answer.data)
    choose = " · ".join(f"<strong>last {n} days</strong>" if n == period else
                        f'<a href="?days={n}">last {n} days</a>' for n in PERIODS)
    totals = answer.data["totals"]
    summary = "".join(
        f"<li>{e(c)}: {e(totals[c]['given'])} given, {e(totals[c]['refused'])} refused, "
        f"{e(totals[c]['withdrawn'])} withdrawn"
        + (f", opt-in rate {totals[c]['opt_in_rate'] * 100:.1f}%" if totals[c]["opt_in_rate"] is not None else "")
        + "</li>" for c in categories)
    csv_link = (f'/api/sites/{e(site)}/stats?since={since.isoformat()}&amp;until={until.isoformat()}&amp;format=csv')
    return (f"<p>{choose} (UTC days {since.isoformat()} to {until.isoformat()})</p>"
            + (f"<ul>{summary}</ul>" if summary else "<p>No decisions recorded in this period.</p>")
            + legend(categories) + rate_chart(days, categories) + count_chart(days, categories)
            + counts_table(days, categories)
            + f"<p>As data: <code>{csv_link}</code> (JSON without <code>format=csv</code>; bearer token).</p>")
