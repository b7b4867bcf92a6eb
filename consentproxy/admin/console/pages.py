"""The console's pages: sites, a site's consent rates, notices, exports, consent ids, checkpoints, the audit log.

Each page reads through the admin API's operation for the same data (see
`gate.Visit.api`), so the JSON a program gets from `/api/…` and the page a
person sees are one answer, audited once. Forms that change something are
offered only to full-scope sessions; the operation refuses a read-scope
token anyway (403, audited).
"""

from __future__ import annotations

import difflib
import json
from typing import Any
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from consentproxy.admin.console.gate import Answer, Visit
from consentproxy.admin.console.layout import e, hidden

FORMATS = ("ndjson", "csv", "receipts")
AUDIT_PAGE = 100


def q(value: str) -> str:
    """A path segment: a site or export name in a URL (its characters are safe already; this keeps it so)."""
    return quote(value, safe="")


def site_nav(site: str) -> tuple[tuple[str, str], ...]:
    base = f"/sites/{q(site)}"
    return ((base, f"{site}: consent rates"), (f"{base}/inventory", "Inventory"), (f"{base}/notices", "Notices"),
            (f"{base}/exports", "Exports"), (f"{base}/consents", "Consent ids"), (f"/preview/{q(site)}", "Preview"))


def table(headings: list[str], rows: list[list[str]], caption: str = "") -> str:
    """Cells are HTML already (escape before); headings are escaped here."""
    head = "".join(f'<th scope="col">{e(h)}</th>' for h in headings)
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    cap = f"<caption>{e(caption)}</caption>" if caption else ""
    label = e(caption or "table")
    return (f'<div class="scroll" tabindex="0" role="region" aria-label="{label}"><table>{cap}'
            f'<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>')


def form(action: str, visit: Visit, fields: str, button: str, danger: bool = False) -> str:
    cls = ' class="danger"' if danger else ""
    return (f'<form method="post" action="{e(action)}">{hidden(visit.session.csrf)}{fields}'
            f'<button type="submit"{cls}>{e(button)}</button></form>')


def site_of(visit: Visit) -> str:
    return str(visit.request.path_params["site"])


# -- sites -------------------------------------------------------------------------------------------------


async def overview(visit: Visit) -> Response:
    answer = await visit.api("GET", "/api/sites")
    if not answer.ok:
        return visit.failure(answer)
    rows = []
    for item in answer.data["sites"]:
        site = str(item["site"])
        links = " · ".join(f'<a href="{e(href)}">{e(label.split(": ")[-1])}</a>' for href, label in site_nav(site))
        checkpoint = item["last_checkpoint"]
        rows.append([f'<a href="/sites/{e(q(site))}">{e(site)}</a>', "yes" if item["configured"] else "no (removed)",
                     e(item["events"]), e(checkpoint["time"]) if checkpoint else "none", links])
    body = table(["Site", "Configured", "Events", "Last checkpoint", "Pages"], rows) if rows else \
        "<p>No site is configured or in the consent log.</p>"
    return visit.page("Sites", body)


# -- a site: consent rates and checkpoints -------------------------------------------------------------------------


async def site_page(visit: Visit) -> Response:
    from consentproxy.admin.console.stats import stats_section

    site = site_of(visit)
    checkpoints = await visit.api("GET", "/api/sites/{site}/checkpoints", {"site": site})
    if not checkpoints.ok:
        return visit.failure(checkpoints)
    parts = [await stats_section(visit, site)]
    found = checkpoints.data["checkpoints"]
    parts.append("<h2>Checkpoints</h2>")
    parts.append(table(["Seq", "Kind", "Time", "Key"], [[e(c["seq"]), e(c["kind"]), e(c["time"]), e(c["key_id"])]
                                                       for c in found[-10:]]) if found else "<p>None yet.</p>")
    parts.append(f'<p><a href="/sites/{e(q(site))}/verify">Verify the log\'s chain and signatures</a></p>')
    if visit.may_act:
        parts.append(form(f"/sites/{q(site)}/checkpoint", visit, "", "Sign a checkpoint now"))
    return visit.page(f"{site}: consent rates", "".join(parts), nav=site_nav(site))


