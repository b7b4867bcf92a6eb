"""The console's page frame, its one stylesheet and the headers every page carries.

Server-rendered HTML without script: the policy allows only the console's own
stylesheet and frames (the banner preview), so even a text that escaped
escaping could run nothing. Every text from the configuration or the log is
escaped with `e` before it is put in a page.
"""

from __future__ import annotations

import html
from collections.abc import Iterable

from starlette.responses import HTMLResponse, Response

CSS_PATH = "/console.css"
CSP = ("default-src 'none'; style-src 'self'; img-src 'self' data:; frame-src 'self'; form-action 'self'; "
       "frame-ancestors 'none'; base-uri 'none'")

CSS = """
*{box-sizing:border-box}
body{margin:0;font:16px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1a1a1a;background:#f6f7f9}
header{background:#12304f;color:#fff;padding:.5rem 1rem;display:flex;flex-wrap:wrap;gap:.5rem 1rem;align-items:center}
header a,header button{color:#fff}
header .who{margin-left:auto;font-size:.875rem}
header form{display:inline}
nav ul{list-style:none;margin:0;padding:0;display:flex;flex-wrap:wrap;gap:.25rem 1rem}
main{padding:1rem;max-width:72rem;margin:0 auto}
h1{font-size:1.5rem;margin:.5rem 0 1rem}
h2{font-size:1.2rem;margin:1.5rem 0 .5rem}
a{color:#1d4ed8}
table{border-collapse:collapse;width:100%;background:#fff;font-size:.875rem}
th,td{border:1px solid #d0d5dd;padding:.3rem .5rem;text-align:left;vertical-align:top}
caption{text-align:left;font-weight:600;padding:.25rem 0}
.scroll{overflow-x:auto;max-width:100%}
code,pre{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:.85rem}
pre{background:#fff;border:1px solid #d0d5dd;padding:.5rem;overflow-x:auto;white-space:pre-wrap;word-break:break-word}
form.inline{display:inline}
label{display:block;font-weight:600;margin:.5rem 0 .25rem}
input[type=text],input[type=password],input[type=date],select{font:inherit;padding:.4rem;width:100%;max-width:28rem;
border:1px solid #6b7280;border-radius:4px}
button{font:inherit;padding:.4rem .9rem;border-radius:4px;border:1px solid #12304f;background:#12304f;color:#fff;
cursor:pointer;margin:.5rem .5rem .5rem 0}
button.danger{background:#b91c1c;border-color:#b91c1c}
header button{background:transparent;border-color:#fff;padding:.2rem .6rem;margin:0}
.notice{background:#fff8e1;border:1px solid #b45309;padding:.5rem 1rem;border-radius:4px}
.error{background:#fdecea;border:1px solid #b91c1c;padding:.5rem 1rem;border-radius:4px}
.ok{background:#e7f6ec;border:1px solid #047857;padding:.5rem 1rem;border-radius:4px}
.chart{width:100%;height:auto;background:#fff;border:1px solid #d0d5dd}
.chart text{font-size:14px;fill:#374151}
.chart .grid{stroke:#e5e7eb}
.legend{list-style:none;padding:0;display:flex;flex-wrap:wrap;gap:1rem}
.filters{display:flex;flex-wrap:wrap;gap:.25rem 1rem;padding:0;list-style:none}
.diff .add{background:#e7f6ec}.diff .del{background:#fdecea}
.frames{display:flex;flex-wrap:wrap;gap:1rem;align-items:flex-start}
.frames figure{margin:0;max-width:100%}
.frames iframe{border:1px solid #6b7280;background:#fff;height:640px;max-width:100%}
.frames .desktop{width:1280px}.frames .mobile{width:390px}
@media (max-width:600px){main{padding:.5rem}h1{font-size:1.25rem}}
"""


def e(value: object) -> str:
    """Any value as HTML text or attribute content."""
    return html.escape(str(value), quote=True)


def headers(framable: bool = False) -> dict[str, str]:
    """No caching of pages that show personal data; framable only by the console itself (the preview).

    Referrer-Policy same-origin, not no-referrer: under no-referrer a browser sends `Origin: null` with the
    console's own form posts, and the origin check would refuse them."""
    csp = CSP.replace("frame-ancestors 'none'", "frame-ancestors 'self'") if framable else CSP
    return {"Content-Security-Policy": csp, "Cache-Control": "no-store", "Referrer-Policy": "same-origin",
            "X-Content-Type-Options": "nosniff", "X-Frame-Options": "SAMEORIGIN" if framable else "DENY"}


def hidden(csrf: str) -> str:
    return f'<input type="hidden" name="csrf" value="{e(csrf)}">'


def page(title: str, body: str, *, who: str | None = None, csrf: str = "", status: int = 200,
         nav: Iterable[tuple[str, str]] = ()) -> Response:
    """A whole console page: the header (the signed-in token and sign-out), the navigation, then `body`."""
    links = "".join(f'<li><a href="{e(href)}">{e(label)}</a></li>' for href, label in
                    [("/", "Sites"), ("/audit", "Audit log"), *nav])
    header = '<header><a href="/"><strong>consentproxy</strong></a>'
    if who is not None:
        header += (f'<nav aria-label="Console"><ul>{links}</ul></nav><span class="who">{e(who)} '
                   f'<form class="inline" method="post" action="/signout">{hidden(csrf)}'
                   '<button type="submit">Sign out</button></form></span>')
    header += "</header>"
    document = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<title>{e(title)} · consentproxy</title><link rel="stylesheet" href="{CSS_PATH}"></head>'
        f"<body>{header}<main><h1>{e(title)}</h1>{body}</main></body></html>"
    )
    return HTMLResponse(document, status_code=status, headers=headers())
