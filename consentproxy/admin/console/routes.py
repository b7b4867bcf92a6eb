"""The console's routes on the admin listener: the sign-in at `/`, sign-out, its stylesheet and its pages.

`/` answers programs (no `text/html` in Accept) with the listener's JSON
index, browsers with the sign-in page or, once signed in, the sites overview.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Mount, Route

from consentproxy.admin import index as listener_index
from consentproxy.admin.api import AdminStore
from consentproxy.admin.auth import AdminContext
from consentproxy.admin.console import inventory, pages, preview
from consentproxy.admin.console import session as sessions
from consentproxy.admin.console.gate import ConsolePage, Visit, read_form, refused, signed_in
from consentproxy.admin.console.layout import CSS, CSS_PATH, e, page

logger = logging.getLogger("consentproxy.admin")


def sign_in_page(status: int = 200, problem: str = "") -> Response:
    alert = f'<p class="error" role="alert">{e(problem)}</p>' if problem else ""
    body = (f"{alert}<p>Sign in with an admin token: <code>[secrets] admin_token</code> (full scope) or a "
            "<code>[[server.admin_tokens]]</code> token (<code>consentproxy keys token</code>). A read-scope "
            "token sees everything; a full-scope token may also act (erasure, checkpoints, exports).</p>"
            '<form method="post" action="/signin"><label for="token">Admin token</label>'
            '<input type="password" id="token" name="token" autocomplete="current-password" required>'
            '<button type="submit">Sign in</button></form>'
            f"<h2>This listener</h2>{listener_index.index_sections()}")
    return page("Sign in to the consentproxy console", body, status=status)


def console_routes(context_of: Callable[[], AdminContext], store: AdminStore) -> tuple[Route, Mount]:
    """`/` (documented in the OpenAPI file with the open endpoints), and the console's pages, mounted after
    the API so that no page path can shadow an API route."""
    def gated(handler: ConsolePage) -> Callable[[Request], Awaitable[Response]]:
        return signed_in(handler, context_of, store)

    overview = gated(pages.overview)

    async def root(request: Request) -> Response:
        if "text/html" not in request.headers.get("accept", ""):
            return await listener_index.index(request)
        if sessions.read(context_of(), request.cookies.get(sessions.COOKIE)) is None:
            return sign_in_page()
        return await overview(request)

    async def sign_in(request: Request) -> Response:
        if not sessions.same_origin(request):
            return refused(403, "Refused: the sign-in was not sent from the console's own page.")
        form = await read_form(request)
        context = context_of()
        token = context.identify(f"Bearer {(form or {}).get('token', '').strip()}")
        if token is None:
            client = request.client.host if request.client else "-"
            logger.warning("console: sign-in from %s refused: unknown token", client)
            return sign_in_page(401, "That is not a valid admin token.")
        logger.info("console: token %r signed in", token.name)
        response = RedirectResponse("/", status_code=303)
        response.headers["Set-Cookie"] = sessions.cookie_header(sessions.issue(context, token), request)
        return response

    async def sign_out(visit: Visit) -> Response:
        response = RedirectResponse("/", status_code=303)
        response.headers["Set-Cookie"] = sessions.cookie_header("", visit.request, max_age=0)
        return response

    async def stylesheet(request: Request) -> Response:
        return Response(CSS, media_type="text/css; charset=utf-8",
                        headers={"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"})

    site = "/sites/{site}"
    return Route("/", root, methods=["GET"]), Mount("", routes=[
        Route("/signin", sign_in, methods=["POST"]),
        Route("/signout", gated(sign_out), methods=["POST"]),
        Route(CSS_PATH, stylesheet, methods=["GET"]),
        Route("/audit", gated(pages.audit), methods=["GET"]),
        Route(site, gated(pages.site_page), methods=["GET"]),
        Route(f"{site}/verify", gated(pages.verify_log), methods=["GET"]),
        Route(f"{site}/checkpoint", gated(pages.checkpoint), methods=["POST"]),
        Route(f"{site}/inventory", gated(inventory.inventory), methods=["GET"]),
        Route(f"{site}/notices", gated(pages.notices), methods=["GET"]),
        Route(f"{site}/exports", gated(pages.exports), methods=["GET"]),
        Route(f"{site}/exports", gated(pages.create_export), methods=["POST"]),
        Route(f"{site}/consents", gated(pages.consents), methods=["GET", "POST"]),
        Route("/exports/{name}", gated(pages.download), methods=["GET"]),
        Route("/exports/{name}/manifest", gated(pages.download_manifest), methods=["GET"]),
        Route("/exports/{name}/verify", gated(pages.verify_export), methods=["GET"]),
        Route("/exports/{name}/delete", gated(pages.delete_export), methods=["POST"]),
        Route("/preview/{site}", gated(preview.preview), methods=["GET"]),
        Route("/preview/{site}/frame/{lang}/{layer}", gated(preview.frame), methods=["GET"]),
    ])
