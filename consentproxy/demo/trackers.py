"""Stand-ins for the third parties the demo site embeds, on a port of their own.

They answer like Google Analytics, the Meta pixel, Hotjar and YouTube do
(scripts that set cookies from JavaScript, hits, pixels, an iframe player), so
the proxy meets realistic traffic, while nothing leaves the machine. Every
request is logged to `tracker-hits.ndjson`: that file is the evidence of what
a third party would have learned. `/sink/...` stands for an analytics backend
behind the proxy's anonymiser and logs everything it receives, headers and
body included, to `analytics-sink.ndjson`.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import web

from consentproxy.demo.addressing import request_host
from consentproxy.demo.hitlog import NdjsonLog, utc_now
from consentproxy.demo.templates import render

STATIC_DIR = Path(__file__).with_name("static")
TRACKER_LOG = "tracker-hits.ndjson"
SINK_LOG = "analytics-sink.ndjson"

# The smallest transparent GIF: what tracking pixels answer with.
PIXEL_GIF = (b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff"
             b"!\xf9\x04\x01\x00\x00\x00\x00,\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;")

_NO_STORE = {"Cache-Control": "no-store"}

_HITS: web.AppKey[NdjsonLog] = web.AppKey("tracker_hits", NdjsonLog)
_SINK: web.AppKey[NdjsonLog] = web.AppKey("analytics_sink", NdjsonLog)
_SCRIPTS: web.AppKey[dict[str, str]] = web.AppKey("scripts", dict)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _cookie_names(request: web.Request) -> list[str]:
    """Names only, straight from the header: the log shows what arrived, not the values."""
    names: list[str] = []
    for header in request.headers.getall("Cookie", []):
        for part in header.split(";"):
            name = part.partition("=")[0].strip()
            if name:
                names.append(name)
    return names


def _logged(tracker: str, kind: str, respond: Handler) -> Handler:
    """Wrap a handler so that the request is logged first, whatever the response."""

    async def handler(request: web.Request) -> web.StreamResponse:
        request.app[_HITS].append({
            "time": utc_now(),
            "tracker": tracker,
            "kind": kind,
            "method": request.method,
            "path": request.path,
            "query": request.query_string,
            "referer": request.headers.get("Referer"),
            "cookie_names": _cookie_names(request),
        })
        if request.method == "OPTIONS":
            return web.Response(status=204)
        return await respond(request)

    return handler


def _script(name: str) -> Handler:
    async def respond(request: web.Request) -> web.StreamResponse:
        body = request.app[_SCRIPTS][name].replace("__ORIGIN__", json.dumps(f"http://{request_host(request)[1]}"))
        return web.Response(text=body, content_type="application/javascript", headers=_NO_STORE)

    return respond


async def _no_content(request: web.Request) -> web.StreamResponse:
    await request.read()
    return web.Response(status=204, headers=_NO_STORE)


async def _pixel(request: web.Request) -> web.StreamResponse:
    await request.read()
    return web.Response(body=PIXEL_GIF, content_type="image/gif", headers=_NO_STORE)


async def _youtube_player(request: web.Request) -> web.StreamResponse:
    page = render("youtube-embed.html", {"video_id": request.match_info["video_id"]})
    return web.Response(text=page, content_type="text/html", headers=_NO_STORE)


async def _sink(request: web.Request) -> web.StreamResponse:
    body = await request.read()
    try:
        text, encoding = body.decode("utf-8"), "text"
    except UnicodeDecodeError:
        text, encoding = base64.b64encode(body).decode("ascii"), "base64"
    request.app[_SINK].append({
        "time": utc_now(),
        "method": request.method,
        "path": request.path,
        "query": request.query_string,
        "headers": [[name, value] for name, value in request.headers.items()],
        "body": text,
        "body_encoding": encoding,
    })
    return web.Response(status=204, headers=_NO_STORE)


@web.middleware
async def _cors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Let scripts on the site's origin read our answers, as the real endpoints do."""
    response = await handler(request)
    origin = request.headers.get("Origin")
    if origin:
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Access-Control-Allow-Credentials"] = "true"
        response.headers["Vary"] = "Origin"
    else:
        response.headers["Access-Control-Allow-Origin"] = "*"
    if request.method == "OPTIONS":
        response.headers["Access-Control-Allow-Methods"] = "GET, POST, OPTIONS"
        response.headers["Access-Control-Allow-Headers"] = request.headers.get(
            "Access-Control-Request-Headers", "Content-Type")
        response.headers["Access-Control-Max-Age"] = "600"
    return response


def _load_scripts() -> dict[str, str]:
    return {name: (STATIC_DIR / f"tracker-{name}.js").read_text("utf-8") for name in ("gtag", "fbevents", "hotjar")}


def build_tracker_app(data_dir: Path) -> web.Application:
    app = web.Application(middlewares=[_cors])
    app[_HITS] = NdjsonLog(data_dir / TRACKER_LOG)
    app[_SINK] = NdjsonLog(data_dir / SINK_LOG)
    app[_SCRIPTS] = _load_scripts()

    async def close_logs(app: web.Application) -> None:
        app[_HITS].close()
        app[_SINK].close()

    app.on_cleanup.append(close_logs)
    app.add_routes([
        web.route("*", "/gtag/js", _logged("ga", "script", _script("gtag"))),
        web.route("*", "/g/collect", _logged("ga", "hit", _no_content)),
        web.route("*", "/fbevents.js", _logged("facebook", "script", _script("fbevents"))),
        web.route("*", "/tr", _logged("facebook", "pixel", _pixel)),
        web.route("*", r"/hotjar-{hjid:\d+}.js", _logged("hotjar", "script", _script("hotjar"))),
        web.route("*", "/hotjar/hit", _logged("hotjar", "hit", _no_content)),
        web.route("*", r"/youtube/embed/{video_id:[A-Za-z0-9_-]{1,64}}", _logged("youtube", "iframe", _youtube_player)),
        web.route("*", "/sink/{rest:.*}", _sink),
    ])
    return app