async def checkpoint(visit: Visit) -> Response:
    site = site_of(visit)
    answer = await visit.api("POST", "/api/sites/{site}/checkpoints", {"site": site})
    if not answer.ok:
        return visit.failure(answer, "Checkpoint not signed")
    body = (f'<p class="ok" role="status">Signed checkpoint at seq {e(answer.data["seq"])}, head '
            f'<code>{e(answer.data["head"])}</code>.</p><p><a href="/sites/{e(q(site))}">Back to {e(site)}</a></p>')
    return visit.page("Checkpoint signed", body, nav=site_nav(site))


async def verify_log(visit: Visit) -> Response:
    site = site_of(visit)
    answer = await visit.api("GET", "/api/sites/{site}/verify", {"site": site})
    if not answer.ok:
        return visit.failure(answer, "Verification did not run")
    cls = "ok" if answer.data.get("ok") else "error"
    return visit.page(f"{site}: verification", f'<p class="{cls}" role="status">{e(answer.data.get("message", ""))}'
                      f'</p><pre>{e(json.dumps(answer.data, indent=2))}</pre>', nav=site_nav(site))


# -- notices ---------------------------------------------------------------------------------------------------


def _notice_lines(notice: dict[str, Any]) -> list[str]:
    return json.dumps(notice["content"], indent=2, sort_keys=True, ensure_ascii=False).splitlines()


async def notices(visit: Visit) -> Response:
    site = site_of(visit)
    answer = await visit.api("GET", "/api/sites/{site}/notices", {"site": site})
    if not answer.ok:
        return visit.failure(answer)
    found: list[dict[str, Any]] = answer.data["notices"]
    if not found:
        return visit.page(f"{site}: notices", "<p>No notice recorded yet (one is stored with the first decision "
                          "under each revision).</p>", nav=site_nav(site))
    ids = [n["id"] for n in found]
    first, second = visit.request.query_params.get("a"), visit.request.query_params.get("b")
    if first not in ids or second not in ids:
        first, second = ids[max(0, len(ids) - 2)], ids[-1]
    rows = [[e(n["revision"]), e(n["created"]), f"<code>{e(n['id'][:16])}…</code>"] for n in found]
    options_a = "".join(f'<option value="{e(i)}"{" selected" if i == first else ""}>revision {e(n["revision"])} · '
                        f'{e(n["created"])}</option>' for i, n in zip(ids, found, strict=True))
    options_b = options_a.replace(" selected", "").replace(f'value="{e(second)}"', f'value="{e(second)}" selected')
    chooser = ('<form method="get"><label for="a">Compare</label><select id="a" name="a">' + options_a +
               '</select><label for="b">with</label><select id="b" name="b">' + options_b +
               '</select><button type="submit">Show the difference</button></form>')
    old = next(n for n in found if n["id"] == first)
    new = next(n for n in found if n["id"] == second)
    lines = []
    for line in difflib.unified_diff(_notice_lines(old), _notice_lines(new), "older", "newer", n=2, lineterm=""):
        cls = ' class="add"' if line.startswith("+") else ' class="del"' if line.startswith("-") else ""
        lines.append(f"<span{cls}>{e(line)}</span>")
    diff = ("<pre class=\"diff\">" + "\n".join(lines) + "</pre>") if lines else "<p>The two are the same.</p>"
    body = (table(["Revision", "Recorded", "Id"], rows, "Notice versions, oldest first") + chooser +
            f"<h2>Difference</h2>{diff}<h2>Revision {e(new['revision'])} in full</h2>"
            f"<pre>{e(chr(10).join(_notice_lines(new)))}</pre>")
    return visit.page(f"{site}: notices", body, nav=site_nav(site))


# -- exports -------------------------------------------------------------------------------------------------------


