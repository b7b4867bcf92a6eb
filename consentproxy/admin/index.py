"""What the admin listener offers, for people: `GET /` lists it, and `serve` and the demo print it at start.

A bare 404 at the listener's root told an operator nothing; the index names
every endpoint (the API ones with their scope) and where the token comes
from, without revealing any token. JSON for programs; browsers get the
console's sign-in page, which shows the same list.
"""

from __future__ import annotations

import html

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from consentproxy.admin.api import OPERATIONS
from consentproxy.config.model import Config, ListenAddress

#: the open endpoints (no token; keep the listener on a private address)
OPEN_ENDPOINTS: tuple[tuple[str, str], ...] = (
    ("/healthz", "liveness: 200 while the process runs"),
    ("/readyz", "readiness: 200 with the sites once serving, else 503"),
    ("/metrics", "Prometheus metrics"),
)
API_DOCS = "docs/admin-api.yaml (OpenAPI 3.1) in the consentproxy source"


def admin_base(address: ListenAddress) -> str:
    """The URL a person on this machine opens: wildcard addresses become loopback, IPv6 gets brackets."""
    host = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1"}.get(address.host, address.host)
    return f"http://[{host}]:{address.port}" if ":" in host else f"http://{host}:{address.port}"


def token_location(config: Config) -> str:
    """Where `[secrets] admin_token` is kept (never the token itself)."""
    ref = config.secrets.admin_token
    if ref is None:
        return "no admin token configured: set [secrets] admin_token (consentproxy keys generate writes one)"
    if ref.startswith("env:"):
        return f"the admin token is in the environment variable {ref[4:]}"
    return f"the admin token is in {ref.removeprefix('file:')}"


def admin_summary(config: Config) -> str:
    """Lines for the terminal at start: the listener's URLs and where the token is."""
    admin = config.server.admin_listen
    if admin is None:
        return ("consentproxy: no admin listener (health, metrics, admin API): set [server] admin_listen, "
                "or --admin-listen for the quick start")
    base = admin_base(admin)
    return "\n".join([
        f"consentproxy admin listener {base}/  (keep it private; its index lists every endpoint)",
        f"  console      {base}/  (in a browser: sign in with an admin token; {token_location(config)})",
        f"  admin API    {base}/api/sites  (Authorization: Bearer TOKEN; {token_location(config)})",
        f"  metrics      {base}/metrics",
        f"  health       {base}/healthz  {base}/readyz",
    ])


def index_document() -> dict[str, object]:
    """The endpoints as data: the open ones, then every API operation with the scope it needs."""
    return {
        "service": "consentproxy admin listener",
        "endpoints": [{"path": path, "auth": "none", "about": about} for path, about in OPEN_ENDPOINTS],
        "api": [{"method": op.method, "path": op.path, "scope": op.scope} for op in OPERATIONS],
        "auth": "API calls need 'Authorization: Bearer TOKEN': [secrets] admin_token (full scope) or a "
                "[[server.admin_tokens]] token (consentproxy keys token)",
        "api_description": API_DOCS,
    }


def index_sections() -> str:
    """The endpoints as HTML sections (the console's sign-in page shows them too)."""
    document = index_document()
    rows = "".join(f"<li><a href=\"{html.escape(path)}\">{html.escape(path)}</a> — {html.escape(about)}</li>"
                   for path, about in OPEN_ENDPOINTS)
    api = "".join(f"<li><code>{op.method} {html.escape(op.path)}</code> (scope {op.scope})</li>"
                  for op in OPERATIONS)
    return (f"<h2>Open endpoints</h2><ul>{rows}</ul>"
            f"<h2>Admin API</h2><p>{html.escape(str(document['auth']))}. Described in {html.escape(API_DOCS)}.</p>"
            f"<ul>{api}</ul>")


async def index(request: Request) -> Response:
    """`GET /` for programs: the endpoints as JSON (browsers get the console's sign-in, which lists them too)."""
    return JSONResponse(index_document())
