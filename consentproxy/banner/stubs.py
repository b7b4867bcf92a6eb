"""Stand-ins for the queues and functions of vendors whose scripts are held, defined before any page script.

A page calls its vendors' APIs from its own code too (`googletag.cmd.push(…)`, `fbq('track', …)`,
`_paq.push(…)`, `apstag.fetchBids(…)`), in scripts the proxy leaves alone. With the vendor's loader held,
those names would not exist: the page throws ReferenceErrors and the calls are lost. Each stub is the shape
the vendor's own snippet gives the name before its library loads (an array, or a function that queues its
arguments), so the library, once released, finds the calls and replays them.

Some vendors' snippets (Meta's `fbq`, Amazon's `apstag`) do nothing when their name exists already, others
queue their own calls after ours; our stubs carry `cp = 1`, and the banner takes them away while a released
inline script runs, then replays their queued calls into what that script defined, after its own
(static/banner/banner.js, `unstub`). `gtag` is the exception: it feeds `dataLayer` at once, as Google's own
does, so Consent Mode sees one queue.
"""

from __future__ import annotations

from consentproxy.cookies.classify import builtin_services

#: (the vendor's service in the catalogue, code defining its names where the page has not already); `w` is
#: `window`, `dataLayer` exists (the Consent Mode default comes first)
_STUBS: tuple[tuple[str, str], ...] = (
    ("Google Analytics", "w.gtag=w.gtag||function(){dataLayer.push(arguments)};"
                         "if(!w.ga){var g=w.ga=function(){(g.q=g.q||[]).push(arguments)};g.l=+new Date;g.cp=1}"
                         "if(!w._gaq){w._gaq=[];w._gaq.cp=1}"),
    ("Google Ads", "w.googletag=w.googletag||{};w.googletag.cmd=w.googletag.cmd||[];"),
    ("Matomo", "if(!w._paq){w._paq=[];w._paq.cp=1}"),
    ("Meta Pixel", "if(!w.fbq){var f=w.fbq=function(){f.callMethod?f.callMethod.apply(f,arguments):"
                   "f.queue.push(arguments)};if(!w._fbq)w._fbq=f;f.push=f;f.loaded=!0;f.version='2.0';"
                   "f.queue=[];f.cp=1}"),
    ("Amazon Publisher Services", "if(!w.apstag){var a=w.apstag={_Q:[],cp:1,init:function(){a._Q.push(['i',"
                                  "arguments])},fetchBids:function(){a._Q.push(['f',arguments])},"
                                  "setDisplayBids:function(){},targetingKeys:function(){return[]}}}"),
    ("comScore", "if(!w._comscore){w._comscore=[];w._comscore.cp=1}"),
    ("Quantcast", "if(!w._qevents){w._qevents=[];w._qevents.cp=1}"),
    ("Chartbeat", "w._sf_async_config=w._sf_async_config||{};"),
)


def _categories() -> dict[str, str]:
    services = {service.name: service.category for service in builtin_services()}
    missing = [name for name, _ in _STUBS if name not in services]
    if missing:  # a renamed catalogue entry must not silently drop its stub
        raise RuntimeError(f"vendor stubs name services the catalogue lacks: {', '.join(missing)}")
    return services


_CATEGORY = _categories()


def vendor_stubs(granted: frozenset[str] | None) -> str:
    """Code defining the stubs of the vendors whose category is not granted (`None`: nothing decided)."""
    code = "".join(stub for service, stub in _STUBS if granted is None or _CATEGORY[service] not in granted)
    return f"(function(w){{{code}}})(window);" if code else ""
