"""The banner preview on the console: both layers, every language, at desktop and phone width.

The configuration is read from disk on every view (not the running one), so
a site owner sees an edit before reloading; a configuration that does not
load shows the loader's error. Each layer is a self-contained document
(`banner.preview`, the same the CLI writes) in a sandboxed frame: its script
runs with an opaque origin, so it reaches nothing of the console's.
"""

from __future__ import annotations

import asyncio
from urllib.parse import quote

from starlette.responses import HTMLResponse, Response

from consentproxy.admin.console.gate import Visit
from consentproxy.admin.console.layout import e, headers
from consentproxy.admin.console.pages import site_nav
from consentproxy.banner.assets import AssetsMissing, BannerAssets
from consentproxy.banner.preview import LAYERS, WIDTHS, Layer, banner_document
from consentproxy.config.loader import ConfigError, load_config
from consentproxy.config.model import LANGUAGES, SiteConfig

#: what a framed preview document may do: its own inline style and script, nothing from the network
FRAME_CSP = ("default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:; "
             "frame-ancestors 'self'; base-uri 'none'; form-action 'none'")


def _site_from_disk(visit: Visit, name: str) -> tuple[SiteConfig | None, str]:
    """The site as the configuration file on disk has it now, or why not."""
    source = visit.context.config_source
    if source is None:  # the quick start: no file, so the running configuration is the one to see
        running = visit.store.site_config(name)
        return (running, "") if running is not None else (None, f"No site named {name!r} is configured.")
    try:
        config = load_config(source)
    except (ConfigError, OSError) as exc:
        return None, f"The configuration file {source} does not load (the running configuration stays):\n{exc}"
    site = next((s for s in config.sites if s.name == name), None)
    if site is None:
        return None, f"The configuration file {source} has no site named {name!r}."
    return site, ""


async def preview(visit: Visit) -> Response:
    name = str(visit.request.path_params["site"])
    site, problem = await asyncio.to_thread(_site_from_disk, visit, name)
    if site is None:
        return visit.page(f"{name}: banner preview", f'<pre class="error" role="alert">{e(problem)}</pre>',
                          nav=site_nav(name))
    asked = visit.request.query_params.get("lang", "")
    lang = asked if asked in LANGUAGES else site.consent.default_language
    choose = " · ".join(f"<strong>{code}</strong>" if code == lang else f'<a href="?lang={code}">{code}</a>'
                        for code in LANGUAGES)
    frames = []
    for layer in LAYERS:
        for label, width in WIDTHS.items():
            src = f"/preview/{quote(name, safe='')}/frame/{lang}/{layer}"
            title = f"{layer} layer, {lang}, {label} ({width} px)"
            frames.append(f'<figure><figcaption>{e(title)}</figcaption><iframe class="{label}" src="{e(src)}" '
                          f'title="{e(title)}" sandbox="allow-scripts" loading="lazy"></iframe></figure>')
    origin = ("From the configuration file on disk, as it is now (reload the proxy to put it in force)."
              if visit.context.config_source is not None else "From the running configuration (no file).")
    body = f"<p>{origin} Language: {choose}</p><div class=\"frames\">{''.join(frames)}</div>"
    return visit.page(f"{name}: banner preview", body, nav=site_nav(name))


async def frame(visit: Visit) -> Response:
    name = str(visit.request.path_params["site"])
    lang, layer = str(visit.request.path_params["lang"]), str(visit.request.path_params["layer"])
    if lang not in LANGUAGES or layer not in LAYERS:
        return visit.page("Not found", "<p>No such preview.</p>", status=404)
    site, problem = await asyncio.to_thread(_site_from_disk, visit, name)
    if site is None:
        return visit.page(f"{name}: banner preview", f'<pre class="error" role="alert">{e(problem)}</pre>')
    try:
        chosen: Layer = "first" if layer == "first" else "settings"
        document = await asyncio.to_thread(banner_document, site, BannerAssets(), lang, chosen)
    except AssetsMissing as exc:
        return visit.page(f"{name}: banner preview", f'<p class="error" role="alert">{e(exc)}</p>')
    sent = headers(framable=True) | {"Content-Security-Policy": FRAME_CSP}
    return HTMLResponse(document, headers=sent)
