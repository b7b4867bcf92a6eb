"""A site's inventory on the console: cookies and third-party hosts, unknown and before-consent ones first.

Read through the admin API's `site_inventory` operation (the consent store's
inventory, shared by every instance). For an unknown first-party cookie the
page shows the TOML that declares it (`inventory.advice.declaration_toml`).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from starlette.responses import Response

from consentproxy.admin.console.gate import Visit
from consentproxy.admin.console.layout import e
from consentproxy.admin.console.pages import site_nav, site_of, table
from consentproxy.inventory.advice import declaration_toml
from consentproxy.inventory.listing import from_item
from consentproxy.inventory.model import Sighting

FILTERS = (("", "Everything"), ("unknown", "Unknown"), ("before", "Seen before consent"))


def declaration(sighting: Sighting) -> str | None:
    """The TOML that declares an unknown first-party cookie or an unknown host; None for anything else."""
    if sighting.source != "unknown" or (sighting.kind == "cookie" and sighting.details.get("third_party")):
        return None
    return declaration_toml(sighting)


def _when(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M") if ms else ""


def _keep(item: dict[str, Any], shown: str, category: str) -> bool:
    if shown == "unknown" and item["source"] != "unknown":
        return False
    if shown == "before" and not item["before_consent"]:
        return False
    return not category or item["category"] == category


async def inventory(visit: Visit) -> Response:
    site = site_of(visit)
    params = visit.request.query_params
    kind = params.get("kind", "")
    query = {"kind": kind} if kind in ("cookie", "host", "vendor") else {}
    answer = await visit.api("GET", "/api/sites/{site}/inventory", {"site": site}, query=query)
    if not answer.ok:
        return visit.failure(answer)
    items: list[dict[str, Any]] = answer.data["items"]
    shown, category = params.get("show", ""), params.get("category", "")
    categories = sorted({str(i["category"]) for i in items if i["category"]})

    def link(label: str, **values: str) -> str:
        now = {"show": shown, "category": category, "kind": kind}
        href = "?" + urlencode({k: v for k, v in (now | values).items() if v})
        current = ' aria-current="true"' if all(now[k] == v for k, v in values.items()) else ""
        return f'<li><a href="{e(href)}"{current}>{e(label)}</a></li>'

    filters = ('<ul class="filters" aria-label="Show">' + "".join(link(label, show=v) for v, label in FILTERS)
               + link("Cookies", kind="cookie") + link("Hosts", kind="host") + link("Cookies and hosts", kind="")
               + link("Any category", category="") + "".join(link(c, category=c) for c in categories) + "</ul>")
    rows, declarations = [], []
    for item in items:
        if not _keep(item, shown, category):
            continue
        sighting = from_item(item)
        rows.append([e(item["kind"]), f"<code>{e(item['name'])}</code>", e(item["set_by"]), e(item["category"]),
                     e(item["source"]), e(item["service"]), e(item["count"]), e(item["before_consent"]),
                     e(item["blocked"]), e(_when(sighting.first_seen_ms)), e(_when(sighting.last_seen_ms))])
        toml = declaration(sighting)
        if toml is not None:
            declarations.append(f"<h3><code>{e(item['name'])}</code></h3><pre>{e(toml)}</pre>")
    body = filters + (table(["Kind", "Name", "Set by", "Category", "Classified by", "Service", "Seen",
                             "Before consent", "Blocked", "First seen (UTC)", "Last seen (UTC)"], rows)
                      if rows else "<p>Nothing seen that matches.</p>")
    if declarations:
        body += ("<h2>Declare what is unknown</h2><p>The proxy blocks an unknown first-party cookie: if it is "
                 "the site's own (a login, cart or session cookie), declare it. An unknown host is a service "
                 "to declare with its category (or a functional host the site needs). Check the category, "
                 "add the lines to the site's configuration and reload:</p>" + "".join(declarations))
    return visit.page(f"{site}: inventory", body, nav=site_nav(site))
