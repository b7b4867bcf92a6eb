"""Starlette app served only on the admin listener, never on the proxy ports."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from consentproxy.admin.api import AdminStore, api_routes, error_response
from consentproxy.admin.auth import AdminContext as AdminContext  # re-exported: runtime builds it from here
from consentproxy.admin.console.routes import console_routes
from consentproxy.cancellation import is_client_gone
from consentproxy.observability import metrics


class AdminApp(Starlette):
    """Starlette, but a client leaving mid-answer (an export read halfway) ends the request quietly.

    The server protocol cancels a request's task when its client goes away;
    that is no error of the app, so it is absorbed here rather than logged
    as one.
    """

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        except asyncio.CancelledError as exc:
            if not is_client_gone(exc):
                raise
            current = asyncio.current_task()
            if current is not None:
                current.uncancel()


def build_admin_app(
    is_ready: Callable[[], bool], describe: Callable[[], dict[str, object]], admin: Callable[[], AdminContext],
    store: AdminStore,
) -> AdminApp:
    """Health, metrics and the index at / are open (keep the listener private); /api/* needs an admin token,
    the console's pages a session signed in with one."""
    root, console = console_routes(admin, store)
    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> Response:
        if is_ready():
            return JSONResponse({"status": "ready", **describe()})
        return JSONResponse({"status": "not ready"}, status_code=503)

    async def metrics_endpoint(request: Request) -> Response:
        body, content_type = metrics.render()
        return PlainTextResponse(body, media_type=content_type)

    async def http_error(request: Request, exc: Exception) -> Response:
        """Unknown paths and methods answer in the API's JSON error shape too."""
        assert isinstance(exc, HTTPException)
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return error_response(exc.status_code, code, str(exc.detail), dict(exc.headers or {}))

    return AdminApp(
        routes=[
            root,
            Route("/healthz", healthz),
            Route("/readyz", readyz),
            Route("/metrics", metrics_endpoint),
            *api_routes(admin, store),
            console,
        ],
        exception_handlers={HTTPException: http_error},
    )
