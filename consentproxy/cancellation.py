"""The one word the server and the applications share: why a request's task was cancelled.

The server protocol cancels a request's task with `CLIENT_GONE` when its client disconnects before
the response is complete; the proxy and the admin application absorb exactly that cancellation and let
every other one through. Its own module, so that neither side imports the other for it.
"""

from __future__ import annotations

import asyncio

CLIENT_GONE = "client disconnected"


def is_client_gone(exc: asyncio.CancelledError) -> bool:
    """Whether this cancellation is the server's word that the client went away."""
    return bool(exc.args) and exc.args[0] == CLIENT_GONE
