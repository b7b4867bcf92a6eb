"""Starlette app served only on the admin listener, never on the proxy ports."""

from __future__ import annotations

from collections.abc import Callable

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from consentproxy.observability import metrics


def build_admin_app(is_ready: Callable[[], bool], describe: Callable[[], dict[str, object]]) -> Starlette:
    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> Response:
        if is_ready():
            return JSONResponse({"status": "ready", **describe()})
        return JSONResponse({"status": "not ready"}, status_code=503)

    async def metrics_endpoint(request: Request) -> Response:
        body, content_type = metrics.render()
        return PlainTextResponse(body, media_type=content_type)

    return Starlette(routes=[
        Route("/healthz", healthz),
        Route("/readyz", readyz),
        Route("/metrics", metrics_endpoint),
    ])
