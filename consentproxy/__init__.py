"""consentproxy: a reverse proxy that enforces visitors' consent at the HTTP layer."""

__version__ = "0.1.0"
