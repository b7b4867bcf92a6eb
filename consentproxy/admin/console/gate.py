"""The console's gate: who is signed in, which POSTs are genuine, and the bridge to the admin API's operations.

Every console page reads and acts through `Console.api`, which runs the admin
API's own operation (its handler, scope check and audit entry, `api.perform`)
under the signed-in token: the console can do nothing the API would not, and
nothing it does escapes the audit log.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode

import orjson
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.types import Message

from consentproxy.admin.api import AdminStore, Call, perform
from consentproxy.admin.api import operation as find_operation
from consentproxy.admin.auth import AdminContext
from consentproxy.admin.console import session as sessions
from consentproxy.admin.console.layout import e, page

logger = logging.getLogger("consentproxy.admin")
FORM_LIMIT = 8192  # a console form is a few short fields


@dataclass(frozen=True, slots=True)
class Answer:
    """What an API operation answered: its status and, for JSON, the document."""

    status: int
    data: dict[str, Any]
    response: Response

    @property
    def ok(self) -> bool:
        return self.status < 400

    @property
    def message(self) -> str:
        return str(self.data.get("message") or self.data.get("error") or f"status {self.status}")


@dataclass(slots=True)
class Visit:
    """One signed-in request to the console."""

    request: Request
    context: AdminContext
    store: AdminStore
    session: sessions.Session
    form: dict[str, str]

    @property
    def may_act(self) -> bool:
        return self.session.token.allows("full")

    def page(self, title: str, body: str, status: int = 200, nav: tuple[tuple[str, str], ...] = ()) -> Response:
        token = self.session.token
        return page(title, body, who=f"{token.name} ({token.scope} scope)", csrf=self.session.csrf, status=status,
                    nav=nav)

    def failure(self, answer: Answer, title: str = "Not done") -> Response:
        return self.page(title, f'<p class="error" role="alert">{e(answer.message)}</p>', status=answer.status)

    async def api(self, method: str, path: str, path_params: dict[str, str] | None = None,
                  query: dict[str, str] | None = None, body: dict[str, Any] | None = None) -> Answer:
        """Run the API operation `method path` as the signed-in token, exactly as a bearer call would."""
        operation = find_operation(method, path)
        scope = dict(self.request.scope)
        payload = orjson.dumps(body) if body is not None else b""
        scope.update(method=method, path=path, path_params=path_params or {},
                     query_string=urlencode(query or {}).encode("ascii"),
                     headers=[(k, v) for k, v in self.request.scope["headers"]
                              if k not in (b"content-length", b"content-type", b"cookie")])

        async def receive() -> Message:
            return {"type": "http.request", "body": payload, "more_body": False}

        call = Call(Request(scope, receive), self.context, self.store, self.session.token, operation)
        response = await perform(call)
        data: dict[str, Any] = {}
        if response.media_type == "application/json" and hasattr(response, "body"):
            parsed = orjson.loads(bytes(response.body))
            data = parsed if isinstance(parsed, dict) else {}
        return Answer(response.status_code, data, response)


ConsolePage = Callable[[Visit], Awaitable[Response]]


async def read_form(request: Request) -> dict[str, str] | None:
    """A url-encoded form of at most FORM_LIMIT bytes, as text fields; None when too large or not a form."""
    if request.method != "POST":
        return {}
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > FORM_LIMIT:
            return None
    if not request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        return {} if not body else None
    try:
        return dict(parse_qsl(body.decode("utf-8"), keep_blank_values=True))
    except UnicodeDecodeError:
        return None


def refused(status: int, message: str) -> Response:
    return page("Refused", f'<p class="error" role="alert">{e(message)}</p><p><a href="/">Sign in</a></p>',
                status=status)


def signed_in(handler: ConsolePage, context_of: Callable[[], AdminContext],
              store: AdminStore) -> Callable[[Request], Awaitable[Response]]:
    """A console page: no valid session, no page (GET goes to the sign-in; anything else is 401); a POST
    must come from the console's own origin and carry the session's form token (403 otherwise)."""
    async def endpoint(request: Request) -> Response:
        context = context_of()
        session = sessions.read(context, request.cookies.get(sessions.COOKIE))
        if session is None:
            if request.method in ("GET", "HEAD"):
                return RedirectResponse("/", status_code=303)
            return refused(401, "Sign in first: this console page needs a valid session.")
        form = await read_form(request)
        if form is None:
            return refused(400, "The form could not be read.")
        if request.method == "POST":
            if not sessions.same_origin(request):
                logger.warning("console: %s %s refused: not from the console's own origin", request.method,
                               request.url.path)
                return refused(403, "Refused: this form was not sent from the console's own pages.")
            if not sessions.constant_equal(form.get("csrf", ""), session.csrf):
                logger.warning("console: %s %s refused: bad form token", request.method, request.url.path)
                return refused(403, "Refused: the form's token is missing or stale; reload the page and try again.")
        return await handler(Visit(request, context, store, session, form))

    return endpoint
