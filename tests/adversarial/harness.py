"""What every adversarial module does after a variant: a barrier request, then what the site received."""

from __future__ import annotations

from conftest import Proxy

from .recorder import Received, Recorder
from .wire import get


def upstream_saw(proxy: Proxy, recorder: Recorder, token: str, host: str = "localhost") -> list[Received]:
    """The requests naming `token` the site received, once a marker request sent after the variant has
    arrived (so whatever the variant made the proxy send has arrived too); the marker left out."""
    marker = f"/{token}/marker"
    assert get(proxy.port, marker, host).statuses == [200]
    recorder.wait_for(marker)
    return [request for request in recorder.seen(f"/{token}/") if not request.path.endswith("/marker")]
