"""One entry point: a received hit, the site's policy and the visitor's state in; a hit to forward or a drop out.

Whatever a backend module did, the finished request is searched once more
for the visitor's address in every spelling and encoding layer; a hit that
still holds it is dropped, never sent. A bug then costs a hit, not a leak.
"""

from __future__ import annotations

from collections.abc import Callable
from itertools import chain
from typing import Literal

from consentproxy.analytics import ga4, generic, matomo, plausible, umami
from consentproxy.analytics.model import Context, Dropped, Hit, Policy
from consentproxy.analytics.work import Work

Backend = Literal["ga4", "matomo", "plausible", "umami", "generic"]

BACKENDS: dict[Backend, Callable[[Work], Hit | Dropped]] = {
    "ga4": ga4.anonymise,
    "matomo": matomo.anonymise,
    "plausible": plausible.anonymise,
    "umami": umami.anonymise,
    "generic": generic.anonymise,
}
#: far above any real hit (a GA4 batch is a few KB); the endpoint should refuse bigger bodies before reading them
MAX_BODY = 256 * 1024


def anonymise(backend: Backend, hit: Hit, policy: Policy, context: Context) -> Hit | Dropped:
    """The hit as it may leave for `backend` (GA4 covers `/g/collect` and `/mp/collect`), or why not."""
    if context.mode == "drop":
        return Dropped("not_consented")
    transform = BACKENDS.get(backend)
    if transform is None:
        return Dropped("unsupported", f"unknown backend {backend!r}")
    if len(hit.body) > MAX_BODY:
        return Dropped("malformed", "body too large")
    encoding = (hit.header("content-encoding") or "identity").strip().lower()
    if encoding != "identity":
        return Dropped("unsupported", f"body encoded as {encoding}; decode it before anonymising")
    work = Work(hit, policy, context)
    try:
        result = transform(work)
    except (ValueError, TypeError, KeyError, IndexError, AttributeError, RecursionError) as exc:
        # Whatever a browser sends that the parsers choke on is neither forwarded nor an error page.
        return Dropped("malformed", f"{type(exc).__name__} while reading the hit")
    if isinstance(result, Dropped):
        return result
    if _leaks(work, result):
        return Dropped("leak", "the client address survived anonymisation")
    return result


def _leaks(work: Work, hit: Hit) -> bool:
    """One search over the request as it will be sent; the scrubber also reads it decoded, layer by layer.

    The encoded query is searched as it is (an escape's hex digits can complete
    an address: "\x18" + "9.1.2.3" is sent as "%189.1.2.3"); its deeper layers
    are its pairs, so those are decoded instead of the whole string once more.
    """
    scrubber = work.scrubber
    if not scrubber.forms:
        return False
    if scrubber.has_address(hit.query_string()):
        return True
    parts = [hit.path, hit.client_ip, *chain.from_iterable(hit.query), hit.body.decode("utf-8", "replace")]
    parts += [f"{name}: {value}" for name, value in hit.headers]
    return scrubber.leaks("\n".join(parts))
