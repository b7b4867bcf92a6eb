"""Starlette app served only on the admin listener, never on the proxy ports."""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from consentproxy.cookies.inventory import FILENAME, load_inventory, report
from consentproxy.observability import metrics


def build_admin_app(
    is_ready: Callable[[], bool], describe: Callable[[], dict[str, object]], admin: Callable[[], AdminContext]
) -> Starlette:
    """Health and metrics are open (keep the listener private); /api/* needs the admin token."""
    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> Response:
        if is_ready():
            return JSONResponse({"status": "ready", **describe()})
        return JSONResponse({"status": "not ready"}, status_code=503)

    async def metrics_endpoint(request: Request) -> Response:
        body, content_type = metrics.render()
        return PlainTextResponse(body, media_type=content_type)

    async def inventory(request: Request) -> Response:
        context = admin()
        if not context.authorized(request.headers.get("authorization", "")):
            return JSONResponse({"error": "a valid admin token is required (Authorization: Bearer …)"},
                                status_code=401, headers={"WWW-Authenticate": "Bearer"})
        site = request.query_params.get("site") or None
        entries = report(load_inventory(context.data_dir / FILENAME), site)
        return JSONResponse({"site": site, "cookies": [dataclasses.asdict(e) for e in entries]})

    return Starlette(routes=[
        Route("/healthz", healthz),
        Route("/readyz", readyz),
        Route("/metrics", metrics_endpoint),
        Route("/api/inventory", inventory),
    ])


@dataclass(frozen=True, slots=True)
class AdminContext:
    """What the admin API needs from the running configuration."""

    data_dir: Path
    token_digest: bytes | None  # SHA-256 of the admin token; None: the API is closed

    def authorized(self, header: str) -> bool:
        scheme, _, token = header.partition(" ")
        if self.token_digest is None or scheme.lower() != "bearer" or not token.strip():
            return False
        presented = hashlib.sha256(token.strip().encode()).digest()
        return hmac.compare_digest(presented, self.token_digest)
