"""The demo website "Kade IT-diensten", in Dutch (`/`) and English (`/en/`).

It is the typical small-business site whose practice does not match its
privacy statement: the statement promises cookies for statistics only, while
the server sets a marketing cookie (HttpOnly, so out of reach of any
JavaScript banner) and an undeclared one, and every page embeds Google
Analytics, the Meta pixel, Hotjar and a YouTube video. That gap is what the
proxy in front of it has to close. The trackers point at the local stand-ins
(`trackers.py`) under the real vendors' host names with `.localhost` added
(`www.googletagmanager.com.localhost`): browsers resolve every `*.localhost`
name to this machine themselves (RFC 6761), so the pages load real-looking
third-party hosts, which the proxy's discovery reports as such, and nothing
leaves the machine. A visitor on another device (a LAN address) gets the
stand-ins at the host name it used instead: its `.localhost` is itself.

`python -m consentproxy.demo.site` runs the site and the stand-ins together.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import secrets
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from consentproxy.demo.addressing import display_host, tracker_origins
from consentproxy.demo.templates import render
from consentproxy.demo.trackers import build_tracker_app

logger = logging.getLogger("consentproxy.demo.site")

STATIC_DIR = Path(__file__).with_name("static")
TRACKER_PORT: web.AppKey[int] = web.AppKey("tracker_port", int)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# (language, page) → path, for the pages that have a URL of their own.
PATHS: dict[tuple[str, str], str] = {
    ("nl", "home"): "/", ("nl", "services"): "/diensten", ("nl", "contact"): "/contact", ("nl", "privacy"): "/privacy",
    ("en", "home"): "/en/", ("en", "services"): "/en/services", ("en", "contact"): "/en/contact",
    ("en", "privacy"): "/en/privacy",
}
TITLES: dict[tuple[str, str], str] = {
    ("nl", "home"): "Kade IT-diensten — IT-beheer voor het mkb in Amsterdam",
    ("nl", "services"): "Diensten — Kade IT-diensten",
    ("nl", "contact"): "Contact — Kade IT-diensten",
    ("nl", "privacy"): "Privacyverklaring — Kade IT-diensten",
    ("nl", "thanks"): "Bedankt voor uw bericht — Kade IT-diensten",
    ("nl", "notfound"): "Pagina niet gevonden — Kade IT-diensten",
    ("en", "home"): "Kade IT-diensten — IT support for small businesses in Amsterdam",
    ("en", "services"): "Services — Kade IT-diensten",
    ("en", "contact"): "Contact — Kade IT-diensten",
    ("en", "privacy"): "Privacy statement — Kade IT-diensten",
    ("en", "thanks"): "Thank you for your message — Kade IT-diensten",
    ("en", "notfound"): "Page not found — Kade IT-diensten",
}
_OTHER_LANGUAGE = {"nl": "en", "en": "nl"}
# Pages without a URL of their own sit under this menu entry (for the language switch).
_MENU_ENTRY = {"thanks": "contact", "notfound": "home"}
_ASSETS = {"style.css": "text/css", "logo.svg": "image/svg+xml", "favicon.svg": "image/svg+xml"}
_FORM_FIELDS = ("name", "email", "message")
_FIELD_LIMITS = {"name": 200, "email": 200, "message": 5000}

DAY = 86400


@dataclass(frozen=True, slots=True)
class DemoCookie:
    """A cookie every page sets when the browser does not send it yet."""

    name: str
    value: Callable[[], str]
    max_age: int | None
    httponly: bool


def _random_id() -> str:
    return f"{100_000_000 + secrets.randbelow(2_000_000_000)}.{int(time.time())}"


DEMO_COOKIES = (
    DemoCookie("kade_session", lambda: secrets.token_urlsafe(18), None, True),  # necessary; a session cookie
    DemoCookie("_ga", lambda: f"GA1.1.{_random_id()}", 395 * DAY, False),  # statistics, 13 months
    DemoCookie("_gcl_au", lambda: f"1.1.{_random_id()}", 90 * DAY, True),  # marketing (Google Ads)
    DemoCookie("kade_ab_variant", lambda: secrets.choice("ab"), 30 * DAY, False),  # in no cookie database
)


def _set_demo_cookies(request: web.Request, response: web.StreamResponse) -> None:
    for cookie in DEMO_COOKIES:
        if cookie.name not in request.cookies:
            response.set_cookie(cookie.name, cookie.value(), max_age=cookie.max_age, path="/",
                                httponly=cookie.httponly, samesite="Lax")


def _page(request: web.Request, lang: str, page: str, *, status: int = 200,
          text: Mapping[str, str] | None = None, raw: Mapping[str, str] | None = None) -> web.Response:
    """Render a page in its language's layout, with the trackers at their stand-ins' host names."""
    trackers_at = tracker_origins(request, request.app[TRACKER_PORT])
    entry = _MENU_ENTRY.get(page, page)
    current = {f"current_{menu}": ' aria-current="page"' if menu == page else ""
               for menu in ("home", "services", "contact", "privacy")}
    content = render(f"{lang}-{page}.html", {**trackers_at, **(text or {})}, raw)
    layout_text = {"title": TITLES[(lang, page)], "here": PATHS[(lang, entry)],
                   "other": PATHS[(_OTHER_LANGUAGE[lang], entry)]}
    trackers = render("trackers.html", trackers_at)
    body = render(f"{lang}-layout.html", layout_text, {"content": content, "trackers": trackers, **current})
    return web.Response(text=body, status=status, content_type="text/html")


def _show(lang: str, page: str) -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        if page == "contact":
            return _page(request, lang, page, text=dict.fromkeys(_FORM_FIELDS, ""), raw={"error_hidden": "hidden"})
        return _page(request, lang, page)

    return handler


def _contact_post(lang: str) -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        form = await request.post()
        values: dict[str, str] = {}
        for field in _FORM_FIELDS:
            value = form.get(field)
            values[field] = value.strip()[:_FIELD_LIMITS[field]] if isinstance(value, str) else ""
        if not all(values.values()):
            return _page(request, lang, "contact", status=400, text=values, raw={"error_hidden": ""})
        # Deliberately no name or address in the log: the demo stores nothing about the visitor.
        logger.info("contact form (%s): a message of %d characters; not stored", lang, len(values["message"]))
        return _page(request, lang, "thanks", text={"name": values["name"]})

    return handler


async def _asset(request: web.Request) -> web.StreamResponse:
    name = request.match_info["name"]
    if name not in _ASSETS:
        return web.Response(status=404, text="not found")
    return web.Response(body=(STATIC_DIR / name).read_bytes(), content_type=_ASSETS[name],
                        headers={"Cache-Control": "public, max-age=3600"})


async def _english_root(request: web.Request) -> web.StreamResponse:
    raise web.HTTPMovedPermanently("/en/")


@web.middleware
async def _pages_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """A friendly 404 page, and the site's cookies on every HTML page (error pages included)."""
    try:
        response = await handler(request)
    except web.HTTPNotFound:
        lang = "en" if request.path.startswith("/en/") else "nl"
        response = _page(request, lang, "notfound", status=404)
    if response.content_type == "text/html":
        _set_demo_cookies(request, response)
    return response