async def exports(visit: Visit, note: str = "") -> Response:
    site = site_of(visit)
    answer = await visit.api("GET", "/api/exports")
    if not answer.ok:
        return visit.failure(answer)
    rows = []
    for item in answer.data["exports"]:
        manifest = item["manifest"] or {}
        if manifest.get("site", site) != site or not str(item["name"]).startswith(site[:64] + "-"):
            continue
        name = str(item["name"])
        links = []
        if item["complete"]:
            links += [f'<a href="/exports/{e(q(name))}">download</a>',
                      f'<a href="/exports/{e(q(name))}/manifest">manifest</a>',
                      f'<a href="/exports/{e(q(name))}/verify">verify</a>']
        if visit.may_act:
            links.append(form(f"/exports/{q(name)}/delete", visit, "", "Delete", danger=True))
        rows.append([e(name), e(manifest.get("format", "?")), e(manifest.get("count", "incomplete")),
                     e(item["created"]), " ".join(links)])
    parts = [note]
    parts.append(table(["File", "Format", "Events", "Created", ""], rows) if rows else "<p>No exports yet.</p>")
    if visit.may_act:
        options = "".join(f'<option value="{f}">{f}</option>' for f in FORMATS)
        fields = (f'<label for="format">Format</label><select id="format" name="format">{options}</select>'
                  '<label for="since">Since (UTC date, optional)</label><input type="date" id="since" name="since">'
                  '<label for="until">Until (UTC date, optional)</label><input type="date" id="until" name="until">')
        parts.append("<h2>New signed export</h2>" + form(f"/sites/{q(site)}/exports", visit, fields, "Export"))
    return visit.page(f"{site}: exports", "".join(parts), nav=site_nav(site))


async def create_export(visit: Visit) -> Response:
    site = site_of(visit)
    body = {"format": visit.form.get("format") or "ndjson"}
    body |= {key: visit.form[key] for key in ("since", "until") if visit.form.get(key)}
    answer = await visit.api("POST", "/api/sites/{site}/exports", {"site": site}, body=body)
    if not answer.ok:
        return visit.failure(answer, "Export not made")
    return await exports(visit, f'<p class="ok" role="status">Exported {e(answer.data["manifest"]["count"])} '
                                f'event(s) to {e(answer.data["name"])}.</p>')


def _name(visit: Visit) -> str:
    return str(visit.request.path_params["name"])


async def download(visit: Visit) -> Response:
    answer = await visit.api("GET", "/api/exports/{name}", {"name": _name(visit)})
    return answer.response if answer.ok else visit.failure(answer, "No such export")


async def download_manifest(visit: Visit) -> Response:
    answer = await visit.api("GET", "/api/exports/{name}.manifest.json", {"name": _name(visit)})
    return answer.response if answer.ok else visit.failure(answer, "No such export")


async def verify_export(visit: Visit) -> Response:
    answer = await visit.api("GET", "/api/exports/{name}/verify", {"name": _name(visit)})
    if not answer.ok:
        return visit.failure(answer, "Not verified")
    cls = "ok" if answer.data["ok"] else "error"
    details = "".join(f"<li>{e(d)}</li>" for d in answer.data["details"])
    return visit.page(f"Export {_name(visit)}", f'<p class="{cls}" role="status">{e(answer.data["verdict"])}</p>'
                      f"<ul>{details}</ul>")


async def delete_export(visit: Visit) -> Response:
    answer = await visit.api("DELETE", "/api/exports/{name}", {"name": _name(visit)})
    if not answer.ok:
        return visit.failure(answer, "Export not deleted")
    return visit.page("Export deleted", f'<p class="ok" role="status">Deleted {e(", ".join(answer.data["removed"]))}'
                      '.</p><p><a href="/">Back to the sites</a></p>')


# -- rights requests by consent id -------------------------------------------------------------------------------


