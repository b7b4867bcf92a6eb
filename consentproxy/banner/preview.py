"""A site's banner as self-contained HTML documents: the first layer and the settings layer, per language.

The console's `/preview/{site}` frames them and `consentproxy preview --banner`
writes them to files, so a site owner sees the theme, texts and categories
before reloading. They are made from the proxy's own rendering (`SiteMarkup`,
the banner's CSS and script, the theme's stylesheet), with the stylesheets and
the script inlined instead of linked: a document that needs no network and
no proxy. The settings layer is the same document, opened by the banner
script's public `consentproxy.open()` as a visitor's click would.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from consentproxy.banner.assets import BannerAssets
from consentproxy.banner.markup import SiteMarkup, ascii_html
from consentproxy.banner.theme import theme_css
from consentproxy.config.model import LANGUAGES, SiteConfig
from consentproxy.consent.decision import NO_DECISION
from consentproxy.html.csp import NoncePlan

Layer = Literal["first", "settings"]
LAYERS: tuple[Layer, ...] = ("first", "settings")
#: the widths a preview shows: a desktop and a phone
WIDTHS: dict[str, int] = {"desktop": 1280, "mobile": 390}
#: the settings layer takes focus when it opens; in a frame of the console that would scroll the console's page to
#: it, so focus in a preview never scrolls (keyboard use inside the frame is unchanged)
_NO_FOCUS_SCROLL = ("<script>(function(){var f=HTMLElement.prototype.focus;HTMLElement.prototype.focus="
                    "function(o){f.call(this,Object.assign({preventScroll:true},o||{}));};})();</script>")
_OPEN_SETTINGS = ("<script>document.addEventListener('DOMContentLoaded',"
                  "function(){window.consentproxy.open();});</script>")


@dataclass(frozen=True, slots=True)
class BannerPreview:
    lang: str
    layer: Layer
    html: str

    @property
    def filename(self) -> str:
        return f"banner-{self.lang}-{self.layer}.html"


def _inline(text: str) -> str:
    """Script or style text made safe inside its element: no `</` can end it early."""
    return text.replace("</", "<\\/")


def banner_document(site: SiteConfig, assets: BannerAssets, lang: str, layer: Layer) -> str:
    """One layer in one language, as a complete HTML document with every asset inlined."""
    markup = SiteMarkup(site, assets)
    bundle = markup.bundle(lang, NO_DECISION, NoncePlan(), "preview")
    css = assets.by_path[assets.url_of["banner.css"]].identity.decode("utf-8")
    js = assets.by_path[assets.url_of["banner.js"]].identity.decode("utf-8")
    theme = theme_css(site.consent.theme)
    bundle = bundle.replace(f'<link rel="stylesheet" href="{ascii_html(markup.css_url)}">',
                            f"<style>{_inline(css)}</style>")
    if markup.theme_url is not None and theme is not None:
        bundle = bundle.replace(f'<link rel="stylesheet" href="{ascii_html(markup.theme_url)}">',
                                f"<style>{_inline(theme)}</style>")
    bundle = bundle.replace(f'<script src="{ascii_html(markup.js_url)}" defer', "<script", 1)
    head, _, tail = bundle.rpartition("></script>")
    bundle = f"{head}>{_inline(js)}</script>{tail}"
    if "<link " in bundle or " src=" in bundle:  # the markup changed: fail loudly rather than load the network
        raise RuntimeError("the banner markup links an asset the preview does not inline")
    title = ascii_html(f"{site.name}: banner preview, {lang}, {layer} layer")
    opener = _OPEN_SETTINGS if layer == "settings" else ""
    return (f'<!doctype html><html lang="{lang}"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{title}</title><style>body{{font-family:system-ui,sans-serif;margin:2rem;color:#333}}</style>"
            f"</head><body><main><h1>{ascii_html(site.name)}</h1><p>A page of the site, under its banner.</p>"
            f"</main>{_NO_FOCUS_SCROLL}{bundle}{opener}</body></html>")


def banner_previews(site: SiteConfig, assets: BannerAssets | None = None) -> list[BannerPreview]:
    """Both layers in every language, the site's default language first."""
    assets = assets or BannerAssets()
    languages = [site.consent.default_language, *(lang for lang in LANGUAGES
                                                   if lang != site.consent.default_language)]
    return [BannerPreview(lang, layer, banner_document(site, assets, lang, layer))
            for lang in languages for layer in LAYERS]
