"""Serving: the hardened HTTP protocol, the ASGI application, workers, reload."""
