"""Analytics hits anonymised before they reach GA4, Matomo, Plausible, Umami or a generic JSON backend.

`anonymise(backend, hit, policy, context)` is pure and synchronous: the
endpoints read the request into a `Hit`, the site's configuration gives the
`Policy`, the consent cookie and GeoIP give the `Context`, and the result is
the `Hit` to forward (its headers are the complete list) or `Dropped`.
"""

from consentproxy.analytics.anonymiser import BACKENDS, Backend, anonymise
from consentproxy.analytics.keys import DailyKeys, daily_key
from consentproxy.analytics.model import (
    DEFAULT_ID_KEYS,
    DEFAULT_PROPERTY_ALLOW,
    DEFAULT_QUERY_ALLOW,
    Context,
    Dropped,
    Hit,
    Policy,
    encode_query,
    parse_query,
)

__all__ = [
    "BACKENDS",
    "DEFAULT_ID_KEYS",
    "DEFAULT_PROPERTY_ALLOW",
    "DEFAULT_QUERY_ALLOW",
    "Backend",
    "Context",
    "DailyKeys",
    "Dropped",
    "Hit",
    "Policy",
    "anonymise",
    "daily_key",
    "encode_query",
    "parse_query",
]
