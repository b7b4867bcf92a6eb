"""The proxy path: routing, header hygiene, streaming to and from the upstream."""