def _consent_form(visit: Visit, site: str) -> str:
    field = ('<label for="consent_id">Consent id (the code the banner\'s settings show)</label>'
             '<input type="text" id="consent_id" name="consent_id" autocomplete="off" required>')
    parts = ["<h2>Access</h2>", form(f"/sites/{q(site)}/consents", visit,
                                     field + '<input type="hidden" name="action" value="access">', "Show its records")]
    if visit.may_act:
        erase_field = field.replace('id="consent_id"', 'id="erase_id"').replace('for="consent_id"', 'for="erase_id"')
        parts += ["<h2>Erasure</h2><p>Erases the person's records and ends the consent their cookie carries. "
                  "The chain stays verifiable.</p>",
                  form(f"/sites/{q(site)}/consents", visit, erase_field +
                       '<input type="hidden" name="action" value="erase">', "Erase", danger=True)]
    return "".join(parts)


async def consents(visit: Visit) -> Response:
    site = site_of(visit)
    result = ""
    if visit.request.method == "POST":
        consent_id, action = visit.form.get("consent_id", "").strip(), visit.form.get("action")
        params = {"site": site, "consent_id": consent_id}
        if action == "erase":
            answer = await visit.api("DELETE", "/api/sites/{site}/consents/{consent_id}", params)
            result = _erased(answer)
        else:
            answer = await visit.api("GET", "/api/sites/{site}/consents/{consent_id}", params)
            result = _accessed(answer)
        if not answer.ok:
            return visit.page(f"{site}: consent ids", result + _consent_form(visit, site), status=answer.status,
                              nav=site_nav(site))
    return visit.page(f"{site}: consent ids", result + _consent_form(visit, site), nav=site_nav(site))


def _erased(answer: Answer) -> str:
    if not answer.ok:
        return f'<p class="error" role="alert">{e(answer.message)}</p>'
    return f'<p class="ok" role="status">Erased {e(answer.data["erased"])} event(s).</p>'


def _accessed(answer: Answer) -> str:
    if not answer.ok:
        return f'<p class="error" role="alert">{e(answer.message)}</p>'
    rows = [[e(ev["seq"]), e(ev["time"]), e(ev["event_type"]), e(ev["method"]),
             e(", ".join(c for c, on in ev["choices"].items() if on)), f"<code>{e(ev['notice_id'][:12])}…</code>"]
            for ev in answer.data["events"]]
    if not rows:
        return '<p class="notice" role="status">No records of this consent id (never recorded, or erased).</p>'
    return ("<h2>Records</h2>" + table(["Seq", "Time", "Event", "Method", "Granted", "Notice"], rows) +
            "<p>The same as JSON: <code>GET /api/sites/{site}/consents/{consent_id}</code>.</p>")


# -- the audit log -------------------------------------------------------------------------------------------------


async def audit(visit: Visit) -> Response:
    params = visit.request.query_params
    query = {k: params[k] for k in ("site", "action", "after") if params.get(k)}
    answer = await visit.api("GET", "/api/audit", query=query | {"limit": str(AUDIT_PAGE)})
    if not answer.ok:
        return visit.failure(answer)
    rows = [[e(x["id"]), e(x["time"]), e(x["token"]), e(x["scope"]), e(x["action"]), e(x["site"] or ""),
             f"<code>{e((x['subject'] or '')[:12])}</code>", e(x["status"]), e(x["outcome"])]
            for x in answer.data["entries"]]
    filters = (f'<form method="get"><label for="site">Site</label><input type="text" id="site" name="site" '
               f'value="{e(params.get("site", ""))}"><label for="action">Action</label><input type="text" id="action" '
               f'name="action" value="{e(params.get("action", ""))}"><button type="submit">Filter</button></form>')
    more = ""
    if answer.data.get("next_after"):
        more = f'<p><a href="/audit?{e(_query(query | {"after": str(answer.data["next_after"])}))}">More…</a></p>'
    body = filters + (table(["Id", "Time", "Token", "Scope", "Action", "Site", "Subject", "Status", "Outcome"], rows)
                      if rows else "<p>No entries.</p>") + more
    return visit.page("Audit log", body)


def _query(values: dict[str, str]) -> str:
    from urllib.parse import urlencode

    return urlencode(values)


def redirect_home(request: Request) -> Response:
    return RedirectResponse("/", status_code=303)