def build_site_app(tracker_port: int) -> web.Application:
    app = web.Application(middlewares=[_pages_middleware])
    app[TRACKER_PORT] = tracker_port
    for (lang, name), path in PATHS.items():
        app.router.add_get(path, _show(lang, name))
        if name == "contact":
            app.router.add_post(path, _contact_post(lang))
    app.router.add_get("/en", _english_root)
    app.router.add_get("/static/{name}", _asset)
    return app


async def _stop_on_eof(stop: asyncio.Event) -> None:
    """Set `stop` when standard input closes: the parent that holds the pipe has gone."""

    class _Watcher(asyncio.Protocol):
        def connection_lost(self, exc: Exception | None) -> None:
            stop.set()

    await asyncio.get_running_loop().connect_read_pipe(_Watcher, sys.stdin)


async def serve_demo(data_dir: Path, host: str, site_port: int, tracker_port: int,
                     stop_on_stdin_eof: bool = False) -> None:
    """Run the site and the tracker stand-ins until SIGTERM/SIGINT (or stdin EOF, if asked)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    if stop_on_stdin_eof:
        await _stop_on_eof(stop)
    runners = [
        (web.AppRunner(build_tracker_app(data_dir), access_log=None, shutdown_timeout=2.0), tracker_port),
        (web.AppRunner(build_site_app(tracker_port), access_log=None, shutdown_timeout=2.0), site_port),
    ]
    try:
        for runner, port in runners:
            await runner.setup()
            await web.TCPSite(runner, host, port).start()
        shown = display_host(host)
        print(f"demo site ready on http://{shown}:{site_port}/, tracker stand-ins on http://{shown}:{tracker_port}/",
              flush=True)
        await stop.wait()
    finally:
        for runner, _ in reversed(runners):
            await runner.cleanup()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m consentproxy.demo.site",
                                     description="Run the demo website and its stand-in third-party trackers.")
    parser.add_argument("--data-dir", type=Path, required=True, help="where the tracker and sink logs go")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--site-port", type=int, required=True)
    parser.add_argument("--tracker-port", type=int, required=True)
    parser.add_argument("--stop-on-stdin-eof", action="store_true",
                        help="also stop when standard input closes, so the site never outlives its parent")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s demo-site [%(process)d] %(message)s")
    try:
        asyncio.run(serve_demo(args.data_dir, args.host, args.site_port, args.tracker_port, args.stop_on_stdin_eof))
    except OSError as exc:
        print(f"demo site: cannot start: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
